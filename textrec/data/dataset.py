"""The canonical data model every engine reads: interactions, item catalog, reviews.

Inside textrec users and items are dense integers ``0..n-1``; the original ids are kept in
``user_ids`` / ``item_ids`` and only appear at the edges (loaders, CLI, saved top-K lists).

Tables are pandas DataFrames (Arrow-backed strings under pandas >= 3); ``to_hf`` turns any of
them into a ``datasets.Dataset`` when a Hugging Face pipeline wants one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

INTERACTION_COLUMNS = ("user", "item", "timestamp")
REVIEW_COLUMNS = ("user", "item", "rating", "text", "summary", "timestamp")


def event_order(frame: pd.DataFrame, by: Sequence[str] = ("user", "timestamp", "row")) -> np.ndarray | None:
    """Row positions that sort ``frame`` by ``by`` (stable), or ``None`` when it is already sorted.

    Checking the order is one linear pass; loaders and splits hand over sorted frames, so the
    usual case at ten million events costs no sort at all.
    """
    cols = [frame[c].to_numpy() for c in by]
    if len(frame) < 2:
        return None
    # lexicographic "row i <= row i+1" over the keys, without a sort
    le = np.zeros(len(frame) - 1, dtype=bool)
    eq = np.ones(len(frame) - 1, dtype=bool)
    for c in cols:
        a, b = c[:-1], c[1:]
        le |= eq & (a < b)
        eq &= a == b
    if (le | eq).all():
        return None
    return np.lexsort(cols[::-1])


def sort_events(frame: pd.DataFrame, by: Sequence[str] = ("user", "timestamp", "row")) -> pd.DataFrame:
    """``frame`` sorted by ``by`` (stable; the frame itself when already in that order)."""
    order = event_order(frame, by)
    return frame if order is None else frame.iloc[order]


class DataError(ValueError):
    """Bad input: the message names the file, the line (1-based) and the field."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None,
                 field: str | None = None):
        where = []
        if path is not None:
            where.append(str(path))
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field '{field}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.path, self.line, self.field = path, line, field


@dataclass
class SkipReport:
    """Counts of rows a loader or filter removed, by reason. Printed, never silent."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)

    def add(self, reason: str, example: str | None = None, n: int = 1) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + n
        if example is not None and reason not in self.examples:
            self.examples[reason] = example

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __bool__(self) -> bool:
        return self.total > 0

    def summary(self) -> str:
        if not self.counts:
            return "nothing skipped"
        parts = [f"{n} {reason}" + (f" (e.g. {self.examples[reason]})" if reason in self.examples else "")
                 for reason, n in sorted(self.counts.items())]
        return "skipped " + "; ".join(parts)


@dataclass
class RecDataset:
    """Interactions + item catalog (+ optional reviews) with dense integer indexes.

    interactions: columns ``user`` (int64), ``item`` (int64), ``timestamp`` (float64; a
        position when the source has no time), optional ``rating`` (float64), and ``row``
        (int64, the order in the source file — the final tie-breaker for equal timestamps).
    items: one row per item index ``item`` (0..n_items-1), ``item_id`` (original id) and
        any text fields (strings; missing text is the empty string).
    reviews: optional; columns ``user``, ``item``, ``rating``, ``text``, ``summary``, ``timestamp``.
    predefined_split: optional per-interaction label column name (``"split"`` with values
        train/valid/test) when the source ships its own split.
    """

    name: str
    interactions: pd.DataFrame
    items: pd.DataFrame
    user_ids: np.ndarray
    item_ids: np.ndarray
    reviews: pd.DataFrame | None = None
    text_fields: list[str] = field(default_factory=list)
    source: str = ""
    skipped: SkipReport = field(default_factory=SkipReport)
    notes: list[str] = field(default_factory=list)

    # ---- sizes ---------------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_interactions(self) -> int:
        return len(self.interactions)

    @property
    def has_predefined_split(self) -> bool:
        return "split" in self.interactions.columns

    @property
    def has_ratings(self) -> bool:
        return "rating" in self.interactions.columns

    # ---- construction --------------------------------------------------------------------
    @classmethod
    def from_frames(
        cls,
        name: str,
        interactions: pd.DataFrame,
        items: pd.DataFrame | None = None,
        reviews: pd.DataFrame | None = None,
        text_fields: Sequence[str] | None = None,
        source: str = "",
        skipped: SkipReport | None = None,
        keep_all_catalog_items: bool = True,
    ) -> RecDataset:
        """Build a dataset from frames keyed by *original* ids.

        ``interactions`` needs ``user_id``, ``item_id`` and ``timestamp`` (``rating`` and
        ``split`` optional); ``items`` needs ``item_id`` plus text columns. Users are indexed in
        order of first appearance, items in order of the catalog (then first appearance for
        items missing from it), so indexes are deterministic for a given input.
        """
        for col in ("user_id", "item_id", "timestamp"):
            if col not in interactions.columns:
                raise DataError(f"interactions need a '{col}' column", path=source or name, field=col)
        inter = interactions.reset_index(drop=True).copy()
        inter["user_id"] = inter["user_id"].astype(str)
        inter["item_id"] = inter["item_id"].astype(str)
        text_fields = list(text_fields or [])

        if items is not None and len(items):
            items = _checked_catalog(items, source or name)
            catalog_order = list(items["item_id"])
        else:
            catalog_order = []
        seen = set(catalog_order)
        extra = [i for i in pd.unique(inter["item_id"]) if i not in seen]
        if keep_all_catalog_items:
            item_ids = np.array(catalog_order + extra, dtype=object)
        else:
            used = set(pd.unique(inter["item_id"]))
            item_ids = np.array([i for i in catalog_order if i in used] + extra, dtype=object)
        user_ids = np.array(pd.unique(inter["user_id"]), dtype=object)
        item_index = pd.Index(item_ids)
        user_index = pd.Index(user_ids)

        out = pd.DataFrame({
            "user": user_index.get_indexer(inter["user_id"]).astype(np.int64),
            "item": item_index.get_indexer(inter["item_id"]).astype(np.int64),
            "timestamp": inter["timestamp"].astype(np.float64),
        })
        if "rating" in inter.columns:
            out["rating"] = inter["rating"].astype(np.float64)
        if "split" in inter.columns:
            out["split"] = inter["split"].astype(str)
        out["row"] = np.arange(len(out), dtype=np.int64) if "row" not in inter.columns else inter["row"]

        cat = pd.DataFrame({"item": np.arange(len(item_ids), dtype=np.int64), "item_id": item_ids})
        if items is not None and len(items):
            items = items.set_index("item_id")
            for f in text_fields:
                if f not in items.columns:
                    raise DataError(f"text field '{f}' not in the item table", path=source or name, field=f)
                col = items[f].reindex(item_ids)
                cat[f] = col.fillna("").astype(str).to_numpy()
        else:
            for f in text_fields:
                cat[f] = ""

        rev = None
        if reviews is not None:
            rev = reviews.reset_index(drop=True).copy()
            rev["user"] = user_index.get_indexer(rev.pop("user_id").astype(str)).astype(np.int64)
            rev["item"] = item_index.get_indexer(rev.pop("item_id").astype(str)).astype(np.int64)
            rev = rev[[c for c in REVIEW_COLUMNS if c in rev.columns] +
                      [c for c in rev.columns if c not in REVIEW_COLUMNS]]

        return cls(name=name, interactions=out, items=cat, user_ids=user_ids, item_ids=item_ids,
                   reviews=rev, text_fields=text_fields, source=source, skipped=skipped or SkipReport())

    @classmethod
    def from_codes(
        cls,
        name: str,
        user_codes: np.ndarray,
        user_ids: np.ndarray,
        item_codes: np.ndarray,
        item_ids: np.ndarray,
        timestamps: np.ndarray,
        ratings: np.ndarray | None = None,
        items: pd.DataFrame | None = None,
        text_fields: Sequence[str] | None = None,
        source: str = "",
        skipped: SkipReport | None = None,
    ) -> RecDataset:
        """Build a dataset from already factorized columns, without a Python object per event.

        ``user_codes`` / ``item_codes`` index ``user_ids`` / ``item_ids`` (original ids in order of
        first appearance, as ``pd.factorize`` or Arrow's ``dictionary_encode`` give them). Items are
        re-indexed as :meth:`from_frames` does (catalog order, then first appearance) and every
        index column is int32, so ten million events take about 200 MB.
        """
        text_fields = list(text_fields or [])
        item_ids = np.asarray(item_ids, dtype=object)
        if items is not None and len(items):
            items = _checked_catalog(items, source or name)
            catalog = items["item_id"].to_numpy(dtype=object)
            pos = pd.Index(catalog).get_indexer(item_ids)
            extra = np.flatnonzero(pos < 0)
            remap = pos.copy()
            remap[extra] = len(catalog) + np.arange(len(extra))
            item_codes = remap[item_codes]
            item_ids = np.concatenate([catalog, item_ids[extra]]).astype(object)
        out = pd.DataFrame({
            "user": np.asarray(user_codes, dtype=np.int32),
            "item": np.asarray(item_codes, dtype=np.int32),
            "timestamp": np.asarray(timestamps, dtype=np.float64),
        })
        if ratings is not None:
            out["rating"] = np.asarray(ratings, dtype=np.float64)
        out["row"] = np.arange(len(out), dtype=np.int32 if len(out) < 2**31 else np.int64)
        cat = pd.DataFrame({"item": np.arange(len(item_ids), dtype=np.int64), "item_id": item_ids})
        if items is not None and len(items):
            items = items.set_index("item_id")
            for f in text_fields:
                if f not in items.columns:
                    raise DataError(f"text field '{f}' not in the item table", path=source or name, field=f)
                cat[f] = items[f].reindex(item_ids).fillna("").astype(str).to_numpy()
        else:
            for f in text_fields:
                cat[f] = ""
        return cls(name=name, interactions=out, items=cat, user_ids=np.asarray(user_ids, dtype=object),
                   item_ids=item_ids, text_fields=text_fields, source=source, skipped=skipped or SkipReport())

    # ---- views ---------------------------------------------------------------------------
    def sorted_interactions(self) -> pd.DataFrame:
        """Interactions ordered by user, timestamp, then source row (the documented tie rule)."""
        return sort_events(self.interactions)

    def item_text(self, fields: Sequence[str] | None = None, sep: str = ". ") -> list[str]:
        """One string per item index, joining the chosen non-empty text fields."""
        fields = list(fields or self.text_fields)
        if not fields:
            return [str(i) for i in self.item_ids]
        cols = [self.items[f].fillna("").astype(str).tolist() for f in fields]
        return [sep.join(p.strip() for p in parts if p and p.strip()) for parts in zip(*cols)]

    def to_hf(self, table: str = "interactions"):
        """The named table as a ``datasets.Dataset``."""
        import datasets

        frame = {"interactions": self.interactions, "items": self.items, "reviews": self.reviews}[table]
        if frame is None:
            raise ValueError(f"dataset '{self.name}' has no {table}")
        return datasets.Dataset.from_pandas(frame, preserve_index=False)

    def subset_interactions(self, mask: np.ndarray) -> RecDataset:
        """A copy keeping only the masked interactions; indexes and catalog stay the same."""
        return RecDataset(name=self.name, interactions=self.interactions[mask].reset_index(drop=True),
                          items=self.items, user_ids=self.user_ids, item_ids=self.item_ids,
                          reviews=self.reviews, text_fields=self.text_fields, source=self.source,
                          skipped=self.skipped, notes=list(self.notes))

    def __repr__(self) -> str:
        return (f"RecDataset({self.name!r}: {self.n_users} users, {self.n_items} items, "
                f"{self.n_interactions} interactions, text={self.text_fields}, "
                f"reviews={0 if self.reviews is None else len(self.reviews)})")


def _checked_catalog(items: pd.DataFrame, where: str) -> pd.DataFrame:
    """A copy of an item catalog with string ids; an id listed twice is a :class:`DataError`."""
    items = items.copy()
    items["item_id"] = items["item_id"].astype(str)
    if items["item_id"].duplicated().any():
        dup = items.loc[items["item_id"].duplicated(), "item_id"].iloc[0]
        raise DataError(f"item '{dup}' appears twice in the catalog", path=where, field="item_id")
    return items
