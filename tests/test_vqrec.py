"""VQ-Rec model: planted pattern beats Popularity, save/load round trip, new items from codes/text."""

import numpy as np
import pandas as pd
import pytest
import torch

from textrec.data import RecDataset
from textrec.data.splits import leave_one_out
from textrec.evaluation import run_protocol
from textrec.models import Recommender
from textrec.models.baselines import Popularity
from textrec.vqrec.model import VQRec

SMALL = dict(backbone={"hidden": 32, "layers": 1, "heads": 1, "ff": 64, "max_len": 10, "dropout": 0.1,
                       "attn_dropout": 0.1},
             trainer={"epochs": 15, "batch_size": 32, "lr": 5e-3, "max_len": 10, "patience": 5, "seed": 0})


def _planted(n_items=30, n_users=120, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        start = int(rng.integers(n_items))
        for t in range(8):
            rows.append((f"u{u}", f"i{(start + t) % n_items}", float(t)))
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(n_items)],
                          "title": [f"product number {i} in series {i % 5}" for i in range(n_items)]})
    return RecDataset.from_frames("planted", pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]),
                                  items, text_fields=["title"])


def _codes(n_items, d=4, k=8, seed=0):
    # distinct code tuples per item (base-k digits of a permutation)
    perm = np.random.default_rng(seed).permutation(k ** d)[:n_items]
    return np.stack([(perm // k ** j) % k for j in range(d)], axis=1)


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    ds = _planted()
    split = leave_one_out(ds)
    model = VQRec(**SMALL, n_subvectors=4, n_centroids=8).set_codes(_codes(ds.n_items), 8)
    res = run_protocol(model, split, progress=False)
    return ds, split, model, res


def test_beats_popularity_on_planted_pattern(trained):
    _, split, _, res = trained
    pop = run_protocol(Popularity(), split, progress=False)
    assert res.test.metrics["ndcg@10"] > pop.test.metrics["ndcg@10"] + 0.3


def test_save_load_round_trip(trained, tmp_path):
    _, split, model, _ = trained
    model.save_pretrained(tmp_path / "m")
    loaded = Recommender.from_pretrained(tmp_path / "m")
    h = split.test.histories()[:5]
    assert torch.equal(model.score(np.zeros(5), h), loaded.score(np.zeros(5), h))


def test_add_items_by_codes_scores_them(trained):
    ds, split, model, _ = trained
    new = model.add_items(codes=np.array([[0, 1, 2, 3], [7, 7, 7, 7]]), ids=["new-a", "new-b"])
    assert new.tolist() == [ds.n_items, ds.n_items + 1]
    s = model.score(np.zeros(1), [split.test.history(0)])
    assert s.shape == (1, ds.n_items + 2) and torch.isfinite(s).all()
    with pytest.raises(ValueError, match="codes must lie"):
        model.add_items(codes=np.array([[0, 0, 0, 99]]), ids=["bad"])


def test_fit_from_text_builds_codes_on_train_items():
    torch.set_num_threads(1)
    ds = _planted(n_items=40, n_users=60)
    split = leave_one_out(ds)
    cfg = dict(SMALL)
    cfg["trainer"] = {**SMALL["trainer"], "epochs": 2}
    model = VQRec(**cfg, n_subvectors=4, n_centroids=16)
    run_protocol(model, split, progress=False)
    assert model.codes.shape == (ds.n_items, 4)
    assert model.codes.max() < model.n_centroids <= 16
    new = model.add_items(texts=["product number 99 in series 4"], ids=["new-99"])
    assert model.codes[new[0]].shape == (4,)
    with pytest.raises(ValueError, match="non-empty text"):
        model.add_items(texts=[""], ids=["empty"])


def test_code_dropout_only_while_training_and_saved_in_config(tmp_path):
    from textrec.models.backbone import BackboneConfig
    from textrec.vqrec.model import VQRecModule

    torch.manual_seed(0)
    codes = torch.from_numpy(_codes(20))
    m = VQRecModule(codes, 8, BackboneConfig(hidden=16, layers=1, heads=1, ff=32, max_len=5), code_dropout=0.5)
    m.eval()
    full = m.item_representations()
    assert torch.equal(full, m.item_representations())  # eval: every code, deterministic
    m.train()
    dropped = m.item_representations()
    assert dropped.shape == full.shape and not torch.allclose(dropped, full)
    # each item keeps at least one code, so no representation collapses to zero
    assert (dropped.abs().sum(1) > 0).all()
    with pytest.raises(ValueError, match="code_dropout"):
        VQRec(code_dropout=1.0)
    assert VQRec(code_dropout=0.3).get_config()["code_dropout"] == 0.3


def test_cold_start_offset_lifts_only_cold_items_and_round_trips(trained, tmp_path):
    ds, split, model, _ = trained
    h = split.test.histories()[:3]
    assert model.cold_items is not None and not model.cold_items[: ds.n_items].any()  # all warm here
    n0 = model.n_items  # an earlier test may have added items already
    base = model.score(np.zeros(3), h).clone()
    new = model.add_items(codes=np.array([[1, 2, 3, 4]]), ids=["new-1234"])
    assert model.cold_items[new].all()
    model.cold_start_offset = 2.5
    lifted = model.score(np.zeros(3), h)
    warm = ~model.cold_items[:n0]
    assert torch.allclose(lifted[:, :n0][:, warm], base[:, warm])
    model.cold_start_offset = 0.0
    plain = model.score(np.zeros(3), h)
    assert torch.allclose(lifted[:, new[0]], plain[:, new[0]] + 2.5)
    model.cold_start_offset = 1.0
    model.save_pretrained(tmp_path / "m")
    back = Recommender.from_pretrained(tmp_path / "m")
    assert back.cold_start_offset == 1.0 and np.array_equal(back.cold_items, model.cold_items)
    assert torch.equal(back.score(np.zeros(3), h), model.score(np.zeros(3), h))
    model.cold_start_offset = 0.0


def test_tune_cold_start_offset_picks_the_best_valid_value(trained):
    _, split, model, _ = trained
    best, table = model.tune_cold_start_offset(split.valid, model.n_items, grid=(0.0, 1.0))
    assert best in {r["offset"] for r in table} and len(table) >= 2
    assert max(r["ndcg@10"] for r in table) == [r for r in table if r["offset"] == best][0]["ndcg@10"]
    model.cold_start_offset = 0.0
