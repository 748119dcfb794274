"""Where a new item belongs in one user's ranking: rank calibration for items without events.

A model scores its warm items (items with training events) from behaviour and its new items
from text alone, and the two scales are not comparable: an item added from an uninformative
text can outscore every warm item (VQ-Rec's codes did exactly that), or a perfect match can sit
below the whole catalog. :class:`RankCalibration` never compares the two raw scores. For one
user it

1. ranks the new item's **text affinity** among that user's unseen warm items' affinities
   (``rho``: 1 = more affine than every warm item),
2. looks up how likely an item at text rank ``rho`` is to be the user's next item
   (``new_rate``, per item and per row, estimated on valid),
3. finds the warm rank ``r`` whose items are that likely under the model's own ranking
   (``warm_rate``, estimated on the same valid rows), and
4. gives the new item a score between the warm items at ranks ``r`` and ``r + 1``.

So a new item's score always lies inside that user's warm-score distribution, and it is
placed where the expected hit rate of the warm items equals its own: ordering by hit
probability is what maximises recall at every cutoff. An uninformative text has a low text
rank for everyone and lands far down; a text that matches a user's taste lands where the
model's good warm items are.

The rates come from valid rows only. When valid has targets that are new items (a new-item
split), ``new_rate`` is measured on them directly (hits over exposure per text-rank bin);
otherwise every warm target is treated as if it were new (its text rank among the other warm
items): a new item then counts as likely as a warm item with the same text affinity. Rates are
binned on a log-rank grid, shrunk toward the mean rate and made non-increasing (pool adjacent
violators), so the map is monotone: a more affine new item never lands lower.

Any model can use it: it needs the model's warm scores and a per-item text affinity for the
same rows (TextFusion: its text-path score plus the history/item text cosine).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from textrec.models.text_term import recency_text_scores

#: pseudo-count that shrinks each bin's rate toward the overall rate (sparse far bins)
SHRINK = 0.5
#: fewer valid targets that are new items than this and the new-item rate comes from warm stand-ins
#: (ML-100K's default split has one such target: a rate curve measured on it is noise)
MIN_NEW_TARGETS = 30


def enough_new_targets(target_is_new: np.ndarray) -> bool:
    """Whether valid holds enough new-item targets to measure new items on them directly."""
    return int(np.asarray(target_is_new).sum()) >= MIN_NEW_TARGETS


def rank_bins(n: int, per_octave: int = 4) -> np.ndarray:
    """Log-spaced rank bin edges ``[1, 2, 3, ..., n + 1]`` (every rank up to 8, then ~4 per doubling)."""
    n = max(int(n), 1)
    edges = np.unique(np.concatenate([np.arange(1, min(n, 8) + 2),
                                      np.round(np.geomspace(8, n + 1, max(2, int(np.log2(max(n, 2) / 8) * per_octave)
                                                                            + 2))).astype(np.int64)]))
    edges = edges[(edges >= 1) & (edges <= n + 1)]
    if edges[-1] != n + 1:
        edges = np.append(edges, n + 1)
    return edges.astype(np.int64)


def _non_increasing(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted least-squares fit of a non-increasing sequence (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [mean, weight, length]
    for v, w in zip(values.astype(float), np.maximum(weights.astype(float), 1e-12)):
        blocks.append([v, w, 1])
        while len(blocks) > 1 and blocks[-2][0] < blocks[-1][0]:
            v2, w2, n2 = blocks.pop()
            v1, w1, n1 = blocks.pop()
            blocks.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    return np.concatenate([np.full(n, v) for v, _, n in blocks])


def binned_rate(ranks: np.ndarray, edges: np.ndarray, exposure: np.ndarray) -> np.ndarray:
    """Per-item hit rate in each rank bin: hits / exposure, shrunk toward the mean, non-increasing.

    ``ranks``: the 1-based rank of every hit; ``exposure``: per bin, how many (row, item) pairs
    could have been hit there.
    """
    hits = np.histogram(np.asarray(ranks, dtype=np.float64), bins=edges.astype(np.float64))[0].astype(np.float64)
    exposure = np.asarray(exposure, dtype=np.float64)
    seen = exposure > 0
    rate = np.zeros(len(hits))
    if seen.any():
        mean = max(hits[seen].sum(), SHRINK) / exposure[seen].sum()
        rate[seen] = _non_increasing((hits[seen] + SHRINK) / (exposure[seen] + SHRINK / mean), exposure[seen])
        # a bin nothing could reach (ranks past every candidate) is no likelier than the last one observed
        idx = np.maximum.accumulate(np.where(seen, np.arange(len(hits)), -1))
        rate = np.where(idx >= 0, rate[np.maximum(idx, 0)], rate[np.argmax(seen)])
    else:
        rate[:] = 1e-12
    # strictly decreasing, so the inverse map is a function
    return np.maximum(rate, 1e-300) * (1.0 - 1e-6 * np.arange(len(rate)))


def warm_exposure(edges: np.ndarray, n_candidates: np.ndarray) -> np.ndarray:
    """Per rank bin, the (row, item) pairs there: a row with ``m`` candidates fills ranks 1..m."""
    lo, hi = edges[:-1], edges[1:]
    m = np.asarray(n_candidates, dtype=np.int64)[:, None]
    return np.clip(np.minimum(hi[None, :], m + 1) - lo[None, :], 0, None).sum(0).astype(np.float64)


def _centres(edges: np.ndarray) -> np.ndarray:
    return np.sqrt(edges[:-1] * np.maximum(edges[1:] - 1, edges[:-1]).astype(np.float64))


def _excluded(seen: torch.Tensor, cold: torch.Tensor) -> torch.Tensor:
    return seen | cold[None, :]


#: up to this many query columns, ranks are counted by one comparison pass per column (exact, and
#: far cheaper than sorting every row when only a few new items or one target per row are ranked)
DIRECT_COUNT_MAX = 64


def candidate_ranks(values: torch.Tensor, excluded: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """``1 + #`` non-excluded entries of each row strictly above each ``query`` value, (B, q)."""
    ref = values.masked_fill(excluded, float("-inf"))
    if query.shape[1] <= DIRECT_COUNT_MAX:
        out = torch.empty(query.shape, dtype=torch.float64)
        for j in range(query.shape[1]):
            out[:, j] = (ref > query[:, j:j + 1]).sum(1)
        return out + 1
    asc = torch.sort(ref, dim=1).values
    above = ref.shape[1] - torch.searchsorted(asc.contiguous(), query.contiguous(), right=True)
    return (above + 1).to(torch.float64)


def _top_values(ref: torch.Tensor, k: int) -> torch.Tensor:
    """Each row's ``k`` largest values, descending (a partial top-k instead of a full sort)."""
    if k >= ref.shape[1]:
        return torch.sort(ref, dim=1, descending=True).values
    return torch.topk(ref, k, dim=1, sorted=True).values


@dataclass
class RankCalibration:
    """Rank-bin edges and the two per-item hit rates (warm rank, new item's text rank); see module doc.

    ``scale`` multiplies ``new_rate`` (chosen on valid when valid has new-item targets; 1 otherwise).
    """

    edges: np.ndarray
    warm_rate: np.ndarray
    new_rate: np.ndarray
    scale: float = 1.0
    report: dict = field(default_factory=dict)

    # ---- fitting ---------------------------------------------------------------------------
    @classmethod
    def fit(cls, scores: torch.Tensor, affinity: torch.Tensor, seen: torch.Tensor, cold: torch.Tensor,
            target_rows: np.ndarray, target_items: np.ndarray) -> RankCalibration:
        """Estimate both rates from valid rows.

        ``scores`` (B, n): the model's scores (only warm columns are read); ``affinity`` (B, n):
        text affinity of every item; ``seen`` (B, n) bool: history items; ``cold`` (n,) bool:
        items without training events; ``target_rows`` / ``target_items``: valid (row, target) pairs.
        """
        excl = _excluded(seen, cold)
        n_cand = (~excl).sum(1).numpy()
        edges = rank_bins(int(n_cand.max()) if len(n_cand) else 1)
        tr = torch.as_tensor(np.asarray(target_rows, dtype=np.int64))
        ti = torch.as_tensor(np.asarray(target_items, dtype=np.int64))
        t_cold = cold[ti]
        t_seen = seen[tr, ti]
        keep = ~t_seen  # a target already in the history cannot be ranked (the harness masks it)
        warm_t = keep & ~t_cold
        cold_t = keep & t_cold
        exposure = warm_exposure(edges, n_cand)
        # the model's rank of each warm target among the warm candidates
        w_rows, w_items = tr[warm_t], ti[warm_t]
        w_rank = candidate_ranks(scores[w_rows], excl[w_rows], scores[w_rows, w_items][:, None])[:, 0].numpy()
        warm_rate = binned_rate(w_rank, edges, exposure)
        report: dict = {"valid_pairs": int(keep.sum()), "warm_targets": int(warm_t.sum()),
                        "new_targets": int(cold_t.sum())}
        if enough_new_targets(cold_t.numpy()):
            # measured on the real new items: each one's text rank among the warm candidates
            cold_idx = torch.nonzero(cold).flatten()
            rho = candidate_ranks(affinity, excl, affinity[:, cold_idx])
            rho = rho.masked_fill(seen[:, cold_idx], float("nan")).numpy().ravel()
            new_exposure = np.histogram(rho[np.isfinite(rho)], bins=edges.astype(np.float64))[0]
            c_rows, c_items = tr[cold_t], ti[cold_t]
            c_rho = candidate_ranks(affinity[c_rows], excl[c_rows], affinity[c_rows, c_items][:, None])[:, 0]
            new_rate = binned_rate(c_rho.numpy(), edges, new_exposure)
            report["new_rate_from"] = "valid rows whose target is a new item"
        else:
            # no new-item targets: a warm target ranked by its text alone stands in for a new item
            w_rho = candidate_ranks(affinity[w_rows], excl[w_rows], affinity[w_rows, w_items][:, None])[:, 0]
            new_rate = binned_rate(w_rho.numpy(), edges, exposure)
            report["new_rate_from"] = "warm valid targets ranked by text affinity alone"
        return cls(edges, warm_rate, new_rate, 1.0, report)

    # ---- the map ----------------------------------------------------------------------------
    def warm_rank_for(self, rho: np.ndarray) -> np.ndarray:
        """Fractional warm rank where a new item of text rank ``rho`` goes (0.5 = above every warm item)."""
        centres = _centres(self.edges)
        log_wr = np.log(self.warm_rate)
        log_p = np.log(np.maximum(self.new_rate * self.scale, 1e-300))
        # warm rate falls with rank: invert it (np.interp wants increasing x)
        log_r = np.interp(-log_p, -log_wr, np.log(centres))
        r_at = np.where(log_p > log_wr[0], np.log(0.5), log_r)
        return np.exp(np.interp(np.log(np.maximum(rho, 1.0)), np.log(centres), r_at))

    def place(self, scores: torch.Tensor, affinity: torch.Tensor, seen: torch.Tensor,
              cold: torch.Tensor) -> torch.Tensor:
        """``scores`` with every cold column replaced by its calibrated score (warm columns untouched)."""
        if not bool(cold.any()):
            return scores
        excl = _excluded(seen, cold)
        cold_idx = torch.nonzero(cold).flatten()
        rho = candidate_ranks(affinity, excl, affinity[:, cold_idx])
        r = torch.from_numpy(self.warm_rank_for(rho.numpy()))
        m = (~excl).sum(1, keepdim=True)
        out = scores.clone()
        if int(m.min()) < 1:  # a row with no warm candidate: nothing to calibrate against
            rows = m[:, 0] >= 1
            if bool(rows.any()):
                out[rows] = self.place(scores[rows], affinity[rows], seen[rows], cold)
            return out
        r = torch.minimum(r, m.to(torch.float64))
        k = r.floor().clamp(1, None).long()
        k_next = torch.minimum(k + 1, m)
        # only the warm scores down to the deepest rank a new item lands at are read
        ref = scores.masked_fill(excl, float("-inf")).to(torch.float64)
        srt = _top_values(ref, max(2, int(k_next.max())))
        top = srt[:, :1]
        last = scores.to(torch.float64).masked_fill(excl, float("inf")).min(1, keepdim=True).values
        span = (top - last).clamp_min(1e-6)
        # one "rank step" above the best / below the last warm item: the top gap, never ~0
        gap = top - srt.gather(1, torch.minimum(m, torch.full_like(m, 2)) - 1)
        step = torch.where(m > 1, gap, span).clamp_min(0.0) + span * 1e-3
        s_k = srt.gather(1, k - 1)
        s_next = torch.where(k_next > k, srt.gather(1, k_next - 1), s_k - step)
        frac = (r - k.to(torch.float64)).clamp(0.0, 1.0)
        placed = s_k + frac * (s_next - s_k)
        above = r < 1.0  # above the best warm item
        placed = torch.where(above, top + (1.0 - r) * step, placed)
        out[:, cold_idx] = placed.to(out.dtype)
        return out

    # ---- persistence ------------------------------------------------------------------------
    def to_tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        """The calibration as named tensors (for a safetensors file)."""
        return {f"{prefix}.edges": torch.from_numpy(self.edges.astype(np.int64)),
                f"{prefix}.warm_rate": torch.from_numpy(self.warm_rate.astype(np.float64)),
                f"{prefix}.new_rate": torch.from_numpy(self.new_rate.astype(np.float64)),
                f"{prefix}.scale": torch.tensor([self.scale], dtype=torch.float64)}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], prefix: str) -> RankCalibration | None:
        """Read what :meth:`to_tensors` wrote (None when absent); checks the shapes agree."""
        if f"{prefix}.edges" not in tensors:
            return None
        edges = tensors[f"{prefix}.edges"].numpy().astype(np.int64)
        warm, new = (tensors[f"{prefix}.{k}"].numpy().astype(np.float64) for k in ("warm_rate", "new_rate"))
        if not (len(warm) == len(new) == len(edges) - 1) or np.any(np.diff(edges) <= 0) or np.any(warm <= 0):
            raise ValueError(f"{prefix}: inconsistent rank calibration ({len(edges)} edges, {len(warm)} and "
                             f"{len(new)} rates)")
        return cls(edges, warm, new, float(tensors[f"{prefix}.scale"][0]))

    def summary(self) -> dict:
        """Where a new item lands for a few text ranks (for reports)."""
        rhos = [r for r in (1, 2, 5, 10, 20, 50, 100, 500, 1000) if r < self.edges[-1]]
        return {"scale": self.scale, **self.report,
                "warm_rank_for_text_rank": {str(r): round(float(x), 1)
                                            for r, x in zip(rhos, self.warm_rank_for(np.array(rhos, float)))}}


#: the new-rate multipliers tried on valid when valid has new-item targets
SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)


def fit_calibration(scores: torch.Tensor, affinity: torch.Tensor, seen: torch.Tensor, cold: torch.Tensor,
                    target_rows: np.ndarray, target_items: np.ndarray, n_rows: int,
                    k: int = 10, objective: str = "rows") -> RankCalibration:
    """:meth:`RankCalibration.fit` on valid, then, when valid has new-item targets, the rate
    multiplier (``SCALES``) with the best valid NDCG@``k`` (ties: closest to 1).

    ``objective="rows"`` averages NDCG@``k`` over all rows; ``"balanced"`` takes the mean of its
    averages over rows whose target is a new item and over the other rows (a deployment that
    must serve new items weighs both the same, as TextFusion's ``tune_objective`` does)."""
    from textrec.metrics.ranking import metrics_from_ranks, target_ranks

    if objective not in ("rows", "balanced"):
        raise ValueError(f"objective must be 'rows' or 'balanced', got {objective!r}")
    cal = RankCalibration.fit(scores, affinity, seen, cold, target_rows, target_items)
    table = []
    if enough_new_targets(np.ones(cal.report["new_targets"], dtype=bool)):
        tr = torch.as_tensor(np.asarray(target_rows, dtype=np.int64))
        ti = torch.as_tensor(np.asarray(target_items, dtype=np.int64))
        new_row = np.zeros(n_rows, dtype=bool)
        new_row[np.asarray(target_rows)[cold[ti].numpy()]] = True
        groups = [new_row, ~new_row] if objective == "balanced" and new_row.any() and (~new_row).any() else []
        for g in SCALES:
            cal.scale = g
            s = cal.place(scores, affinity, seen, cold).masked_fill(seen, float("-inf"))
            ranks = target_ranks(s, tr, ti).numpy()
            per_row = metrics_from_ranks(ranks, np.asarray(target_rows), n_rows, [k])[f"ndcg@{k}"]
            value = float(np.mean([per_row[m].mean() for m in groups])) if groups else float(per_row.mean())
            table.append({"scale": g, f"ndcg@{k}": round(value, 5)})
        cal.scale = max(table, key=lambda r: (r[f"ndcg@{k}"], -abs(np.log(r["scale"]))))["scale"]
        cal.report["scale_objective"] = "balanced" if groups else "rows"
    cal.report["scale_table"] = table
    return cal


def full_ndcg(affinity: torch.Tensor, seen: torch.Tensor, target_rows: np.ndarray, target_items: np.ndarray) -> float:
    """Mean full-list NDCG (no cutoff) of the targets when items are ranked by ``affinity`` alone."""
    from textrec.metrics.ranking import target_ranks

    s = affinity.masked_fill(seen, float("-inf"))
    ranks = target_ranks(s, torch.as_tensor(np.asarray(target_rows, dtype=np.int64)),
                         torch.as_tensor(np.asarray(target_items, dtype=np.int64))).numpy()
    return float(np.mean(1.0 / np.log2(ranks + 2.0)))  # 0-based ranks


def seen_mask(histories: list[np.ndarray], n_items: int) -> torch.Tensor:
    """(B, n_items) bool: True where the item is in that row's history."""
    seen = torch.zeros(len(histories), n_items, dtype=torch.bool)
    for i, h in enumerate(histories):
        if len(h):
            seen[i, torch.as_tensor(np.asarray(h, dtype=np.int64))] = True
    return seen


def history_cosine(item_emb: torch.Tensor, histories: list[np.ndarray]) -> torch.Tensor:
    """(B, n) cosine between each history's mean text vector and every item's text vector: the
    text term without recency weighting over the whole history."""
    return recency_text_scores(torch.nn.functional.normalize(item_emb.float(), dim=1), histories, 1.0, max_len=None)


__all__ = ["RankCalibration", "fit_calibration", "enough_new_targets", "MIN_NEW_TARGETS", "full_ndcg", "seen_mask", "history_cosine", "rank_bins", "binned_rate",
           "candidate_ranks", "warm_exposure", "SCALES"]
