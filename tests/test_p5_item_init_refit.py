"""Item-token initialisation limits and the after-training refit of new items' rows (issue 14)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from textrec.indexing import item_index
from textrec.p5.item_init import (
    apply_item_init,
    init_item_embeddings,
    knn_map,
    refit_after_training,
    refit_new_items,
    refit_text_rows,
    ridge_map,
    single_item_token_ids,
)
from textrec.p5.model import P5Config, P5Model
from textrec.p5.recommender import tokenizer_corpus
from textrec.p5.serializer import P5Serializer, SerializerConfig, TrainData

torch.set_num_threads(1)
N_ITEMS = 12


def build(seqs, **cfg) -> P5Model:
    index = item_index(N_ITEMS)
    ser = P5Serializer(index, None, SerializerConfig(prompt_set="p5/compact", item_sep="", max_history=4,
                                                     max_history_titles=None))
    torch.manual_seed(0)
    return P5Model.build(P5Config(preset="tiny", vocab_size=300, dropout=0.0, **cfg), index,
                         tokenizer_corpus(ser, TrainData(seqs, N_ITEMS), None))


def rows_of(model: P5Model) -> torch.Tensor:
    return model.t5.get_input_embeddings().weight[single_item_token_ids(model)].detach().clone()


def test_max_norm_caps_popular_rows_and_keeps_directions():
    seqs = [np.array([0, 1])] * 3
    model = build(seqs)
    vec = np.ones((N_ITEMS, 4), dtype=np.float32)
    vec[0] *= 100.0  # one very popular item: its SVD row would be 100x the median
    vec[1, 0] = -1.0
    init_item_embeddings(model, vec, max_norm=2.0)
    r = rows_of(model)
    norms = r.norm(dim=1)
    assert norms[0] <= 2.0 * norms[2:].median() * 1.0001  # capped at 2x the typical row
    assert torch.allclose(norms[2:], norms[2:].median())
    cos = torch.nn.functional.cosine_similarity(r[0], torch.ones(r.shape[1]).masked_fill(torch.arange(r.shape[1]) >= 4, 0), dim=0)
    assert cos > 0.999  # capping rescales, never turns a row
    init_item_embeddings(model, vec)  # without the cap the popular row keeps its 100x norm
    assert rows_of(model).norm(dim=1)[0] > 50 * rows_of(model).norm(dim=1)[2:].median()
    with pytest.raises(ValueError, match="must be > 0"):
        init_item_embeddings(model, vec, max_norm=0.0)


def test_apply_item_init_reads_the_cap_from_the_model_config():
    seqs = [np.array([0, 1, 2, 3])] * 20 + [np.array([4, 5])] * 2 + [np.array([6, 7]), np.array([8, 9])]
    capped = build(seqs, item_init_max_norm=1.5)
    rep = apply_item_init(capped, "svd", seqs)
    n = rows_of(capped).norm(dim=1)[:10]
    assert rep["max_norm"] == 1.5 and n.max() <= 1.5 * n.median() * 1.0001


def test_ridge_map_is_exact_when_it_can_interpolate_and_fits_only_given_rows():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(10, 16)), rng.normal(size=(10, 3))
    fit = np.ones(10, dtype=bool)
    assert np.allclose(ridge_map(x, y, fit, ridge=1e-8), y, atol=1e-5)
    fit[7:] = False
    y2 = y.copy()
    y2[7:] = 1e6  # targets of rows outside the fit must not matter
    assert np.allclose(ridge_map(x, y, fit, 1.0), ridge_map(x, y2, fit, 1.0))


@pytest.mark.parametrize("method", ["ridge", "knn"])
def test_refit_puts_a_new_item_with_a_warm_items_text_next_to_its_trained_row(method):
    seqs = [np.arange(8)] * 4  # items 0-7 warm; 8-11 new
    model = build(seqs)
    with torch.no_grad():  # "trained" rows: arbitrary, far from any initialisation
        table = model.t5.get_input_embeddings().weight
        table[single_item_token_ids(model)] = torch.randn(N_ITEMS, table.shape[1], generator=torch.Generator().manual_seed(3)) * 5
    trained = rows_of(model)
    rng = np.random.default_rng(1)
    text = rng.normal(size=(N_ITEMS, 32))
    text[9] = text[2]  # new item 9 is described exactly like warm item 2
    text[11] = text[5]
    warm = np.arange(N_ITEMS) < 8
    rep = refit_new_items(model, text, warm, ridge=1e-6, methods=[method], k=1)
    after = rows_of(model)
    assert rep["rows_written"] == 4 and rep["method"] == method
    assert torch.equal(after[:8], trained[:8])  # warm rows untouched
    cos = torch.nn.functional.cosine_similarity(after[9][None], trained[:8])
    assert int(cos.argmax()) == 2 and cos[2] > 0.97
    cos = torch.nn.functional.cosine_similarity(after[11][None], trained[:8])
    assert int(cos.argmax()) == 5 and cos[5] > 0.97
    # new deviations get the warm deviations' typical norm (ridge predictions or averages alone shrink)
    mean, dev = refit_text_rows(model, text, warm, method, ridge=1e-6, k=1)
    warm_dev = trained[:8].numpy() - trained[:8].numpy().mean(0)
    assert np.allclose(mean, trained[:8].numpy().mean(0), atol=1e-5)
    assert np.isclose(np.median(np.linalg.norm(dev[8:], axis=1)), np.median(np.linalg.norm(warm_dev, axis=1)), rtol=1e-4)
    # the output layer is tied: the logits see the refitted rows
    assert torch.equal(model.t5.get_output_embeddings().weight[single_item_token_ids(model)], after)
    with pytest.raises(ValueError, match="unknown refit method"):
        refit_text_rows(model, text, warm, "magic")


def test_knn_map_never_uses_a_fit_row_as_its_own_neighbour():
    x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [1.0, 0.05]])
    y = np.array([[1.0], [2.0], [3.0], [4.0]])
    fit = np.array([True, True, True, False])
    out = knn_map(x, y, fit, k=1)
    assert out[0, 0] == 2.0 and out[1, 0] == 1.0 and out[3, 0] == 1.0


def test_refit_setting_is_chosen_by_the_given_valid_score_and_left_in_the_model():
    seqs = [np.arange(8)] * 4
    model = build(seqs)
    text = np.random.default_rng(0).normal(size=(N_ITEMS, 8))
    warm = np.arange(N_ITEMS) < 8
    mean = rows_of(model)[:8].numpy().mean(0)
    seen = []

    def score() -> float:  # prefers the deviation norm written at scale 2
        n = float(np.median(np.linalg.norm(rows_of(model)[8:].numpy() - mean, axis=1)))
        seen.append(n)
        return -abs(n - seen[0] * 2)

    rep = refit_new_items(model, text, warm, scales=[1.0, 2.0, 3.0], score=score)
    assert rep["scale"] == 2.0 and rep["mean_weight"] == 1.0 and len(rep["valid_by_setting"]) == 3
    assert np.isclose(float(np.median(np.linalg.norm(rows_of(model)[8:].numpy() - mean, axis=1))), seen[0] * 2,
                      rtol=1e-4)
    with pytest.raises(ValueError, match="valid score"):
        refit_new_items(model, text, warm, scales=[1.0, 2.0])
    # a mean weight of 0 writes the deviations alone
    refit_new_items(model, text, warm, mean_weights=[0.0])
    _, dev = refit_text_rows(model, text, warm)
    assert np.allclose(rows_of(model)[8:].numpy(), dev[8:], atol=1e-5)


def test_refit_after_training_runs_only_when_the_config_asks():
    class FakeEncoder:
        def encode(self, texts, progress=False):
            return np.array([[float(len(t)), float(i % 3), 1.0] for i, t in enumerate(texts)])

    seqs = [np.arange(8)] * 4
    texts = [f"item {'x' * i}" for i in range(N_ITEMS)]
    off = build(seqs)
    assert refit_after_training(off, seqs, texts, encoder=FakeEncoder()) is None
    on = build(seqs, new_item_refit=True)
    before = rows_of(on)
    rep = refit_after_training(on, seqs, texts, encoder=FakeEncoder())
    assert rep["new_items"] == 4 and rep["warm_items"] == 8
    after = rows_of(on)
    assert torch.equal(after[:8], before[:8]) and not torch.allclose(after[8:], before[8:])
    with pytest.raises(ValueError, match="item texts"):
        refit_after_training(on, seqs, None)


def test_bench_refits_new_items_on_valid_and_reports_new_and_warm_apart():
    import pandas as pd

    from textrec.benchmarks.p5 import run_indexing
    from textrec.data.dataset import RecDataset
    from textrec.data.splits import new_item_split

    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"item-{(s + t) % 24}", float(t)) for u in range(60) for s in [int(rng.integers(24))]
            for t in range(7)]
    kinds = ["microscope slide", "lab glove", "pipette tip", "test tube"]
    items = pd.DataFrame({"item_id": [f"item-{i}" for i in range(24)],
                          "title": [f"{kinds[i % 4]} model {i}" for i in range(24)]})
    ds = RecDataset.from_frames("tiny", pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]), items,
                                text_fields=["title"])
    split = new_item_split(ds, frac=0.25, seed=0)
    recipe = {"model": {"preset": "tiny", "vocab_size": 300, "item_init": "svd+text", "item_init_max_norm": 3.0,
                        "new_item_refit": True, "new_item_refit_scales": [0.5, 1.0]},
              "serializer": {"prompt_set": "p5/compact", "item_sep": "", "max_history": 4, "max_history_titles": None},
              "trainer": {"epochs": 1, "batch_size": 32},
              "eval": {"seen_templates": ["seq-c1"], "unseen_templates": ["seq-unseen-c1"], "template_users": 20}}
    out = run_indexing("item", split, recipe, 0, None, None, False)
    refit = out["new_item_refit"]
    assert refit["scale"] in (0.5, 1.0) and len(refit["valid_by_setting"]) == 2
    assert refit["new_items"] == len(split.new_items) and refit["rows_written"] == refit["new_items"]
    assert out["item_init"]["max_norm"] == 3.0
    for part in ("valid", "test"):
        new, warm = out[f"{part}_new_items"], out[f"{part}_warm_items"]
        evalset = getattr(split, part)
        assert new["n_rows"] == int(evalset.is_new.sum()) > 0 and warm["n_rows"] == int((~evalset.is_new).sum())
