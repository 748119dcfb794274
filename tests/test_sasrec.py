"""Causal backbone, the shared sequential trainer, and the ID-based SASRec."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from textrec.data.dataset import RecDataset
from textrec.data.splits import leave_one_out
from textrec.evaluation import evaluate, run_protocol
from textrec.models.backbone import BackboneConfig, CausalSequenceEncoder, last_hidden, pad_left
from textrec.models.base import Recommender, TrainView
from textrec.models.sasrec import SASRec
from textrec.models.seq_trainer import LOSSES, SeqTrainerConfig, build_windows, score_histories

torch.set_num_threads(min(2, torch.get_num_threads()))

SMALL = dict(hidden=32, layers=1, heads=2, ff=64, dropout=0.1, attn_dropout=0.1, max_len=12)


def _encoder(**kw) -> CausalSequenceEncoder:
    torch.manual_seed(0)
    enc = CausalSequenceEncoder(BackboneConfig(**{**SMALL, **kw}))
    return enc.eval()


# ---- backbone ------------------------------------------------------------------------------
@pytest.mark.parametrize("norm_first", [False, True])
def test_backbone_is_causal(norm_first):
    enc = _encoder(norm_first=norm_first, layers=2)
    x = torch.randn(3, 10, 32)
    mask = torch.ones(3, 10, dtype=torch.bool)
    h = enc(x, mask)
    x2 = x.clone()
    x2[:, 6:] = torch.randn(3, 4, 32)
    h2 = enc(x2, mask)
    assert torch.allclose(h[:, :6], h2[:, :6], atol=1e-6)
    assert not torch.allclose(h[:, 6:], h2[:, 6:], atol=1e-3)


def test_padding_does_not_change_outputs():
    enc = _encoder(layers=2)
    seq = torch.randn(6, 32)
    alone = enc(seq[None], torch.ones(1, 6, dtype=torch.bool))[0]
    # the same items left-padded to 10 inside a batch, with garbage in the padded slots
    x = torch.randn(2, 10, 32) * 5
    x[0, 4:] = seq
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[0, :4] = False
    h = enc(x, mask)
    assert torch.allclose(h[0, 4:], alone, atol=1e-5)
    assert torch.all(h[0, :4] == 0)
    assert torch.isfinite(h).all()
    assert torch.allclose(last_hidden(h)[0], alone[-1], atol=1e-5)


def test_last_hidden_and_pad_left():
    items, mask = pad_left([np.array([1, 2, 3]), np.array([7]), np.array([], dtype=np.int64)], max_len=2)
    assert items.tolist() == [[2, 3], [0, 7], [0, 0]]
    assert mask.tolist() == [[True, True], [False, True], [False, False]]
    h = torch.arange(3 * 4 * 1, dtype=torch.float32).view(3, 4, 1)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]], dtype=torch.bool)
    assert last_hidden(h, right)[:, 0].tolist() == [1.0, 7.0, 8.0]
    assert torch.equal(last_hidden(h), h[:, -1])


def test_backbone_rejects_bad_shapes():
    enc = _encoder()
    with pytest.raises(ValueError):
        enc(torch.randn(1, 13, 32), torch.ones(1, 13, dtype=torch.bool))  # longer than max_len
    with pytest.raises(ValueError):
        BackboneConfig(hidden=30, heads=4)


# ---- training examples ---------------------------------------------------------------------
def test_windows_cover_every_target_once():
    seqs = [np.arange(1, 24), np.array([5, 6]), np.array([9])]
    w, n_loss = build_windows(seqs, max_len=5)
    targets = []
    for row, k in zip(w, n_loss):
        tgt = row[1:][-k:]
        assert (tgt >= 0).all()
        targets.extend(tgt.tolist())
    assert sorted(targets) == sorted(list(range(2, 24)) + [6])
    # overlapping windows: same targets, each counted once, with a longer context
    w2, n2 = build_windows(seqs, max_len=5, stride=2)
    t2 = sorted(t for row, k in zip(w2, n2) for t in row[1:][-k:].tolist())
    assert t2 == sorted(targets)


# ---- SASRec on a planted pattern -----------------------------------------------------------
def _planted(n_users=80, n_items=40, length=14, seed=0) -> RecDataset:
    """Each user walks the catalog in steps of +1 (mod n_items) from a random start."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        start = rng.integers(n_items)
        for t in range(length):
            rows.append((f"u{u}", f"i{(start + t) % n_items}", float(t)))
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    return RecDataset.from_frames("planted", df)


class _Popularity(Recommender):
    name = "Popularity"

    def fit(self, data, progress=True):
        self.pop = torch.as_tensor(data.popularity(), dtype=torch.float32)
        return self

    def score(self, users, histories):
        return self.pop.expand(len(users), -1)


def _tiny(**kw) -> SASRec:
    return SASRec(**{**SMALL, "epochs": 40, "batch_size": 16, "lr": 5e-3, "patience": 100,
                     "eval_every": 5, **kw})


@pytest.fixture(scope="module")
def planted_split():
    return leave_one_out(_planted())


@pytest.fixture(scope="module")
def fitted(planted_split):
    model = _tiny()
    res = run_protocol(model, planted_split, ks=(10,), progress=False)
    return model, res


def test_sasrec_learns_planted_sequence(fitted, planted_split):
    model, res = fitted
    pop = run_protocol(_Popularity(), planted_split, ks=(10,), progress=False)
    assert res.test.metrics["hr@10"] >= 0.9
    assert res.test.metrics["ndcg@10"] >= 0.6
    assert res.test.metrics["ndcg@10"] > pop.test.metrics["ndcg@10"] + 0.4
    # random ranking of 40 items gets HR@10 ~ 0.25
    assert res.valid.metrics["hr@10"] >= 0.9
    hist = model.history
    assert hist and {"epoch", "loss", "seconds"} <= set(hist[0])
    assert any("valid_ndcg@10" in r for r in hist)
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert model.best_epoch is not None


def test_score_matches_every_training_position(fitted, planted_split):
    """All-position training is sound: position t of a sequence == scoring its prefix."""
    model, _ = fitted
    seq = np.arange(10) % planted_split.n_items
    module = model.module
    with torch.no_grad():
        reps = module.item_representations()
        items, mask = pad_left([seq], 12)
        h = module.encode(items, mask, reps)[0, -len(seq):]
        full = h @ reps.T
    for t in (0, 3, 9):
        prefix = score_histories(module, [seq[:t + 1]], 12)
        assert torch.allclose(prefix[0], full[t], atol=1e-4)


def test_save_load_round_trip(fitted, planted_split, tmp_path):
    model, _ = fitted
    model.save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["model_type"] == "SASRec" and config["config"]["backbone"]["hidden"] == 32
    loaded = Recommender.from_pretrained(tmp_path / "m")
    assert isinstance(loaded, SASRec)
    hists = planted_split.test.histories()
    users = planted_split.test.users
    assert torch.equal(model.score(users, hists), loaded.score(users, hists))
    a = evaluate(model, planted_split.test, planted_split.n_items).metrics
    b = evaluate(loaded, planted_split.test, planted_split.n_items).metrics
    assert a == b


def test_seeded_training_is_deterministic(planted_split):
    view = TrainView.from_split(planted_split)
    kw = dict(epochs=3, eval_every=1)
    m1, m2, m3 = _tiny(**kw), _tiny(**kw), _tiny(seed=1, **kw)
    for m in (m1, m2, m3):
        m.fit(view, progress=False)
    hists = planted_split.valid.histories()
    users = planted_split.valid.users
    assert [r["loss"] for r in m1.history] == [r["loss"] for r in m2.history]
    assert torch.equal(m1.score(users, hists), m2.score(users, hists))
    assert not torch.equal(m1.score(users, hists), m3.score(users, hists))


def test_inbatch_loss_and_stride_run(planted_split):
    assert {"ce", "inbatch"} <= set(LOSSES)
    view = TrainView.from_split(planted_split)
    m = _tiny(epochs=2, loss="inbatch", window_stride=4, eval_every=1)
    m.fit(view, progress=False)
    assert len(m.history) == 2 and np.isfinite(m.history[-1]["loss"])


# ---- configuration -------------------------------------------------------------------------
def test_config_routing_and_recipe():
    m = SASRec(hidden=32, heads=2, lr=0.01, max_len=20, max_epochs=3)
    assert m.backbone_config.hidden == 32 and m.trainer_config.lr == 0.01
    assert m.backbone_config.max_len == m.trainer_config.max_len == 20
    assert m.trainer_config.epochs == 3
    with pytest.raises(ValueError):
        SASRec(hiden=32)
    with pytest.raises(ValueError):
        SASRec(backbone={"max_len": 10}, trainer={"max_len": 20})
    with pytest.raises(ValueError):
        SeqTrainerConfig(metric="ndgc@10")
    r = SASRec.from_recipe("sasrec", seed=3, max_epochs=5, dropout=0.3)
    assert r.trainer_config.seed == 3 and r.trainer_config.epochs == 5
    assert r.backbone_config.dropout == 0.3
    assert r.trainer_config.loss == "ce"
    with pytest.raises(RuntimeError):
        r.score(np.array([0]), [np.array([1])])
