"""The explanation split: a seeded 8:1:1 split of reviews, as PETER does.

Every user and item of a valid/test review must be seen in training: such reviews are moved
to train (counted). Rows that cannot be used are never dropped silently: empty review text and
missing ratings are counted in a :class:`SkipReport` (``on_error="skip"``, the default) or raise a
:class:`DataError` naming the source file, the row and the field (``on_error="raise"``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from textrec.data.dataset import DataError, SkipReport


@dataclass
class ReviewSplit:
    """Row positions (into the reviews table) of train / valid / test reviews, plus what moved."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    seed: int
    skipped: SkipReport = field(default_factory=SkipReport)
    moved_to_train: dict[str, int] = field(default_factory=dict)

    def describe(self) -> dict:
        """Sizes and the counted moves/skips, for benchmark JSON."""
        return {"kind": "random_reviews_8_1_1", "seed": self.seed, "train": int(len(self.train)),
                "valid": int(len(self.valid)), "test": int(len(self.test)),
                "moved_to_train": dict(self.moved_to_train), "skipped": dict(self.skipped.counts),
                "skipped_examples": dict(self.skipped.examples)}


def usable_rows(reviews: pd.DataFrame, on_error: str = "skip", source: str = "",
                skipped: SkipReport | None = None) -> np.ndarray:
    """Row positions with non-empty text and a finite rating; the others counted or raised."""
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise', not {on_error!r}")
    skipped = skipped if skipped is not None else SkipReport()
    for col in ("user", "item", "text"):
        if col not in reviews.columns:
            raise DataError(f"the reviews table needs a '{col}' column", path=source or None, field=col)
    texts = reviews["text"].fillna("").astype(str).tolist()
    ratings = reviews["rating"].to_numpy(dtype=np.float64) if "rating" in reviews.columns \
        else np.full(len(reviews), np.nan)
    keep = []
    for r, (t, y) in enumerate(zip(texts, ratings)):
        reason, fld = (("empty review text", "text") if not t.strip()
                       else ("missing rating", "rating") if not math.isfinite(y) else (None, None))
        if reason is None:
            keep.append(r)
            continue
        if on_error == "raise":
            raise DataError(f"review row {r} (user {reviews['user'].iat[r]}, item {reviews['item'].iat[r]}): "
                            f"{reason}", path=source or None, field=fld)
        skipped.add(reason, example=f"row {r}")
    return np.asarray(keep, dtype=np.int64)


def split_reviews(reviews: pd.DataFrame, seed: int = 0, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
                  on_error: str = "skip", source: str = "") -> ReviewSplit:
    """Seeded random 8:1:1 split of the usable reviews; unseen valid/test users/items moved to train."""
    skipped = SkipReport()
    rows = usable_rows(reviews, on_error, source, skipped)
    rng = np.random.default_rng(seed)
    perm = rows[rng.permutation(len(rows))]
    n_tr = int(round(ratios[0] * len(perm)))
    n_va = int(round(ratios[1] * len(perm)))
    train, valid, test = list(perm[:n_tr]), list(perm[n_tr:n_tr + n_va]), list(perm[n_tr + n_va:])
    users, items = reviews["user"].to_numpy(), reviews["item"].to_numpy()
    seen_u, seen_i = set(users[train].tolist()), set(items[train].tolist())
    moved: dict[str, int] = {"valid": 0, "test": 0}
    kept: dict[str, list[int]] = {"valid": [], "test": []}
    # Moving a review into train only grows the seen sets, so one pass (in split order) suffices.
    for name, part in (("valid", valid), ("test", test)):
        for r in part:
            if users[r] in seen_u and items[r] in seen_i:
                kept[name].append(r)
            else:
                train.append(r)
                seen_u.add(users[r])
                seen_i.add(items[r])
                moved[name] += 1
    return ReviewSplit(np.sort(np.asarray(train, np.int64)), np.sort(np.asarray(kept["valid"], np.int64)),
                       np.sort(np.asarray(kept["test"], np.int64)), seed, skipped, moved)
