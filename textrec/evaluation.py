"""The one evaluation harness: full-catalog ranking, history masked, batched over users.

Protocol (the same for every model): fit on train, select/early-stop on valid, evaluate test
with the valid event appended to the history and no refit. ``evaluate`` only scores and ranks;
``run_protocol`` does the whole fit → valid → test sequence and times it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from textrec.data.splits import EvalSet, Split
from textrec.io import atomic_file
from textrec.metrics.ranking import (
    beyond_accuracy,
    brute_force_topk_ranks,
    metrics_from_ranks,
    ranks_from_topk,
    sampled_ranks,
    target_ranks,
    topk_items,
)
from textrec.models.base import Recommender, TrainView
from textrec.options import progress_bar as tqdm

DEFAULT_KS = (5, 10, 20)


@dataclass
class EvalResult:
    """Mean metrics over rows, with per-row values kept for sub-group breakdowns."""

    metrics: dict[str, float]
    n_rows: int
    per_row: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    topk: np.ndarray | None = field(repr=False, default=None)
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def users_per_second(self) -> float:
        return self.n_rows / self.seconds if self.seconds > 0 else float("nan")

    def subset(self, rows: np.ndarray) -> dict[str, float]:
        """Mean metrics over a boolean row mask (e.g. new-item targets only)."""
        if rows.sum() == 0:
            return {k: float("nan") for k in self.per_row}
        return {k: float(v[rows].mean()) for k, v in self.per_row.items()}

    def to_dict(self) -> dict:
        out = {**{k: round(v, 6) for k, v in self.metrics.items()}, "n_rows": self.n_rows,
               "seconds": round(self.seconds, 3), "users_per_s": round(self.users_per_second, 1)}
        out.update(self.extra)
        return out


@dataclass
class _Ranked:
    """What scoring a set of rows yields, before metrics: enough to merge shards exactly."""

    rows: np.ndarray         # eval-set row of each ranked (row, target) pair
    ranks: np.ndarray        # 0-based rank of each pair (MISS when masked)
    topk_rows: np.ndarray    # eval-set rows whose top-K follow, in order
    topk: np.ndarray
    topk_scores: np.ndarray
    counts: dict[str, int]
    seconds: float


@torch.no_grad()
def _rank_rows(model: Recommender, evalset: EvalSet, n_items: int, row_ids: np.ndarray, keep_k: int,
               batch_size: int, mask_history: bool, sampled_negatives: int | None, gen: torch.Generator,
               progress: bool, reference: bool, full_ranks: bool = False) -> _Ranked:
    """Score ``row_ids`` in batches; keep only each pair's rank and each row's top-K (bounded memory)."""
    all_ranks, all_rows, topk_rows, topk_scores = [], [], [], []
    counts = {"unreachable_targets": 0, "targets_in_history": 0, "targets_unscored": 0}
    t0 = time.perf_counter()
    starts = range(0, len(row_ids), batch_size)
    for start in tqdm(starts, desc=f"eval {model.name}", disable=not progress, leave=False):
        rows = row_ids[start:start + batch_size]
        hists = [evalset.history(i) for i in rows]
        raw = model.score(evalset.users[rows], hists)
        scores = torch.as_tensor(raw, dtype=torch.float32)
        if scores.shape != (len(rows), n_items):
            raise ValueError(f"{model.name}.score returned shape {tuple(scores.shape)}, "
                             f"expected {(len(rows), n_items)}")
        if not (getattr(model, "fresh_scores", False) or scores is not raw and not isinstance(raw, np.ndarray)):
            scores = scores.clone()  # masking below writes in place: never into a tensor the model keeps
        h_len = np.array([len(h) for h in hists], dtype=np.int64)
        r_idx = np.repeat(np.arange(len(rows)), h_len)
        h_idx = np.concatenate(hists).astype(np.int64) if h_len.sum() else np.zeros(0, np.int64)
        if mask_history:
            scores[torch.from_numpy(r_idx), torch.from_numpy(h_idx)] = float("-inf")
        t_len = evalset.target_indptr[rows + 1] - evalset.target_indptr[rows]
        t_rows = np.repeat(np.arange(len(rows)), t_len)
        t_items = (np.concatenate([evalset.targets(i) for i in rows]).astype(np.int64) if t_len.sum()
                   else np.zeros(0, np.int64))
        tr, ti = torch.from_numpy(t_rows), torch.from_numpy(t_items)
        if reference:
            idx, val, ref_ranks = brute_force_topk_ranks(scores, keep_k, tr, ti)
        else:
            idx, val = topk_items(scores, keep_k)
        if sampled_negatives:
            ranks = sampled_ranks(scores, tr, ti, sampled_negatives, gen)
        elif reference:
            ranks = ref_ranks
        elif full_ranks:
            ranks = target_ranks(scores, tr, ti)
        else:
            ranks = ranks_from_topk(idx, scores, tr, ti)
        neg = torch.isneginf(scores[tr, ti])
        counts["unreachable_targets"] += int(neg.sum())
        if mask_history:
            # a target that repeats a history item: membership of (row, item) keys, vectorised
            repeats = torch.from_numpy(np.isin(t_rows * n_items + t_items, r_idx * n_items + h_idx))
        else:
            repeats = torch.zeros(len(t_rows), dtype=torch.bool)
        counts["targets_in_history"] += int(repeats.sum())
        counts["targets_unscored"] += int((neg & ~repeats).sum())
        all_ranks.append(ranks.numpy())
        all_rows.append(rows[t_rows])
        topk_rows.append(idx.numpy())
        topk_scores.append(val.numpy())
        del scores
    seconds = time.perf_counter() - t0
    k = min(keep_k, n_items)
    return _Ranked(rows=np.concatenate(all_rows) if all_rows else np.zeros(0, np.int64),
                   ranks=np.concatenate(all_ranks) if all_ranks else np.zeros(0, np.int64),
                   topk_rows=np.asarray(row_ids, dtype=np.int64),
                   topk=np.concatenate(topk_rows) if topk_rows else np.zeros((0, k), np.int64),
                   topk_scores=np.concatenate(topk_scores) if topk_scores else np.zeros((0, k), np.float32),
                   counts=counts, seconds=seconds)


def _gather(part: _Ranked) -> _Ranked:
    """Every process's ranked rows, merged in row order (exact: ranks and top-K are copied, not
    averaged); a no-op without an initialised ``torch.distributed`` process group."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return part
    parts: list[_Ranked | None] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, part)
    order = np.argsort(np.concatenate([p.topk_rows for p in parts]), kind="stable")
    pair_order = np.argsort(np.concatenate([p.rows for p in parts]), kind="stable")
    counts = {k: sum(p.counts[k] for p in parts) for k in part.counts}
    return _Ranked(rows=np.concatenate([p.rows for p in parts])[pair_order],
                   ranks=np.concatenate([p.ranks for p in parts])[pair_order],
                   topk_rows=np.concatenate([p.topk_rows for p in parts])[order],
                   topk=np.concatenate([p.topk for p in parts])[order],
                   topk_scores=np.concatenate([p.topk_scores for p in parts])[order],
                   counts=counts, seconds=max(p.seconds for p in parts))


def shard_rows(n_rows: int, rank: int, world_size: int) -> np.ndarray:
    """The contiguous block of eval rows process ``rank`` of ``world_size`` scores."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
    bounds = np.linspace(0, n_rows, world_size + 1).round().astype(np.int64)
    return np.arange(bounds[rank], bounds[rank + 1], dtype=np.int64)


@torch.no_grad()
def evaluate(
    model: Recommender,
    evalset: EvalSet,
    n_items: int,
    ks: Sequence[int] = DEFAULT_KS,
    batch_size: int = 512,
    popularity: np.ndarray | None = None,
    mask_history: bool = True,
    sampled_negatives: int | None = None,
    seed: int = 0,
    save_topk: str | os.PathLike | None = None,
    topk_k: int | None = None,
    dataset=None,
    progress: bool = False,
    rows: np.ndarray | None = None,
    distributed: bool = False,
    reference: bool = False,
) -> EvalResult:
    """Score every row against the full catalog and compute ranking metrics.

    ``sampled_negatives`` switches to sampled ranking (explicit flag; never a headline number).
    ``save_topk`` writes each row's top-K with scores and original ids (``.parquet`` or ``.jsonl``).

    Memory is bounded by the batch: each batch of ``batch_size`` rows is scored, ranked and
    reduced to its targets' ranks and its top-K before the next (a 1M-user, 200k-item run holds
    one 512 x 200k score matrix at a time). ``rows`` restricts the evaluation to some rows (e.g.
    a 1% sample). ``distributed=True`` splits the rows across the processes of the initialised
    ``torch.distributed`` group (:func:`shard_rows`) and gathers every rank and top-K list, so
    each process returns exactly the one-process metrics. ``reference=True`` ranks with full
    sorts instead (the brute-force check of the fast path).
    """
    ks = sorted(set(ks))
    keep_k = max(topk_k or 0, max(ks))
    row_ids = np.arange(len(evalset), dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    if rows is not None:
        evalset = evalset.select(row_ids)
        row_ids = np.arange(len(evalset), dtype=np.int64)
    n = len(evalset)
    mine = row_ids
    if distributed:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            mine = row_ids[shard_rows(n, dist.get_rank(), dist.get_world_size())]
    gen = torch.Generator().manual_seed(seed)
    part = _rank_rows(model, evalset, n_items, mine, keep_k, batch_size, mask_history, sampled_negatives, gen,
                      progress, reference)
    ranked = _gather(part) if distributed else part
    per_row = metrics_from_ranks(ranked.ranks, ranked.rows, n, ks)
    metrics = {k: float(v.mean()) if n else float("nan") for k, v in per_row.items()}
    topk = ranked.topk
    # unreachable = targets_in_history (masked: the target repeats a history item) + targets_unscored
    # (the model gave the target -inf, e.g. outside a generative model's beams)
    extra = {**ranked.counts, "protocol": "sampled" if sampled_negatives else "full"}
    if sampled_negatives:
        extra["sampled_negatives"] = sampled_negatives
    if popularity is not None:
        for k in ks:
            for name, v in beyond_accuracy(topk[:, :k], popularity, n_items).items():
                metrics[f"{name}@{k}"] = v
    result = EvalResult(metrics=metrics, n_rows=n, per_row=per_row, topk=topk, seconds=ranked.seconds, extra=extra)
    if save_topk is not None:
        write_topk(save_topk, evalset, topk, ranked.topk_scores, dataset)
    return result


def write_topk(path: str | os.PathLike, evalset: EvalSet, topk: np.ndarray, scores: np.ndarray | None,
               dataset=None) -> None:
    """Write each row's user, targets, top-K items and scores (original ids when a dataset is given)."""
    path = Path(path)
    uid = dataset.user_ids if dataset is not None else None
    iid = dataset.item_ids if dataset is not None else None

    def u(x):
        return str(uid[x]) if uid is not None else int(x)

    def items(a):
        return [str(iid[i]) for i in a] if iid is not None else [int(i) for i in a]

    records = []
    for i in range(len(evalset)):
        rec = {"user": u(evalset.users[i]), "targets": items(evalset.targets(i)), "items": items(topk[i]),
               "scores": [float(s) for s in scores[i]] if scores is not None else None}
        if evalset.is_new is not None:
            rec["target_is_new"] = bool(evalset.is_new[i])
        records.append(rec)
    if path.suffix not in (".parquet", ".jsonl", ".json"):
        raise ValueError(f"--save-topk wants a .parquet or .jsonl file, got '{path}'")
    with atomic_file(path) as tmp:
        if path.suffix == ".parquet":
            import pandas as pd

            pd.DataFrame.from_records(records).to_parquet(tmp, index=False)
        else:
            with open(tmp, "w", encoding="utf-8") as f:
                for rec in records:
                    f.write(json.dumps(rec) + "\n")


@dataclass
class ProtocolResult:
    """Valid and test results of one model under the standard protocol, with timings."""

    model: str
    valid: EvalResult
    test: EvalResult
    train_seconds: float
    test_new: dict | None = None
    test_warm: dict | None = None
    valid_new: dict | None = None
    valid_warm: dict | None = None

    def to_dict(self) -> dict:
        out = {"model": self.model, "train_seconds": round(self.train_seconds, 3),
               "valid": self.valid.to_dict(), "test": self.test.to_dict(),
               "inference_users_per_s": round(self.test.users_per_second, 1)}
        if self.test_new is not None:
            out["test_new_items"] = self.test_new
            out["test_warm_items"] = self.test_warm
        if self.valid_new is not None:
            out["valid_new_items"] = self.valid_new
            out["valid_warm_items"] = self.valid_warm
        return out


def run_protocol(model: Recommender, split: Split, ks: Sequence[int] = DEFAULT_KS, progress: bool = True,
                 save_topk: str | os.PathLike | None = None, batch_size: int = 512,
                 sampled_negatives: int | None = None,
                 after_fit: Callable[[Recommender], None] | None = None) -> ProtocolResult:
    """Fit on train (valid for selection), then evaluate valid and test (valid appended, no refit).

    ``after_fit(model)`` runs between fitting and evaluating (``textrec train`` saves the model
    there, so nothing trained is lost if evaluation fails).
    """
    view = TrainView.from_split(split, with_text=model.scores_new_items)
    t0 = time.perf_counter()
    model.fit(view, progress=progress)
    train_seconds = time.perf_counter() - t0
    if after_fit is not None:
        after_fit(model)
    pop = split.item_popularity()
    kw = dict(ks=ks, batch_size=batch_size, popularity=pop, sampled_negatives=sampled_negatives,
              dataset=split.dataset)
    valid = evaluate(model, split.valid, split.n_items, **kw)
    test = evaluate(model, split.test, split.n_items, save_topk=save_topk, **kw)
    res = ProtocolResult(model=model.name, valid=valid, test=test, train_seconds=train_seconds)
    if split.test.is_new is not None:
        is_new = split.test.is_new
        res.test_new = {**test.subset(is_new), "n_rows": int(is_new.sum())}
        res.test_warm = {**test.subset(~is_new), "n_rows": int((~is_new).sum())}
    if split.valid.is_new is not None:
        # valid's new-item rows are a legitimate selection signal for new-item settings:
        # those items have no training events either
        is_new = split.valid.is_new
        res.valid_new = {**valid.subset(is_new), "n_rows": int(is_new.sum())}
        res.valid_warm = {**valid.subset(~is_new), "n_rows": int((~is_new).sum())}
    return res
