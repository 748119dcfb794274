"""Rewards as plain callables ``f(prompts, completions, **kwargs) -> list[float]`` (TRL's shape).

* :class:`FormatReward`: 0 for a well-formed query within the word bounds, ``-penalty``
  otherwise (empty, unparseable, too short, too long);
* :class:`RetrievalReward`: NDCG@k (or Recall@k) of the target item when the parsed query is
  run through a retriever, history masked. ``k`` is large in training (a dense signal: a target
  at rank 40 still earns something) and 10 in evaluation. A malformed completion still runs
  what could be parsed (an over-long query is cut to ``max_words``); the format reward is what
  punishes the shape.

The dataset columns TRL forwards as keyword arguments carry the targets: ``target`` (one item
index per completion) and ``history`` (item indexes to mask).

For one target at 0-based rank r: NDCG@k = 1/log2(r + 2) if r < k else 0 (the ideal DCG of a
single relevant item is 1); Recall@k = 1 if r < k else 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from textrec.metrics.ranking import MISS
from textrec.query.parsing import parse_query


def ndcg_at_k(ranks: np.ndarray | Sequence[int], k: int) -> np.ndarray:
    """NDCG@k of single targets at 0-based ``ranks``."""
    r = np.asarray(ranks, dtype=np.float64)
    return np.where(r < k, 1.0 / np.log2(r + 2.0), 0.0)


def recall_at_k(ranks: np.ndarray | Sequence[int], k: int) -> np.ndarray:
    """Recall@k (= HR@k) of single targets at 0-based ``ranks``."""
    return (np.asarray(ranks) < k).astype(np.float64)


METRIC_FNS = {"ndcg": ndcg_at_k, "recall": recall_at_k}


class FormatReward:
    """0 for a well-formed query of ``min_words``..``max_words`` words, ``-penalty`` otherwise."""

    def __init__(self, min_words: int = 1, max_words: int = 32, penalty: float = 1.0):
        if min_words < 0 or max_words < max(1, min_words):
            raise ValueError(f"need 0 <= min_words <= max_words and max_words >= 1 "
                             f"(got {min_words}, {max_words})")
        self.min_words, self.max_words, self.penalty = int(min_words), int(max_words), float(penalty)
        self.__name__ = "format"  # TRL logs each reward under its function's name

    def __call__(self, prompts: Sequence[Any] | None, completions: Sequence[Any], **kwargs: Any) -> list[float]:
        out = []
        for c in completions:
            p = parse_query(c, self.min_words, self.max_words)
            out.append(0.0 if p.well_formed else -self.penalty)
        return out


class RetrievalReward:
    """NDCG@k / Recall@k of the ``target`` item for the parsed query under ``retriever``."""

    def __init__(self, retriever, k: int = 100, metric: str = "ndcg", mask_history: bool = True,
                 min_words: int = 1, max_words: int = 32, name: str | None = None):
        if metric not in METRIC_FNS:
            raise ValueError(f"metric must be one of {sorted(METRIC_FNS)}, not {metric!r}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.retriever, self.k, self.metric = retriever, int(k), metric
        self.mask_history = mask_history
        self.min_words, self.max_words = int(min_words), int(max_words)
        self.__name__ = name or f"{metric}@{k}_{getattr(retriever, 'kind', 'retriever')}"

    def queries(self, completions: Sequence[Any]) -> list[str]:
        """The query each completion yields (over-long ones cut to ``max_words``; '' if none)."""
        out = []
        for c in completions:
            p = parse_query(c, self.min_words, self.max_words)
            out.append(" ".join(p.query.split()[: self.max_words]))
        return out

    def ranks(self, completions: Sequence[Any], target: Sequence[int], history: Sequence[Sequence[int]] | None = None
              ) -> np.ndarray:
        """Full-catalog rank of each completion's target (``MISS`` when not retrieved)."""
        qs = self.queries(completions)
        excl = history if (self.mask_history and history is not None) else None
        ranks = np.full(len(qs), MISS, dtype=np.int64)
        rows = [i for i, q in enumerate(qs) if q]
        if rows:
            ranks[rows] = self.retriever.target_ranks(
                [qs[i] for i in rows], [int(target[i]) for i in rows],
                None if excl is None else [excl[i] for i in rows])
        return ranks

    def __call__(self, prompts: Sequence[Any] | None, completions: Sequence[Any], target: Sequence[int] | None = None,
                 history: Sequence[Sequence[int]] | None = None, **kwargs: Any) -> list[float]:
        if target is None:
            raise ValueError("RetrievalReward needs the dataset column 'target' (one item index per completion)")
        if len(target) != len(completions):
            raise ValueError(f"{len(completions)} completions but {len(target)} targets")
        return METRIC_FNS[self.metric](self.ranks(completions, target, history), self.k).tolist()
