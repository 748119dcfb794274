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

Plausibility (a value that parses but cannot be right is a bad row, never a silent load):

* numbers are plain ASCII decimals (``1_000`` and full-width digits are refused, though Python's
  ``float`` takes them); ratings must lie in the loader's ``rating_range`` (configurable);
* timestamps are not negative and not after :func:`max_timestamp` (one year from now), which
  also catches milliseconds read as seconds;
* ids are strings or integers without control, format or bidi characters (NUL, ESC, U+202E...),
  at most ``MAX_ID_CHARS`` long, never a JSON list or object;
* JSON lines may not nest deeper than ``MAX_JSON_DEPTH`` nor hold lone surrogates (``"\\ud800"``),
  and no line may be longer than ``MAX_LINE_BYTES``.
"""

from __future__ import annotations

import ast
import gzip
import json
import logging
import math
import re
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from textrec.data.dataset import DataError, RecDataset, SkipReport
from textrec.text.sanitize import find_control

logger = logging.getLogger("textrec.data")

ON_ERROR = ("raise", "skip")
DUPLICATES = ("keep", "drop", "error")
EXAMPLE_CHARS = 200
MAX_ID_CHARS = 256
MAX_JSON_DEPTH = 32  # the Amazon files nest 3 deep; Python's own limit (~1,000) would crash instead
MAX_LINE_BYTES = 32 << 20
FUTURE_SLACK_S = 366 * 86400
# Plain ASCII decimals only: float() would also take "1_000", "\uff11\uff12" and " nan ".
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_INTEGER = re.compile(r"[+-]?\d+", re.ASCII)
_SURROGATE_ESCAPE = re.compile(r"\\[uU]0{0,4}[dD][89a-fA-F]")


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
            for lineno, raw in enumerate(iter(lambda: fh.readline(MAX_LINE_BYTES + 1), b""), 1):
                if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                    while (rest := fh.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                        pass  # drop the rest of the over-long line without holding it
                    errors.bad("line too long", f"line longer than {MAX_LINE_BYTES >> 20} MiB", path, lineno)
                    continue
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
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict):
        return None
    for key, value in obj.items():
        if _has_surrogate(key) or _has_surrogate(value):
            return str(key)
    return None


def _has_surrogate(value: Any, low: str = "\udc80", high: str = "\udcff") -> bool:
    # surrogateescape turns each undecodable byte into a lone surrogate U+DC80..U+DCFF
    return any(isinstance(s, str) and any(low <= ch <= high for ch in s) for s in _strings(value))


def _strings(value: Any) -> Iterator[Any]:
    """Every key and leaf of a parsed JSON value, iteratively (no recursion limit to hit)."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
        else:
            yield v


def json_depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0), computed iteratively."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list, tuple)):
            deepest = max(deepest, d + 1)
            if deepest > MAX_JSON_DEPTH:
                return deepest
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return deepest


def _surrogate_field(obj: dict[str, Any]) -> str | None:
    """The first key of ``obj`` whose key or value holds a lone surrogate (from a ``\\udXXX`` escape)."""
    for key, value in obj.items():
        if _has_surrogate(key, "\ud800", "\udfff") or _has_surrogate(value, "\ud800", "\udfff"):
            return str(key)
    return None


def parse_json_line(text: str, path: Path, line: int, errors: RowErrors,
                    allow_python_literal: bool = False) -> dict[str, Any] | None:
    """One JSON object from a line, or ``None`` after reporting a malformed one.

    ``allow_python_literal``: the 2014 Amazon metadata files are Python dict reprs (single
    quotes), so they are read with ``ast.literal_eval`` (safe: literals only) when JSON fails.
    """
    try:
        obj = json.loads(text)
    except RecursionError:
        errors.bad("malformed JSON line", f"JSON nested deeper than {MAX_JSON_DEPTH} levels", path, line)
        return None
    except ValueError as exc:
        obj = None
        if allow_python_literal:
            try:
                obj = ast.literal_eval(text)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                obj = None
        if obj is None:
            errors.bad("malformed JSON line", f"malformed JSON ({exc.msg} at column {exc.colno})", path, line)
            return None
    if not isinstance(obj, dict):
        errors.bad("malformed JSON line", f"expected a JSON object, got {type(obj).__name__}", path, line)
        return None
    # Cheap text tests first: almost every line has few brackets and no surrogate escape.
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and json_depth(obj) > MAX_JSON_DEPTH:
        errors.bad("malformed JSON line", f"JSON nested deeper than {MAX_JSON_DEPTH} levels", path, line)
        return None
    if _SURROGATE_ESCAPE.search(text) or (allow_python_literal and "\\U" in text):
        bad = _surrogate_field(obj)
        if bad is not None:
            errors.bad("lone surrogate", "a \\uD800-\\uDFFF escape that is not half of a pair (not valid "
                       "Unicode text)", path, line, bad)
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


def require_id(value: Any, field: str, path: Path, line: int | None, errors: RowErrors) -> str | None:
    """A valid id as a string, or ``None`` after reporting a missing or implausible one.

    Ids are strings or integers (a float that is a whole number counts as one: parquet and
    pandas store integer ids as floats when a value is missing); never booleans, JSON lists or
    objects; at most ``MAX_ID_CHARS`` characters; free of control, format and bidi characters.
    """
    if isinstance(value, (list, tuple, dict, set, np.ndarray)):
        errors.bad("bad id", f"'{field}' is a {'JSON object' if isinstance(value, dict) else 'JSON list'}, "
                   "not a string or number", path, line, field)
        return None
    if _is_missing(value):
        errors.bad("missing required field", f"missing required field '{field}'", path, line, field)
        return None
    if isinstance(value, (bool, np.bool_, bytes)):
        errors.bad("bad id", f"'{field}' is {type(value).__name__} {value!r}, not a string or number", path,
                   line, field)
        return None
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value) or not float(value).is_integer():
            errors.bad("bad id", f"'{field}' is the number {value!r}, not an id", path, line, field)
            return None
        value = int(value)
    text = str(value).strip()
    if len(text) > MAX_ID_CHARS:
        errors.bad("bad id", f"id longer than {MAX_ID_CHARS} characters ({len(text)})", path, line, field)
        return None
    bad = find_control(text)
    if bad is not None:
        errors.bad("bad id", f"id contains the control/format character U+{ord(bad):04X}", path, line, field)
        return None
    if len(text) > 1 and (text[0], text[-1]) in (("[", "]"), ("{", "}")):
        # a list or dict column written out as text (pandas, json.dumps), not one id
        errors.bad("bad id", f"'{field}' looks like a serialized list or object: {text[:40]!r}", path, line, field)
        return None
    return text


def parse_index(value: str, field: str, path: Path, line: int, errors: RowErrors, what: str = "index"
                ) -> int | None:
    """A plain ASCII integer (no ``1_000``, no full-width digits), or ``None`` after reporting it."""
    text = value.strip()
    if not _INTEGER.fullmatch(text):
        errors.bad("bad index", f"{what} is not an integer: {text[:40]!r}", path, line, field)
        return None
    return int(text)


def strict_number(value: Any) -> float:
    """A finite float from a number or a plain ASCII decimal string; ``ValueError`` otherwise."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"not a number: {value!r}")
    if isinstance(value, str):
        text = value.strip()
        if not _NUMBER.fullmatch(text):
            raise ValueError(f"not a plain decimal number: {text[:40]!r}")
        value = text
    elif not isinstance(value, (int, float, np.integer, np.floating, Decimal)):  # Decimal: parquet decimals
        raise ValueError(f"not a number: {str(value)[:40]!r}")
    try:
        out = float(value)
    except OverflowError:  # an int beyond float range
        raise ValueError(f"number out of range: {str(value)[:40]}") from None
    if not math.isfinite(out):
        raise ValueError(f"not a finite number: {str(value)[:40]!r}")
    return out


def max_timestamp() -> float:
    """The latest plausible timestamp: one year from now (later ones are corrupt or in ms)."""
    return time.time() + FUTURE_SLACK_S


def to_seconds(value: Any, scale: float = 1.0) -> float:
    """Seconds since the epoch from a number (times ``scale``), a numeric string, an ISO date or a datetime.

    Naive dates are taken as UTC so the result does not depend on the machine's time zone.
    ``scale`` converts numbers only (``1e-3`` for milliseconds); dates are already seconds.
    Raises ``ValueError`` with a short reason when the value is not a valid, non-negative time.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a timestamp: {value!r}")
    if isinstance(value, (pd.Timestamp, datetime)):
        dt = value.to_pydatetime() if isinstance(value, pd.Timestamp) else value
        secs = (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()
    elif isinstance(value, date):
        secs = datetime(value.year, value.month, value.day, tzinfo=timezone.utc).timestamp()
    elif isinstance(value, (int, float, np.integer, np.floating, Decimal)):
        secs = strict_number(value) * scale
    elif isinstance(value, str):
        text = value.strip()
        if _NUMBER.fullmatch(text):
            secs = strict_number(text) * scale
        else:
            try:
                if not text.isascii():  # fromisoformat would read full-width digits
                    raise ValueError
                dt = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
            except ValueError:
                raise ValueError(f"not a number or an ISO date: {text[:40]!r}") from None
            secs = (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()
    else:
        raise ValueError(f"not a number or an ISO date: {str(value)[:40]!r}")
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
        secs = to_seconds(value, scale)
    except (ValueError, OverflowError) as exc:
        errors.bad("bad timestamp", str(exc), path, line, field)
        return None
    if secs > max_timestamp():
        when = "year > 9999" if secs >= 253402300800 else datetime.fromtimestamp(secs, timezone.utc).date()
        hint = " (milliseconds read as seconds?)" if secs / 1000 <= max_timestamp() else ""
        errors.bad("bad timestamp", f"timestamp {str(value)[:40]} is in the future ({when}){hint}", path, line,
                   field)
        return None
    return secs


def parse_float(value: Any, field: str, path: Path, line: int, errors: RowErrors,
                reason: str = "bad rating", valid_range: tuple[float, float] | None = None) -> float | None:
    """A finite float in ``valid_range`` (e.g. a rating), or ``None`` after reporting the bad value."""
    if _is_missing(value):
        errors.bad("missing required field", f"missing required field '{field}'", path, line, field)
        return None
    try:
        out = strict_number(value)
    except ValueError as exc:
        errors.bad(reason, f"not a finite number: {str(value)[:40]!r} ({exc})", path, line, field)
        return None
    if valid_range is not None and not valid_range[0] <= out <= valid_range[1]:
        errors.bad(reason, f"{out:g} is outside the scale {valid_range[0]:g}..{valid_range[1]:g} (pass "
                   "rating_range=(low, high), or None to accept any finite number)", path, line, field)
        return None
    return out


def check_rating_range(valid_range: tuple[float, float] | None) -> tuple[float, float] | None:
    """Validate a ``rating_range`` argument: ``None`` or ``(low, high)`` with finite low <= high."""
    if valid_range is None:
        return None
    try:
        low, high = (float(v) for v in valid_range)
    except (TypeError, ValueError):
        raise ValueError(f"rating_range must be (low, high) or None, got {valid_range!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise ValueError(f"rating_range must be finite with low <= high, got {valid_range!r}")
    return low, high


def text_value(value: Any) -> str:
    """Free text as one string: lists (Amazon descriptions, categories) are flattened and joined."""
    if _is_missing(value):
        return ""
    if isinstance(value, (list, tuple)):
        # dict.fromkeys: nested category paths repeat their roots; keep each leaf once, in order
        return ", ".join(dict.fromkeys(t for t in _leaves(value) if t))
    return str(value).strip()


def _leaves(value: Any) -> Iterator[str]:
    """Leaves of nested lists in order, iteratively (depth is bounded by the JSON check anyway)."""
    stack = [iter([value])]
    while stack:
        v = next(stack[-1], _END)
        if v is _END:
            stack.pop()
        elif isinstance(v, (list, tuple)):
            stack.append(iter(v))
        elif not _is_missing(v):
            yield str(v).strip()


_END = object()


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
