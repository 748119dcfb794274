"""Hand-computed ranking metric cases, the tie policy, and a brute-force cross-check."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from textrec.data.stats import gini
from textrec.metrics.ranking import (
    beyond_accuracy,
    popularity_percentiles,
    ranking_metrics,
    sampled_ranks,
    tail_items,
    target_ranks,
    topk_items,
)


def test_single_target_hand_case():
    scores = [[0.1, 0.9, 0.5, 0.3]]
    m = ranking_metrics(scores, [[2]], ks=(1, 2, 4))
    assert m["hr@1"] == 0 and m["hr@2"] == 1
    assert m["ndcg@2"] == pytest.approx(1 / math.log2(3))
    assert m["mrr@2"] == pytest.approx(0.5)
    assert m["mrr@1"] == 0
    assert m["recall@2"] == 1


def test_tie_policy_lower_index_first():
    scores = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    ranks = target_ranks(scores, torch.tensor([0, 0, 0, 0]), torch.tensor([0, 1, 2, 3]))
    assert ranks.tolist() == [0, 1, 2, 3]
    idx, _ = topk_items(scores, 3)
    assert idx.tolist() == [[0, 1, 2]]


def test_multi_target_recall_and_ndcg():
    m = ranking_metrics([[4, 3, 2, 1, 0]], [[1, 3]], ks=(2,))
    assert m["hr@2"] == 1
    assert m["recall@2"] == pytest.approx(0.5)
    assert m["ndcg@2"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert m["mrr@2"] == pytest.approx(0.5)


def test_masked_target_is_a_miss_even_in_tiny_catalog():
    scores = torch.tensor([[float("-inf"), 0.5, 0.2]])
    m = ranking_metrics(scores, [[0]], ks=(10,))
    assert m["hr@10"] == 0 and m["ndcg@10"] == 0


def test_mean_over_rows():
    m = ranking_metrics([[1, 0], [0, 1]], [[0], [0]], ks=(1,))
    assert m["hr@1"] == pytest.approx(0.5)


def _brute(scores: np.ndarray, targets: list[list[int]], k: int) -> dict:
    out = {"hr": [], "recall": [], "ndcg": [], "mrr": []}
    for s, t in zip(scores, targets):
        order = np.argsort(-s, kind="stable")  # independent: numpy's stable sort
        order = [i for i in order if np.isfinite(s[i])][:k]
        hits = [j for j, i in enumerate(order) if i in t]
        out["hr"].append(1.0 if hits else 0.0)
        out["recall"].append(len(hits) / len(t))
        idcg = sum(1 / math.log2(j + 2) for j in range(min(len(t), k)))
        out["ndcg"].append(sum(1 / math.log2(j + 2) for j in hits) / idcg)
        out["mrr"].append(1 / (hits[0] + 1) if hits else 0.0)
    return {key: float(np.mean(v)) for key, v in out.items()}


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(2, 12), st.integers(1, 5), st.integers(0, 10_000))
def test_matches_brute_force_with_ties(n_rows, n_items, k, seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 4, size=(n_rows, n_items)).astype(np.float32)  # many ties
    mask = rng.random((n_rows, n_items)) < 0.2
    scores[mask] = -np.inf
    targets = [sorted(rng.choice(n_items, size=rng.integers(1, 3), replace=False).tolist())
               for _ in range(n_rows)]
    ours = ranking_metrics(scores, targets, ks=(k,))
    ref = _brute(scores, targets, k)
    for name in ("hr", "recall", "ndcg", "mrr"):
        assert ours[f"{name}@{k}"] == pytest.approx(ref[name]), name


def test_sampled_ranks_bounded_by_negatives():
    g = torch.Generator().manual_seed(0)
    scores = torch.arange(100, dtype=torch.float32)[None, :].repeat(3, 1)
    ranks = sampled_ranks(scores, torch.tensor([0, 1, 2]), torch.tensor([99, 0, 50]), 10, g)
    assert ranks[0] == 0 and ranks[1] == 10 and 0 <= ranks[2] <= 10


def test_beyond_accuracy_hand_case():
    pop = np.array([10, 5, 0, 0, 1])
    topk = np.array([[0, 1], [0, 4]])
    ba = beyond_accuracy(topk, pop, n_items=5, head_share=0.2)
    assert ba["coverage"] == pytest.approx(3 / 5)
    assert tail_items(pop, 0.2).tolist() == [False, True, True, True, True]
    assert ba["tail_share"] == pytest.approx(2 / 4)
    pct = popularity_percentiles(pop)
    assert pct[0] == pytest.approx(1.0) and pct[2] == 0.0
    assert ba["mean_pop_percentile"] == pytest.approx((pct[0] * 2 + pct[1] + pct[4]) / 4)


def test_gini_hand_cases():
    assert gini(np.array([1, 1, 1, 1])) == pytest.approx(0.0)
    assert gini(np.array([0, 0, 0, 4])) == pytest.approx(0.75)
