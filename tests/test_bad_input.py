"""Bad input: a DataError naming file, line and field in "raise" mode; a counted skip in "skip" mode."""

from __future__ import annotations

import gzip
import json
import logging
import shutil
from pathlib import Path

import pytest
from conftest import FIXTURES

from textrec.data import DataError
from textrec.data.loaders import (
    load_amazon_reviews,
    load_atomic,
    load_movielens_100k,
    load_p5_sequential,
    load_table,
)

COLUMNS = {"user_id": "uid", "item_id": "item", "timestamp": "ts", "rating": "stars"}
INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"


def review(user: str = "U1", item: str = "P1", ts: object = 1393545600, **extra: object) -> dict:
    return {"reviewerID": user, "asin": item, "overall": 5.0, "reviewText": "fine", "summary": "ok",
            "unixReviewTime": ts, **extra}


def write_jsonl(path: Path, *rows: dict | str | bytes) -> Path:
    """Rows as JSON lines; a str or bytes row is written verbatim (to make it malformed)."""
    out = b""
    for r in rows:
        out += r if isinstance(r, bytes) else (r if isinstance(r, str) else json.dumps(r)).encode()
        out += b"\n"
    path.write_bytes(out)
    return path


def raises_at(fn, *, line: int | None, field: str | None, match: str, path: Path | None = None) -> DataError:
    """Call ``fn`` and check the DataError names the line, the field and (optionally) the file."""
    with pytest.raises(DataError, match=match) as info:
        fn()
    err = info.value
    assert err.line == line and err.field == field
    if path is not None:
        assert err.path == str(path) and path.name in str(err)
    return err


@pytest.fixture
def presplit(tmp_path: Path) -> Path:
    """A writable copy of the pre-split atomic fixture."""
    return Path(shutil.copytree(FIXTURES / "presplit", tmp_path / "presplit"))


def replace_line(path: Path, line: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[line - 1] = text
    path.write_text("\n".join(lines) + "\n")


# ---- malformed JSON ------------------------------------------------------------------------
def test_malformed_json_line(tmp_path: Path):
    f = write_jsonl(tmp_path / "r.json", review("U1"), '{"reviewerID": "U2", "asin": ', review("U3"), "[1, 2]")
    raises_at(lambda: load_amazon_reviews(f), line=2, field=None, match="malformed JSON", path=f)
    ds = load_amazon_reviews(f, on_error="skip")
    assert ds.n_interactions == 2 and ds.skipped.counts == {"malformed JSON line": 2}
    assert "r.json:2" in ds.skipped.examples["malformed JSON line"]


def test_malformed_metadata_line(tmp_path: Path):
    f = write_jsonl(tmp_path / "r.json", review("U1", "P1"))
    meta = write_jsonl(tmp_path / "meta.json", {"asin": "P1", "title": "T"}, "{'asin': 'P2', 'title'")
    raises_at(lambda: load_amazon_reviews(f, meta_path=meta), line=2, field=None, match="malformed", path=meta)
    ds = load_amazon_reviews(f, meta_path=meta, on_error="skip")
    assert ds.items.loc[0, "title"] == "T" and ds.skipped.counts == {"malformed JSON line": 1}


# ---- missing required field ----------------------------------------------------------------
def test_missing_required_field_json(tmp_path: Path):
    no_item = review("U2")
    del no_item["asin"]
    f = write_jsonl(tmp_path / "r.json", review("U1"), no_item)
    raises_at(lambda: load_amazon_reviews(f), line=2, field="asin", match="missing required field", path=f)
    ds = load_amazon_reviews(f, on_error="skip")
    assert ds.n_interactions == 1 and ds.skipped.counts == {"missing required field": 1}

    f23 = write_jsonl(tmp_path / "r23.jsonl", {"parent_asin": "P1", "rating": 4, "timestamp": 1_600_000_000_000})
    raises_at(lambda: load_amazon_reviews(f23), line=1, field="user_id", match="missing required field")


def test_missing_required_field_delimited(tmp_path: Path):
    inter = tmp_path / "d" / "d.inter"
    inter.parent.mkdir()
    inter.write_text(INTER_HEADER + "1\t10\t4\t100\n2\t\t3\t200\n3\t30\t5\n")
    raises_at(lambda: load_atomic(inter.parent), line=3, field="item_id", match="missing required", path=inter)
    ds = load_atomic(inter.parent, on_error="skip")
    assert ds.n_interactions == 1
    assert ds.skipped.counts == {"missing required field": 1, "wrong number of columns": 1}

    csv = tmp_path / "t.csv"
    csv.write_text("uid,item,stars,ts\nu1,i1,4,100\n,i2,3,200\n")
    raises_at(lambda: load_table(csv, COLUMNS), line=3, field="uid", match="missing required", path=csv)
    raises_at(lambda: load_table(csv, {**COLUMNS, "rating": "score"}), line=1, field="score",
              match="no column 'score' in the header", path=csv)


def test_p5_unknown_ids_and_empty_sequence(tmp_path: Path):
    folder = Path(shutil.copytree(FIXTURES / "p5", tmp_path / "p5"))
    (folder / "sequential_data.txt").write_text("1 1 2\n2\n3 1 99\n9 1\n")
    raises_at(lambda: load_p5_sequential(folder), line=2, field="item_id", match="no items")
    ds = load_p5_sequential(folder, on_error="skip")
    assert ds.n_interactions == 2
    assert ds.skipped.counts == {"missing required field": 1, "unknown item": 1, "unknown user": 1}


# ---- encoding ------------------------------------------------------------------------------
def test_non_utf8_json_line(tmp_path: Path):
    bad = b'{"reviewerID": "U2", "asin": "P1", "overall": 4, "reviewText": "caf\xe9", "unixReviewTime": 5}'
    f = write_jsonl(tmp_path / "r.json", review("U1"), bad, review("U3"))
    raises_at(lambda: load_amazon_reviews(f), line=2, field="reviewText", match="not valid utf-8", path=f)
    ds = load_amazon_reviews(f, on_error="skip")
    assert ds.n_interactions == 2 and ds.skipped.counts == {"non-UTF-8 line": 1}
    assert list(ds.user_ids) == ["U1", "U3"]


def test_non_utf8_delimited(tmp_path: Path):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "d.inter").write_bytes(INTER_HEADER.encode() + b"1\t10\t4\t100\n2\t\xff\xfe\t3\t200\n")
    raises_at(lambda: load_atomic(folder), line=3, field="item_id", match="not valid utf-8")
    assert load_atomic(folder, on_error="skip").skipped.counts == {"non-UTF-8 line": 1}

    csv = tmp_path / "t.csv"
    csv.write_bytes(b"uid,item,stars,ts\nu1,i1,4,100\nu\x92,i2,3,200\nu3,i3,3,300\n")
    raises_at(lambda: load_table(csv, COLUMNS), line=3, field="uid", match="not valid utf-8", path=csv)
    assert load_table(csv, COLUMNS, on_error="skip").n_interactions == 2


def test_corrupt_gzip(tmp_path: Path):
    f = tmp_path / "r.json.gz"
    payload = gzip.compress(("\n".join(json.dumps(review(f"U{k}")) for k in range(200)) + "\n").encode())
    f.write_bytes(payload[: len(payload) // 2])
    with pytest.raises(DataError, match="cannot read the file") as info:
        load_amazon_reviews(f, on_error="skip")
    assert info.value.path == str(f) and info.value.line is not None


# ---- empty ---------------------------------------------------------------------------------
@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_empty_files(tmp_path: Path, on_error: str):
    empty = tmp_path / "r.json"
    empty.write_text("")
    with pytest.raises(DataError, match="no interactions"):
        load_amazon_reviews(empty, on_error=on_error)
    gz = tmp_path / "r.json.gz"
    gz.write_bytes(gzip.compress(b"\n\n"))
    with pytest.raises(DataError, match="no interactions"):
        load_amazon_reviews(gz, on_error=on_error)
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "d.inter").write_text("")
    with pytest.raises(DataError, match="no interactions"):
        load_atomic(folder, on_error=on_error)
    (folder / "d.inter").write_text(INTER_HEADER)
    with pytest.raises(DataError, match="no interactions"):
        load_atomic(folder, on_error=on_error)
    csv = tmp_path / "t.csv"
    csv.write_text("uid,item,stars,ts\n")
    with pytest.raises(DataError, match="no interactions"):
        load_table(csv, COLUMNS, on_error=on_error)
    p5 = Path(shutil.copytree(FIXTURES / "p5", tmp_path / "p5"))
    (p5 / "sequential_data.txt").write_text("")
    with pytest.raises(DataError, match="no interactions"):
        load_p5_sequential(p5, on_error=on_error)


def test_every_row_bad_is_no_interactions_with_the_reasons(tmp_path: Path):
    f = write_jsonl(tmp_path / "r.json", "not json", review(ts=-1))
    with pytest.raises(DataError, match=r"no interactions \(skipped 1 bad timestamp.*1 malformed JSON"):
        load_amazon_reviews(f, on_error="skip")


# ---- one event -----------------------------------------------------------------------------
def test_user_with_one_event_loads(tmp_path: Path):
    f = write_jsonl(tmp_path / "r.json", review("U1", "P1"), review("U1", "P2", 1393545601), review("U2", "P1"))
    ds = load_amazon_reviews(f)
    assert ds.n_users == 2 and ds.interactions.groupby("user").size().tolist() == [2, 1]
    csv = tmp_path / "t.csv"
    csv.write_text("uid,item,stars,ts\nsolo,i1,4,100\n")
    assert load_table(csv, COLUMNS).n_interactions == 1


# ---- split files ---------------------------------------------------------------------------
def test_unknown_item_in_split_file(presplit: Path):
    test_file = presplit / "Mini.test.inter"
    replace_line(test_file, 3, "1\t2 0\t99")
    raises_at(lambda: load_atomic(presplit), line=3, field="item_id", match="unknown item in a split file",
              path=test_file)
    ds = load_atomic(presplit, on_error="skip")
    assert list(ds.user_ids) == ["A1", "A3"]  # A2's sequence cannot be rebuilt: dropped whole
    assert ds.skipped.counts == {"unknown item in a split file": 1, "rows of a user with a bad split row": 1}

    replace_line(test_file, 3, "1\t2 77\t4")
    raises_at(lambda: load_atomic(presplit), line=3, field="item_id_list", match="unknown item")


def test_inconsistent_split_rows(presplit: Path):
    valid = presplit / "Mini.valid.inter"
    replace_line(valid, 2, "0\t1 3 2\t4")  # not the prefix the train rows build
    raises_at(lambda: load_atomic(presplit), line=2, field="item_id_list", match="not the prefix", path=valid)
    ds = load_atomic(presplit, on_error="skip")
    assert "A1" not in set(ds.user_ids) and ds.skipped.counts["inconsistent split rows"] == 1

    shutil.copy(FIXTURES / "presplit" / "Mini.valid.inter", valid)
    test_file = presplit / "Mini.test.inter"
    replace_line(test_file, 4, "2\t5 1 3\t3")  # the valid target (1) is not where the test row says
    raises_at(lambda: load_atomic(presplit), line=4, field="item_id_list", match="not the prefix",
              path=test_file)
    replace_line(test_file, 4, "0\t2 3 4\t5")  # user 0 twice in the test file, user 2 absent
    with pytest.raises(DataError, match="one expected"):
        load_atomic(presplit)


def test_split_user_without_test_row(presplit: Path):
    test_file = presplit / "Mini.test.inter"
    lines = test_file.read_text().splitlines()
    test_file.write_text("\n".join(lines[:3]) + "\n")  # drop user 2's test row
    raises_at(lambda: load_atomic(presplit), line=4, field="user_id", match="no row in the test file")


# ---- duplicates ----------------------------------------------------------------------------
def test_exact_duplicate_events(tmp_path: Path):
    f = write_jsonl(tmp_path / "r.json", review("U1", "P1"), review("U2", "P1"), review("U1", "P1"))
    kept = load_amazon_reviews(f)
    assert kept.n_interactions == 3 and len(kept.reviews) == 3 and not kept.skipped
    assert any("1 exact duplicate events" in n for n in kept.notes)
    dropped = load_amazon_reviews(f, duplicates="drop")
    assert dropped.n_interactions == 2 and len(dropped.reviews) == 2
    assert dropped.skipped.counts == {"duplicate event": 1}
    err = raises_at(lambda: load_amazon_reviews(f, duplicates="error"), line=3, field="item_id",
                    match="duplicate event", path=f)
    assert "already on line 1" in str(err)
    with pytest.raises(ValueError, match="duplicates must be one of"):
        load_amazon_reviews(f, duplicates="nope")
    with pytest.raises(ValueError, match="on_error must be one of"):
        load_amazon_reviews(f, on_error="ignore")

    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "d.inter").write_text(INTER_HEADER + "1\t10\t4\t100\n1\t10\t4\t100\n1\t10\t4\t101\n")
    assert load_atomic(folder, duplicates="drop").n_interactions == 2
    csv = tmp_path / "t.csv"
    csv.write_text("uid,item,stars,ts\nu1,i1,4,100\nu1,i1,5,100\n")
    raises_at(lambda: load_table(csv, COLUMNS, duplicates="error"), line=3, field="item_id", match="duplicate")


# ---- huge text -----------------------------------------------------------------------------
def test_one_megabyte_text_field(tmp_path: Path):
    big = "word " * 210_000  # ~1 MB
    f = write_jsonl(tmp_path / "r.json", review("U1", reviewText=big), review("U2"))
    ds = load_amazon_reviews(f)
    assert len(ds.reviews.loc[0, "text"]) == len(big.strip()) > 1_000_000

    folder = Path(shutil.copytree(FIXTURES / "presplit", tmp_path / "presplit"))
    text = folder / "Mini.text"
    text.write_text(text.read_text().replace("Red pen. Office. Acme. ", "Red pen. " + big))
    assert len(load_atomic(folder).items.loc[0, "text"]) > 1_000_000


# ---- timestamps ----------------------------------------------------------------------------
@pytest.mark.parametrize("ts", [-1, "-5", "yesterday", "", None, float("nan")])
def test_bad_timestamp_json(tmp_path: Path, ts: object):
    f = tmp_path / "r.json"
    f.write_text(json.dumps(review("U1")) + "\n" + json.dumps(review("U2", ts=ts), allow_nan=True) + "\n")
    raises_at(lambda: load_amazon_reviews(f), line=2, field="unixReviewTime",
              match="negative timestamp|not a number or an ISO date|missing required field", path=f)
    ds = load_amazon_reviews(f, on_error="skip")
    assert ds.n_interactions == 1 and ds.skipped.total == 1


def test_bad_timestamp_delimited(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "d.inter").write_text(INTER_HEADER + "1\t10\t4\t100\n1\t11\t4\t-5\n2\t10\t4\tnoon\n")
    raises_at(lambda: load_atomic(folder), line=3, field="timestamp", match="negative timestamp")
    with caplog.at_level(logging.WARNING, logger="textrec.data"):
        ds = load_atomic(folder, on_error="skip")
    assert ds.skipped.counts == {"bad timestamp": 2}
    assert "skipped 2 bad timestamp" in caplog.text  # the skip summary is logged, not silent

    csv = tmp_path / "t.csv"
    csv.write_text("uid,item,stars,ts\nu1,i1,4,2020-01-01\nu2,i2,3,31/12/2020\n")
    raises_at(lambda: load_table(csv, COLUMNS), line=3, field="ts", match="ISO date", path=csv)

    gl = Path(shutil.copytree(FIXTURES / "grouplens", tmp_path / "gl"))
    (gl / "u.data").write_text("10\t1\t4\t881250949\n10\t2\tx\t881250950\n")
    raises_at(lambda: load_movielens_100k(gl), line=2, field="rating", match="not a finite number")
