"""Any CSV / TSV / Parquet interaction table, with a column mapping.

``columns`` maps our names to the file's: ``{"user_id": "uid", "item_id": "movie",
"timestamp": "ts", "rating": "stars"}``; ``user_id`` and ``item_id`` are required. Timestamps
may be numbers (seconds) or ISO dates (naive dates are UTC); without a ``timestamp`` mapping the
row position is used. For Parquet files the "line" of an error is the 1-based row number.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from textrec.data.dataset import DataError, RecDataset
from textrec.data.loaders._validate import (
    DUPLICATES,
    RowErrors,
    apply_duplicates,
    check_choice,
    check_rating_range,
    finish,
    iter_lines,
    json_locator,
    max_timestamp,
    parse_float,
    parse_json_line,
    parse_timestamp,
    require_id,
    require_rows,
    split_locator,
)

INTERACTION_KEYS = ("user_id", "item_id", "timestamp", "rating")
_EXTS = (".gz", ".parquet", ".csv", ".tsv", ".tab", ".txt", ".jsonl", ".json")
RATING_RANGE = (0.0, 10.0)  # generic default; pass rating_range= for other scales


def table_name(path: Path) -> str:
    """File name without its table extensions: ``ratings.csv.gz`` -> ``ratings``."""
    name = path.name
    for ext in _EXTS:
        name = name.removesuffix(ext)
    return name


def load_table(path: str | Path, columns: dict[str, str], name: str | None = None,
               item_path: str | Path | None = None, item_columns: dict[str, str] | None = None,
               sep: str | None = None, on_error: str = "raise", duplicates: str = "keep",
               rating_range: tuple[float, float] | None = RATING_RANGE,
               title_column: str | None = None) -> RecDataset:
    """Load a CSV/TSV/Parquet interaction table through the ``columns`` mapping.

    ``item_path`` / ``item_columns``: an optional item table; ``item_columns`` maps ``item_id``
    and any text field names to its columns (default: the interaction table's item column and
    every other column as a text field under its own name). ``title_column`` names the item
    table's title column: it becomes the ``title`` field (first in the item text, and the
    display title, kept whole); without it a column named ``title`` is the title. ``sep`` applies to both files; by
    default each file's delimiter follows its extension (.tsv/.tab: tab, .csv: comma, otherwise
    sniffed from the header). A rating outside ``rating_range`` (``None``: any finite number)
    is a bad row.

    Events are read through Arrow in chunks into int32 codes (no Python object per event: ten
    million rows load in seconds); a file Arrow cannot vouch for (a null, a date string, an odd
    id, a malformed line) is read row by row instead, so each bad row is named by line and field.
    """
    path = Path(path)
    rating_range = check_rating_range(rating_range)
    unknown = set(columns) - set(INTERACTION_KEYS)
    if unknown or not {"user_id", "item_id"} <= set(columns):
        raise ValueError(f"columns must map user_id and item_id (and optionally timestamp, rating) to the "
                         f"file's column names; got {columns}")
    errors = RowErrors(on_error)
    notes: list[str] = []
    wanted = dict(columns)
    check_choice(duplicates, DUPLICATES, "duplicates")
    if item_path is None and title_column is not None:
        raise ValueError(f"title_column '{title_column}' names a column of the item table, but no item table "
                         "was given")
    fast = read_events_arrow(path, wanted, sep, rating_range)
    if fast is not None:
        dup = fast.duplicates()
        if not (duplicates == "error" and dup.any()):  # the row path names both lines of the duplicate
            return _dataset_from_arrow(fast, dup, path, name, item_path, item_columns, columns, sep, duplicates,
                                       errors, notes, title_column)
    cols: dict[str, list[Any]] = {k: [] for k in ("user_id", "item_id", "timestamp", "rating", "line")}
    for lineno, rec in _records(path, list(wanted.values()), sep, errors):
        raw = {ours: rec[theirs] for ours, theirs in wanted.items()}
        user = require_id(raw["user_id"], wanted["user_id"], path, lineno, errors)
        item = None if user is None else require_id(raw["item_id"], wanted["item_id"], path, lineno, errors)
        if item is None:
            continue
        if "timestamp" in raw:
            ts = parse_timestamp(raw["timestamp"], wanted["timestamp"], path, lineno, errors)
        else:
            ts = float(len(cols["line"]))  # no time column: the file order is the only order
        if ts is None:
            continue
        rating = 0.0
        if "rating" in raw:
            rating = parse_float(raw["rating"], wanted["rating"], path, lineno, errors, valid_range=rating_range)
            if rating is None:
                continue
        for key, value in (("user_id", user), ("item_id", item), ("timestamp", ts), ("rating", rating),
                           ("line", lineno)):
            cols[key].append(value)
    require_rows(len(cols["line"]), path, errors)
    frame = pd.DataFrame(cols)
    if "rating" not in wanted:
        frame = frame.drop(columns="rating")
    if "timestamp" not in wanted:
        notes.append("no timestamp column: timestamp = row position in the file")
    frame = apply_duplicates(frame, duplicates, path, errors, notes)

    items, text_fields = None, []
    if item_path is not None:
        items, text_fields = _read_items(Path(item_path), item_columns, columns["item_id"], sep, errors,
                                         title_column)
    ds = RecDataset.from_frames(name or table_name(path), frame, items=items, text_fields=text_fields,
                                source=str(path), skipped=errors.skipped)
    return finish(ds, notes)


# ---- the Arrow path: chunked, columnar, int32 codes, no Python object per event -----------------
ARROW_BLOCK_BYTES = 64 << 20
_SAFE_ID = r"^[A-Za-z0-9_.:@/+\-]{1,256}$"  # ids that need no per-value check (no space, control, bracket)


@dataclass
class ArrowEvents:
    """Factorized event columns read through Arrow: codes into the unique ids, first appearance first."""

    user_codes: np.ndarray
    user_ids: np.ndarray
    item_codes: np.ndarray
    item_ids: np.ndarray
    timestamps: np.ndarray
    ratings: np.ndarray | None
    has_time: bool

    def duplicates(self) -> np.ndarray:
        """Boolean mask of exact repeats (same user, item and timestamp as an earlier row)."""
        key = pd.DataFrame({"u": self.user_codes, "i": self.item_codes, "t": self.timestamps})
        return key.duplicated(keep="first").to_numpy()


def _arrow_batches(path: Path, needed: list[str], sep: str | None) -> Iterator[Any]:
    """Record batches of the needed columns (ids read as text from CSV/TSV, so '007' stays '007')."""
    import pyarrow as pa

    if _is_parquet(path):
        import pyarrow.parquet as pq

        yield from pq.ParquetFile(path).iter_batches(batch_size=1 << 20, columns=needed)
    elif _is_jsonl(path):
        import pyarrow.json as pajson

        table = pajson.read_json(path, read_options=pajson.ReadOptions(block_size=ARROW_BLOCK_BYTES))
        missing = [c for c in needed if c not in table.column_names]
        if missing:
            raise DataError(f"no field '{missing[0]}' (fields: {', '.join(table.column_names)})",
                            path=str(path), field=missing[0])
        yield from table.select(needed).to_batches(max_chunksize=1 << 20)
    else:
        import pyarrow.csv as pacsv

        if sep is None:
            first = next(iter_lines(path, RowErrors("skip")), None)
            sep = _guess_sep(path, first[1] if first else None)
        reader = pacsv.open_csv(
            path, read_options=pacsv.ReadOptions(block_size=ARROW_BLOCK_BYTES),
            parse_options=pacsv.ParseOptions(delimiter=sep),
            convert_options=pacsv.ConvertOptions(include_columns=needed,
                                                 column_types={c: pa.string() for c in needed[:2]}))
        yield from reader


def _id_chunks_ok(ids: Any) -> bool:
    """Ids Arrow can factorize as they are: integers, or text free of nulls."""
    import pyarrow as pa

    t = ids.type
    return ids.null_count == 0 and (pa.types.is_integer(t) or pa.types.is_string(t) or pa.types.is_large_string(t))


def _numbers(col: Any) -> np.ndarray | None:
    """A numeric Arrow column as float64, or ``None`` when it has nulls or is not numeric."""
    import pyarrow as pa

    if col.null_count or not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
        return None
    return col.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)


def _factorize(chunks: list[Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """(int32 codes, unique ids as str objects) in order of first appearance; ``None`` if any id
    needs the row-by-row checks (empty, padded, control characters, too long...)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = pa.chunked_array(chunks)
    if pa.types.is_integer(arr.type):
        codes, uniques = pd.factorize(arr.to_numpy(), sort=False)
        return codes.astype(np.int32), uniques.astype(str).astype(object)
    enc = arr.combine_chunks().dictionary_encode()
    uniques = enc.dictionary
    unsafe = pc.invert(pc.match_substring_regex(uniques, _SAFE_ID))
    if pc.any(unsafe).as_py():
        errors = RowErrors("skip")
        for value in pc.filter(uniques, unsafe).to_pylist():
            if require_id(value, "id", Path("-"), None, errors) != value:
                return None
    return (enc.indices.to_numpy(zero_copy_only=False).astype(np.int32),
            np.asarray(uniques.to_pylist(), dtype=object))


def read_events_arrow(path: Path, columns: dict[str, str], sep: str | None,
                      rating_range: tuple[float, float] | None) -> ArrowEvents | None:
    """Read the event columns through Arrow in chunks, or ``None`` when the row-by-row path must
    decide (a value Arrow cannot vouch for: a null, a date string, a bad number, an odd id), so
    every bad row still gets its file, line and field in the error."""
    import pyarrow as pa

    if not path.is_file():
        return None
    needed = [columns["user_id"], columns["item_id"]] + [columns[k] for k in ("timestamp", "rating") if k in columns]
    if len(set(needed)) != len(needed):
        return None
    users: list[Any] = []
    items: list[Any] = []
    times: list[np.ndarray] = []
    ratings: list[np.ndarray] = []
    limit = max_timestamp()
    try:
        for batch in _arrow_batches(path, needed, sep):
            u, i = batch.column(0), batch.column(1)
            if not (_id_chunks_ok(u) and _id_chunks_ok(i)):
                return None
            users.append(u)
            items.append(i)
            if "timestamp" in columns:
                ts = _numbers(batch.column(2))
                if ts is None or not (np.isfinite(ts).all() and (ts >= 0).all() and (ts <= limit).all()):
                    return None
                times.append(ts)
            if "rating" in columns:
                r = _numbers(batch.column(len(needed) - 1))
                if r is None or not np.isfinite(r).all():
                    return None
                if rating_range is not None and not ((r >= rating_range[0]) & (r <= rating_range[1])).all():
                    return None
                ratings.append(r)
    except DataError:
        raise
    except (pa.ArrowException, OSError, ValueError, KeyError):
        return None  # unparseable with Arrow's strict rules: the row-by-row reader names the line
    if not users or sum(len(c) for c in users) == 0:
        return None
    if len({pa.chunked_array(users).type, pa.chunked_array(items).type}) > 2:
        return None
    fu, fi = _factorize(users), _factorize(items)
    if fu is None or fi is None:
        return None
    n = len(fu[0])
    return ArrowEvents(user_codes=fu[0], user_ids=fu[1], item_codes=fi[0], item_ids=fi[1],
                       timestamps=np.concatenate(times) if times else np.arange(n, dtype=np.float64),
                       ratings=np.concatenate(ratings) if ratings else None, has_time="timestamp" in columns)


def _dataset_from_arrow(ev: ArrowEvents, dup: np.ndarray, path: Path, name: str | None, item_path, item_columns,
                        columns: dict[str, str], sep: str | None, duplicates: str, errors: RowErrors,
                        notes: list[str], title_column: str | None = None) -> RecDataset:
    """The dataset from Arrow-read events: duplicates handled as the row path does, catalog attached."""
    if not ev.has_time:
        notes.append("no timestamp column: timestamp = row position in the file")
    n_dup = int(dup.sum())
    if n_dup:
        first = int(np.flatnonzero(dup)[0])
        u, i, t = ev.user_ids[ev.user_codes[first]], ev.item_ids[ev.item_codes[first]], ev.timestamps[first]
        example = f"{path.name}:{first + 2 if not _is_parquet(path) else first + 1}: user {u}, item {i}, " \
                  f"timestamp {t:.15g}"
        if duplicates == "drop":
            errors.skipped.add("duplicate event", example=example, n=n_dup)
            keep = ~dup
            ev = ArrowEvents(ev.user_codes[keep], ev.user_ids, ev.item_codes[keep], ev.item_ids, ev.timestamps[keep],
                             None if ev.ratings is None else ev.ratings[keep], ev.has_time)
        else:
            notes.append(f"{n_dup} exact duplicate events (same user, item, timestamp) kept, e.g. {example}; "
                         "pass duplicates='drop' to remove them")
    items, text_fields = None, []
    if item_path is not None:
        items, text_fields = _read_items(Path(item_path), item_columns, columns["item_id"], sep, errors,
                                         title_column)
    # users/items that only occurred in dropped rows keep no index: refactorize when rows were dropped
    if duplicates == "drop" and n_dup:
        uc, uu = pd.factorize(ev.user_codes, sort=False)
        ic, iu = pd.factorize(ev.item_codes, sort=False)
        ev = ArrowEvents(uc.astype(np.int32), ev.user_ids[uu], ic.astype(np.int32), ev.item_ids[iu],
                         ev.timestamps, ev.ratings, ev.has_time)
    ds = RecDataset.from_codes(name or table_name(path), ev.user_codes, ev.user_ids, ev.item_codes, ev.item_ids,
                               ev.timestamps, ev.ratings, items=items, text_fields=text_fields, source=str(path),
                               skipped=errors.skipped)
    return finish(ds, notes)


def _read_items(path: Path, item_columns: dict[str, str] | None, item_col: str, sep: str | None,
                errors: RowErrors, title_column: str | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The item table as item_id + text fields (strings), one row per item; the title field first."""
    header = _header(path, sep)
    mapping = dict(item_columns) if item_columns else {
        "item_id": item_col, **{c: c for c in header if c != item_col}}
    if "item_id" not in mapping:
        raise ValueError(f"item_columns must map item_id to a column of {path.name}; got {item_columns}")
    if title_column is not None:
        if title_column not in header:
            raise DataError(f"no title column '{title_column}' in the header (columns: {', '.join(header)})",
                            path=str(path), line=1, field=title_column)
        if title_column == mapping["item_id"]:
            raise ValueError(f"{path.name}: the title column '{title_column}' is the item id column")
        clash = [k for k, v in mapping.items() if k == "title" and v != title_column]
        if clash:
            raise ValueError(f"{path.name}: title={title_column} is named, but column 'title' is another "
                             "column; rename one of them")
        rest = {k: v for k, v in mapping.items() if k != "item_id" and v != title_column}
        mapping = {"item_id": mapping["item_id"], "title": title_column, **rest}
    elif "title" in mapping:  # the title leads the item text
        mapping = {"item_id": mapping["item_id"], "title": mapping["title"],
                   **{k: v for k, v in mapping.items() if k not in ("item_id", "title")}}
    rows: list[dict[str, str]] = []
    seen: dict[str, int] = {}
    for lineno, rec in _records(path, list(mapping.values()), sep, errors):
        item = require_id(rec[mapping["item_id"]], mapping["item_id"], path, lineno, errors)
        if item is None:
            continue
        if item in seen:
            errors.bad("duplicate item in catalog", f"item '{item}' already on line {seen[item]}", path, lineno,
                       mapping["item_id"])
            continue
        seen[item] = lineno
        rows.append({"item_id": item, **{k: "" if pd.isna(rec[v]) else str(rec[v]).strip()
                                         for k, v in mapping.items() if k != "item_id"}})
    fields = [k for k in mapping if k != "item_id"]
    return pd.DataFrame(rows, columns=["item_id", *fields]), fields


# ---- row sources ---------------------------------------------------------------------------
def _is_parquet(path: Path) -> bool:
    return path.suffix == ".parquet"


def _is_jsonl(path: Path) -> bool:
    return path.name.lower().endswith((".jsonl", ".json", ".jsonl.gz", ".json.gz"))


def _guess_sep(path: Path, header_line: str | None = None) -> str:
    suffixes = [s for s in path.suffixes if s != ".gz"]
    ext = suffixes[-1] if suffixes else ""
    if ext in (".tsv", ".tab"):
        return "\t"
    if ext == ".csv" or header_line is None:
        return ","
    # Unknown extension: the delimiter that splits the header into the most columns.
    return max(("\t", ",", ";", "|"), key=header_line.count)


def _header(path: Path, sep: str | None) -> list[str]:
    if not path.is_file():
        raise DataError("file not found", path=str(path))
    if _is_parquet(path):
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(path).names)
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError...: all mean "not a parquet file"
            raise DataError(f"not a readable Parquet file ({type(exc).__name__}: {str(exc)[:200]})",
                            path=str(path)) from exc
    first = next(iter_lines(path, RowErrors("skip")), None)
    if first is None:
        raise DataError("no interactions (empty file)", path=str(path))
    try:
        return next(csv.reader([first[1]], delimiter=sep or _guess_sep(path, first[1])))
    except csv.Error as exc:
        raise DataError(f"malformed CSV header ({exc})", path=str(path), line=first[0]) from exc


def _read_parquet(path: Path) -> pd.DataFrame:
    """The whole Parquet table; any read failure is a DataError naming the file."""
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # corrupt footer, bad page, unsupported type: ArrowInvalid, OSError...
        raise DataError(f"not a readable Parquet file ({type(exc).__name__}: {str(exc)[:200]})",
                        path=str(path)) from exc


class _LineFeed:
    """Feeds decoded lines to ``csv.reader`` and remembers where the current record started."""

    def __init__(self, lines: Iterator[tuple[int, str]]):
        self.lines = lines
        self.start: int | None = None

    def __iter__(self) -> _LineFeed:
        return self

    def __next__(self) -> str:
        lineno, text = next(self.lines)
        if self.start is None:
            self.start = lineno
        return text + "\n"


def _records(path: Path, needed: list[str], sep: str | None,
             errors: RowErrors) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line, {column: value})`` for each data row, checking the needed columns exist."""
    if not path.is_file():
        raise DataError("file not found", path=str(path))
    if _is_parquet(path):
        frame = _read_parquet(path)
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise DataError(f"no column '{missing[0]}' (columns: {', '.join(map(str, frame.columns))})",
                            path=str(path), field=missing[0])
        try:
            values = {c: frame[c].tolist() for c in needed}
        except Exception as exc:  # a column pyarrow cannot turn into Python values
            raise DataError(f"unreadable column values ({type(exc).__name__}: {str(exc)[:200]})",
                            path=str(path)) from exc
        for i in range(len(frame)):
            yield i + 1, {c: values[c][i] for c in needed}
        return

    if _is_jsonl(path):
        for lineno, text in iter_lines(path, errors, locate=json_locator):
            obj = parse_json_line(text, path, lineno, errors)
            if obj is not None:
                yield lineno, {c: obj.get(c) for c in needed}  # a missing field reads as missing
        return
    if sep is None:
        first = next(iter_lines(path, RowErrors("skip")), None)
        sep = _guess_sep(path, first[1] if first else None)
    header: list[str] = []  # filled below; the encoding locator reads it
    feed = _LineFeed(iter_lines(path, errors, locate=split_locator(header, sep)))
    reader = csv.reader(feed, delimiter=sep)
    try:
        header.extend(next(reader, []))
    except csv.Error as exc:  # e.g. a header field beyond csv's field size limit
        raise DataError(f"malformed CSV header ({exc})", path=str(path), line=feed.start or 1) from exc
    if not header:
        raise DataError("no interactions (empty file)", path=str(path))
    header_line, feed.start = feed.start, None
    missing = [c for c in needed if c not in header]
    if missing:
        raise DataError(f"no column '{missing[0]}' in the header (columns: {', '.join(header)})",
                        path=str(path), line=header_line, field=missing[0])
    index = {c: header.index(c) for c in needed}
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # a field beyond csv's size limit, a bad quote...: this record only
            lineno, feed.start = feed.start, None
            errors.bad("malformed CSV", f"malformed CSV ({exc})", path, lineno)
            continue
        lineno, feed.start = feed.start, None
        if len(row) != len(header):
            errors.bad("wrong number of columns", f"expected {len(header)} columns, got {len(row)}", path,
                       lineno, header[len(row)] if len(row) < len(header) else None)
            continue
        yield lineno or 0, {c: row[i] for c, i in index.items()}
