"""Every loader, fed broken and hostile files: only ``DataError`` escapes, nothing hangs, nothing
implausible loads silently.

The explicit cases are the ones issue 17 found (each loaded or crashed before). The hypothesis
tests mutate the valid files of ``fuzz_targets.py`` (the same mutations ``textrec bench fuzz``
counts) and write arbitrary values into id, rating and timestamp fields.
"""

from __future__ import annotations

import io
import json
import math
import random
import signal
import time
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
from fuzz_targets import DEEP, HUGE, mutate, targets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from textrec.data import DataError
from textrec.data.loaders import (
    load_amazon_reviews,
    load_atomic,
    load_movielens_100k,
    load_p5_sequential,
    load_table,
)
from textrec.data.loaders._validate import MAX_ID_CHARS, max_timestamp
from textrec.text.sanitize import find_control

COLUMNS = {"user_id": "uid", "item_id": "item", "timestamp": "ts", "rating": "stars"}
INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
TARGETS = {t.name: t for t in targets()}
FUZZ = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@contextmanager
def time_limit(seconds: int):
    """Fail (instead of hanging the suite) when the block runs longer than ``seconds``."""
    def stop(signum, frame):
        raise TimeoutError(f"loader ran past {seconds} s")

    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def review(user: object = "U1", item: object = "P1", rating: object = 5.0, ts: object = 1393545600) -> str:
    """A 2014 review line; values are raw JSON fragments when given as str starting with '@'."""
    fields = {"reviewerID": user, "asin": item, "overall": rating, "unixReviewTime": ts, "reviewText": "fine"}
    parts = [f'"{k}": {v[1:] if isinstance(v, str) and v.startswith("@") else json.dumps(v)}' for k, v in fields.items()]
    return "{" + ", ".join(parts) + "}"


def amazon_file(tmp_path: Path, bad: str) -> Path:
    f = tmp_path / "r.json"
    f.write_text(review("U0") + "\n" + bad + "\n" + review("U2", "P2") + "\n")
    return f


def rejected(fn, line: int | None, field: str | None, match: str) -> None:
    with pytest.raises(DataError, match=match) as info:
        fn()
    assert (info.value.line, info.value.field) == (line, field)


# ---- loader failures that were not DataErrors -----------------------------------------------
def test_deeply_nested_json_is_a_data_error_and_skippable(tmp_path):
    f = amazon_file(tmp_path, review(rating="@" + "[" * DEEP + "]" * DEEP))
    rejected(lambda: load_amazon_reviews(f), 2, None, "nested deeper")
    ds = load_amazon_reviews(f, on_error="skip")
    assert ds.n_interactions == 2 and ds.skipped.counts == {"malformed JSON line": 1}
    f.write_text(review(rating="@" + "[" * 200 + "]" * 200) + "\n")  # parses, but too deep to trust
    rejected(lambda: load_amazon_reviews(f), 1, None, "nested deeper")
    f.write_bytes(b'{"reviewerID": "\xff", "overall": ' + b"[" * DEEP + b"]" * DEEP + b"}\n")
    rejected(lambda: load_amazon_reviews(f), 1, None, "not valid utf-8")  # too deep to locate the field: no crash


@pytest.mark.parametrize("where", ["reviewerID", "reviewText", "summary"])
def test_lone_surrogate_is_rejected_at_load(tmp_path, where):
    line = json.loads(review())
    line[where] = "PLACEHOLDER"
    f = amazon_file(tmp_path, json.dumps(line).replace('"PLACEHOLDER"', '"a\\ud800b"'))
    rejected(lambda: load_amazon_reviews(f), 2, where, "lone surrogate|surrogate")
    ds = load_amazon_reviews(f, on_error="skip")
    assert ds.skipped.total == 1
    ds.reviews["text"].astype(str).str.encode("utf-8")  # what failed later before: all text is encodable


def test_lone_surrogate_in_metadata_and_datamaps(tmp_path):
    f = amazon_file(tmp_path, review("U1"))
    meta = tmp_path / "meta.json"
    meta.write_text('{"asin": "P1", "title": "ok"}\n{"asin": "P2", "title": "bad \\udfff"}\n')
    rejected(lambda: load_amazon_reviews(f, meta_path=meta), 2, "title", "surrogate")
    folder = tmp_path / "p5"
    folder.mkdir()
    (folder / "datamaps.json").write_text('{"id2user": {"1": "A\\ud800"}, "id2item": {"1": "B"}}')
    (folder / "sequential_data.txt").write_text("1 1\n")
    with pytest.raises(DataError, match="datamaps.json"):
        load_p5_sequential(folder)


def test_huge_csv_fields_are_data_errors(tmp_path):
    head = tmp_path / "head.csv"
    head.write_text("uid," + "x" * HUGE + ",stars,ts\nu1,i1,4,100\n")
    with pytest.raises(DataError, match="malformed CSV header") as info:
        load_table(head, {"user_id": "uid", "item_id": "item"})
    assert info.value.path == str(head)
    body = tmp_path / "body.csv"
    body.write_text('uid,item,stars,ts\nu1,i1,4,100\nu2,"' + "y" * HUGE + '",3,200\nu3,i3,5,300\n')
    rejected(lambda: load_table(body, COLUMNS), 3, None, "malformed CSV")
    ds = load_table(body, COLUMNS, on_error="skip")
    assert ds.n_interactions == 2 and ds.skipped.counts == {"malformed CSV": 1}


@pytest.mark.parametrize("damage", ["truncate", "flip", "not parquet"])
def test_corrupt_parquet_is_a_data_error(tmp_path, damage):
    buf = io.BytesIO()
    pd.DataFrame({"uid": ["u1", "u2"], "item": ["i1", "i2"], "stars": [4.0, 5.0], "ts": [100, 200]}).to_parquet(buf)
    data = buf.getvalue()
    data = {"truncate": data[: len(data) // 2], "flip": data[:-12] + b"\xff" * 4 + data[-8:],
            "not parquet": b"uid,item\n"}[damage]
    f = tmp_path / "r.parquet"
    f.write_bytes(data)
    for on_error in ("raise", "skip"):
        with pytest.raises(DataError, match="r.parquet") as info:
            load_table(f, COLUMNS, on_error=on_error)
        assert info.value.path == str(f)


# ---- loaded although implausible -------------------------------------------------------------
@pytest.mark.parametrize("rating", [-7, 1e308, "1_000", "\uff14", "@1e400", "@" + "9" * 400, "@true", "inf"])
def test_implausible_ratings_are_rejected(tmp_path, rating):
    f = amazon_file(tmp_path, review(rating=rating))
    rejected(lambda: load_amazon_reviews(f), 2, "overall", "scale|not a finite number")
    assert load_amazon_reviews(f, on_error="skip").skipped.counts == {"bad rating": 1}


@pytest.mark.parametrize("rating", ["-7", "1e308", "1_000", "\uff14\uff0e\uff10"])
def test_implausible_ratings_in_delimited_files(tmp_path, rating):
    csv = tmp_path / "t.csv"
    csv.write_text(f"uid,item,stars,ts\nu1,i1,4,100\nu2,i2,{rating},200\n")
    rejected(lambda: load_table(csv, COLUMNS), 3, "stars", "scale|not a finite number")
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "d.inter").write_text(INTER_HEADER + f"1\t10\t4\t100\n2\t11\t{rating}\t200\n")
    rejected(lambda: load_atomic(folder), 3, "rating", "scale|not a finite number")
    gl = tmp_path / "gl"
    gl.mkdir()
    (gl / "u.data").write_text(f"10\t1\t4\t881250949\n10\t2\t{rating}\t881250950\n")
    rejected(lambda: load_movielens_100k(gl), 2, "rating", "scale|not a finite number")


def test_rating_scale_is_configurable(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("uid,item,stars,ts\nu1,i1,-7,100\nu2,i2,9.5,200\n")
    assert load_table(csv, COLUMNS, rating_range=(-10, 10)).interactions["rating"].tolist() == [-7, 9.5]
    rejected(lambda: load_table(csv, COLUMNS, rating_range=(0, 5)), 2, "stars", "outside the scale 0..5")
    with pytest.raises(ValueError, match="rating_range"):
        load_table(csv, COLUMNS, rating_range=(5, 1))
    f = amazon_file(tmp_path, review(rating=1e308))
    assert load_amazon_reviews(f, rating_range=None).n_interactions == 3


@pytest.mark.parametrize("ts", [253402300799, "253402300799", "9999-12-31", "9999-12-31T00:00:00Z",
                                "1_393_545_600", "\uff11\uff13\uff19\uff13\uff15\uff14\uff15\uff16\uff10\uff10",
                                1393545600000, -5])
def test_implausible_timestamps_are_rejected(tmp_path, ts):
    f = amazon_file(tmp_path, review(ts=ts))
    rejected(lambda: load_amazon_reviews(f), 2, "unixReviewTime", "future|not a number|negative")
    csv = tmp_path / "t.csv"
    csv.write_text(f"uid,item,stars,ts\nu1,i1,4,100\nu2,i2,3,{ts}\n")
    rejected(lambda: load_table(csv, COLUMNS), 3, "ts", "future|not a number|negative")


def test_milliseconds_field_checks_the_converted_time(tmp_path):
    f = tmp_path / "r.jsonl"
    good = {"user_id": "U1", "parent_asin": "P1", "rating": 5, "timestamp": 1588687728923}
    f.write_text(json.dumps(good) + "\n" + json.dumps({**good, "timestamp": 253402300799000}) + "\n"
                 + json.dumps({**good, "user_id": "U3", "timestamp": "9999-12-31"}) + "\n")
    rejected(lambda: load_amazon_reviews(f), 2, "timestamp", "future")
    assert load_amazon_reviews(f, on_error="skip").skipped.counts == {"bad timestamp": 2}
    ms_as_s = tmp_path / "t.csv"
    ms_as_s.write_text("uid,item,stars,ts\nu1,i1,4,1588687728923\n")
    rejected(lambda: load_table(ms_as_s, COLUMNS), 2, "ts", r"milliseconds read as seconds\?")


@pytest.mark.parametrize("bad", ["a\x00b", "\x1b[2Jx", "ab\u202ecd", "x\u200by", "u\u2028v"])
def test_ids_with_control_characters_are_rejected(tmp_path, bad):
    f = amazon_file(tmp_path, review(user=bad))
    rejected(lambda: load_amazon_reviews(f), 2, "reviewerID", "control/format character")
    csv = tmp_path / "t.csv"
    csv.write_text(f"uid,item,stars,ts\nu1,i1,4,100\n{bad},i2,3,200\n")
    rejected(lambda: load_table(csv, COLUMNS), 3, "uid", "control/format character")
    folder = tmp_path / "d"
    folder.mkdir(exist_ok=True)
    (folder / "d.inter").write_text(INTER_HEADER + f"1\t10\t4\t100\n2\t{bad}\t3\t200\n")
    rejected(lambda: load_atomic(folder), 3, "item_id", "control/format character")


@pytest.mark.parametrize("value", ["@[\"x\"]", "@{\"a\": 1}", "@true", "@[]", "x" * (MAX_ID_CHARS + 1)])
def test_amazon_ids_that_are_json_containers_are_rejected(tmp_path, value):
    f = amazon_file(tmp_path, review(item=value))
    rejected(lambda: load_amazon_reviews(f), 2, "asin", "JSON|not a string|longer than|serialized")
    assert load_amazon_reviews(f, on_error="skip").skipped.total == 1


def test_presplit_indexes_are_plain_ascii_integers(tmp_path):
    import shutil

    from conftest import FIXTURES

    folder = Path(shutil.copytree(FIXTURES / "presplit", tmp_path / "presplit"))
    idx = folder / "Mini.item2index"
    idx.write_text(idx.read_text().replace("I1\t1", "I1\t\uff11"))
    rejected(lambda: load_atomic(folder), 2, "index", "not an integer")
    idx.write_text(idx.read_text().replace("I1\t\uff11", "I1\t1"))
    test = folder / "Mini.test.inter"
    test.write_text(test.read_text().replace("1\t2 0\t4", "\uff11\t2 0\t4"))
    rejected(lambda: load_atomic(folder), 3, "user_id", "not an integer")


# ---- fuzzing: every loader, mutated files ----------------------------------------------------
@pytest.mark.parametrize("name", sorted(TARGETS))
@FUZZ
@given(seed=st.integers(0, 2**32 - 1))
def test_mutated_files_give_only_data_errors(tmp_path_factory, name, seed):
    target = TARGETS[name]
    m = mutate(target, random.Random(seed))
    folder = target.write(tmp_path_factory.mktemp(name), m.files)
    for on_error in ("raise", "skip"):
        try:
            with time_limit(20):
                target.load(folder, on_error)
        except DataError:
            continue
        assert not (m.must_reject and on_error == "raise"), f"silently loaded: {m.what}"


# ---- fuzzing: arbitrary values in the fields a loader validates ------------------------------
field_value = st.one_of(st.text(max_size=12), st.integers(-10**20, 10**20), st.floats(allow_nan=True),
                        st.booleans(), st.none(), st.lists(st.integers(), max_size=2),
                        st.sampled_from(["1_000", "\uff11\uff12", "9999-12-31", "-7", "1e308", "a\x00b", "a\u202eb",
                                         -7, 1e308, 253402300799, "\x1b[2J"]))


def _check_plausible(ds, rating_range=(0, 10)):
    for ids in (ds.user_ids, ds.item_ids):
        for i in ids:
            assert isinstance(i, str) and find_control(i) is None and len(i) <= MAX_ID_CHARS
            assert i.strip() and not (i[0] == "[" and i[-1] == "]")
    ts = ds.interactions["timestamp"].to_numpy()
    assert ((ts >= 0) & (ts <= max_timestamp())).all()
    if ds.has_ratings:
        r = ds.interactions["rating"].to_numpy()
        assert all(math.isfinite(x) and rating_range[0] <= x <= rating_range[1] for x in r)


VALID = {"user": "U9", "item": "P9", "rating": 4.0, "ts": 1393545600}
one_field = st.sampled_from(sorted(VALID))


@FUZZ
@given(field=one_field, value=field_value)
def test_amazon_accepts_only_plausible_values(tmp_path_factory, field, value):
    row = {**VALID, field: value}
    f = tmp_path_factory.mktemp("amz") / "r.json"
    line = json.dumps({"reviewerID": row["user"], "asin": row["item"], "overall": row["rating"],
                       "unixReviewTime": row["ts"]}, allow_nan=True)
    f.write_text(review() + "\n" + line + "\n")
    try:
        ds = load_amazon_reviews(f)
    except DataError:
        return
    _check_plausible(ds, (1, 5))


@FUZZ
@given(field=one_field, value=field_value)
def test_csv_accepts_only_plausible_values(tmp_path_factory, field, value):
    import csv

    row = {**VALID, field: value}
    f = tmp_path_factory.mktemp("csv") / "t.csv"
    with open(f, "w", newline="", encoding="utf-8", errors="surrogatepass") as fh:
        w = csv.writer(fh)
        w.writerows([["uid", "item", "stars", "ts"], ["u1", "i1", 4, 100],
                     [row["user"], row["item"], row["rating"], row["ts"]]])
    try:
        ds = load_table(f, COLUMNS)
    except DataError:
        return
    _check_plausible(ds)


def test_fuzz_helpers_run_quickly():
    """The mutation builder itself stays cheap (it runs thousands of times in textrec bench fuzz)."""
    t0 = time.process_time()
    rng = random.Random(0)
    for t in TARGETS.values():
        for _ in range(20):
            mutate(t, rng)
    assert time.process_time() - t0 < 10


def test_over_long_line_is_a_counted_bad_row(tmp_path, monkeypatch):
    from textrec.data.loaders import _validate

    monkeypatch.setattr(_validate, "MAX_LINE_BYTES", 1000)
    f = amazon_file(tmp_path, review(user="x" * 5000))
    rejected(lambda: load_amazon_reviews(f), 2, None, "line longer than")
    ds = load_amazon_reviews(f, on_error="skip")
    assert ds.n_interactions == 2 and ds.skipped.counts == {"line too long": 1}


def test_parquet_native_types_still_load(tmp_path):
    from decimal import Decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"uid": pa.array([1, 2], pa.int64()), "item": ["i1", "i2"],
                      "stars": pa.array([Decimal("4.5"), Decimal("3.0")], pa.decimal128(3, 1)),
                      "ts": pa.array([pd.Timestamp("2020-01-01"), pd.Timestamp("2020-01-02")], pa.timestamp("s"))})
    f = tmp_path / "r.parquet"
    pq.write_table(table, f)
    ds = load_table(f, COLUMNS)
    assert list(ds.user_ids) == ["1", "2"] and ds.interactions["rating"].tolist() == [4.5, 3.0]
    assert ds.interactions["timestamp"].tolist() == [1577836800.0, 1577923200.0]
