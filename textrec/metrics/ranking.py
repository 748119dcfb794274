"""Full-catalog ranking metrics: HR, Recall, NDCG, MRR at K, plus coverage and popularity bias.

Tie policy (documented, deterministic, and the same order the saved top-K lists use): items are
ranked by score descending, and among equal scores by item index ascending. So a target tied
with other items is placed after the tied items of lower index and before those of higher
index — exactly the order of a stable sort of ``-scores``.

Masked items (the user's history) get score ``-inf`` and can never be recommended. A target that
is itself masked (a repeat of a history item) counts as a miss; ``evaluate`` reports how many.

Definitions for a row with target set T (|T| >= 1) and 0-based ranks r(t):
  HR@K     = 1 if any r(t) < K
  Recall@K = |{t : r(t) < K}| / |T|
  NDCG@K   = sum_{t: r(t)<K} 1/log2(r(t)+2)  /  sum_{j<min(|T|,K)} 1/log2(j+2)
  MRR@K    = 1/(min_t r(t) + 1) if min_t r(t) < K else 0
Each is averaged over rows (users).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

METRICS = ("hr", "recall", "ndcg", "mrr")
MISS = 2**62  # rank given to a masked (unreachable) target


RANK_CHUNK = 256  # (row, target) pairs compared against the catalog at once: bounds the temporaries


def target_ranks(scores: torch.Tensor, rows: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """0-based rank of ``targets[j]`` in row ``rows[j]`` of ``scores`` under the tie policy.

    Masked targets (score -inf) get rank ``MISS`` (never a hit, whatever K). Pairs are compared
    in chunks of ``RANK_CHUNK`` rows, so memory stays a few chunk-sized boolean tensors whatever
    the batch; when ``rows`` is ``0..len-1`` (one target per row) no row is copied at all.
    """
    n = scores.shape[1]
    idx = torch.arange(n, device=scores.device)
    identity = len(rows) == len(scores) and bool((rows == torch.arange(len(rows), device=rows.device)).all())
    out = torch.empty(len(rows), dtype=torch.int64, device=scores.device)
    for s in range(0, len(rows), RANK_CHUNK):
        r, t = rows[s:s + RANK_CHUNK], targets[s:s + RANK_CHUNK]
        row_scores = scores[s:s + RANK_CHUNK] if identity else scores[r]
        t_score = row_scores.gather(1, t[:, None])
        better = (row_scores > t_score).sum(1)
        tied_before = ((row_scores == t_score) & (idx[None, :] < t[:, None])).sum(1)
        out[s:s + RANK_CHUNK] = torch.where(torch.isneginf(t_score[:, 0]), torch.full_like(better, MISS),
                                            better + tied_before)
    return out


def _order_kept(idx: torch.Tensor, vals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort each row's kept items by score descending, then index ascending (k items: cheap)."""
    by_index = torch.argsort(idx, dim=1)
    idx, vals = idx.gather(1, by_index), vals.gather(1, by_index)
    by_score = torch.sort(vals, dim=1, descending=True, stable=True).indices
    return idx.gather(1, by_score), vals.gather(1, by_score)


def topk_items(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k item indexes and scores per row, ties broken by lower item index first.

    Exactly the first ``k`` of a stable descending sort, without sorting the catalog:
    ``torch.topk`` finds the k+1 best scores; rows where items tied with the k-th straddle the cut take
    the tied items of lowest index (a linear pass over those rows only); the k kept items are
    then ordered. Memory is O(rows x k) beyond the score matrix itself.
    """
    k = min(k, scores.shape[1])
    if k == 0:
        return (torch.zeros(len(scores), 0, dtype=torch.int64, device=scores.device),
                scores[:, :0])
    n = scores.shape[1]
    # one extra item tells whether ties straddle the cut: only if the (k+1)-th equals the k-th
    vals, idx = torch.topk(scores, min(k + 1, n), dim=1, largest=True, sorted=True)
    if k < n:
        straddle = torch.nonzero(vals[:, k] == vals[:, k - 1])[:, 0]
        vals, idx = vals[:, :k].contiguous(), idx[:, :k].contiguous()
    else:
        straddle = torch.zeros(0, dtype=torch.int64)
    thr = vals[:, -1:]
    for s in range(0, len(straddle), RANK_CHUNK):
        rows = straddle[s:s + RANK_CHUNK]
        sub, t = scores[rows], thr[rows]
        above = sub > t
        need = k - above.sum(1, keepdim=True)
        tied = sub == t
        chosen = above | (tied & (tied.cumsum(1) <= need))
        picked = torch.nonzero(chosen)[:, 1].reshape(len(rows), k)  # row-major: k per row, index order
        idx[rows] = picked
        vals[rows] = sub.gather(1, picked)
    return _order_kept(idx, vals)


def ranks_from_topk(topk: torch.Tensor, scores: torch.Tensor, rows: torch.Tensor, targets: torch.Tensor
                    ) -> torch.Tensor:
    """Ranks read off each row's exact top-k list (:func:`topk_items`), without another pass
    over the catalog: the target's position when it is in the list, else ``k`` (meaning "k or
    worse", which every metric at a cutoff <= k scores as a miss); ``MISS`` when masked.

    Every metric here is cut at some K <= k, so the metrics equal those of :func:`target_ranks`.
    """
    k = topk.shape[1]
    hit = topk[rows] == targets[:, None]
    pos = torch.where(hit.any(1), hit.int().argmax(1).to(torch.int64), torch.full_like(targets, k))
    masked = torch.isneginf(scores[rows, targets])
    return torch.where(masked, torch.full_like(pos, MISS), pos)


def brute_force_topk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference top-k: a full stable descending sort of every row (slow, for exactness checks)."""
    k = min(k, scores.shape[1])
    parts = [torch.sort(scores[s:s + RANK_CHUNK], dim=1, descending=True, stable=True)
             for s in range(0, len(scores), RANK_CHUNK)]  # chunks: a full sort holds 3x its rows
    if not parts:
        return torch.zeros(0, k, dtype=torch.int64), scores[:, :k]
    return torch.cat([p.indices[:, :k] for p in parts]), torch.cat([p.values[:, :k] for p in parts])


def brute_force_ranks(scores: torch.Tensor, rows: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Reference ranks: the target's position in a full stable descending sort of its row."""
    out = torch.empty(len(rows), dtype=torch.int64)
    for s in range(0, len(rows), RANK_CHUNK):  # chunks bound the sort's memory
        r, t = rows[s:s + RANK_CHUNK], targets[s:s + RANK_CHUNK]
        sub = scores[r]
        order = torch.sort(sub, dim=1, descending=True, stable=True).indices
        ranks = (order == t[:, None]).to(torch.int8).argmax(1).to(torch.int64)
        masked = torch.isneginf(sub.gather(1, t[:, None])[:, 0])
        out[s:s + RANK_CHUNK] = torch.where(masked, torch.full_like(ranks, MISS), ranks)
    return out


def brute_force_topk_ranks(scores: torch.Tensor, k: int, rows: torch.Tensor, targets: torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`brute_force_topk` and :func:`brute_force_ranks` from one stable sort of each row.

    The reference path of a large check sorts every row once instead of twice (at 200k items the
    sort, not the scoring, is the check's cost); results are identical to the two functions."""
    k = min(k, scores.shape[1])
    n = scores.shape[1]
    idx = torch.empty(len(scores), k, dtype=torch.int64)
    vals = torch.empty(len(scores), k, dtype=scores.dtype)
    ranks = torch.empty(len(rows), dtype=torch.int64)
    for s in range(0, len(scores), RANK_CHUNK):
        chunk = scores[s:s + RANK_CHUNK]
        srt = torch.sort(chunk, dim=1, descending=True, stable=True)
        idx[s:s + len(chunk)], vals[s:s + len(chunk)] = srt.indices[:, :k], srt.values[:, :k]
        pairs = torch.nonzero((rows >= s) & (rows < s + len(chunk)))[:, 0]
        if len(pairs):
            position = torch.empty_like(srt.indices)  # item -> its place in the sorted row
            position.scatter_(1, srt.indices, torch.arange(n).expand(len(chunk), n))
            r, t = rows[pairs] - s, targets[pairs]
            masked = torch.isneginf(chunk[r, t])
            ranks[pairs] = torch.where(masked, torch.full_like(t, MISS), position[r, t])
    return idx, vals, ranks


def metrics_from_ranks(ranks: np.ndarray, row_of: np.ndarray, n_rows: int, ks: Sequence[int]
                       ) -> dict[str, np.ndarray]:
    """Per-row metric values from the ranks of every (row, target) pair."""
    n_targets = np.bincount(row_of, minlength=n_rows)
    best = np.full(n_rows, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(best, row_of, ranks)
    out: dict[str, np.ndarray] = {}
    gains = 1.0 / np.log2(ranks + 2.0)
    for k in ks:
        hit = ranks < k
        hits = np.bincount(row_of, weights=hit, minlength=n_rows)
        dcg = np.bincount(row_of, weights=np.where(hit, gains, 0.0), minlength=n_rows)
        ideal_n = np.minimum(n_targets, k)
        idcg_table = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))])
        idcg = idcg_table[ideal_n]
        out[f"hr@{k}"] = (hits > 0).astype(np.float64)
        out[f"recall@{k}"] = np.divide(hits, n_targets, out=np.zeros(n_rows), where=n_targets > 0)
        out[f"ndcg@{k}"] = np.divide(dcg, idcg, out=np.zeros(n_rows), where=idcg > 0)
        out[f"mrr@{k}"] = np.where(best < k, 1.0 / (best + 1.0), 0.0)
    return out


def ranking_metrics(scores: torch.Tensor | np.ndarray, targets: Sequence[Sequence[int]],
                    ks: Sequence[int] = (10,)) -> dict[str, float]:
    """Mean HR/Recall/NDCG/MRR@K for a score matrix (already masked) and per-row target lists."""
    scores = torch.as_tensor(scores, dtype=torch.float32)
    rows = np.concatenate([[i] * len(t) for i, t in enumerate(targets)]).astype(np.int64)
    tg = np.concatenate([np.asarray(t, dtype=np.int64) for t in targets])
    ranks = target_ranks(scores, torch.from_numpy(rows), torch.from_numpy(tg)).numpy()
    per_row = metrics_from_ranks(ranks, rows, len(targets), ks)
    return {k: float(v.mean()) for k, v in per_row.items()}


def popularity_percentiles(popularity: np.ndarray) -> np.ndarray:
    """Per item, the share of catalog items strictly less popular (0 = least, ~1 = most popular)."""
    order = np.sort(popularity)
    return np.searchsorted(order, popularity, side="left") / max(len(popularity) - 1, 1)


def tail_items(popularity: np.ndarray, head_share: float = 0.2) -> np.ndarray:
    """Boolean mask of tail items: all but the ``head_share`` most popular (ties by index)."""
    n = len(popularity)
    n_head = int(np.ceil(n * head_share))
    order = np.lexsort((np.arange(n), -popularity))
    tail = np.ones(n, dtype=bool)
    tail[order[:n_head]] = False
    return tail


def beyond_accuracy(topk: np.ndarray, popularity: np.ndarray, n_items: int, head_share: float = 0.2
                    ) -> dict[str, float]:
    """Catalog coverage, mean popularity percentile and tail share of the recommended lists.

    ``topk`` is (users, K) item indexes; ``popularity`` the training event count per item.
    """
    flat = topk.reshape(-1)
    flat = flat[flat >= 0]
    pct = popularity_percentiles(popularity)
    tail = tail_items(popularity, head_share)
    return {
        "coverage": float(len(np.unique(flat)) / n_items),
        "mean_pop_percentile": float(pct[flat].mean()) if len(flat) else 0.0,
        "tail_share": float(tail[flat].mean()) if len(flat) else 0.0,
    }


def sampled_ranks(scores: torch.Tensor, rows: torch.Tensor, targets: torch.Tensor, n_negatives: int,
                  generator: torch.Generator) -> torch.Tensor:
    """Rank of each target among itself and ``n_negatives`` uniformly sampled unmasked items.

    Only behind an explicit flag: sampled metrics overstate quality and reorder models, so they
    never appear in headline tables.
    """
    row_scores = scores[rows]
    allowed = ~torch.isneginf(row_scores)
    allowed.scatter_(1, targets[:, None], False)
    weights = allowed.float()
    neg = torch.multinomial(weights.clamp_min(1e-12), n_negatives, replacement=True, generator=generator)
    neg_scores = row_scores.gather(1, neg)
    t_score = row_scores.gather(1, targets[:, None])
    better = (neg_scores > t_score).sum(1) + ((neg_scores == t_score) & (neg < targets[:, None])).sum(1)
    return torch.where(torch.isneginf(t_score[:, 0]), torch.full_like(better, MISS), better)
