"""P5 / OpenP5 sequential data: ``sequential_data.txt`` + ``datamaps.json``.

``sequential_data.txt`` holds ``user item item ...`` per line, items in time order, as the
integer ids of ``datamaps.json`` (``id2user`` / ``id2item`` give the reviewerIDs and ASINs kept
as original ids). There is no time and no item text in these files: ``timestamp`` is the
position in the user's sequence and the items table has no text field.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from textrec.data.dataset import DataError, RecDataset
from textrec.data.loaders._validate import (
    MAX_JSON_DEPTH,
    RowErrors,
    finish,
    iter_lines,
    require_id,
    require_rows,
)


def load_p5_sequential(folder: str | Path, name: str | None = None, on_error: str = "raise") -> RecDataset:
    """Load a P5 sequential folder (e.g. the Beauty 5-core); ``name`` defaults to the folder name.

    The item catalog is listed in ``datamaps.json`` id order, so the dense item index is the P5
    item id minus one.
    """
    folder = Path(folder)
    if folder.is_file():
        folder = folder.parent
    errors = RowErrors(on_error)
    id2user, id2item = _read_datamaps(folder / "datamaps.json", errors)
    path = folder / "sequential_data.txt"
    users, items, times = [], [], []
    seen: dict[str, int] = {}
    for lineno, text in iter_lines(path, errors):
        tokens = text.split()
        if tokens[0] not in id2user:
            errors.bad("unknown user", f"user id {tokens[0][:40]!r} is not in datamaps.json id2user", path,
                       lineno, "user_id")
            continue
        seq = tokens[1:]
        if not seq:
            errors.bad("missing required field", "the user has no items", path, lineno, "item_id")
            continue
        unknown = [t for t in seq if t not in id2item]
        if unknown:
            errors.bad("unknown item", f"item id {unknown[0][:40]!r} is not in datamaps.json id2item", path,
                       lineno, "item_id")
            continue
        user = id2user[tokens[0]]
        if user in seen:
            # Two lines for one user would give two position-0 events; refuse rather than guess.
            errors.bad("user on two lines", f"user {tokens[0]} already on line {seen[user]}", path, lineno,
                       "user_id")
            continue
        seen[user] = lineno
        users.extend([user] * len(seq))
        items.extend(id2item[t] for t in seq)
        times.extend(float(p) for p in range(len(seq)))  # no time in the file: position in the sequence
    require_rows(len(users), path, errors)
    inter = pd.DataFrame({"user_id": users, "item_id": items, "timestamp": times})

    def id_order(k: str) -> tuple[int, str]:
        return (int(k), k) if k.isascii() and k.isdigit() else (1 << 62, k)

    catalog = pd.DataFrame({"item_id": [id2item[k] for k in sorted(id2item, key=id_order)]})
    ds = RecDataset.from_frames(name or folder.name, inter, items=catalog, text_fields=[], source=str(folder),
                                skipped=errors.skipped)
    used = inter["item_id"].nunique()
    notes = [
        "no time in sequential_data.txt: timestamp = position in the user's sequence",
        "no item text (datamaps.json has ids only): item_text() falls back to the item ids",
        "P5 item ids follow the order of first appearance in the sequences ('sequential indexing'), "
        "which leaks the answer to ID-generating models: re-index items before training one",
    ]
    if used < len(catalog):
        notes.append(f"{len(catalog) - used} items of datamaps.json never occur in the sequences")
    return finish(ds, notes)


def _read_datamaps(path: Path, errors: RowErrors) -> tuple[dict[str, str], dict[str, str]]:
    """``id2user`` and ``id2item`` (P5 id -> original id), built from the inverse maps if needed.

    Each entry is checked like any id (no control characters, not a list or object); a bad
    entry is a bad row (skipped and counted in skip mode: sequences using it then fail as
    unknown ids).
    """
    if not path.is_file():
        raise DataError("file not found", path=str(path))
    try:
        maps = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(f"not valid UTF-8 (byte {exc.start})", path=str(path)) from exc
    except RecursionError as exc:
        raise DataError(f"malformed JSON (nested deeper than {MAX_JSON_DEPTH} levels)", path=str(path)) from exc
    except ValueError as exc:
        raise DataError(f"malformed JSON ({exc})", path=str(path),
                        line=getattr(exc, "lineno", None)) from exc
    if not isinstance(maps, dict):
        raise DataError("expected a JSON object", path=str(path))
    out = []
    for fwd, inv in (("id2user", "user2id"), ("id2item", "item2id")):
        if isinstance(maps.get(fwd), dict):
            pairs, field = list(maps[fwd].items()), fwd
        elif isinstance(maps.get(inv), dict):
            pairs, field = [(v, k) for k, v in maps[inv].items()], inv
        else:
            raise DataError(f"missing required field '{fwd}' (or '{inv}')", path=str(path), field=fwd)
        entries: dict[str, str] = {}
        for k, v in pairs:
            key = require_id(k, field, path, None, errors)
            value = None if key is None else require_id(v, field, path, None, errors)
            if value is not None:
                entries[key] = value
        out.append(entries)
    return out[0], out[1]
