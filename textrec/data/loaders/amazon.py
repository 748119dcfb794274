"""Amazon review dumps (McAuley lab, 2014 / 2018 / 2023), JSON lines, plain or gzip.

Field names by release (detected per line, so concatenated dumps also load):

* 2014: ``reviewerID``, ``asin``, ``overall``, ``reviewText``, ``summary``, ``unixReviewTime`` (s).
* 2018: the same plus ``vote``, ``style``, ``verified``; ``reviewText`` may be missing.
* 2023: ``user_id``, ``parent_asin`` (preferred over ``asin``: it groups colour/size variants),
  ``rating``, ``text``, ``title`` (the summary) and ``timestamp`` in *milliseconds*.

Timestamps are stored in seconds. A missing review text or summary is the empty string.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from textrec.data.dataset import RecDataset
from textrec.data.loaders._validate import (
    RowErrors,
    apply_duplicates,
    check_rating_range,
    finish,
    iter_lines,
    json_locator,
    parse_float,
    parse_json_line,
    parse_timestamp,
    require_id,
    require_rows,
    text_value,
)

# release -> (user, item, rating, text, summary, timestamp, timestamp scale to seconds)
SCHEMA_2014 = ("reviewerID", "asin", "overall", "reviewText", "summary", "unixReviewTime", 1.0)
SCHEMA_2023 = ("user_id", "parent_asin", "rating", "text", "title", "timestamp", 1e-3)
META_FIELDS = ["title", "brand", "category", "description"]
RATING_RANGE = (1.0, 5.0)  # Amazon stars


def dataset_name(path: Path) -> str:
    """File name without its extensions: ``reviews_X_5.json.gz`` -> ``reviews_X_5``."""
    name = path.name
    for ext in (".gz", ".jsonl", ".json"):
        name = name.removesuffix(ext)
    return name


def load_amazon_reviews(path: str | Path, name: str | None = None, meta_path: str | Path | None = None,
                        on_error: str = "raise", duplicates: str = "keep",
                        rating_range: tuple[float, float] | None = RATING_RANGE) -> RecDataset:
    """Load an Amazon review file into interactions (with ratings) and the reviews table.

    ``meta_path``: optional Amazon metadata (JSON lines, or the 2014 Python-literal lines)
    giving item fields title, brand, category, description. Without it the items have one empty
    ``title`` field. ``name`` defaults to the file name without extensions. Ratings outside
    ``rating_range`` (1-5 stars; ``None``: any finite number) are bad rows.
    """
    path = Path(path)
    rating_range = check_rating_range(rating_range)
    errors = RowErrors(on_error)
    notes: list[str] = []
    cols: dict[str, list[Any]] = {k: [] for k in ("user_id", "item_id", "rating", "text", "summary",
                                                  "timestamp", "line")}
    for lineno, text in iter_lines(path, errors, locate=json_locator):
        obj = parse_json_line(text, path, lineno, errors)
        if obj is None:
            continue
        is_2023 = "user_id" in obj or "parent_asin" in obj
        f_user, f_item, f_rating, f_text, f_summary, f_time, scale = SCHEMA_2023 if is_2023 else SCHEMA_2014
        if is_2023 and not obj.get("parent_asin") and obj.get("asin"):
            f_item = "asin"
        user = require_id(obj.get(f_user), f_user, path, lineno, errors)
        item = None if user is None else require_id(obj.get(f_item), f_item, path, lineno, errors)
        rating = None if item is None else parse_float(obj.get(f_rating), f_rating, path, lineno, errors,
                                                         valid_range=rating_range)
        ts = None if rating is None else parse_timestamp(obj.get(f_time), f_time, path, lineno, errors, scale)
        if ts is None:
            continue
        for key, value in (("user_id", user), ("item_id", item), ("rating", rating), ("timestamp", ts),
                           ("text", text_value(obj.get(f_text))), ("summary", text_value(obj.get(f_summary))),
                           ("line", lineno)):
            cols[key].append(value)
    require_rows(len(cols["user_id"]), path, errors)
    frame = apply_duplicates(pd.DataFrame(cols), duplicates, path, errors, notes)

    interactions = frame[["user_id", "item_id", "timestamp", "rating"]]
    reviews = frame[["user_id", "item_id", "rating", "text", "summary", "timestamp"]]
    n_empty = int((frame["text"] == "").sum())
    if n_empty:
        notes.append(f"{n_empty} reviews have no text")

    item_ids = pd.unique(frame["item_id"])  # first appearance, with or without metadata
    if meta_path is None:
        items = pd.DataFrame({"item_id": item_ids, "title": ""})
        text_fields = ["title"]
        notes.append("no item metadata: the items table has an empty 'title' (pass meta_path= for titles)")
    else:
        meta = _read_meta(Path(meta_path), errors, notes)
        items = pd.DataFrame({"item_id": item_ids}).merge(meta, on="item_id", how="left").fillna("")
        text_fields = META_FIELDS
        missing = int((~pd.Series(item_ids).isin(meta["item_id"])).sum())
        if missing:
            notes.append(f"{missing} reviewed items have no metadata (empty text fields)")
    ds = RecDataset.from_frames(name or dataset_name(path), interactions, items=items, reviews=reviews,
                                text_fields=text_fields, source=str(path), skipped=errors.skipped)
    return finish(ds, notes)


def _read_meta(path: Path, errors: RowErrors, notes: list[str]) -> pd.DataFrame:
    """Metadata lines -> item_id + title, brand, category, description (first record per item wins)."""
    rows: dict[str, dict[str, str]] = {}
    n_dup = 0
    for lineno, text in iter_lines(path, errors, locate=json_locator):
        obj = parse_json_line(text, path, lineno, errors, allow_python_literal=True)
        if obj is None:
            continue
        key = "parent_asin" if obj.get("parent_asin") else "asin"
        item = require_id(obj.get(key), key, path, lineno, errors)
        if item is None:
            continue
        if item in rows:
            n_dup += 1  # the 2018 metadata repeats some products; the records are the same
            continue
        details = obj.get("details") if isinstance(obj.get("details"), dict) else {}
        category = obj.get("categories") or obj.get("category") or obj.get("main_category")
        rows[item] = {
            "title": text_value(obj.get("title")),
            "brand": text_value(obj.get("brand") or obj.get("store") or details.get("Brand")),
            "category": text_value(category),
            "description": text_value(obj.get("description")),
        }
    if n_dup:
        notes.append(f"{n_dup} repeated items in {path.name}: the first record of each was used")
    return pd.DataFrame([{"item_id": k, **v} for k, v in rows.items()], columns=["item_id", *META_FIELDS])
