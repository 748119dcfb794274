"""Valid input files for every loader, hostile values and file mutators, shared by the fuzz tests
(``tests/test_fuzz_loaders.py``) and the fuzz measurement script (``textrec bench fuzz``).

A :class:`Target` is one loader plus a small valid file set. A mutation either corrupts bytes
(flip, insert, delete, truncate, duplicate a line, splice a hostile fragment anywhere) or puts a
hostile value into one field of one row. When that field is one the loader must validate (an
id, a rating, a timestamp) and the value is implausible there, the mutation is marked
``must_reject``: loading it without a ``DataError`` is a silent acceptance.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from textrec.data.loaders import (
    load_amazon_reviews,
    load_atomic,
    load_movielens_100k,
    load_p5_sequential,
    load_table,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures"
DEEP = 50_000  # nesting depth of the "deeply nested JSON" value (Python's recursion limit is 1,000)
HUGE = 300_000  # characters of the "huge field" value (csv's default field limit is 131,072)


@dataclass(frozen=True)
class Hostile:
    """A hostile value: its JSON spelling, its spelling in a delimited file, and where it is implausible."""

    name: str
    json: str
    text: str
    bad_id: bool  # implausible as a user/item id
    bad_number: bool = True  # implausible as a rating or timestamp
    bad_id_text: bool | None = None  # implausible as an id spelled in a text file (default: bad_id)
    ok_as_ms: bool = False  # plausible in a milliseconds field (253402300799 ms is 1978)


HOSTILE: list[Hostile] = [
    Hostile("negative", "-7", "-7", False),
    Hostile("1e308", "1e308", "1e308", False),
    Hostile("overflow", "1e400", "1e400", False),
    Hostile("big int", "1" + "0" * 400, "1" + "0" * 400, False),
    Hostile("underscore digits", '"1_000"', "1_000", False),
    Hostile("full-width digits", '"\uff11\uff12\uff13"', "\uff11\uff12\uff13", False),
    Hostile("full-width one", '"\uff11"', "\uff11", False),
    Hostile("year 9999 (s)", "253402300799", "253402300799", False, ok_as_ms=True),
    Hostile("year 9999 (ms)", "253402300799000", "253402300799000", False),
    Hostile("year 9999 (date)", '"9999-12-31"', "9999-12-31", False),
    Hostile("nan", "NaN", "nan", False),
    Hostile("infinity", "Infinity", "inf", False),
    Hostile("bool", "true", "true", True, bad_id_text=False),  # "true" is a possible user name in a CSV
    Hostile("lone surrogate", '"\\ud800"', "a\udc80b", True),
    Hostile("NUL", '"a\\u0000b"', "a\x00b", True),
    Hostile("ESC", '"\\u001b[2J"', "\x1b[2J", True),
    Hostile("bidi override", '"ab\\u202ecd"', "ab\u202ecd", True),
    Hostile("JSON list", '["x"]', '["x"]', True),
    Hostile("JSON object", '{"a": 1}', '{"a": 1}', True),
    Hostile("deep nesting", "[" * DEEP + "]" * DEEP, "[" * DEEP + "]" * DEEP, True),
    Hostile("huge", '"' + "a" * HUGE + '"', "a" * HUGE, True),
]
FRAGMENTS = [b"\x00", b"\xff\xfe", b'"', b"\r", b"\n", b"\t", b",", b"|", b"{", b"[" * DEEP,
             b"\\ud800", "\u202e".encode(), b"\x1b", b"a" * HUGE]


@dataclass
class Target:
    """One loader, its valid files, and how each file may be mutated."""

    name: str
    files: dict[str, bytes]
    load: Callable[[Path, str], object]  # (folder, on_error) -> RecDataset
    layout: dict[str, str]  # file -> "jsonl" | "pylit" | "delim:<sep>" | "json" | "parquet" | "p5seq"
    critical: dict[str, dict[str, str]] = field(default_factory=dict)  # file -> {field: "id" | "number" | "ms"}
    header: dict[str, bool] = field(default_factory=dict)  # delimited file has a header line

    def write(self, folder: Path, files: dict[str, bytes] | None = None) -> Path:
        """Write the (possibly mutated) files into ``folder``; returns it."""
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in (files or self.files).items():
            (folder / name).write_bytes(data)
        return folder


def _jsonl(rows: list[dict]) -> bytes:
    return ("\n".join(json.dumps(r) for r in rows) + "\n").encode()


def _parquet(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


def _reviews_2014() -> list[dict]:
    return [{"reviewerID": f"U{u}", "asin": f"P{(u * 3 + k) % 5}", "overall": float(1 + (u + k) % 5),
             "reviewText": f"Review {u} {k}. Works well.", "summary": "ok", "unixReviewTime": 1393545600 + 86400 * k}
            for u in range(4) for k in range(2)]


def _reviews_2023() -> list[dict]:
    return [{"rating": float(1 + (u + k) % 5), "title": "t", "text": f"Text {u} {k}.", "asin": f"V{k}",
             "parent_asin": f"P{(u + k) % 4}", "user_id": f"U{u}", "timestamp": 1588687728923 + 1000 * k}
            for u in range(4) for k in range(2)]


CSV_ROWS = b"uid,movie,stars,ts\nu1,m1,4,2020-01-01T00:00:00Z\nu1,m2,3.5,2020-01-02\nu2,m1,5,1577836800\n" \
    b"u2,m3,2,1577900000\nu3,m2,1,1577910000\n"


def targets() -> list[Target]:
    """Every loader with a small valid file set."""
    amazon = FIXTURES / "amazon"
    cols = {"user_id": "uid", "item_id": "movie", "timestamp": "ts", "rating": "stars"}
    frame = pd.read_csv(io.BytesIO(CSV_ROWS))
    frame["ts"] = [1577836800, 1577923200, 1577836800, 1577900000, 1577910000]
    files = {}
    for sub in ("ml-mini", "presplit", "grouplens", "p5"):
        files[sub] = {p.name: p.read_bytes() for p in sorted((FIXTURES / sub).iterdir())}
    return [
        Target("amazon-2014", {"reviews.json": _jsonl(_reviews_2014()),
                               "meta.json": (amazon / "meta_2014.json").read_bytes()},
               lambda d, e: load_amazon_reviews(d / "reviews.json", meta_path=d / "meta.json", on_error=e),
               {"reviews.json": "jsonl", "meta.json": "pylit"},
               {"reviews.json": {"reviewerID": "id", "asin": "id", "overall": "number", "unixReviewTime": "number"},
                "meta.json": {"asin": "id"}}),
        Target("amazon-2023", {"reviews.jsonl": _jsonl(_reviews_2023()),
                               "meta.jsonl": (amazon / "meta_2023.jsonl").read_bytes()},
               lambda d, e: load_amazon_reviews(d / "reviews.jsonl", meta_path=d / "meta.jsonl", on_error=e),
               {"reviews.jsonl": "jsonl", "meta.jsonl": "jsonl"},
               {"reviews.jsonl": {"user_id": "id", "parent_asin": "id", "rating": "number", "timestamp": "ms"},
                "meta.jsonl": {"parent_asin": "id"}}),
        Target("atomic", files["ml-mini"], lambda d, e: load_atomic(d, on_error=e),
               {"ml-mini.inter": "delim:\t", "ml-mini.item": "delim:\t"},
               {"ml-mini.inter": {"0": "id", "1": "id", "2": "number", "3": "number"}, "ml-mini.item": {"0": "id"}},
               {"ml-mini.inter": True, "ml-mini.item": True}),
        Target("atomic-presplit", files["presplit"], lambda d, e: load_atomic(d, on_error=e),
               {n: "delim:\t" for n in files["presplit"]},
               {"Mini.item2index": {"0": "id", "1": "number"}, "Mini.user2index": {"0": "id", "1": "number"},
                "Mini.train.inter": {"0": "number", "2": "number"}, "Mini.valid.inter": {"0": "number", "2": "number"},
                "Mini.test.inter": {"0": "number", "2": "number"}, "Mini.text": {"0": "id"}},
               {n: n.endswith((".inter", ".text")) for n in files["presplit"]}),
        Target("movielens", files["grouplens"], lambda d, e: load_movielens_100k(d, on_error=e),
               {"u.data": "delim:\t", "u.item": "delim:|"},
               {"u.data": {"0": "id", "1": "id", "2": "number", "3": "number"}, "u.item": {"0": "id"}},
               {"u.data": False, "u.item": False}),
        Target("p5", files["p5"], lambda d, e: load_p5_sequential(d, on_error=e),
               {"sequential_data.txt": "p5seq", "datamaps.json": "json"},
               {"datamaps.json": {"id2user": "id", "id2item": "id"}}),
        Target("csv", {"ratings.csv": CSV_ROWS, "movies.csv": (FIXTURES / "table" / "movies.csv").read_bytes()},
               lambda d, e: load_table(d / "ratings.csv", cols, item_path=d / "movies.csv", on_error=e),
               {"ratings.csv": "delim:,", "movies.csv": "delim:,"},
               {"ratings.csv": {"0": "id", "1": "id", "2": "number", "3": "number"}, "movies.csv": {"0": "id"}},
               {"ratings.csv": True, "movies.csv": True}),
        Target("tsv", {"ratings.tsv": CSV_ROWS.replace(b",", b"\t")},
               lambda d, e: load_table(d / "ratings.tsv", cols, on_error=e),
               {"ratings.tsv": "delim:\t"},
               {"ratings.tsv": {"0": "id", "1": "id", "2": "number", "3": "number"}}, {"ratings.tsv": True}),
        Target("parquet", {"ratings.parquet": _parquet(frame)},
               lambda d, e: load_table(d / "ratings.parquet", cols, on_error=e),
               {"ratings.parquet": "parquet"},
               {"ratings.parquet": {"uid": "id", "movie": "id", "stars": "number", "ts": "number"}}),
    ]


# ---- mutations -----------------------------------------------------------------------------
@dataclass
class Mutation:
    """What was changed: a description, the new file set, and whether loading must fail."""

    what: str
    files: dict[str, bytes]
    must_reject: bool = False


def _byte_mutation(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    op = rng.choice(["flip", "insert", "delete", "truncate", "dup_line", "fragment"])
    n = len(data)
    pos = rng.randrange(n + 1) if n else 0
    if op == "flip" and n:
        i = rng.randrange(n)
        return f"flip byte {i}", data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1:]
    if op == "insert":
        junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        return f"insert {junk!r} at {pos}", data[:pos] + junk + data[pos:]
    if op == "delete" and n:
        k = rng.randint(1, 16)
        return f"delete {k} bytes at {pos}", data[:pos] + data[pos + k:]
    if op == "truncate":
        return f"truncate at {pos}", data[:pos]
    if op == "dup_line":
        lines = data.splitlines(keepends=True)
        if lines:
            i = rng.randrange(len(lines))
            return f"duplicate line {i + 1}", b"".join(lines[:i + 1] + [lines[i]] + lines[i + 1:])
    frag = rng.choice(FRAGMENTS)
    return f"fragment {frag[:12]!r} at {pos}", data[:pos] + frag + data[pos:]


def _must_reject(kind: str | None, value: Hostile, text: bool = False) -> bool:
    bad_id = value.bad_id if not text or value.bad_id_text is None else value.bad_id_text
    return (kind == "id" and bad_id) or (kind == "number" and value.bad_number) or \
        (kind == "ms" and value.bad_number and not value.ok_as_ms)


def _field_mutation(target: Target, name: str, data: bytes, value: Hostile, rng: random.Random
                    ) -> tuple[str, bytes, bool] | None:
    layout = target.layout[name]
    crit = target.critical.get(name, {})
    if layout in ("jsonl", "pylit"):
        lines = data.decode("utf-8").splitlines()
        i = rng.randrange(len(lines))
        row = json.loads(lines[i]) if layout == "jsonl" else eval(lines[i], {"__builtins__": {}})  # noqa: S307 (own fixture)
        key = rng.choice(list(crit) + list(row)) if crit and rng.random() < 0.7 else rng.choice(list(row))
        placeholder = "\x00PLACEHOLDER\x00"
        row[key] = placeholder
        line = json.dumps(row).replace(json.dumps(placeholder), value.json)
        lines[i] = line
        return f"{name}:{i + 1} {key}={value.name}", ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass"), \
            _must_reject(crit.get(key), value)
    if layout.startswith("delim:"):
        sep = layout.split(":", 1)[1]
        lines = data.decode("latin-1" if name == "u.item" else "utf-8").splitlines()
        first = 1 if target.header.get(name) else 0
        if len(lines) <= first:
            return None
        i = rng.randrange(first, len(lines))
        parts = lines[i].split(sep)
        col = rng.choice([int(c) for c in crit]) if crit and rng.random() < 0.7 else rng.randrange(len(parts))
        col = min(col, len(parts) - 1)
        text = value.text
        if sep in text or '"' in text:
            text = text.replace(sep, " ")
        parts[col] = text
        lines[i] = sep.join(parts)
        enc = "latin-1" if name == "u.item" else "utf-8"
        try:
            out = ("\n".join(lines) + "\n").encode(enc, "surrogateescape")
        except UnicodeEncodeError:
            out = ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")
        return f"{name}:{i + 1} col {col}={value.name}", out, _must_reject(crit.get(str(col)), value, text=True)
    if layout == "json":  # datamaps.json: replace one value of one map
        maps = json.loads(data)
        key = rng.choice(list(crit)) if crit and rng.random() < 0.8 else rng.choice(list(maps))
        sub = maps[key]
        if not isinstance(sub, dict) or not sub:
            return None
        k = rng.choice(list(sub))
        placeholder = "\x00PLACEHOLDER\x00"
        sub[k] = placeholder
        text = json.dumps(maps).replace(json.dumps(placeholder), value.json)
        return f"{name} {key}[{k}]={value.name}", text.encode("utf-8", "surrogatepass"), \
            _must_reject(crit.get(key), value)
    if layout == "p5seq":
        lines = data.decode().splitlines()
        i = rng.randrange(len(lines))
        toks = lines[i].split()
        j = rng.randrange(len(toks))
        toks[j] = value.text.replace(" ", "_").replace("\n", "_")
        lines[i] = " ".join(toks)
        # an unknown token is always rejected (unknown user/item), so nothing can be silently loaded
        return f"{name}:{i + 1} token {j}={value.name}", ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape"), \
            False
    if layout == "parquet":
        frame = pd.read_parquet(io.BytesIO(data))
        i = rng.randrange(len(frame))
        col = rng.choice(list(crit)) if crit and rng.random() < 0.8 else rng.choice(list(frame.columns))
        frame[col] = frame[col].astype(object)
        v: object = value.text
        if value.name in ("negative", "1e308", "year 9999 (s)", "year 9999 (ms)"):
            v = float(value.text)
        elif value.name == "JSON list":
            v = ["x"]
        elif value.name == "year 9999 (date)":
            v = pd.Timestamp("9999-12-31")
        elif value.name in ("deep nesting", "huge"):
            v = value.text[:5000]
        frame.at[i, col] = v
        try:
            out = _parquet(frame)
        except Exception:  # a mix pyarrow cannot store: store it as text, or give up on this value
            try:
                frame[col] = frame[col].astype(str)
                out = _parquet(frame)
            except Exception:
                return None
        return f"{name} row {i + 1} {col}={value.name}", out, _must_reject(crit.get(col), value, text=True)
    return None


def mutate(target: Target, rng: random.Random) -> Mutation:
    """One random mutation of one of the target's files (half byte-level, half one hostile field)."""
    name = rng.choice(list(target.layout))
    files = dict(target.files)
    data = files[name]
    if rng.random() < 0.5:
        value = rng.choice(HOSTILE)
        out = _field_mutation(target, name, data, value, rng)
        if out is not None:
            what, files[name], must = out
            return Mutation(what, files, must)
    what, files[name] = _byte_mutation(data, rng)
    return Mutation(f"{name}: {what}", files)
