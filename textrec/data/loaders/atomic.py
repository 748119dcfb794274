"""RecBole / UniSRec atomic files.

Two layouts are read from one folder:

* plain: ``<name>.inter`` (``user_id``, ``item_id``, optional ``rating`` and ``timestamp``;
  columns carry ``:token`` / ``:float`` / ``:token_seq`` suffixes) plus an optional
  ``<name>.item`` (item_id + any columns, all kept as text fields) and/or ``<name>.text``
  (item_id + ``text``).
* pre-split (UniSRec / VQ-Rec): ``<name>.train.inter`` / ``.valid.inter`` / ``.test.inter`` with
  ``user_id  item_id_list  item_id`` rows of integer indexes, ``<name>.item2index`` /
  ``<name>.user2index`` mapping original ids to those indexes, and ``<name>.text``.

The pre-split files hold no time, so one interaction table is rebuilt per user and its
``timestamp`` is the *position* in the user's sequence (0, 1, 2, ...). The ``split`` column keeps
the file each target came from: the last event is "test", the one before "valid", the rest
"train". Histories in these files are truncated (UniSRec keeps the last 50 items), so the
sequence is rebuilt from the first train row's history plus every row's target, and each row is
checked against it: its history must be exactly the (truncated) prefix before its target.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from textrec.data.dataset import DataError, RecDataset
from textrec.data.loaders._validate import (
    RowErrors,
    apply_duplicates,
    check_rating_range,
    finish,
    iter_lines,
    parse_atomic_header,
    parse_float,
    parse_index,
    parse_timestamp,
    require_id,
    require_rows,
    split_locator,
)

SPLITS = ("train", "valid", "test")
_PLAIN_INT = re.compile(r"[+-]?\d+", re.ASCII)  # int() would also take "1_0" and full-width digits
RATING_RANGE = (0.0, 10.0)  # generic default; pass rating_range= for other scales
# Longest first, so "x.train.inter" is not taken for a plain "x.inter".
SUFFIXES = (".train.inter", ".valid.inter", ".test.inter", ".item2index", ".user2index",
            ".inter", ".item", ".text")


@dataclass
class AtomicFrames:
    """What the atomic reader produced, before the dense indexes are built."""

    interactions: pd.DataFrame
    items: pd.DataFrame | None
    text_fields: list[str]
    errors: RowErrors
    notes: list[str] = field(default_factory=list)


def load_atomic(folder: str | Path, name: str | None = None, on_error: str = "raise",
                duplicates: str = "keep", rating_range: tuple[float, float] | None = RATING_RANGE) -> RecDataset:
    """Load RecBole atomic files (plain ``.inter`` or UniSRec pre-split) from ``folder``.

    ``name`` defaults to the folder name. See the module docstring for the layouts, the
    positional timestamps of the pre-split layout and its ``split`` column. A ``rating`` outside
    ``rating_range`` (``None``: any finite number) is a bad row.
    """
    folder = Path(folder)
    if folder.is_file():
        folder = folder.parent
    frames = read_atomic_frames(folder, on_error=on_error, duplicates=duplicates, rating_range=rating_range)
    ds = RecDataset.from_frames(name or folder.name, frames.interactions, items=frames.items,
                                text_fields=frames.text_fields, source=str(folder),
                                skipped=frames.errors.skipped)
    return finish(ds, frames.notes)


def find_atomic_files(folder: Path) -> dict[str, Path]:
    """Map each atomic suffix (``.inter``, ``.train.inter``, ``.text``...) to its file in ``folder``.

    When several datasets share a folder, the one whose prefix is the folder name wins.
    """
    if not folder.is_dir():
        raise DataError("folder not found", path=str(folder))
    by_suffix: dict[str, list[Path]] = {}
    for p in sorted(folder.iterdir()):
        if not p.is_file():
            continue
        for suffix in SUFFIXES:
            if p.name.endswith(suffix) and len(p.name) > len(suffix):
                by_suffix.setdefault(suffix, []).append(p)
                break
    out: dict[str, Path] = {}
    for suffix, paths in by_suffix.items():
        if len(paths) > 1:
            named = [p for p in paths if p.name[: -len(suffix)].lower() == folder.name.lower()]
            if len(named) != 1:
                raise DataError(f"several {suffix} files ({', '.join(p.name for p in paths)}); keep one "
                                "dataset per folder or name the file after the folder", path=str(folder))
            paths = named
        out[suffix] = paths[0]
    return out


def read_atomic_frames(folder: Path, on_error: str = "raise", duplicates: str = "keep",
                       rating_range: tuple[float, float] | None = RATING_RANGE) -> AtomicFrames:
    """Read the atomic files of ``folder`` into frames keyed by original ids."""
    rating_range = check_rating_range(rating_range)
    files = find_atomic_files(folder)
    errors = RowErrors(on_error)
    notes: list[str] = []
    if any(f".{s}.inter" in files for s in SPLITS):
        return _read_presplit(folder, files, errors, notes)
    if ".inter" not in files:
        raise DataError("no .inter or .train/.valid/.test.inter file", path=str(folder))
    inter = _read_inter(files[".inter"], errors, notes, rating_range)
    inter = apply_duplicates(inter, duplicates, files[".inter"], errors, notes)
    items, text_fields = _read_catalogs([files[s] for s in (".item", ".text") if s in files], errors)
    return AtomicFrames(inter, items, text_fields, errors, notes)


# ---- plain layout --------------------------------------------------------------------------
def _header(path: Path, lines: Iterator[tuple[int, str]], required: tuple[str, ...], columns: list[str]) -> tuple[int, list[str]]:
    """Read the header line into ``columns`` (filled in place for the encoding locator)."""
    first = next(lines, None)
    if first is None:
        raise DataError("no interactions (empty file)" if path.name.endswith(".inter") else "empty file",
                        path=str(path))
    lineno, text = first
    columns.extend(n for n, _ in parse_atomic_header(text))
    for col in required:
        if col not in columns:
            raise DataError(f"header lacks the '{col}' column (got {', '.join(columns)})",
                            path=str(path), line=lineno, field=col)
    return lineno, columns


def _split_row(text: str, columns: list[str], path: Path, lineno: int, errors: RowErrors) -> list[str] | None:
    parts = text.split("\t")
    if len(parts) != len(columns):
        missing = columns[len(parts)] if len(parts) < len(columns) else None
        errors.bad("wrong number of columns", f"expected {len(columns)} tab-separated columns, got "
                   f"{len(parts)}", path, lineno, missing)
        return None
    return parts


def _read_inter(path: Path, errors: RowErrors, notes: list[str],
                rating_range: tuple[float, float] | None) -> pd.DataFrame:
    columns: list[str] = []
    lines = iter_lines(path, errors, locate=split_locator(columns, "\t"))
    _header(path, lines, ("user_id", "item_id"), columns)
    iu, ii = columns.index("user_id"), columns.index("item_id")
    it = columns.index("timestamp") if "timestamp" in columns else None
    ir = columns.index("rating") if "rating" in columns else None
    users, items, times, ratings, rows = [], [], [], [], []
    for lineno, text in lines:
        parts = _split_row(text, columns, path, lineno, errors)
        if parts is None:
            continue
        u = require_id(parts[iu], "user_id", path, lineno, errors)
        if u is None:
            continue
        i = require_id(parts[ii], "item_id", path, lineno, errors)
        if i is None:
            continue
        # Without a timestamp column the file order is the only order there is.
        ts = float(len(users)) if it is None else parse_timestamp(parts[it], "timestamp", path, lineno, errors)
        if ts is None:
            continue
        if ir is not None:
            r = parse_float(parts[ir], "rating", path, lineno, errors, valid_range=rating_range)
            if r is None:
                continue
            ratings.append(r)
        users.append(u)
        items.append(i)
        times.append(ts)
        rows.append(lineno)
    require_rows(len(users), path, errors)
    if it is None:
        notes.append(f"{path.name} has no timestamp column: timestamp = row position in the file")
    frame = pd.DataFrame({"user_id": users, "item_id": items, "timestamp": times, "line": rows})
    if ir is not None:
        frame["rating"] = ratings
    return frame


def _read_catalog(path: Path, errors: RowErrors) -> pd.DataFrame:
    """An ``.item`` / ``.text`` file: item_id plus text columns, all kept as strings."""
    columns: list[str] = []
    lines = iter_lines(path, errors, locate=split_locator(columns, "\t"))
    _header(path, lines, ("item_id",), columns)
    rows: list[list[str]] = []
    seen: dict[str, int] = {}
    ii = columns.index("item_id")
    for lineno, text in lines:
        parts = _split_row(text, columns, path, lineno, errors)
        if parts is None:
            continue
        item = require_id(parts[ii], "item_id", path, lineno, errors)
        if item is None:
            continue
        if item in seen:
            errors.bad("duplicate item in catalog", f"item '{item}' already on line {seen[item]}",
                       path, lineno, "item_id")
            continue
        seen[item] = lineno
        parts[ii] = item
        rows.append([p.strip() for p in parts])
    return pd.DataFrame(rows, columns=columns, dtype=object)


def _read_catalogs(paths: list[Path], errors: RowErrors) -> tuple[pd.DataFrame | None, list[str]]:
    """Merge ``.item`` and ``.text`` catalogs (``.item`` order first, then new ``.text`` items)."""
    frames = [_read_catalog(p, errors) for p in paths]
    if not frames:
        return None, []
    items = frames[0]
    for extra in frames[1:]:
        extra = extra.rename(columns={c: f"{c}_text" for c in extra.columns
                                      if c != "item_id" and c in items.columns})
        items = items.merge(extra, on="item_id", how="outer", sort=False)
    items = items.fillna("")
    return items, [c for c in items.columns if c != "item_id"]


# ---- pre-split layout ----------------------------------------------------------------------
@dataclass
class _SplitRow:
    history: list[int]
    target: int
    line: int
    split: str


def _read_index(path: Path, errors: RowErrors, what: str) -> dict[int, str]:
    """``original_id <TAB> index`` lines as ``{index: original_id}``."""
    out: dict[int, str] = {}
    seen: dict[str, int] = {}
    for lineno, text in iter_lines(path, errors, locate=split_locator([what, "index"], "\t")):
        parts = text.split("\t")
        if len(parts) != 2:
            errors.bad("wrong number of columns", f"expected '<{what}> <TAB> <index>', got {len(parts)} "
                       "columns", path, lineno)
            continue
        idx = parse_index(parts[1], "index", path, lineno, errors)
        if idx is None:
            continue
        orig = require_id(parts[0], what, path, lineno, errors)
        if orig is None:
            continue
        if idx in out:
            errors.bad("duplicate index", f"index {idx} already used for '{out[idx]}'", path, lineno, "index")
        elif orig in seen:
            errors.bad("duplicate index", f"'{orig}' already on line {seen[orig]}", path, lineno, what)
        else:
            out[idx] = orig
            seen[orig] = lineno
    return out


def _read_split(path: Path, split: str, errors: RowErrors, item_of: dict[int, str],
                user_of: dict[int, str], rows: dict[int, list[_SplitRow]], bad_users: set[int]) -> int:
    """Append the rows of one split file to ``rows`` (per user index); returns the row count."""
    columns: list[str] = []
    lines = iter_lines(path, errors, locate=split_locator(columns, "\t"))
    _header(path, lines, ("user_id", "item_id_list", "item_id"), columns)
    iu, ih, it = columns.index("user_id"), columns.index("item_id_list"), columns.index("item_id")
    n = 0
    for lineno, text in lines:
        n += 1
        parts = _split_row(text, columns, path, lineno, errors)
        if parts is None:
            continue
        u = parse_index(parts[iu], "user_id", path, lineno, errors, "user index")
        if u is None:
            continue
        if user_of and u not in user_of:
            errors.bad("unknown user in a split file", f"user index {u} is not in the .user2index file",
                       path, lineno, "user_id")
            continue
        parsed: list[int] = []
        for fld, raw in (("item_id_list", parts[ih]), ("item_id", parts[it])):
            if not all(_PLAIN_INT.fullmatch(t) for t in raw.split()):
                errors.bad("bad index", f"item index is not an integer in {raw[:40]!r}", path, lineno, fld)
                break
            values = [int(t) for t in raw.split()]
            unknown = [v for v in values if v not in item_of]
            if unknown or (fld == "item_id" and len(values) != 1):
                msg = (f"unknown item in a split file: index {unknown[0]} is not in the .item2index file"
                       if unknown else f"expected one target item, got {len(values)}")
                errors.bad("unknown item in a split file" if unknown else "bad index", msg, path, lineno, fld)
                break
            parsed.extend(values)
        else:
            rows.setdefault(u, []).append(_SplitRow(parsed[:-1], parsed[-1], lineno, split))
            continue
        bad_users.add(u)  # the user's sequence cannot be rebuilt without this row
    return n


def _identity_items(path: Path, errors: RowErrors) -> dict[int, str]:
    """Item indexes of an ``.item`` catalog whose ``item_id`` tokens are the indexes themselves."""
    out: dict[int, str] = {}
    for lineno, item in enumerate(_read_catalog(path, errors)["item_id"], start=2):
        if not _PLAIN_INT.fullmatch(item):
            raise DataError(f"without a .item2index file every item_id must be an integer index, got {item!r}",
                            path=str(path), line=lineno, field="item_id")
        out[int(item)] = item
    return out


def _read_presplit(folder: Path, files: dict[str, Path], errors: RowErrors, notes: list[str]) -> AtomicFrames:
    if ".item2index" not in files and ".user2index" not in files and ".item" in files:
        # LLMRank-style release (e.g. Amazon Games): the split files' indexes are the .item file's ids
        item_of = _identity_items(files[".item"], errors)
        user_of: dict[int, str] = {}
        notes.append(f"no .item2index/.user2index: item ids are the indexes of {files['.item'].name}, "
                     "user ids the indexes of the split files")
    else:
        for suffix in (".item2index", ".user2index"):
            if suffix not in files:
                raise DataError(f"pre-split atomic files need a {suffix} file (or, with neither index file, "
                                "an .item file whose item_id column holds the indexes)", path=str(folder))
        item_of = _read_index(files[".item2index"], errors, "item_id")
        user_of = _read_index(files[".user2index"], errors, "user_id")
    if ".inter" in files:
        notes.append(f"{files['.inter'].name} ignored: the train/valid/test files define the data")

    rows: dict[int, list[_SplitRow]] = {}
    bad_users: set[int] = set()
    path_of = {s: files.get(f".{s}.inter") for s in SPLITS}
    n_rows = 0
    for split in SPLITS:
        if path_of[split] is not None:
            n_rows += _read_split(path_of[split], split, errors, item_of, user_of, rows, bad_users)
    require_rows(len(rows), path_of["test"] or folder, errors)

    # The longest history seen is the truncation length; rows shorter than that must hold the
    # whole prefix before their target.
    cap = max(len(r.history) for rs in rows.values() for r in rs)
    users, items, times, labels, lines = [], [], [], [], []
    n_truncated = 0
    for u in sorted(rows):
        if u in bad_users:
            errors.skipped.add("rows of a user with a bad split row", n=len(rows[u]))
            continue
        seq = _rebuild_sequence(u, rows[u], cap, path_of, user_of, errors)
        if seq is None:
            continue
        n_truncated += len(seq) > cap + 1
        for pos, (item, label, line) in enumerate(seq):
            users.append(user_of.get(u, str(u)))
            items.append(item_of[item])
            times.append(float(pos))
            labels.append(label)
            lines.append(line)
    require_rows(len(users), path_of["test"] or folder, errors)
    inter = pd.DataFrame({"user_id": users, "item_id": items, "timestamp": times, "split": labels,
                          "line": lines})

    notes.append("pre-split atomic files hold no time: timestamp = position in the user's sequence")
    notes.append(f"rebuilt {len(inter)} interactions from {n_rows} split rows; histories are truncated "
                 f"to {cap} items, {n_truncated} users have longer sequences (rebuilt from the train rows)")
    unused_users = len(set(user_of) - set(rows))
    if unused_users:
        notes.append(f"{unused_users} users of the .user2index file have no split row")

    catalog = pd.DataFrame({"item_id": [item_of[i] for i in sorted(item_of)]})
    text_fields: list[str] = []
    cat_paths = [files[s] for s in (".item", ".text") if s in files]
    if cat_paths:
        text, text_fields = _read_catalogs(cat_paths, errors)
        assert text is not None
        extra = int((~text["item_id"].isin(catalog["item_id"])).sum())
        missing = int((~catalog["item_id"].isin(text["item_id"])).sum())
        catalog = catalog.merge(text, on="item_id", how="left", sort=False).fillna("")
        if extra:
            notes.append(f"{extra} items of the text file are not in the .item2index file: ignored")
        if missing:
            notes.append(f"{missing} items have no text (empty text fields)")
    return AtomicFrames(inter, catalog, text_fields, errors, notes)


def _rebuild_sequence(u: int, user_rows: list[_SplitRow], cap: int, path_of: dict[str, Path | None],
                      user_of: dict[int, str], errors: RowErrors) -> list[tuple[int, str, int]] | None:
    """The user's full sequence as ``(item, split, line)``, checking every row against it."""
    by_split = {s: [r for r in user_rows if r.split == s] for s in SPLITS}
    who = f"user {user_of.get(u, u)} (index {u})"
    for s in ("valid", "test"):
        if len(by_split[s]) > 1:
            errors.bad("inconsistent split rows", f"{who} has {len(by_split[s])} rows (one expected)",
                       path_of[s] or "", by_split[s][1].line, "user_id")
            _drop_rest(errors, user_rows)
            return None
    if not by_split["test"]:
        last = user_rows[-1]
        errors.bad("inconsistent split rows", f"{who} has no row in the test file",
                   path_of[last.split] or "", last.line, "user_id")
        _drop_rest(errors, user_rows)
        return None
    train = by_split["train"]
    # UniSRec writes a user's train rows longest history first; accept either direction.
    if len(train) > 1 and len(train[0].history) > len(train[-1].history):
        train = train[::-1]
    ordered = train + by_split["valid"] + by_split["test"]

    first = ordered[0]
    seq: list[tuple[int, str, int]] = [(i, "train", first.line) for i in first.history]
    for row in ordered:
        pos = len(seq)
        want = [i for i, _, _ in seq[max(0, pos - cap):]] if pos else []
        if row.history != want:
            # Say which rule broke: the valid row must extend the train rows, the test row the valid row.
            errors.bad("inconsistent split rows",
                       f"{who}: history is not the prefix built from the user's earlier rows (expected "
                       f"{len(want)} items ending {want[-3:]}, got {len(row.history)} items ending "
                       f"{row.history[-3:]})", path_of[row.split] or "", row.line, "item_id_list")
            _drop_rest(errors, user_rows)
            return None
        seq.append((row.target, row.split, row.line))
    return seq


def _drop_rest(errors: RowErrors, user_rows: list[_SplitRow]) -> None:
    """Skip mode: the user's other rows go too, since their sequence cannot be trusted."""
    if len(user_rows) > 1:
        errors.skipped.add("rows of a user with a bad split row", n=len(user_rows) - 1)
