"""Rewards as plain callables ``f(prompts, completions, **kwargs) -> list[float]`` (TRL's shape).

* :class:`FormatReward`: 0 for a well-formed query within the word bounds, ``-penalty``
  otherwise (empty, unparseable, too short, too long);
* :class:`RetrievalReward`: NDCG@k (or Recall@k) of the target item when the parsed query is
  run through a retriever, history masked. ``k`` is large in training (a dense signal: a target
  at rank 40 still earns something) and 10 in evaluation; ``k=None`` is the full ranking without
  a cutoff (NDCG = 1/log2(rank + 2) for every retrieved target, so two queries that both leave
  the target deep in the catalog still differ in reward). A malformed completion still runs
  what could be parsed (an over-long query is cut to ``max_words``); the format reward is what
  punishes the shape.

The dataset columns TRL forwards as keyword arguments carry the targets: ``target`` (one item
index per completion) and ``history`` (item indexes to mask).

For one target at 0-based rank r: NDCG@k = 1/log2(r + 2) if r < k else 0 (the ideal DCG of a
single relevant item is 1); Recall@k = 1 if r < k else 0 — computed by the evaluation
harness's :func:`textrec.metrics.ranking.metrics_from_ranks`, not a copy of it.

A group of sampled completions often repeats a query, and tasks come back in later epochs:
:class:`RetrievalReward` caches the rank per (query text, target, history), so a repeated
query costs no retrieval (``cache_hits`` / ``cache_misses`` count them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from textrec.metrics.ranking import MISS, metrics_from_ranks
from textrec.query.parsing import parse_query

METRICS = ("ndcg", "recall")


def reward_metric(ranks: np.ndarray | Sequence[int], k: int | None, metric: str = "ndcg") -> np.ndarray:
    """Per-row NDCG@k or Recall@k of single targets at 0-based ``ranks`` (``MISS`` = 0).

    ``k=None``: no cutoff (every retrieved target counts). Computed by
    :func:`textrec.metrics.ranking.metrics_from_ranks`, the harness's own code.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {list(METRICS)}, not {metric!r}")
    r = np.asarray(ranks, dtype=np.int64).reshape(-1)
    if k is None:  # the smallest cutoff that keeps every retrieved rank is the same as none
        hit = r[r < MISS]
        k = int(hit.max()) + 1 if len(hit) else 1
    if int(k) < 1:
        raise ValueError(f"k must be >= 1 or None, got {k}")
    return metrics_from_ranks(r, np.arange(len(r)), len(r), [int(k)])[f"{metric}@{int(k)}"]


def cutoff_name(metric: str, k: int | None) -> str:
    """A metric at its cutoff as written in reports, e.g. ``ndcg@1000``, ``ndcg@all`` (no cutoff)."""
    return f"{metric}@{'all' if k is None else int(k)}"


def reward_name(metric: str, k: int | None, retriever: str) -> str:
    """How a retrieval reward is named in logs and result rows, e.g. ``ndcg@1000_dense``, ``ndcg@all_bm25``."""
    return f"{cutoff_name(metric, k)}_{retriever}"


class FormatReward:
    """0 for a well-formed query of ``min_words``..``max_words`` words, ``-penalty`` otherwise
    (``mode="choose"``: 0 for a completion that names a heuristic, :mod:`textrec.query.choice`)."""

    def __init__(self, min_words: int = 1, max_words: int = 32, penalty: float = 1.0, mode: str = "write"):
        if min_words < 0 or max_words < max(1, min_words):
            raise ValueError(f"need 0 <= min_words <= max_words and max_words >= 1 "
                             f"(got {min_words}, {max_words})")
        from textrec.query.choice import check_mode

        self.min_words, self.max_words, self.penalty = int(min_words), int(max_words), float(penalty)
        self.mode = check_mode(mode)
        self.__name__ = "format"  # TRL logs each reward under its function's name

    def __call__(self, prompts: Sequence[Any] | None, completions: Sequence[Any], **kwargs: Any) -> list[float]:
        if self.mode == "choose":
            from textrec.query.choice import parse_choice

            return [0.0 if parse_choice(c) is not None else -self.penalty for c in completions]
        out = []
        for c in completions:
            p = parse_query(c, self.min_words, self.max_words)
            out.append(0.0 if p.well_formed else -self.penalty)
        return out


class RetrievalReward:
    """NDCG@k / Recall@k of the ``target`` item for the parsed query under ``retriever`` (``k=None``: no cutoff)."""

    def __init__(self, retriever, k: int | None = 100, metric: str = "ndcg", mask_history: bool = True,
                 min_words: int = 1, max_words: int = 32, name: str | None = None, cache_size: int = 200_000,
                 mode: str = "write"):
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {list(METRICS)}, not {metric!r}")
        if k is not None and k < 1:
            raise ValueError(f"k must be >= 1 or None (no cutoff), got {k}")
        self.retriever, self.k, self.metric = retriever, None if k is None else int(k), metric
        self.mask_history = mask_history
        from textrec.query.choice import check_mode

        # choose: a completion names a heuristic, the query is built from the row's ``context``
        self.mode = check_mode(mode)
        self.min_words, self.max_words = int(min_words), int(max_words)
        self.__name__ = name or reward_name(metric, self.k, getattr(retriever, "kind", "retriever"))
        self.cache_size = int(cache_size)
        self._ranks: dict[tuple, int] = {}
        self.cache_hits = self.cache_misses = 0

    def queries(self, completions: Sequence[Any], context: Sequence[Sequence[str]] | None = None) -> list[str]:
        """The query each completion yields (over-long ones cut to ``max_words``; '' if none); a
        chooser's needs each row's ``context`` (titles oldest first)."""
        if self.mode == "choose":
            from textrec.query.choice import choice_query

            if context is None or len(context) != len(completions):
                raise ValueError("a chooser's reward needs the dataset column 'context' (one per completion)")
            return [choice_query(c, ctx, self.max_words) for c, ctx in zip(completions, context)]
        out = []
        for c in completions:
            p = parse_query(c, self.min_words, self.max_words)
            out.append(" ".join(p.query.split()[: self.max_words]))
        return out

    def ranks(self, completions: Sequence[Any], target: Sequence[int], history: Sequence[Sequence[int]] | None = None,
              context: Sequence[Sequence[str]] | None = None) -> np.ndarray:
        """Full-catalog rank of each completion's target (``MISS`` when not retrieved)."""
        qs = self.queries(completions, context)
        masked = self.mask_history and history is not None
        keys = [(q, int(target[i]), tuple(int(x) for x in history[i]) if masked else ())
                for i, q in enumerate(qs)]
        ranks = np.full(len(qs), MISS, dtype=np.int64)
        todo: dict[tuple, list[int]] = {}
        for i, key in enumerate(keys):
            if not key[0]:
                continue
            if key in self._ranks:
                ranks[i] = self._ranks[key]
                self.cache_hits += 1
            else:
                todo.setdefault(key, []).append(i)
        if todo:
            uniq = list(todo)
            self.cache_misses += len(uniq)
            self.cache_hits += sum(len(rows) - 1 for rows in todo.values())  # repeats within the call
            got = self.retriever.target_ranks([k[0] for k in uniq], [k[1] for k in uniq],
                                              [list(k[2]) for k in uniq] if masked else None)
            if len(self._ranks) + len(uniq) > self.cache_size:
                self._ranks.clear()  # a plain bound: the cache only saves time
            for key, r in zip(uniq, got):
                self._ranks[key] = int(r)
                ranks[todo[key]] = int(r)
        return ranks

    def __call__(self, prompts: Sequence[Any] | None, completions: Sequence[Any], target: Sequence[int] | None = None,
                 history: Sequence[Sequence[int]] | None = None, context: Sequence[Sequence[str]] | None = None,
                 **kwargs: Any) -> list[float]:
        if target is None:
            raise ValueError("RetrievalReward needs the dataset column 'target' (one item index per completion)")
        if len(target) != len(completions):
            raise ValueError(f"{len(completions)} completions but {len(target)} targets")
        return reward_metric(self.ranks(completions, target, history, context), self.k, self.metric).tolist()
