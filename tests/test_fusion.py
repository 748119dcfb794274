"""TextFusion: fit, score shape, zero-event items scored from text, add_items, save/load, new-item dropout."""

import hashlib

import numpy as np
import pandas as pd
import pytest
import torch

from textrec.data import RecDataset
from textrec.data.splits import leave_one_out, new_item_split
from textrec.evaluation import evaluate, run_protocol
from textrec.models import Recommender
from textrec.models.backbone import BackboneConfig
from textrec.models.base import TrainView
from textrec.models.baselines import Popularity
from textrec.models.fusion import TextFusionModule, TextFusionRec

SMALL = dict(backbone={"hidden": 16, "layers": 1, "heads": 1, "ff": 32, "max_len": 10, "dropout": 0.1,
                       "attn_dropout": 0.1},
             trainer={"epochs": 8, "batch_size": 32, "lr": 5e-3, "max_len": 10, "patience": 8, "seed": 0},
             n_subvectors=4, n_centroids=8, opq=False, small_catalog="keep", ease_lam=5.0)


def bag_of_words(texts: list[str], dim: int = 32) -> np.ndarray:
    """A deterministic stand-in for MiniLM: hashed word counts (similar texts -> similar vectors)."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for i, t in enumerate(texts):
        for w in t.lower().split():
            out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % dim] += 1.0
    return out


def _planted(n_items=30, n_users=120, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        start = int(rng.integers(n_items))
        for t in range(8):
            rows.append((f"u{u}", f"i{(start + t) % n_items}", float(t)))
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(n_items)],
                          "title": [f"product number{i} in series s{i % 5} next{(i + 1) % n_items}"
                                    for i in range(n_items)]})
    return RecDataset.from_frames("planted", pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]),
                                  items, text_fields=["title"])


def _model(**kw) -> TextFusionRec:
    m = TextFusionRec(**{**SMALL, **kw})
    m.text_embedder = bag_of_words
    return m


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    ds = _planted()
    split = leave_one_out(ds)
    model = _model()
    res = run_protocol(model, split, progress=False)
    return ds, split, model, res


def test_fit_scores_full_catalog_and_beats_popularity(trained):
    ds, split, model, res = trained
    s = model.score(np.zeros(3), split.test.histories()[:3])
    assert s.shape == (3, ds.n_items) and torch.isfinite(s).all()
    pop = run_protocol(Popularity(), split, progress=False)
    assert res.test.metrics["ndcg@10"] > pop.test.metrics["ndcg@10"] + 0.2
    assert model.mix_report["best"] >= model.mix_report["seq_only"]
    assert set(model.mix) == {"lam", "kappa", "mu", "mu_cold", "cold_offset", "nu", "rho"}
    assert model.term is None and "recency" not in model.components(split.test.histories()[:2])
    assert model.mix["rho"] == 0.0 and model.mix_report["grids"]["rho"] == [0.0]  # off by default


def test_transition_part_reads_the_next_item_and_its_decay_is_chosen_on_valid(trained):
    """The planted data are runs i -> i+1: the transition part puts the next item first, the
    decay comes from the valid grid, and a mix of transitions alone is what the part scores."""
    from textrec.models.fusion import TRANS_DECAYS

    _, split, model, _ = trained
    assert model.trans_report["chosen_on_valid"] and model.trans_decay in TRANS_DECAYS
    assert [r["decay"] for r in model.trans_report["grid"]] == list(TRANS_DECAYS)
    h = split.test.histories()[:20]
    parts = model.components(h)
    last = np.array([int(x[-1]) for x in h])
    nxt = model.catalog.indices([f"i{(int(model.catalog.id(i)[1:]) + 1) % 30}" for i in last])
    assert (parts["trans"].argmax(1).numpy() == nxt).mean() > 0.9
    only = {**dict.fromkeys(model.mix, 0.0), "nu": 1.0}
    s = model.combine({**parts, "seq": torch.zeros_like(parts["seq"])}, model.gate(0.0), model.counts == 0, only)
    assert torch.allclose(s, parts["trans"])


def test_without_transitions_the_part_is_zero_and_never_tuned():
    torch.set_num_threads(1)
    split = leave_one_out(_planted(seed=3))
    m = _model(transitions=False, trainer={**SMALL["trainer"], "epochs": 1})
    m.fit(TrainView.from_split(split, with_text=True), progress=False)
    assert m.markov is None and m.mix["nu"] == 0.0 and m.mix_report["grids"]["nu"] == [0.0]
    assert float(m.components(split.test.histories()[:3])["trans"].abs().sum()) == 0.0


def test_zero_event_item_is_scored_from_text_alone():
    torch.set_num_threads(1)
    ds = _planted(n_items=30, n_users=80)
    split = new_item_split(ds, frac=0.2, seed=0)
    model = _model(trainer={**SMALL["trainer"], "epochs": 2, "catalog": "train"})
    model.fit(TrainView.from_split(split, with_text=True),
              progress=False)
    new = split.new_items
    assert (model.counts[new] == 0).all() and (model.gate()[new] == 0).all()
    hist = [split.test.history(0)]
    parts = model.components(hist)
    # a zero-event item's score uses no co-occurrence: change EASE completely, its score stays
    mix = {**model.mix, "lam": 5.0, "kappa": 0.0}
    a = model.combine(parts, model.gate(0.0), model.counts == 0, mix)
    parts2 = {**parts, "ease": torch.randn_like(parts["ease"])}
    b = model.combine(parts2, model.gate(0.0), model.counts == 0, mix)
    assert torch.equal(a[:, new], b[:, new])
    warm = np.setdiff1d(np.arange(ds.n_items), new)
    assert not torch.equal(a[:, warm], b[:, warm])
    # and its representation has no ID residual: it equals the text path exactly
    model.module.eval()
    with torch.no_grad():
        full, text = model.module.item_representations(), model.module.text_representations()
    assert torch.allclose(full[new], text[new])


def test_mu_cold_reorders_cold_items_by_text_without_moving_them():
    torch.set_num_threads(1)
    ds = _planted(n_items=30, n_users=80)
    split = new_item_split(ds, frac=0.2, seed=0)
    model = _model(trainer={**SMALL["trainer"], "epochs": 1, "catalog": "train"}, tune_mix=False)
    model.fit(TrainView.from_split(split, with_text=True), progress=False)
    parts = model.components(split.test.histories()[:4])
    cold = model.counts == 0
    base = {**model.mix, "lam": 1.0}
    a = model.combine(parts, model.gate(0.0), cold, base)
    w = 1e5
    b = model.combine(parts, model.gate(0.0), cold, {**base, "mu_cold": w})
    assert torch.equal(a[:, ~cold], b[:, ~cold])  # warm items untouched
    # with a huge weight the top cold item is the one closest in text (ties aside)
    text = parts["text"][:, cold]
    top = b[:, cold].argmax(1)
    assert torch.allclose(text.gather(1, top[:, None])[:, 0], text.max(1).values)
    # and the cold block moves only by how far its mean cosine is from the mean over all items
    diff = (b - a)[:, cold].mean(1)
    mean_shift = w * (text.mean(1) - parts["text"].mean(1))
    assert torch.allclose(diff, mean_shift, rtol=1e-3, atol=1e-2)


def test_balanced_objective_averages_cold_and_warm_target_rows():
    torch.set_num_threads(1)
    ds = _planted(n_items=30, n_users=80)
    split = new_item_split(ds, frac=0.2, seed=0)
    # the mix alone scores the cold items here (no calibration), so valid NDCG is what the tuner saw
    model = _model(trainer={**SMALL["trainer"], "epochs": 1, "catalog": "train"}, tune_objective="balanced",
                   new_item_scoring="mix")
    model.fit(TrainView.from_split(split, with_text=True), progress=False)
    rep = model.mix_report
    is_new = split.valid.is_new
    assert rep["objective"] == "balanced" and rep["valid_rows_cold_target"] == int(is_new.sum()) > 0
    res = evaluate(model, split.valid, split.n_items)
    by_group = (res.subset(is_new)["ndcg@10"] + res.subset(~is_new)["ndcg@10"]) / 2
    assert rep["best"] == pytest.approx(by_group, abs=1e-4)
    assert rep["best"] != pytest.approx(res.metrics["ndcg@10"], abs=1e-4)  # not the all-rows mean
    with pytest.raises(ValueError, match="tune_objective"):
        _model(tune_objective="new-only")


def test_add_items_scores_them_from_text(trained):
    ds, split, model, _ = trained
    m = _model().copy_unfitted()
    m.text_embedder = bag_of_words
    m.fit(TrainView.from_split(split, with_text=True),
          progress=False)
    idx = m.add_items(["product number3 in series s3 next4", "something else entirely"], ids=["new-a", "new-b"])
    assert idx.tolist() == [ds.n_items, ds.n_items + 1]
    s = m.score(np.zeros(1), [split.test.history(0)])
    assert s.shape == (1, ds.n_items + 2) and torch.isfinite(s).all()
    assert m.catalog.id(ds.n_items) == "new-a"
    assert float(m.counts[-1]) == 0.0
    with pytest.raises(ValueError, match="already in the catalog"):
        m.add_items(["x y"], ids=["new-a"])


def test_save_load_identical_scores_with_added_items(trained, tmp_path):
    _, split, model, _ = trained
    m = _model().copy_unfitted()
    m.text_embedder = bag_of_words
    m.fit(TrainView.from_split(split, with_text=True),
          progress=False)
    m.add_items(embeddings=bag_of_words(["brand new product"]), texts=["brand new product"], ids=["n1"])
    m.save_pretrained(tmp_path / "m")
    loaded = Recommender.from_pretrained(tmp_path / "m")
    assert isinstance(loaded, TextFusionRec) and loaded.mix == m.mix
    assert loaded.markov is not None and loaded.trans_decay == m.trans_decay
    h = split.test.histories()[:5]
    assert torch.equal(m.score(np.zeros(5), h), loaded.score(np.zeros(5), h))
    assert loaded.quantizer is not None and len(loaded.catalog) == m.n_items


def test_new_item_dropout_drops_id_residuals():
    torch.manual_seed(0)
    n, d = 200, 8
    cfg = BackboneConfig(hidden=d, layers=1, heads=1, ff=16, max_len=5)
    warm = torch.ones(n, dtype=torch.bool)
    warm[:20] = False
    mod = TextFusionModule(torch.randn(n, 12), None, 0, warm, cfg, adaptor_dropout=0.0, new_item_dropout=0.5)
    with torch.no_grad():
        mod.id_residual.weight.normal_()
    mod.train()
    keep = mod.residual_mask()
    assert keep[:20].sum() == 0  # cold items never get a residual
    share = 1 - float(keep[20:].mean())
    assert 0.35 < share < 0.65  # about half of the warm items are treated as new
    reps, text = mod.item_representations(), mod.text_representations()
    dropped = torch.isclose(reps, text).all(1)
    assert dropped[:20].all() and 0.35 < float(dropped[20:].float().mean()) < 0.65
    mod.eval()  # no dropout at inference: every warm item has its residual
    reps, text = mod.item_representations(), mod.text_representations()
    assert not torch.isclose(reps[20:], text[20:]).all(1).any()


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="new_item_dropout"):
        TextFusionRec(new_item_dropout=1.0)
    with pytest.raises(ValueError, match="mix key"):
        TextFusionRec(mix={"alpha": 1.0})
    with pytest.raises(ValueError, match="trans_decay"):
        TextFusionRec(trans_decay=0.0)


def test_warm_start_reuses_pretrained_text_path_and_quantizer():
    torch.set_num_threads(1)
    source = TrainView.from_split(leave_one_out(_planted(n_items=30, n_users=60, seed=1)), with_text=True)
    target = TrainView.from_split(leave_one_out(_planted(n_items=24, n_users=40, seed=2)), with_text=True)
    pre = _model(tune_mix=False, trainer={**SMALL["trainer"], "epochs": 2})
    pre.pretrain([source], progress=False)
    model = _model(trainer={**SMALL["trainer"], "epochs": 0}).warm_start(pre)
    model.fit(target, progress=False)
    assert model.quantizer is pre.quantizer
    pre_state, state = pre.module.state_dict(), model.module.state_dict()
    for key in ("adaptor.weight", "code_emb", "encoder.blocks.0.qkv.weight"):
        assert torch.equal(pre_state[key], state[key]), key
    assert model.module.id_residual.num_embeddings == 24 and not model.module.id_residual.weight.any()


def test_warm_start_with_own_codes_keeps_adaptor_and_encoder_only():
    torch.set_num_threads(1)
    source = TrainView.from_split(leave_one_out(_planted(n_items=30, n_users=60, seed=1)), with_text=True)
    target = TrainView.from_split(leave_one_out(_planted(n_items=24, n_users=40, seed=2)), with_text=True)
    pre = _model(tune_mix=False, trainer={**SMALL["trainer"], "epochs": 2})
    pre.pretrain([source], progress=False)
    model = _model(trainer={**SMALL["trainer"], "epochs": 0}).warm_start(pre, codes="own")
    model.fit(target, progress=False)
    assert model.quantizer is not pre.quantizer and "coded_with" not in model.code_report
    pre_state, state = pre.module.state_dict(), model.module.state_dict()
    for key in ("adaptor.weight", "encoder.blocks.0.qkv.weight"):
        assert torch.equal(pre_state[key], state[key]), key
    assert not torch.equal(pre_state["code_emb"], state["code_emb"])  # fresh tables for the own codes
    with pytest.raises(ValueError, match="codes must be"):
        _model().warm_start(pre, codes="shared")
