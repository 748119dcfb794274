"""Item text for datasets whose catalog has none, built from a split so nothing leaks.

A text model needs one string per item. Where the catalog has titles or descriptions those are
used as they are. Where it has none but the users wrote reviews (Amazon "Musical Instruments"),
an item's text is the summaries of its reviews *from the training events of the split only*:
a review attached to a valid or test event would tell the model which items the held-out users
went on to choose. Where there is neither, the dataset has no item text and a text model has to
fall back to IDs and co-occurrence (``choose_item_text`` says so).

Beauty (P5's ``datamaps.json``) lists the attribute vocabulary (``attribute2id``) and how many
items carry each attribute, but not which item carries which: there is no per-item text to build.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from textrec.data.dataset import RecDataset
from textrec.data.splits import Split

#: text sources ``choose_item_text`` can pick
SOURCES = ("auto", "catalog", "train_reviews", "none")
#: share of items with catalog text below which the catalog's text is not used
MIN_COVERAGE = 0.5


def catalog_coverage(dataset: RecDataset) -> float:
    """Share of items with non-empty catalog text (0 when the dataset has no text fields)."""
    if not dataset.text_fields:
        return 0.0
    texts = dataset.item_text()
    return sum(bool(t.strip()) for t in texts) / max(1, len(texts))


def training_review_text(split: Split, field: str = "summary", max_reviews: int = 20) -> list[str]:
    """Per item, the ``field`` of the reviews of its *training* events, oldest first, joined by ". ".

    A review belongs to a training event when user, item and timestamp match one of
    ``split.train``'s rows; reviews of valid and test events never reach an item's text. At most
    ``max_reviews`` (the earliest) per item, so a popular item's text stays within the encoder's
    window; an item without training reviews gets the empty string.
    """
    ds = split.dataset
    if ds.reviews is None or field not in ds.reviews.columns:
        raise ValueError(f"dataset '{ds.name}' has no reviews with a '{field}' field to build item text from")
    keys = ["user", "item", "timestamp"]
    train = split.train[keys].drop_duplicates()
    rev = ds.reviews[keys + [field]].merge(train, on=keys, how="inner")
    rev = rev[rev[field].fillna("").astype(str).str.strip() != ""]
    rev = rev.sort_values(["item", "timestamp"], kind="stable")
    texts = [""] * ds.n_items
    for item, group in rev.groupby("item", sort=False):
        parts = [str(x).strip().rstrip(".") for x in group[field].head(max_reviews)]
        texts[int(item)] = ". ".join(parts)
    return texts


def with_item_text(split: Split, texts: list[str], field: str = "text") -> Split:
    """A copy of ``split`` whose dataset's item text is ``texts`` (one per item), in column ``field``."""
    ds = split.dataset
    if len(texts) != ds.n_items:
        raise ValueError(f"{len(texts)} texts for {ds.n_items} items")
    items = ds.items[["item", "item_id"]].copy()
    if "title" in ds.items.columns and field != "title":  # keep display titles where the catalog has them
        items["title"] = ds.items["title"]
    items[field] = list(texts)
    new = dataclasses.replace(ds, items=items, text_fields=[field], notes=list(ds.notes))
    return dataclasses.replace(split, dataset=new)


def without_item_text(split: Split) -> Split:
    """A copy of ``split`` whose dataset has no item text (a text model trains on IDs only)."""
    new = dataclasses.replace(split.dataset, text_fields=[], notes=list(split.dataset.notes))
    return dataclasses.replace(split, dataset=new)


def choose_item_text(split: Split, source: str = "auto") -> tuple[Split, dict[str, Any]]:
    """The split with the item text a text model should read, and a report of where it came from.

    ``auto``: the catalog's text when at least ``MIN_COVERAGE`` of the items have some; else the
    training-period review summaries when the dataset has reviews; else none.
    """
    if source not in SOURCES:
        raise ValueError(f"item text source must be one of {SOURCES}, got {source!r}")
    ds = split.dataset
    coverage = catalog_coverage(ds)
    has_reviews = ds.reviews is not None and "summary" in ds.reviews.columns
    if source == "auto":
        source = "catalog" if coverage >= MIN_COVERAGE else "train_reviews" if has_reviews else "none"
    report: dict[str, Any] = {"source": source, "catalog_text_coverage": round(coverage, 4)}
    if source == "catalog":
        if not ds.text_fields:
            raise ValueError(f"dataset '{ds.name}' has no item text fields")
        report["fields"] = list(ds.text_fields)
        return split, report
    if source == "train_reviews":
        texts = training_review_text(split)
        out = with_item_text(split, texts, field="text")
        report.update({"fields": ["summary of training-period reviews"],
                       "items_with_text": int(sum(bool(t) for t in texts)),
                       "note": "item text = summaries of the reviews of training events only "
                               "(no valid/test review reaches it)"})
        return out, report
    report["note"] = "no item text: ID + co-occurrence only"
    return without_item_text(split), report


def text_lengths(texts: list[str]) -> dict[str, float]:
    """Word counts of item texts (mean, median, share empty) for reports."""
    n = np.array([len(t.split()) for t in texts]) if texts else np.zeros(0)
    return {"mean_words": round(float(n.mean()), 1) if len(n) else 0.0,
            "median_words": float(np.median(n)) if len(n) else 0.0,
            "empty_share": round(float((n == 0).mean()), 4) if len(n) else 1.0}


__all__ = ["choose_item_text", "training_review_text", "with_item_text", "without_item_text",
           "catalog_coverage", "text_lengths", "SOURCES"]
