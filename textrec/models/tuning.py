"""Hyperparameter grid search on the valid set only (the test set is never looked at).

``grid_search`` fits one model per grid point on the split's TrainView, scores ``split.valid``
with the standard harness and returns the best parameters plus the full table. When the best
value of a numeric parameter sits on the smallest or largest value of its grid (and that value
is not a natural limit such as ``shrink = 0``), the best row says so (``best_at_edge``,
``edge_params``, ``edge_sides``): the optimum may lie outside the grid, so widen it.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from textrec.data.splits import Split
from textrec.evaluation import evaluate
from textrec.models.base import Recommender, TrainView
from textrec.options import progress_bar as tqdm

__all__ = ["DEFAULT_GRIDS", "NATURAL_LIMITS", "grid_search", "edge_params"]

#: Default search spaces of the tuned baselines (keys are constructor arguments).
DEFAULT_GRIDS: dict[str, dict[str, list]] = {
    "EASE": {"lam": [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0]},
    "ItemKNN": {"k": [10, 20, 50, 100, 200, 500, 1000], "shrink": [0.0, 10.0, 50.0, 100.0]},
    "MarkovChain": {"alpha": [0.0, 0.001, 0.01, 0.1, 1.0], "L": [1, 2, 5, 10, 20], "decay": [0.3, 0.6, 1.0]},
    # the KL cap is the Mult-VAE knob the paper tunes; Mult-DAE's is its L2 weight penalty
    "MultVAE": {"anneal_cap": [0.1, 0.2, 0.5, 1.0]},
    "MultDAE": {"weight_decay": [0.0, 1e-5, 1e-4, 1e-3]},
}

#: Values a parameter cannot go beyond: a best value equal to one of these is not an "edge".
NATURAL_LIMITS: dict[str, tuple[float | None, float | None]] = {
    "shrink": (0.0, None), "alpha": (0.0, None), "L": (1, None), "decay": (None, 1.0), "k": (1, None),
    "anneal_cap": (0.0, 1.0), "weight_decay": (0.0, None),
}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def edge_params(best: Mapping[str, Any], grid: Mapping[str, Sequence],
                limits: Mapping[str, tuple[float | None, float | None]] | None = None) -> dict[str, str]:
    """``{param: "low" | "high"}`` for numeric params whose best value is an end of their grid.

    Params with fewer than two distinct values, non-numeric params, and ends equal to a natural
    limit (``limits``, default :data:`NATURAL_LIMITS`) are not flagged.
    """
    limits = NATURAL_LIMITS if limits is None else limits
    out: dict[str, str] = {}
    for p, values in grid.items():
        nums = sorted({v for v in values if _is_number(v)})
        b = best.get(p)
        if len(nums) < 2 or not _is_number(b):
            continue
        lo, hi = limits.get(p, (None, None))
        if b == nums[0] and (lo is None or b > lo):
            out[p] = "low"
        elif b == nums[-1] and (hi is None or b < hi):
            out[p] = "high"
    return out


def grid_search(
    make_model: Callable[[dict], Recommender],
    grid: Mapping[str, Sequence],
    split: Split,
    metric: str = "ndcg@10",
    progress: bool = True,
    limits: Mapping[str, tuple[float | None, float | None]] | None = None,
    budget_seconds: float | None = None,
) -> tuple[dict, list[dict]]:
    """Fit every grid point on train, evaluate on ``split.valid`` only; return (best params, table).

    Grid points are tried in ``itertools.product`` order of ``grid``; ties keep the first. Each
    table row holds ``params``, the valid metrics at the metric's K, ``fit_seconds``,
    ``valid_seconds``, ``best`` and ``best_at_edge`` / ``edge_params`` / ``edge_sides`` (only
    the best row can be at an edge).

    ``budget_seconds`` scales the grid to a time budget: after the first point, the cost per point
    is known, and when the whole grid would not fit, an evenly spaced subset of the points is
    kept (always including the first) and the rest are skipped; a point that would start after
    the budget is spent is skipped too. Skipped points are listed in the table (``skipped``)
    and printed, so a search on ten million events says what it did not try.
    """
    name, _, k = metric.partition("@")
    if not k.isdigit():
        raise ValueError(f"metric must look like 'ndcg@10', got '{metric}'")
    if not grid:
        raise ValueError("empty grid")
    keys = list(grid)
    points = [dict(zip(keys, combo)) for combo in itertools.product(*(list(grid[p]) for p in keys))]
    if not points:
        raise ValueError(f"grid has a parameter with no values: {dict(grid)}")
    view: TrainView | None = None
    table: list[dict] = []
    best_i, best_row, best_v = -1, -1, float("-inf")
    started = time.perf_counter()
    planned = set(range(len(points)))
    skipped: list[dict] = []
    for i, params in enumerate(tqdm(points, desc="grid", disable=not progress, leave=False)):
        if i not in planned:
            continue
        spent = time.perf_counter() - started
        if budget_seconds is not None and i > 0 and spent >= budget_seconds:
            planned = {j for j in planned if j < i}
            break
        model = make_model(dict(params))
        if view is None:
            view = TrainView.from_split(split, with_text=model.scores_new_items)
        t0 = time.perf_counter()
        model.fit(view, progress=False)
        fit_s = time.perf_counter() - t0
        res = evaluate(model, split.valid, split.n_items, ks=(int(k),))
        if metric not in res.metrics:
            raise ValueError(f"unknown metric '{metric}'; available: {sorted(res.metrics)}")
        v = res.metrics[metric]
        table.append({"params": dict(params), **{m: round(x, 6) for m, x in res.metrics.items()},
                      "fit_seconds": round(fit_s, 3), "valid_seconds": round(res.seconds, 3),
                      "best": False, "best_at_edge": False, "edge_params": [], "edge_sides": {}})
        if v > best_v:
            best_i, best_row, best_v = i, len(table) - 1, v
        if budget_seconds is not None and i == 0 and len(points) > 1:
            per_point = max(time.perf_counter() - started, 1e-9)
            fits = max(int(budget_seconds // per_point), 1)
            if fits < len(points):
                keep = np.unique(np.linspace(0, len(points) - 1, fits).round().astype(int))
                planned = {0, *keep.tolist()}
                if progress:
                    print(f"grid_search: one point took {per_point:.1f}s; a budget of {budget_seconds:.0f}s fits "
                          f"about {fits} of {len(points)} points: trying {len(planned)}, evenly spread over the grid")
    skipped = [dict(points[j]) for j in range(len(points)) if j not in planned]
    if best_i < 0:  # every value NaN: keep the first point
        best_i, best_row = 0, 0
    best = dict(points[best_i])
    # a thinned grid is still a grid: edges are judged on the values actually tried
    tried = {p: sorted({r["params"][p] for r in table}, key=str) for p in keys}
    edges = edge_params(best, tried if skipped else grid, limits)
    row = table[best_row]
    row.update(best=True, best_at_edge=bool(edges), edge_params=sorted(edges), edge_sides=edges)
    if skipped:
        row["skipped"] = skipped
    if progress:
        note = f"  (best at the grid's edge: {edges})" if edges else ""
        print(f"grid_search: best valid {metric} {best_v:.4f} with {best}{note}")
        if skipped:
            print(f"grid_search: skipped {len(skipped)} of {len(points)} points for the time budget, e.g. "
                  f"{skipped[:3]}")
    return best, table
