"""EASE and ItemKNN check their memory estimate against the available memory before allocating."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pytest

from textrec.data.splits import EvalSet
from textrec.models.base import TrainView
from textrec.models.baselines import EASE, ItemKNN, interaction_matrix
from textrec.models.memory import (
    ITEMKNN_BYTES_PER_PAIR,
    InsufficientMemoryError,
    available_memory,
    cooccurrence_pairs,
    ease_memory_bytes,
)


def random_view(n_users: int = 600, n_items: int = 400, seed: int = 0) -> TrainView:
    rng = np.random.default_rng(seed)
    rows = [(u, int(i), float(t)) for u in range(n_users)
            for t, i in enumerate(rng.choice(n_items, size=int(rng.integers(3, 40)), replace=False))]
    train = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    train["row"] = np.arange(len(train))
    return TrainView(train=train, valid=EvalSet.from_lists([], [], []), n_users=n_users, n_items=n_items)


def test_available_memory_is_read_from_the_machine(monkeypatch):
    monkeypatch.delenv("TEXTREC_AVAILABLE_MEMORY", raising=False)
    avail = available_memory()
    assert avail is None or avail > 0


def test_ease_refuses_with_the_amount_and_advice(monkeypatch):
    monkeypatch.setenv("TEXTREC_AVAILABLE_MEMORY", str(2**20))  # 1 MiB
    with pytest.raises(InsufficientMemoryError) as info:
        EASE().fit(random_view())
    msg = str(info.value)
    assert "EASE on 400 items" in msg and "needs about 4 MiB" in msg and "only 1 MiB is available" in msg
    assert "fewer items" in msg and "float32" in msg and "float64_max_items=399" in msg
    assert isinstance(info.value, MemoryError)
    # the advice works: float32 fits where float64 did not
    monkeypatch.setenv("TEXTREC_AVAILABLE_MEMORY", str(ease_memory_bytes(400, False) * 1.2))
    with pytest.raises(InsufficientMemoryError):
        EASE().fit(random_view())
    assert EASE(float64_max_items=0).fit(random_view()).B.shape == (400, 400)
    assert EASE(check_memory=False).fit(random_view()).B is not None


def test_ease_has_no_fixed_item_cap_but_an_explicit_one_still_works(monkeypatch):
    monkeypatch.setenv("TEXTREC_AVAILABLE_MEMORY", str(2**40))
    assert EASE().max_items is None
    with pytest.raises(ValueError, match="max_items"):
        EASE(max_items=100).fit(random_view())
    # 40,000 items would have been refused by the former fixed 30,000 guard; the estimate says why now
    monkeypatch.setenv("TEXTREC_AVAILABLE_MEMORY", str(8 * 2**30))
    with pytest.raises(InsufficientMemoryError, match="needs about 23.8 GiB"):
        EASE().fit(random_view(n_users=5, n_items=40_000))


def test_itemknn_refuses_with_the_pair_count_and_advice(monkeypatch):
    monkeypatch.setenv("TEXTREC_AVAILABLE_MEMORY", str(2**20))
    with pytest.raises(InsufficientMemoryError) as info:
        ItemKNN(k=20).fit(random_view())
    msg = str(info.value)
    assert "ItemKNN on 400 items" in msg and "co-occurring item pairs" in msg and "k=20" in msg
    assert "fewer items" in msg
    assert ItemKNN(k=20, check_memory=False).fit(random_view()).sim is not None


def test_cooccurrence_pairs_exact_and_bound():
    x = interaction_matrix(random_view().train, 600, 400)
    exact = (x.T @ x).nnz
    assert cooccurrence_pairs(x, exact_above=0) == exact
    assert cooccurrence_pairs(x) >= exact


def test_itemknn_estimate_matches_measured_peak(monkeypatch):
    monkeypatch.setenv("TEXTREC_AVAILABLE_MEMORY", str(2**40))
    view = random_view(n_users=1500, n_items=1200)
    pairs = cooccurrence_pairs(interaction_matrix(view.train, 1500, 1200), exact_above=0)
    tracemalloc.start()
    try:
        ItemKNN(k=50).fit(view)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert 0.6 < peak / (pairs * ITEMKNN_BYTES_PER_PAIR) < 1.4
