"""ReChorus-style pre-split folders (e.g. the Amazon Office Products files of the ReChorus / LRD authors).

Layout of one folder:

* ``train.csv``, ``dev.csv``, ``test.csv``: tab-separated with a header naming at least
  ``user_id``, ``item_id`` and ``time`` (Unix seconds); ``dev``/``test`` may carry more columns
  (``neg_items``: sampled negatives, which full-ranking evaluation does not use). The file each
  row comes from becomes the ``split`` column (``dev`` -> "valid"), so ``make_split(ds, "auto")``
  keeps the published leave-one-out-by-time split.
* optional ``<Name>.item2index``: ``original_id <tab> integer index`` per line, no header. With
  it, item ids are the original ids (ASINs), in index order; without it, the integer indexes.
* optional ``<Name>.text``: header ``id <tab> text``, one item text per original id.

Bad rows follow the shared ``on_error`` policy (``DataError`` naming file, line and field).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from textrec.data.dataset import DataError, RecDataset
from textrec.data.loaders._validate import (
    RowErrors,
    apply_duplicates,
    finish,
    iter_lines,
    parse_index,
    parse_timestamp,
    require_id,
    require_rows,
    split_locator,
)

#: file name -> the ``split`` label its rows get
SPLIT_FILES = (("train.csv", "train"), ("dev.csv", "valid"), ("test.csv", "test"))
REQUIRED = ("user_id", "item_id", "time")
SEP = "\t"


def is_rechorus_folder(folder: str | Path) -> bool:
    """True when ``folder`` holds ReChorus's ``train.csv``, ``dev.csv`` and ``test.csv``."""
    folder = Path(folder)
    return folder.is_dir() and all((folder / f).is_file() for f, _ in SPLIT_FILES)


def load_rechorus(folder: str | Path, name: str | None = None, on_error: str = "raise",
                  duplicates: str = "keep") -> RecDataset:
    """Load a ReChorus folder (see the module docstring); ``name`` defaults to the folder name.

    The interactions keep the files' own split in the ``split`` column; items carry one text
    field ``text`` (empty when the folder has no ``.text`` file or an item has no line in it).
    """
    folder = Path(folder)
    if not is_rechorus_folder(folder):
        raise DataError("not a ReChorus folder: expected train.csv, dev.csv and test.csv", path=str(folder))
    errors = RowErrors(on_error)
    notes: list[str] = []
    index_to_id = _read_item2index(folder, errors)
    frames = [_read_split_file(folder / fname, label, errors, index_to_id) for fname, label in SPLIT_FILES]
    inter = pd.concat(frames, ignore_index=True)
    require_rows(len(inter), folder, errors)
    inter = apply_duplicates(inter, duplicates, folder, errors, notes)

    text_fields = ["text"]
    texts = _read_text(folder, errors, notes)
    if index_to_id is not None:
        ids = [index_to_id[k] for k in sorted(index_to_id)]
    else:
        ids = list(pd.unique(inter["item_id"]))
    items = pd.DataFrame({"item_id": ids, "text": [texts.get(i, "") for i in ids]})
    n_missing = int((items["text"] == "").sum())
    if texts and n_missing:
        notes.append(f"{n_missing} items have no text")
    if not texts:
        notes.append("no <Name>.text file: items have an empty 'text' field")
    ds = RecDataset.from_frames(name or folder.name, inter.drop(columns=["line"]), items=items,
                                text_fields=text_fields, source=str(folder), skipped=errors.skipped)
    return finish(ds, notes)


def _one_file(folder: Path, suffix: str) -> Path | None:
    """The single ``*<suffix>`` file of ``folder`` (the one named after the folder if several)."""
    found = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(suffix) and len(p.name) > len(suffix))
    if len(found) > 1:
        named = [p for p in found if p.name[: -len(suffix)].lower() == folder.name.lower()]
        if len(named) != 1:
            raise DataError(f"several {suffix} files ({', '.join(p.name for p in found)}); keep one",
                            path=str(folder))
        found = named
    return found[0] if found else None


def _read_item2index(folder: Path, errors: RowErrors) -> dict[int, str] | None:
    """``index -> original id`` from ``<Name>.item2index``, or ``None`` without that file."""
    path = _one_file(folder, ".item2index")
    if path is None:
        return None
    out: dict[int, str] = {}
    seen: dict[str, int] = {}
    for lineno, text in iter_lines(path, errors, locate=split_locator(["original_id", "index"], SEP)):
        parts = text.split(SEP)
        if len(parts) != 2:
            errors.bad("wrong column count", f"expected 2 tab-separated columns, found {len(parts)}", path, lineno)
            continue
        item = require_id(parts[0], "original_id", path, lineno, errors)
        index = None if item is None else parse_index(parts[1], "index", path, lineno, errors)
        if index is None:
            continue
        if index in out or item in seen:
            errors.bad("duplicate item", f"item {item!r} / index {index} already mapped on line "
                       f"{seen.get(item, '?')}", path, lineno, "index")
            continue
        out[index], seen[item] = item, lineno
    if not out:
        raise DataError("no items", path=str(path))
    return out


def _read_split_file(path: Path, label: str, errors: RowErrors, index_to_id: dict[int, str] | None
                     ) -> pd.DataFrame:
    """One of train/dev/test.csv as ``user_id, item_id, timestamp, split, line``."""
    rows: dict[str, list] = {"user_id": [], "item_id": [], "timestamp": [], "line": []}
    columns: list[str] | None = None
    for lineno, text in iter_lines(path, errors):
        parts = text.split(SEP)
        if columns is None:
            columns = [c.strip() for c in parts]
            missing = [c for c in REQUIRED if c not in columns]
            if missing:
                raise DataError(f"header lacks column(s) {', '.join(missing)} (found {', '.join(columns)})",
                                path=str(path), line=lineno, field=missing[0])
            pos = [columns.index(c) for c in REQUIRED]
            continue
        if len(parts) < len(columns):
            errors.bad("wrong column count", f"expected {len(columns)} tab-separated columns, found {len(parts)}",
                       path, lineno)
            continue
        user = require_id(parts[pos[0]], "user_id", path, lineno, errors)
        item = None if user is None else require_id(parts[pos[1]], "item_id", path, lineno, errors)
        if item is not None and index_to_id is not None:
            index = parse_index(item, "item_id", path, lineno, errors, what="item index")
            item = None if index is None else index_to_id.get(index)
            if index is not None and item is None:
                errors.bad("unknown item", f"item index {index} is not in the .item2index file", path, lineno,
                           "item_id")
        ts = None if item is None else parse_timestamp(parts[pos[2]], "time", path, lineno, errors)
        if ts is None:
            continue
        for key, value in (("user_id", user), ("item_id", item), ("timestamp", ts), ("line", lineno)):
            rows[key].append(value)
    if columns is None:
        raise DataError("empty file (no header)", path=str(path))
    frame = pd.DataFrame(rows)
    frame["split"] = label
    return frame


def _read_text(folder: Path, errors: RowErrors, notes: list[str]) -> dict[str, str]:
    """``original id -> text`` from ``<Name>.text`` (header ``id <tab> text``); empty without the file."""
    path = _one_file(folder, ".text")
    if path is None:
        return {}
    out: dict[str, str] = {}
    n_dup = 0
    header = True
    for lineno, text in iter_lines(path, errors, locate=split_locator(["id", "text"], SEP)):
        if header:
            header = False
            if text.split(SEP)[0].strip() != "id":
                raise DataError("expected the header 'id<TAB>text'", path=str(path), line=lineno, field="id")
            continue
        item_text = text.split(SEP, 1)
        item = require_id(item_text[0], "id", path, lineno, errors)
        if item is None:
            continue
        if item in out:
            n_dup += 1
            continue
        out[item] = item_text[1].strip() if len(item_text) > 1 else ""
    if n_dup:
        notes.append(f"{n_dup} repeated ids in {path.name}: the first text of each was used")
    return out
