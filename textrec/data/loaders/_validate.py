"""Validation helpers shared by every loader, so each bad-input rule lives in one place.

Policies (the same for all loaders):

* ``on_error="raise"`` (default): the first bad row raises :class:`DataError` naming the file,
  the 1-based line and the field.
* ``on_error="skip"``: the bad row is dropped and counted, by reason, in the dataset's
  :class:`SkipReport`; the loader logs the summary (a WARNING, shown even without logging setup).
* ``duplicates``: exact duplicate events (same user, item and timestamp) are ``"keep"``-ed by
  default (counted in ``dataset.notes``), ``"drop"``-ped (counted in the SkipReport) or an
  ``"error"``.
* Blank lines carry no data and are ignored; an input with no usable row is always an error
  ("no interactions"), whatever ``on_error`` says, because there is nothing to return.
"""

from __future__ import annotations

import ast
import gzip
import json
import logging
import math
import zlib
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime, timezone
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from textrec.data.dataset import DataError, RecDataset, SkipReport

logger = logging.getLogger("textrec.data")

ON_ERROR = ("raise", "skip")
DUPLICATES = ("keep", "drop", "error")
EXAMPLE_CHARS = 200


def check_choice(value: str, allowed: Sequence[str], what: str) -> str:
    """Return ``value`` if it is one of ``allowed``, else raise ``ValueError`` listing them."""
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


class RowErrors:
    """Applies the ``on_error`` policy; every loader reports bad rows through one of these."""

    def __init__(self, on_error: str = "raise", skipped: SkipReport | None = None):
        self.on_error = check_choice(on_error, ON_ERROR, "on_error")
        self.skipped = skipped if skipped is not None else SkipReport()

    @property
    def raising(self) -> bool:
        return self.on_error == "raise"

    def bad(self, reason: str, message: str, path: str | Path, line: int | None = None,
            field: str | None = None) -> None:
        """Raise (``raise`` mode) or count the bad row under ``reason`` (``skip`` mode)."""
        if self.raising:
            raise DataError(message, path=str(path), line=line, field=field)
        where = Path(path).name + (f":{line}" if line is not None else "")
        where += f" [{field}]" if field else ""
        self.skipped.add(reason, example=f"{where}: {message}"[:EXAMPLE_CHARS])


# ---- reading -------------------------------------------------------------------------------
def open_binary(path: Path) -> IO[bytes]:
    """Open a plain or gzip file for binary reading (gzip is recognised by its magic bytes)."""
    with open(path, "rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def iter_lines(path: str | Path, errors: RowErrors, encoding: str = "utf-8",
               locate: Callable[[bytes], str | None] | None = None) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for each non-blank line, decoding line by line.

    Decoding per line (instead of the whole file) is what lets a non-UTF-8 byte be reported
    with its line and, in skip mode, drop only that line. ``locate`` maps the raw bytes of an
    undecodable line to the field holding the bad bytes, when the format allows it.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path=str(path))
    lineno = 0
    try:
        with open_binary(path) as fh:
            for lineno, raw in enumerate(fh, 1):
                try:
                    text = raw.decode(encoding)
                except UnicodeDecodeError as exc:
                    field = locate(raw) if locate else None
                    errors.bad("non-UTF-8 line" if encoding == "utf-8" else f"non-{encoding} line",
                               f"bytes are not valid {encoding} (byte {exc.start} of the line: "
                               f"{raw[exc.start:exc.start + 4]!r})", path, lineno, field)
                    continue
                if lineno == 1:
                    text = text.lstrip("\ufeff")  # a UTF-8 byte-order mark is not data
                text = text.rstrip("\r\n")
                if text.strip():
                    yield lineno, text
    except (OSError, EOFError, zlib.error) as exc:  # truncated/corrupt gzip: say where it broke
        raise DataError(f"cannot read the file ({exc})", path=str(path), line=lineno + 1) from exc


def split_locator(columns: Sequence[str], sep: str, encoding: str = "utf-8") -> Callable[[bytes], str | None]:
    """A ``locate`` function for delimited lines: the name of the first undecodable column."""
    bsep = sep.encode()

    def locate(raw: bytes) -> str | None:
        for name, part in zip(columns, raw.rstrip(b"\r\n").split(bsep)):
            try:
                part.decode(encoding)
            except UnicodeDecodeError:
                return name
        return None

    return locate


def json_locator(raw: bytes) -> str | None:
    """A ``locate`` function for JSON lines: the first key whose value holds undecodable bytes."""
    try:
        obj = json.loads(raw.decode("utf-8", errors="surrogateescape"))
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    for key, value in obj.items():
        if _has_surrogate(key) or _has_surrogate(value):
            return str(key)
    return None


def _has_surrogate(value: Any) -> bool:
    # surrogateescape turns each undecodable byte into a lone surrogate U+DC80..U+DCFF
    if isinstance(value, str):
        return any("\udc80" <= ch <= "\udcff" for ch in value)
    if isinstance(value, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogate(v) for v in value)
    return False


def parse_json_line(text: str, path: Path, line: int, errors: RowErrors,
                    allow_python_literal: bool = False) -> dict[str, Any] | None:
    """One JSON object from a line, or ``None`` after reporting a malformed one.

    ``allow_python_literal``: the 2014 Amazon metadata files are Python dict reprs (single
    quotes), so they are read with ``ast.literal_eval`` (safe: literals only) when JSON fails.
    """
    try:
        obj = json.loads(text)
    except ValueError as exc:
        obj = None
        if allow_python_literal:
            try:
                obj = ast.literal_eval(text)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                obj = None
        if obj is None:
            errors.bad("malformed JSON line", f"malformed JSON ({exc.msg} at column {exc.colno})", path, line)
            return None
    if not isinstance(obj, dict):
        errors.bad("malformed JSON line", f"expected a JSON object, got {type(obj).__name__}", path, line)
        return None
    return obj


def parse_atomic_header(text: str) -> list[tuple[str, str]]:
    """``name:type`` columns of a RecBole atomic header; a column without a suffix is a token."""
    cols = []
    for part in text.split("\t"):
        name, _, kind = part.strip().partition(":")
        cols.append((name, kind or "token"))
    return cols


# ---- values --------------------------------------------------------------------------------
def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if isinstance(value, str) and not value.strip():
        return True
    return value is pd.NaT or value is pd.NA


def require_id(value: Any, field: str, path: Path, line: int, errors: RowErrors) -> str | None:
    """A non-empty id as a string, or ``None`` after reporting a missing field."""
    if _is_missing(value):
        errors.bad("missing required field", f"missing required field '{field}'", path, line, field)
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # parquet/pandas turns integer ids into floats when NaN is present
    return str(value).strip()


def to_seconds(value: Any) -> float:
    """Seconds since the epoch from a number, a numeric string, an ISO date or a datetime.

    Naive dates are taken as UTC so the result does not depend on the machine's time zone.
    Raises ``ValueError`` with a short reason when the value is not a valid, non-negative time.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a timestamp: {value!r}")
    if isinstance(value, (pd.Timestamp, datetime)):
        dt = value.to_pydatetime() if isinstance(value, pd.Timestamp) else value
        secs = (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()
    elif isinstance(value, date):
        secs = datetime(value.year, value.month, value.day, tzinfo=timezone.utc).timestamp()
    elif isinstance(value, (int, float, np.integer, np.floating)):
        secs = float(value)
    else:
        text = str(value).strip()
        try:
            secs = float(text)
        except ValueError:
            try:
                dt = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
            except ValueError:
                raise ValueError(f"not a number or an ISO date: {text[:40]!r}") from None
            secs = (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()
    if not math.isfinite(secs):
        raise ValueError(f"not a finite number: {value!r}")
    if secs < 0:
        raise ValueError(f"negative timestamp: {value!r}")
    return secs


def parse_timestamp(value: Any, field: str, path: Path, line: int, errors: RowErrors,
                    scale: float = 1.0) -> float | None:
    """A timestamp in seconds (``value * scale``), or ``None`` after reporting the bad value."""
    if _is_missing(value):
        errors.bad("missing required field", f"missing required field '{field}'", path, line, field)
        return None
    try:
        return to_seconds(value) * scale
    except ValueError as exc:
        errors.bad("bad timestamp", str(exc), path, line, field)
        return None


def parse_float(value: Any, field: str, path: Path, line: int, errors: RowErrors,
                reason: str = "bad rating") -> float | None:
    """A finite float (e.g. a rating), or ``None`` after reporting the bad value."""
    if _is_missing(value):
        errors.bad("missing required field", f"missing required field '{field}'", path, line, field)
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        out = float(value)
        if not math.isfinite(out):
            raise ValueError
    except (TypeError, ValueError):
        errors.bad(reason, f"not a finite number: {str(value)[:40]!r}", path, line, field)
        return None
    return out


def text_value(value: Any) -> str:
    """Free text as one string: lists (Amazon descriptions, categories) are flattened and joined."""
    if _is_missing(value):
        return ""
    if isinstance(value, (list, tuple)):
        # dict.fromkeys: nested category paths repeat their roots; keep each leaf once, in order
        return ", ".join(dict.fromkeys(t for t in _leaves(value) if t))
    return str(value).strip()


def _leaves(value: Any) -> Iterator[str]:
    if isinstance(value, (list, tuple)):
        for v in value:
            yield from _leaves(v)
    elif not _is_missing(value):
        yield str(value).strip()


# ---- whole tables --------------------------------------------------------------------------
def require_rows(n_rows: int, path: str | Path, errors: RowErrors) -> None:
    """Raise "no interactions" when nothing usable was read (always, even in skip mode)."""
    if n_rows == 0:
        extra = f" ({errors.skipped.summary()})" if errors.skipped else ""
        raise DataError(f"no interactions{extra}", path=str(path))


def apply_duplicates(frame: pd.DataFrame, policy: str, path: str | Path, errors: RowErrors,
                     notes: list[str]) -> pd.DataFrame:
    """Handle exact duplicate events (same user, item and timestamp) under ``policy``.

    ``frame`` has ``user_id``, ``item_id``, ``timestamp`` and ``line`` (1-based source line);
    rows removed here are also removed from any table aligned with ``frame`` by the caller.
    """
    check_choice(policy, DUPLICATES, "duplicates")
    dup = frame.duplicated(["user_id", "item_id", "timestamp"], keep="first").to_numpy()
    n = int(dup.sum())
    if not n:
        return frame
    first = frame.loc[dup].iloc[0]
    example = (f"{Path(path).name}:{int(first['line'])}: user {first['user_id']}, item "
               f"{first['item_id']}, timestamp {first['timestamp']:.15g}")
    if policy == "error":
        same = frame.loc[(frame["user_id"] == first["user_id"]) & (frame["item_id"] == first["item_id"])
                         & (frame["timestamp"] == first["timestamp"]), "line"]
        raise DataError(f"duplicate event (user {first['user_id']}, item {first['item_id']}, timestamp "
                        f"{first['timestamp']:.15g}) already on line {int(same.iloc[0])}; pass "
                        "duplicates='keep' or 'drop'", path=str(path), line=int(first["line"]),
                        field="item_id")
    if policy == "drop":
        errors.skipped.add("duplicate event", example=example, n=n)
        return frame.loc[~dup]
    notes.append(f"{n} exact duplicate events (same user, item, timestamp) kept, e.g. {example}; "
                 "pass duplicates='drop' to remove them")
    return frame


def finish(dataset: RecDataset, notes: Sequence[str] = ()) -> RecDataset:
    """Attach notes and log the skip summary: every loader ends here, so nothing is silent."""
    dataset.notes.extend(notes)
    if dataset.skipped:
        logger.warning("%s: %s", dataset.source or dataset.name, dataset.skipped.summary())
    for note in dataset.notes:
        logger.info("%s: %s", dataset.name, note)
    logger.info("loaded %r", dataset)
    return dataset
