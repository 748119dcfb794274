"""TextFusion's recipe derived from the data: what a new user gets without naming a single setting.

``derive_recipe(view)`` reads three facts of the training data (catalog size, training events,
share of items with text) and returns the constructor options that depend on them, with a report
saying why each was chosen. Nothing here reads valid or test targets: the choices that need a
score (EASE's L2, the score mix, the stopping epoch) are made on valid inside ``fit`` over the
grids chosen here.

- ``ease_grid``: EASE's L2 is picked on valid from this grid. A fit inverts an items x items
  matrix, so a large catalog gets fewer candidates (every candidate is one inversion).
- ``trainer.epochs``: an upper bound on passes such that training sees about ``TARGET_UPDATES``
  optimizer steps (a small dataset needs more passes for the same number of updates), within
  ``[MIN_EPOCHS, MAX_EPOCHS]``; early stopping on valid ends it sooner.
- ``trainer.window_stride``: when users' training sequences are longer than the window on average
  (a dense log such as ML-100K), windows overlap by half, so every event is a target in two
  contexts and an epoch has twice the updates; on short sequences the stride changes nothing.
- ``trainer.patience``: with fewer than ``FEW_STEPS`` updates an epoch, one epoch's valid change is
  mostly noise, so early stopping waits ``LONG_PATIENCE`` epochs instead of the recipe's.
- ``n_centroids``: the PQ code size K, the largest power of two with at least
  ``POINTS_PER_CENTROID`` training items per centroid (between 16 and 256).
- ``use_text``: item text is used when at least ``MIN_TEXT_COVERAGE`` of the items have some;
  otherwise the model is ID + co-occurrence only, and says so.
- ``tune_objective``: "balanced" when at least ``COLD_SHARE`` of the valid targets have no
  training events (new items matter there), else "rows".
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from textrec.models.base import TrainView

#: optimizer steps the epoch cap aims at (the recipe's batch size); early stopping ends sooner
TARGET_UPDATES = 2000
MIN_EPOCHS, MAX_EPOCHS = 3, 50
#: training items per PQ centroid below which K is halved (FAISS warns under 39)
POINTS_PER_CENTROID = 39
#: share of items with non-empty text needed to use text at all
MIN_TEXT_COVERAGE = 0.5
#: share of valid targets without training events above which the mix weighs new and warm rows equally
COLD_SHARE = 0.05
#: EASE L2 candidates by catalog size (items): every candidate costs one items x items inversion
EASE_GRIDS = ((5_000, [20.0, 50.0, 100.0, 200.0, 500.0]), (20_000, [50.0, 200.0]))
EASE_GRID_HUGE = [100.0]
#: updates an epoch below which early stopping waits ``LONG_PATIENCE`` epochs
FEW_STEPS, LONG_PATIENCE = 100, 10


def text_coverage(texts: list[str] | None) -> float:
    """Share of items whose text is non-empty (0 without texts)."""
    if not texts:
        return 0.0
    return sum(bool(str(t).strip()) for t in texts) / len(texts)


def ease_grid(n_items: int) -> list[float]:
    """EASE L2 candidates for a catalog of ``n_items`` (fewer for larger catalogs)."""
    for limit, grid in EASE_GRIDS:
        if n_items <= limit:
            return list(grid)
    return list(EASE_GRID_HUGE)


def code_size(n_train_items: int) -> int:
    """PQ centroids per sub-vector: a power of two in [16, 256] with enough training items each."""
    k = 256
    while k > 16 and n_train_items < POINTS_PER_CENTROID * k:
        k //= 2
    return k


def epoch_cap(n_windows: int, batch_size: int) -> int:
    """Passes over ``n_windows`` training windows that give about ``TARGET_UPDATES`` steps."""
    steps = max(1, math.ceil(n_windows / batch_size))
    return int(min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(TARGET_UPDATES / steps))))


def training_windows(view: TrainView, max_len: int, stride: int | None) -> int:
    """How many training windows (examples) the sequence trainer builds from ``view``."""
    stride = stride or max_len
    lengths = np.bincount(view.train["user"].to_numpy(), minlength=view.n_users)
    lengths = lengths[lengths >= 2]
    # a sequence of n events gives targets at positions 1..n-1, one window per `stride` of them
    return int(np.ceil((lengths - 1) / stride).sum())


def derive_recipe(view: TrainView, recipe: dict[str, Any] | None = None,
                  coverage: float | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Constructor overrides for ``TextFusionRec.from_recipe`` and a report of the data behind them.

    ``recipe`` is the base recipe (``training/fusion.yaml`` as a dict) whose batch size and window
    length the epoch cap is computed for; values it pins explicitly are not overridden here
    except the epoch cap, which is the smaller of the recipe's and the derived one. ``coverage``:
    the share of items with real text when the caller knows it (a dataset without text fields
    still gives item ids as ``view.item_text``); default: measured on ``view.item_text``.
    """
    from textrec.recipes import load_recipe

    base = dict(recipe) if recipe is not None else load_recipe("fusion")
    trainer = dict(base.get("trainer") or {})
    batch = int(trainer.get("batch_size", 128))
    max_len = int(trainer.get("max_len", 50))
    counts = view.popularity()
    n_train_items = int((counts > 0).sum())
    events = int(len(view.train))
    coverage = text_coverage(view.item_text) if coverage is None else float(coverage)
    stride = int(trainer.get("window_stride") or max_len)
    mean_length = events / max(1, int((np.bincount(view.train["user"].to_numpy(), minlength=view.n_users) > 0).sum()))
    if mean_length > max_len:
        stride = min(stride, max(1, max_len // 2))
    windows = training_windows(view, max_len, stride)
    epochs = min(int(trainer.get("epochs", MAX_EPOCHS)), epoch_cap(windows, batch))
    steps = max(1, math.ceil(windows / batch))
    patience = int(trainer.get("patience", 5))
    if steps < FEW_STEPS:
        patience = max(patience, LONG_PATIENCE)
    cold_targets = 0
    n_targets = 0
    for i in range(len(view.valid)):
        t = view.valid.targets(i)
        n_targets += len(t)
        cold_targets += int((counts[t] == 0).sum())
    cold_share = cold_targets / max(1, n_targets)
    use_text = coverage >= MIN_TEXT_COVERAGE
    options: dict[str, Any] = {
        "ease_lam": None,
        "ease_grid": ease_grid(view.n_items),
        "n_centroids": code_size(n_train_items),
        "use_text": use_text,
        "tune_objective": "balanced" if cold_share >= COLD_SHARE else "rows",
        "early_stop_rows": min(3000, max(1, len(view.valid))),
        "trainer": {"epochs": epochs, "window_stride": stride, "patience": patience},
    }
    report = {"n_items": int(view.n_items), "n_items_with_training_events": n_train_items,
              "n_users": int(view.n_users), "training_events": events,
              "events_per_user": round(events / max(1, view.n_users), 2),
              "mean_training_sequence": round(mean_length, 2), "steps_per_epoch": steps,
              "events_per_item": round(events / max(1, n_train_items), 2),
              "text_coverage": round(coverage, 4), "training_windows": windows,
              "valid_cold_target_share": round(cold_share, 4),
              "why": {"ease_grid": f"{view.n_items} items: {len(options['ease_grid'])} L2 candidate(s), "
                                   "best on valid",
                      "epochs": f"{windows} windows / batch {batch} -> cap {epochs} epochs "
                                f"(~{TARGET_UPDATES} updates; early stopping on valid)",
                      "window_stride": f"mean training sequence {mean_length:.1f} events, window {max_len}: "
                                       f"stride {stride}",
                      "patience": f"{steps} updates an epoch (< {FEW_STEPS}: wait {LONG_PATIENCE})"
                                  if steps < FEW_STEPS else f"{steps} updates an epoch: the recipe's {patience}",
                      "n_centroids": f"{n_train_items} training items, >= {POINTS_PER_CENTROID} per centroid",
                      "use_text": (f"{coverage:.0%} of items have text" +
                                   ("" if use_text else f" (< {MIN_TEXT_COVERAGE:.0%}): ID + co-occurrence only")),
                      "tune_objective": f"{cold_share:.1%} of valid targets have no training events"}}
    return options, report


__all__ = ["derive_recipe", "ease_grid", "code_size", "epoch_cap", "text_coverage", "training_windows"]
