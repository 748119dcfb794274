"""Catalog-independent training steps: lazy AdamW on sparse ID-table gradients, SASRec trained on
the rows a step touches (same trajectory as the full table where every row is touched), and
``TextFusionModule.represent`` equal to the rows of ``item_representations``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from textrec.data.dataset import RecDataset
from textrec.data.splits import leave_one_out
from textrec.models.backbone import BackboneConfig
from textrec.models.base import TrainView
from textrec.models.fusion import TextFusionModule
from textrec.models.sasrec import SASRec
from textrec.models.seq_trainer import SeqTrainer, SeqTrainerConfig, length_batches, uses_touched_rows
from textrec.optim import LazyAdamW

torch.set_num_threads(min(2, torch.get_num_threads()))

SMALL = dict(hidden=16, layers=1, heads=2, ff=32, dropout=0.1, attn_dropout=0.1, max_len=8)


def _planted_frame(n_users: int = 40, n_items: int = 20, length: int = 10, seed: int = 0) -> pd.DataFrame:
    """Each user walks the catalog in steps of +1 from a random start."""
    rng = np.random.default_rng(seed)
    rows = [(f"u{u}", f"i{(s + t) % n_items}", float(t))
            for u, s in enumerate(rng.integers(n_items, size=n_users)) for t in range(length)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


@pytest.fixture(scope="module")
def view() -> TrainView:
    return TrainView.from_split(leave_one_out(RecDataset.from_frames("planted", _planted_frame())))


# ---- the optimizer ---------------------------------------------------------------------------
def _step(opt, weight, rows: list[int], grad_rows: torch.Tensor, sparse: bool) -> None:
    opt.zero_grad(set_to_none=True)
    ids = torch.tensor(rows)
    F.embedding(ids, weight, sparse=sparse).mul(grad_rows).sum().backward()
    opt.step()


def test_lazy_adamw_equals_adamw_when_every_row_is_touched():
    torch.manual_seed(0)
    init = torch.randn(6, 4)
    grads = [torch.randn(6, 4) for _ in range(4)]
    dense = torch.nn.Parameter(init.clone())
    lazy = torch.nn.Parameter(init.clone())
    o1 = torch.optim.AdamW([dense], lr=0.1, weight_decay=0.05, foreach=False)
    o2 = LazyAdamW([lazy], lr=0.1, weight_decay=0.05)
    for g in grads:
        _step(o1, dense, list(range(6)), g, sparse=False)
        _step(o2, lazy, list(range(6)), g, sparse=True)
    torch.testing.assert_close(lazy.data, dense.data, rtol=1e-5, atol=1e-6)


def test_lazy_adamw_moves_only_touched_rows():
    torch.manual_seed(0)
    init = torch.randn(6, 4)
    w = torch.nn.Parameter(init.clone())
    opt = LazyAdamW([w], lr=0.1, weight_decay=0.1)
    _step(opt, w, [0, 1], torch.ones(2, 4), sparse=True)
    assert w.grad.is_sparse
    after_first = w.detach().clone()
    assert not torch.equal(after_first[:2], init[:2])
    torch.testing.assert_close(after_first[2:], init[2:], rtol=0, atol=0)
    _step(opt, w, [1, 2], torch.ones(2, 4), sparse=True)
    # row 0 had momentum from step 1: plain AdamW would move it again, lazy Adam does not
    torch.testing.assert_close(w.detach()[0], after_first[0], rtol=0, atol=0)
    assert not torch.equal(w.detach()[2], init[2])
    torch.testing.assert_close(w.detach()[3:], init[3:], rtol=0, atol=0)
    dense = torch.nn.Parameter(init.clone())
    ref = torch.optim.AdamW([dense], lr=0.1, weight_decay=0.1)
    _step(ref, dense, [0, 1], torch.ones(2, 4), sparse=False)
    _step(ref, dense, [1, 2], torch.ones(2, 4), sparse=False)
    assert not torch.equal(dense.detach()[0], after_first[0])  # the documented difference


def test_lazy_adamw_state_round_trips_through_state_dict():
    w = torch.nn.Parameter(torch.randn(5, 3))
    opt = LazyAdamW([w], lr=0.01)
    _step(opt, w, [0, 4], torch.ones(2, 3), sparse=True)
    sd = opt.state_dict()
    opt2 = LazyAdamW([torch.nn.Parameter(w.detach().clone())], lr=0.01)
    opt2.load_state_dict(sd)
    assert float(opt2.state_dict()["state"][0]["step"]) == 1.0


# ---- SASRec on the touched rows --------------------------------------------------------------
def _sasrec(**kw) -> SASRec:
    return SASRec(**{**SMALL, "epochs": 3, "batch_size": 8, "lr": 5e-3, "patience": 100, "eval_every": 1,
                     "loss": "sampled", **kw})


def test_touched_rows_path_is_chosen_only_where_it_applies():
    m = _sasrec()
    module = m._build(20)
    assert uses_touched_rows(module, SeqTrainerConfig(loss="sampled"))
    assert uses_touched_rows(module, SeqTrainerConfig(loss="inbatch"))
    assert not uses_touched_rows(module, SeqTrainerConfig(loss="ce"))
    assert not uses_touched_rows(module, SeqTrainerConfig(loss="sampled", touched_rows=False))


def test_sasrec_touched_rows_follow_the_dense_trajectory(view):
    # 256 negatives over 20 items take the whole catalog: every row is touched at every step,
    # so lazy and plain AdamW are the same update and only float rounding may differ
    runs = {}
    for touched in (True, False):
        m = _sasrec(negatives=256, touched_rows=touched)
        m.fit(view, progress=False)
        runs[touched] = m
    losses = {k: [r["loss"] for r in m.history] for k, m in runs.items()}
    assert len(losses[True]) == 3
    np.testing.assert_allclose(losses[True], losses[False], rtol=2e-4)
    torch.testing.assert_close(runs[True].module.items.weight, runs[False].module.items.weight,
                               rtol=1e-3, atol=1e-4)


def test_sasrec_touched_rows_leave_unread_items_alone():
    # an item that is only ever a test target: with catalog="train" no step reads it (input,
    # target or negative), so the touched-rows path must not move it, weight decay included
    frame = _planted_frame()
    lonely = pd.DataFrame({"user_id": ["z0"] * 3, "item_id": ["i0", "i1", "lonely"], "timestamp": [0.0, 1.0, 2.0]})
    data = RecDataset.from_frames("planted", pd.concat([frame, lonely], ignore_index=True))
    v = TrainView.from_split(leave_one_out(data))
    idx = int(np.flatnonzero(np.asarray(data.item_ids) == "lonely")[0])
    assert idx not in set(v.train["item"].to_numpy().tolist())
    m = _sasrec(epochs=1, negatives=8, catalog="train", weight_decay=0.1)
    module = m._build(v.n_items)
    before = module.items.weight.detach().clone()
    SeqTrainer(m.trainer_config).fit(module, v, progress=False)
    after = module.items.weight.detach()
    torch.testing.assert_close(after[idx], before[idx], rtol=0, atol=0)
    assert not torch.equal(after, before)


def test_hashed_table_represent_matches_its_weight():
    m = SASRec(**SMALL, id_table={"kind": "hashed", "size": 0.5})
    module = m._build(30)
    ids = torch.tensor([0, 7, 29, 7])
    torch.testing.assert_close(module.represent(ids), module.item_representations()[ids])


# ---- TextFusion ------------------------------------------------------------------------------
def _fusion(codes: bool = True, n: int = 50, n_fit: int = 40) -> TextFusionModule:
    torch.manual_seed(0)
    cfg = BackboneConfig(hidden=8, layers=1, heads=1, ff=16, max_len=5)
    warm = torch.ones(n_fit, dtype=torch.bool)
    warm[:5] = False
    code_t = torch.randint(0, 16, (n_fit, 4)) if codes else None
    mod = TextFusionModule(torch.randn(n_fit, 12), code_t, 16, warm, cfg, adaptor_dropout=0.2,
                           new_item_dropout=0.3)
    with torch.no_grad():
        mod.id_residual.weight.normal_()
        if mod.code_emb is not None:
            mod.code_emb.normal_()
    mod.add_items(torch.randn(n - n_fit, 12), torch.randint(0, 16, (n - n_fit, 4)) if codes else None)
    return mod


@pytest.mark.parametrize("codes", [True, False])
def test_fusion_represent_equals_item_representations(codes):
    mod = _fusion(codes).eval()
    ids = torch.tensor([0, 3, 4, 10, 39, 40, 49, 10])  # cold, warm, added items and a repeat
    full = mod.item_representations()
    torch.testing.assert_close(mod.represent(ids), full[ids], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(mod.represent(torch.arange(mod.n_items)), full, rtol=1e-5, atol=1e-6)


def test_fusion_represent_gradient_is_sparse_on_the_id_residual():
    mod = _fusion().train()
    ids = torch.tensor([6, 9, 12])
    mod.represent(ids).sum().backward()
    g = mod.id_residual.weight.grad
    assert g.is_sparse
    assert set(g.coalesce().indices()[0].tolist()) <= {6, 9, 12}
    assert mod.adaptor.weight.grad is not None and mod.code_emb.grad is not None


def test_fusion_represent_drops_residuals_in_training_mode():
    mod = _fusion(codes=False).train()
    mod.adaptor.drop.p = 0.0
    ids = torch.arange(5, 40).repeat(20)
    text = mod.adaptor(mod.text_emb[ids])
    with torch.no_grad():
        has_res = ((mod.represent(ids) - text).abs().sum(1) > 0).float().mean()
    assert 0.5 < float(has_res) < 0.9  # ~70% keep their residual at new_item_dropout=0.3
    cold = torch.arange(0, 5)
    torch.testing.assert_close(mod.represent(cold), mod.adaptor(mod.text_emb[cold]))


# ---- length-pooled batches -------------------------------------------------------------------
def test_length_batches_cover_every_window_once_and_group_lengths():
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(2, 51, (1000,))
    perm = torch.randperm(1000, generator=gen)
    batches = length_batches(perm, lengths, 32, 8, gen)
    assert sorted(torch.cat(batches).tolist()) == list(range(1000))
    assert all(len(b) <= 32 for b in batches)
    # padded width (sum over batches of the longest window) falls well below plain batching's
    plain = sum(int(lengths[perm[s:s + 32]].max()) for s in range(0, 1000, 32))
    pooled = sum(int(lengths[b].max()) for b in batches)
    assert pooled < 0.8 * plain


def test_sasrec_trains_with_length_pools(view):
    m = _sasrec(length_pools=4, epochs=2)
    m.fit(view, progress=False)
    assert len(m.history) == 2 and m.history[1]["loss"] < m.history[0]["loss"]
