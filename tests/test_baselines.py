"""Classic baselines (Popularity, ItemKNN, EASE, MarkovChain) and the valid-only grid search."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from textrec.data import RecDataset
from textrec.data.splits import EvalSet, leave_one_out
from textrec.evaluation import evaluate, run_protocol
from textrec.models.base import Recommender, TrainView
from textrec.models.baselines import EASE, ItemKNN, MarkovChain, Popularity
from textrec.models.tuning import DEFAULT_GRIDS, edge_params, grid_search

torch.set_num_threads(1)


def _view(sequences: list[list[int]], n_items: int) -> TrainView:
    """A TrainView whose user ``u`` has the ordered training items ``sequences[u]``."""
    rows = [(u, i, float(t)) for u, seq in enumerate(sequences) for t, i in enumerate(seq)]
    train = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    train["row"] = np.arange(len(train))
    empty = EvalSet.from_lists([], [], [])
    return TrainView(train=train, valid=empty, n_users=len(sequences), n_items=n_items)


def _synthetic(n_users: int = 240, n_clusters: int = 4, per_cluster: int = 12, length: int = 9, seed: int = 0):
    """Users walk consecutive items (cyclic) inside one cluster; cluster sizes are skewed."""
    rng = np.random.default_rng(seed)
    probs = np.array([0.4, 0.3, 0.2, 0.1])[:n_clusters]
    rows = []
    for u in range(n_users):
        c = rng.choice(n_clusters, p=probs / probs.sum())
        start = rng.integers(per_cluster)
        for t in range(length):
            rows.append((f"u{u}", f"i{c * per_cluster + (start + t) % per_cluster}", float(t)))
    ds = RecDataset.from_frames("synthetic", pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]))
    return leave_one_out(ds)


@pytest.fixture(scope="module")
def split():
    return _synthetic()


class _Random(Recommender):
    name = "Random"

    def fit(self, data, progress=True):
        self.n = data.n_items
        return self

    def score(self, users, histories):
        return torch.rand(len(histories), self.n, generator=torch.Generator().manual_seed(0))


# ---- hand-checkable cases ------------------------------------------------------------------
def test_popularity_counts_and_no_masking():
    m = Popularity().fit(_view([[0, 1, 1], [1, 2]], 4))
    s = m.score(np.array([0, 1]), [np.array([1]), np.array([], dtype=np.int64)])
    assert s.tolist() == [[1, 3, 1, 0], [1, 3, 1, 0]]  # history item 1 keeps its score


def test_markov_first_order_next_item():
    # a=0 → b=1 → c=2 twice, d=3 → b=1 → e=4 once: after b, c (2/3) beats e (1/3).
    m = MarkovChain(alpha=0.0).fit(_view([[0, 1, 2], [0, 1, 2], [3, 1, 4]], 6))
    s = m.score(np.array([0]), [np.array([0, 1])])[0]
    assert int(s.argmax()) == 2
    assert s[2].item() == pytest.approx(2 / 3) and s[4].item() == pytest.approx(1 / 3)
    assert s[[0, 1, 3, 5]].abs().sum().item() == 0
    # L=2, decay 0.5: adds 0.5 * P(.|a), and P(b|a) = 1.
    s2 = MarkovChain(alpha=0.0, L=2, decay=0.5).fit(_view([[0, 1, 2], [0, 1, 2], [3, 1, 4]], 6))
    assert s2.score(np.array([0]), [np.array([0, 1])])[0].tolist() == pytest.approx([0, 0.5, 2 / 3, 0, 1 / 3, 0])


def test_markov_backoff_to_popularity():
    # Item 5 never has a successor; item 2 is the most popular (3 events).
    m = MarkovChain(alpha=0.01).fit(_view([[0, 2, 5], [1, 2, 5], [2, 3]], 6))
    s = m.score(np.array([0, 1]), [np.array([5]), np.array([], dtype=np.int64)])
    pop = np.array([1, 1, 3, 1, 0, 2]) / 3
    assert s[0].tolist() == pytest.approx((0.01 * pop).tolist())
    assert int(s[1].argmax()) == 2
    assert MarkovChain(alpha=0.0).fit(_view([[0, 2, 5]], 6)).score(np.array([0]), [np.array([5])]).abs().sum() == 0


def test_ease_matches_numpy_formula():
    rng = np.random.default_rng(3)
    x = (rng.random((30, 8)) < 0.35).astype(np.float64)
    seqs = [list(np.flatnonzero(r)) for r in x]
    lam = 3.0
    m = EASE(lam=lam).fit(_view(seqs, 8))
    p = np.linalg.inv(x.T @ x + lam * np.eye(8))
    b = np.eye(8) - p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    np.testing.assert_allclose(m.B.numpy(), b, rtol=1e-5, atol=1e-6)
    hist = np.array([1, 4, 4])  # repeats count once
    np.testing.assert_allclose(m.score(np.array([0]), [hist])[0].numpy(), b[[1, 4]].sum(0), rtol=1e-5, atol=1e-6)


def test_ease_refuses_huge_catalog():
    with pytest.raises(ValueError, match="max_items"):
        EASE(max_items=5).fit(_view([[0, 1]], 6))


def test_itemknn_cosine_3x3():
    # Users × items: [1,1,0], [1,0,1], [1,1,1] → |U| = 3, 2, 2; co(0,1)=2, co(0,2)=2, co(1,2)=1.
    v = _view([[0, 1], [0, 2], [0, 1, 2]], 3)
    m = ItemKNN(k=5).fit(v)
    c01, c12 = 2 / np.sqrt(6), 1 / 2
    assert m.similarity(0, 1) == pytest.approx(c01) and m.similarity(1, 0) == pytest.approx(c01)
    assert m.similarity(0, 2) == pytest.approx(c01) and m.similarity(1, 2) == pytest.approx(c12)
    assert m.similarity(0, 0) == 0
    assert m.score(np.array([0]), [np.array([1, 2])])[0].tolist() == pytest.approx([2 * c01, c12, c12])
    shrunk = ItemKNN(k=5, shrink=1.0).fit(v)
    assert shrunk.similarity(0, 1) == pytest.approx(2 / (np.sqrt(6) + 1))
    # k=1: each target keeps its single best neighbour; target 0 ties (1 and 2) → lower index 1.
    k1 = ItemKNN(k=1).fit(v)
    assert k1.similarity(1, 0) == pytest.approx(c01) and k1.similarity(2, 0) == 0
    assert k1.similarity(0, 1) == pytest.approx(c01) and k1.similarity(2, 1) == 0
    assert k1.score(np.array([0]), [np.array([1])])[0].tolist() == pytest.approx([c01, 0, 0])


# ---- behaviour on data with planted structure ----------------------------------------------
def test_each_baseline_beats_random(split):
    rand = run_protocol(_Random(), split, ks=(10,), progress=False).test.metrics["ndcg@10"]
    models = [Popularity(), ItemKNN(k=20), EASE(lam=10.0), MarkovChain()]
    got = {m.name: run_protocol(m, split, ks=(10,), progress=False).test.metrics["ndcg@10"] for m in models}
    for name, v in got.items():
        assert v > rand + 0.05, (name, v, rand)
    # The walk is first order: the Markov chain finds the next item almost always.
    assert got["MarkovChain"] > 0.9


@pytest.mark.parametrize("model", [Popularity(), ItemKNN(k=7, shrink=2.0), EASE(lam=5.0),
                                   MarkovChain(alpha=0.05, L=3, decay=0.7)], ids=lambda m: m.name)
def test_save_load_and_batching(model, split, tmp_path):
    model.fit(TrainView.from_split(split), progress=False)
    hists = split.test.histories()[:17] + [np.array([], dtype=np.int64)]
    users = np.concatenate([split.test.users[:17], [0]])
    s = model.score(users, hists)
    assert s.shape == (18, split.n_items) and s.dtype == torch.float32
    model.save_pretrained(tmp_path / "m")
    loaded = Recommender.from_pretrained(tmp_path / "m")
    assert type(loaded) is type(model) and loaded.get_config() == model.get_config()
    assert torch.equal(loaded.score(users, hists), s)
    # batched rows equal one-at-a-time rows, and scoring is deterministic
    for i in (0, 5, 17):
        assert torch.allclose(model.score(users[i:i + 1], [hists[i]])[0], s[i], atol=1e-6)
    assert torch.equal(model.score(users, hists), s)


# ---- grid search -----------------------------------------------------------------------------
class _Planted(Recommender):
    """Toy model whose valid quality peaks at q == peak (it peeks at valid targets on purpose)."""

    name = "Planted"

    def __init__(self, q: float = 0.0, peak: float = 0.0, x: str = ""):
        self.q, self.peak = q, peak

    def fit(self, data, progress=True):
        self.n = data.n_items
        self.target = {int(u): int(data.valid.targets(i)[0]) for i, u in enumerate(data.valid.users)}
        return self

    def score(self, users, histories):
        s = torch.rand(len(users), self.n, generator=torch.Generator().manual_seed(1)) * 10
        for r, u in enumerate(users):
            s[r, self.target[int(u)]] = 10 - 2 * abs(self.q - self.peak)
        return s


def test_grid_search_picks_best_on_valid(split):
    grid = {"lam": [1.0, 30.0, 1000.0]}
    best, table = grid_search(lambda p: EASE(**p), grid, split, progress=False)
    assert [r["params"] for r in table] == [{"lam": v} for v in grid["lam"]]
    direct = [evaluate(EASE(**r["params"]).fit(TrainView.from_split(split)), split.valid, split.n_items,
                       ks=(10,)).metrics["ndcg@10"] for r in table]
    assert [r["ndcg@10"] for r in table] == pytest.approx(direct, abs=1e-6)
    assert best == table[int(np.argmax(direct))]["params"]
    assert sum(r["best"] for r in table) == 1


def test_grid_search_flags_edges(split):
    _, table = grid_search(lambda p: _Planted(peak=2, **p), {"q": [1, 2, 3]}, split, progress=False)
    best_row = next(r for r in table if r["best"])
    assert best_row["params"] == {"q": 2} and not best_row["best_at_edge"]
    best, table = grid_search(lambda p: _Planted(peak=4, **p), {"q": [1, 2, 3]}, split, progress=False)
    best_row = next(r for r in table if r["best"])
    assert best == {"q": 3} and best_row["best_at_edge"] and best_row["edge_params"] == ["q"]
    assert best_row["edge_sides"] == {"q": "high"}
    assert not any(r["best_at_edge"] for r in table if not r["best"])
    best, table = grid_search(lambda p: _Planted(peak=0, **p), {"q": [1, 2, 3], "x": ["a"]}, split,
                              progress=False)
    assert best == {"q": 1, "x": "a"} and next(r for r in table if r["best"])["edge_sides"] == {"q": "low"}


def test_edge_params_natural_limits():
    grid = DEFAULT_GRIDS["ItemKNN"]
    assert edge_params({"k": 10, "shrink": 0.0}, grid) == {"k": "low"}  # shrink 0 is a natural limit
    assert edge_params({"k": 1000, "shrink": 100.0}, grid) == {"k": "high", "shrink": "high"}
    assert edge_params({"alpha": 0.0, "L": 1, "decay": 1.0}, DEFAULT_GRIDS["MarkovChain"]) == {}
    assert edge_params({"lam": 1.0}, {"lam": [1.0]}) == {}  # a fixed value is not an edge
    lams = DEFAULT_GRIDS["EASE"]["lam"]
    assert min(lams) <= 1 and max(lams) >= 5000
    assert min(grid["k"]) <= 10 and max(grid["k"]) >= 1000
