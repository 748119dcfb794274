"""VQ-Rec pretraining (several domains, in-batch loss, hard negatives), transfer and permutation."""

import numpy as np
import pandas as pd
import pytest
import torch

from textrec.data import RecDataset
from textrec.data.splits import leave_one_out
from textrec.evaluation import evaluate
from textrec.models import Recommender
from textrec.models.backbone import BackboneConfig
from textrec.models.base import TrainView
from textrec.models.sasrec import SASRec
from textrec.vqrec.model import CodePermutation, VQRec, VQRecModule

SMALL_BB = {"hidden": 32, "layers": 1, "heads": 1, "ff": 64, "max_len": 10, "dropout": 0.1, "attn_dropout": 0.1}


def _domain(name, words, n_items=30, n_users=80, seed=0):
    rng = np.random.default_rng(seed)
    rows = [(f"u{u}", f"i{(s + t) % n_items}", float(t))
            for u in range(n_users) for s in [int(rng.integers(n_items))] for t in range(7)]
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(n_items)],
                          "title": [f"{words[i % len(words)]} model {i} series {i % 4}" for i in range(n_items)]})
    return RecDataset.from_frames(name, pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]),
                                  items, text_fields=["title"])


@pytest.fixture(scope="module")
def pretrained():
    torch.set_num_threads(1)
    a = leave_one_out(_domain("a", ["guitar", "violin", "drum"], seed=1))
    b = leave_one_out(_domain("b", ["novel", "poem", "essay"], n_items=25, seed=2))
    views = [TrainView.from_split(s, with_text=True) for s in (a, b)]
    model = VQRec(backbone=SMALL_BB, n_subvectors=4, n_centroids=16, similarity="cos", temperature=0.1,
                  trainer={"epochs": 4, "batch_size": 32, "lr": 5e-3, "max_len": 10, "loss": "inbatch",
                           "hard_negative_prob": 0.5, "patience": 4})
    model.pretrain(views, progress=False)
    target = leave_one_out(_domain("c", ["lamp", "chair", "table"], n_items=20, seed=3))
    return model, views, target


def test_concat_offsets_users_and_items(pretrained):
    _, views, _ = pretrained
    merged, off = TrainView.concat(views)
    assert off.tolist() == [0, 30, 55]
    assert merged.n_items == 55 and merged.n_users == 160 and len(merged.item_text) == 55
    seqs = merged.sequences()
    assert all(s.max() < 30 for s in seqs[:80]) and all(s.min() >= 30 for s in seqs[80:] if len(s))
    assert len(merged.valid) == len(views[0].valid) + len(views[1].valid)


def test_pretrain_scores_merged_catalog(pretrained):
    model, _, _ = pretrained
    assert model.codes.shape == (55, 4) and model.pretrain_report["domains"] == ["a", "b"]
    assert model.score(np.zeros(1), [np.array([0, 1])]).shape == (1, 55)


def test_hard_negatives_differ_from_positive():
    cfg = BackboneConfig(**SMALL_BB)
    codes = torch.randint(0, 8, (20, 4))
    m = VQRecModule(codes, 8, cfg)
    torch.manual_seed(0)
    t = torch.arange(20)
    fake = m.corrupt_representations(t, prob=0.01)  # tiny prob: still at least one code replaced
    assert (fake - m.item_representations()[t]).abs().sum(1).min() > 0


def test_transfer_codes_only_freezes_transformer(pretrained):
    model, _, target = pretrained
    view = TrainView.from_split(target, with_text=True)
    before = {k: v.clone() for k, v in model.module.encoder.state_dict().items()}
    zero = model.transfer(view, train="none", progress=False)
    ft = model.transfer(view, train="codes", trainer={"epochs": 3, "loss": "ce", "patience": 3},
                        progress=False)
    assert ft.n_items == 20 and ft.codes.shape == (20, 4)
    assert ft.catalog == view.catalog and zero.catalog == view.catalog  # target ids travel with the model
    for k, v in ft.module.encoder.state_dict().items():
        assert torch.equal(v, before[k]), k  # transformer untouched
    assert not torch.equal(ft.module.code_emb, model.module.code_emb)  # tables trained
    assert torch.equal(zero.module.code_emb, model.module.code_emb)   # zero-shot = pretrained tables
    for k, v in model.module.encoder.state_dict().items():
        assert torch.equal(v, before[k])  # the pretrained model itself is unchanged
    res = evaluate(ft, target.test, target.n_items, progress=False)
    assert 0 <= res.metrics["ndcg@10"] <= 1


def test_transfer_with_permutation_applies_a_hard_permutation(pretrained, tmp_path):
    model, _, target = pretrained
    view = TrainView.from_split(target, with_text=True)
    ft = model.transfer(view, train="codes", permutation=True, permutation_epochs=2,
                        trainer={"epochs": 2, "loss": "ce", "patience": 2}, progress=False)
    assert ft.module.permutation is None and "rows_moved" in ft.permutation_report
    assert [h["stage"] for h in ft.history][:2] == ["permutation", "permutation"]
    ft.save_pretrained(tmp_path / "ft")
    loaded = Recommender.from_pretrained(tmp_path / "ft")
    h = [target.test.history(i) for i in range(3)]
    assert torch.equal(ft.score(np.zeros(3), h), loaded.score(np.zeros(3), h))


def test_code_permutation_is_doubly_stochastic_and_hardens_to_identity_at_init():
    p = CodePermutation(3, 6).eval()
    s = p.soft()
    assert torch.allclose(s.sum(1), torch.ones(3, 6), atol=1e-4)
    assert torch.allclose(s.sum(2), torch.ones(3, 6), atol=1e-4)
    assert (p.hard() == np.arange(6)).all()
    table = torch.randn(3, 7, 5)
    out = p(table)
    assert torch.equal(out[:, 6], table[:, 6])  # padding row untouched


def test_catalog_train_never_touches_held_out_items():
    torch.set_num_threads(1)
    split = leave_one_out(_domain("d", ["x", "y"], n_items=30, n_users=60, seed=4))
    view = TrainView.from_split(split)
    held = 29
    keep = view.train["item"].to_numpy() != held
    view = TrainView(train=view.train[keep].reset_index(drop=True), valid=view.valid,
                     n_users=view.n_users, n_items=view.n_items)
    def trained(epochs, catalog):
        m = SASRec(backbone=SMALL_BB, trainer={"epochs": epochs, "batch_size": 32, "max_len": 10,
                                               "catalog": catalog})
        return m.fit(view, progress=False).module.items.weight[held]

    start = trained(0, "all")
    assert torch.equal(trained(2, "train"), start)  # never an input, never a negative: untouched
    assert not torch.equal(trained(2, "all"), start)  # full-catalog CE pushes it down as a negative


def test_text_knn_ranks_textually_close_items_first(tmp_path):
    from textrec.models.text_knn import TextKNN

    texts = ["red electric guitar strings", "acoustic guitar strings set", "chocolate cake recipe book",
             "baking cookbook for desserts"]
    view = TrainView(train=pd.DataFrame({"user": [0], "item": [0], "timestamp": [0.0]}),
                     valid=leave_one_out(_domain("e", ["q"], n_items=5, n_users=3)).valid,
                     n_users=1, n_items=4, item_text=texts)
    m = TextKNN().fit(view, progress=False)
    s = m.score(np.zeros(2), [np.array([0]), np.array([2])])
    assert s[0, 1] > s[0, 2] and s[0, 1] > s[0, 3]
    assert s[1, 3] > s[1, 0] and s[1, 3] > s[1, 1]
    m.save_pretrained(tmp_path / "tk")
    assert torch.allclose(Recommender.from_pretrained(tmp_path / "tk").score(np.zeros(1), [np.array([0])]), s[:1])
