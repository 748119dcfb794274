"""Loaders on small synthetic fixtures and on the real files (real ones skip without ../shared/data)."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import FIXTURES, SHARED_DATA, requires_shared_data

from textrec.data import RecDataset
from textrec.data.loaders import (
    load_amazon_reviews,
    load_atomic,
    load_movielens_100k,
    load_p5_sequential,
    load_table,
)
from textrec.data.registry import (
    available_datasets,
    detect_format,
    find_data_root,
    load_dataset,
    register_dataset,
)

AMAZON = FIXTURES / "amazon"
TABLE = FIXTURES / "table"


def events(ds: RecDataset) -> list[tuple[str, str, float]]:
    """(user id, item id, timestamp) in source order, original ids."""
    i = ds.interactions
    return list(zip(ds.user_ids[i["user"]], ds.item_ids[i["item"]], i["timestamp"]))


def sequences(ds: RecDataset) -> dict[str, list[str]]:
    """Original item ids per original user id, in time order."""
    out: dict[str, list[str]] = {}
    for row in ds.sorted_interactions().itertuples():
        out.setdefault(ds.user_ids[row.user], []).append(ds.item_ids[row.item])
    return out


# ---- MovieLens -----------------------------------------------------------------------------
def test_movielens_atomic_fixture():
    ds = load_movielens_100k(FIXTURES / "ml-mini")
    assert ds.name == "ml-100k"
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (3, 4, 5)
    assert ds.text_fields == ["title", "year", "genres"]
    assert ds.items.loc[0, "title"] == "Toy Story" and ds.items.loc[0, "year"] == "1995"
    assert ds.items.loc[2, "title"] == "Misérables, Les"
    assert events(ds)[0] == ("10", "1", 881250949.0)
    assert ds.interactions["rating"].tolist() == [4, 3, 5, 1, 2]


def test_grouplens_gives_the_same_fields_as_atomic():
    atomic = load_movielens_100k(FIXTURES / "ml-mini")
    grouplens = load_movielens_100k(FIXTURES / "grouplens")
    pd.testing.assert_frame_equal(atomic.items, grouplens.items)
    pd.testing.assert_frame_equal(atomic.interactions, grouplens.interactions)
    assert grouplens.items.loc[0, "genres"] == "Animation Children's Comedy"
    # RecBole's file has year "V" for "... (1995) (V)"; both sources end up with the real year.
    assert tuple(atomic.items.loc[3, ["title", "year"]]) == ("Land Before Time III: The Time of the Great Giving",
                                                             "1995")


def test_movielens_real_from_recbole_wheel():
    ds = load_movielens_100k()
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (943, 1682, 100000)
    assert set(ds.interactions["rating"].unique()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    first = ds.items.iloc[0]
    assert (first["item_id"], first["title"], first["year"]) == ("1", "Toy Story", "1995")
    assert "Animation" in first["genres"]
    assert ds.interactions.groupby("user").size().min() >= 20


# ---- atomic --------------------------------------------------------------------------------
def test_atomic_plain_keeps_recbole_columns():
    ds = load_atomic(FIXTURES / "ml-mini")
    assert ds.name == "ml-mini"
    assert ds.text_fields == ["movie_title", "release_year", "class"]
    assert ds.has_ratings and not ds.has_predefined_split


def test_atomic_presplit_rebuilds_truncated_sequences():
    ds = load_atomic(FIXTURES / "presplit", name="mini")
    assert (ds.n_users, ds.n_items) == (3, 6)
    # Histories are truncated to 3 items in the files; user A1 has 6 events.
    assert sequences(ds) == {"A1": ["I0", "I1", "I2", "I3", "I4", "I5"], "A2": ["I2", "I0", "I4"],
                             "A3": ["I5", "I1", "I1", "I3"]}
    # Dense indexes follow the .item2index / .user2index files.
    assert list(ds.item_ids) == [f"I{k}" for k in range(6)]
    assert list(ds.user_ids) == ["A1", "A2", "A3"]
    splits = ds.sorted_interactions().groupby("user")["split"].apply(list).to_dict()
    assert splits[0] == ["train"] * 4 + ["valid", "test"]
    assert splits[1] == ["train", "valid", "test"]
    assert ds.sorted_interactions().groupby("user")["timestamp"].apply(list)[0] == [0, 1, 2, 3, 4, 5]
    assert ds.items.loc[0, "text"] == "Red pen. Office. Acme."
    assert any("position" in n for n in ds.notes)


# ---- P5 ------------------------------------------------------------------------------------
def test_p5_fixture():
    ds = load_p5_sequential(FIXTURES / "p5", name="beauty-mini")
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (3, 6, 10)
    assert sequences(ds)["AU2"] == ["B02", "B04", "B01", "B05"]
    assert list(ds.item_ids) == ["B01", "B02", "B03", "B04", "B05", "B06"]
    assert ds.text_fields == []
    assert any("first appearance" in n for n in ds.notes)
    assert any("never occur" in n for n in ds.notes)  # B06


# ---- Amazon --------------------------------------------------------------------------------
def test_amazon_2014_plain_and_gzip(tmp_path: Path):
    gz = tmp_path / "reviews.json.gz"
    with open(AMAZON / "reviews_2014.json", "rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    plain, packed = load_amazon_reviews(AMAZON / "reviews_2014.json"), load_amazon_reviews(gz)
    pd.testing.assert_frame_equal(plain.reviews, packed.reviews)
    assert plain.name == "reviews_2014" and packed.name == "reviews"
    assert (plain.n_users, plain.n_items, plain.n_interactions) == (3, 3, 4)
    rev = plain.reviews
    assert list(rev.columns[:6]) == ["user", "item", "rating", "text", "summary", "timestamp"]
    assert rev.loc[3, "text"] == "Café quality stand — sturdy."
    assert rev.loc[1, "summary"] == "bad" and rev.loc[1, "rating"] == 1.0
    assert plain.text_fields == ["title"] and (plain.items["title"] == "").all()
    assert any("no item metadata" in n for n in plain.notes)


def test_amazon_2018_missing_review_text():
    ds = load_amazon_reviews(AMAZON / "reviews_2018.json")
    assert ds.reviews["text"].tolist() == ["Works well.", ""]
    assert ds.reviews["summary"].tolist() == ["good", "no text here"]


def test_amazon_2023_parent_asin_and_milliseconds():
    ds = load_amazon_reviews(AMAZON / "reviews_2023.jsonl")
    assert [e[:2] for e in events(ds)] == [("U1", "P1"), ("U2", "P1"), ("U2", "V3")]  # V3: no parent_asin
    assert ds.interactions["timestamp"].iloc[0] == pytest.approx(1588687728.923)
    assert ds.reviews["summary"].tolist() == ["Great", "Meh", "Good"]


def test_amazon_metadata_2014_literals_and_2023():
    ds = load_amazon_reviews(AMAZON / "reviews_2014.json", meta_path=AMAZON / "meta_2014.json")
    assert ds.text_fields == ["title", "brand", "category", "description"]
    p1 = ds.items.set_index("item_id").loc["P1"]
    assert p1["title"] == "Pop Filter" and p1["brand"] == "Dragonpad"
    assert p1["category"] == "Musical Instruments, Microphones & Accessories, Studio"
    assert ds.items.set_index("item_id").loc["P3", "title"] == ""  # no metadata for P3
    assert "P9" not in set(ds.item_ids)  # metadata of unreviewed items is not a catalog entry
    assert any("no metadata" in n for n in ds.notes)

    ds23 = load_amazon_reviews(AMAZON / "reviews_2023.jsonl", meta_path=AMAZON / "meta_2023.jsonl")
    p1 = ds23.items.set_index("item_id").loc["P1"]
    assert (p1["brand"], p1["description"]) == ("Dragonpad", "A double-screen, pop filter.")


# ---- tables --------------------------------------------------------------------------------
COLUMNS = {"user_id": "uid", "item_id": "movie", "timestamp": "ts", "rating": "stars"}


def test_table_csv_with_iso_dates_and_items():
    ds = load_table(TABLE / "ratings.csv", COLUMNS, item_path=TABLE / "movies.csv")
    ts = ds.interactions["timestamp"].tolist()
    assert ts == [1577836800.0, 1577923200.0, 1577836800.0, 1578049200.0]  # +01:00 -> 11:00 UTC
    assert events(ds)[3][1] == "m,3"
    assert ds.text_fields == ["name", "genre"]
    assert ds.items.set_index("item_id").loc["m,3", "name"] == "Crash, The"


def test_table_tsv_parquet_and_item_columns(tmp_path: Path):
    tsv = load_table(TABLE / "ratings.tsv", COLUMNS)
    assert tsv.n_interactions == 2 and tsv.interactions["rating"].tolist() == [4.0, 1.0]
    frame = pd.read_csv(TABLE / "ratings.csv")
    frame["ts"] = pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-01", "2020-01-03"])
    frame.to_parquet(tmp_path / "r.parquet")
    pq = load_table(tmp_path / "r.parquet", COLUMNS, item_path=TABLE / "movies.csv",
                    item_columns={"item_id": "movie", "title": "name"})
    assert pq.interactions["timestamp"].iloc[0] == 1577836800.0
    assert pq.text_fields == ["title"] and pq.name == "r"
    no_time = load_table(TABLE / "ratings.csv", {"user_id": "uid", "item_id": "movie"})
    assert no_time.interactions["timestamp"].tolist() == [0, 1, 2, 3] and not no_time.has_ratings


# ---- registry ------------------------------------------------------------------------------
def test_registry_names_and_paths():
    assert {"ml-100k", "scientific", "beauty", "instruments"} <= set(available_datasets())
    assert detect_format(FIXTURES / "presplit") == "atomic"
    assert detect_format(FIXTURES / "ml-mini") == "atomic"
    assert detect_format(FIXTURES / "p5") == "p5"
    assert detect_format(FIXTURES / "grouplens") == "grouplens"
    assert detect_format(AMAZON / "reviews_2023.jsonl") == "amazon"
    assert detect_format(TABLE / "ratings.tsv") == "tabular"
    assert load_dataset(FIXTURES / "p5").n_interactions == 10
    assert load_dataset(str(FIXTURES / "grouplens")).name == "ml-100k"
    assert load_dataset(AMAZON / "reviews_2014.json").reviews is not None
    assert load_dataset(TABLE / "ratings.csv", columns=COLUMNS).n_users == 2
    with pytest.raises(ValueError, match="columns="):
        load_dataset(TABLE / "ratings.csv")
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        load_dataset("nope")


def test_register_dataset():
    def mini(data_root=None, **kw):
        return load_p5_sequential(FIXTURES / "p5", name="mini-p5", **kw)

    register_dataset("mini-p5-test", mini, overwrite=True)
    assert "mini-p5-test" in available_datasets()
    assert load_dataset("mini-p5-test", on_error="skip").name == "mini-p5"
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("mini-p5-test", mini)


def test_data_root_missing_says_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import textrec.data.registry as registry

    monkeypatch.setenv("TEXTREC_DATA", str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="TEXTREC_DATA"):
        load_dataset("beauty")
    monkeypatch.delenv("TEXTREC_DATA")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(registry, "_REPO_ROOT", tmp_path / "repo")
    with pytest.raises(FileNotFoundError, match="looked in"):
        find_data_root()
    (tmp_path / "data" / "beauty").mkdir(parents=True)
    shutil.copytree(FIXTURES / "p5", tmp_path / "data" / "beauty", dirs_exist_ok=True)
    monkeypatch.setenv("TEXTREC_DATA", str(tmp_path / "data"))
    assert load_dataset("beauty").name == "beauty"
    with pytest.raises(FileNotFoundError, match="scientific"):
        load_dataset("scientific")


# ---- real data -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scientific() -> RecDataset:
    return load_dataset("scientific", data_root=SHARED_DATA)


@requires_shared_data
def test_real_scientific(scientific: RecDataset):
    ds = scientific
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (8442, 4385, 59427)
    counts = ds.interactions.groupby(["user", "split"]).size().unstack(fill_value=0)
    assert (counts["test"] == 1).all() and (counts["valid"] == 1).all()
    # The test event is each user's last, the valid event the one before.
    last = ds.sorted_interactions().groupby("user").tail(2)
    assert (last.groupby("user")["split"].apply(list) == pd.Series([["valid", "test"]] * ds.n_users)).all()
    assert ds.item_ids[0] == "B00TNNWMXI" and ds.user_ids[0] == "ABW8NXS7SV55K"
    assert ds.items.loc[0, "text"].startswith("eSUN Bronze filament")
    assert (ds.items["text"] != "").all()


@requires_shared_data
def test_real_beauty():
    ds = load_dataset("beauty", data_root=SHARED_DATA)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (22363, 12101, 198502)
    assert ds.user_ids[0] == "A1YJEY40YUW4SE" and ds.item_ids[0] == "B004756YJA"
    assert ds.interactions.groupby("user").size().min() >= 5


@requires_shared_data
def test_real_instruments():
    ds = load_dataset("instruments", data_root=SHARED_DATA)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (1429, 900, 10261)
    assert ds.reviews is not None and len(ds.reviews) == 10261
    assert ds.reviews["text"].str.len().sum() > 1_000_000
    assert np.isin(ds.interactions["rating"].unique(), [1, 2, 3, 4, 5]).all()
    assert not ds.skipped


def test_real_names_skip_reason_mentions_shared_data():
    assert "../shared/data is absent" in requires_shared_data.kwargs["reason"]


def test_atomic_presplit_without_index_files_reads_item_ids_as_indexes(tmp_path: Path):
    # The LLMRank release (Amazon Games): no .train.inter and no index files; the .item file's
    # integer ids are the indexes, and the training sequence is the valid row's history.
    (tmp_path / "mini.item").write_text("item_id:token\ttitle:token_seq\n0\tZelda\n1\tMario\n2\tMetroid\n3\tPong\n")
    (tmp_path / "mini.valid.inter").write_text(
        "user_id:token\titem_id_list:token_seq\titem_id:token\n0\t0 1\t2\n1\t3\t0\n")
    (tmp_path / "mini.test.inter").write_text(
        "user_id:token\titem_id_list:token_seq\titem_id:token\n0\t0 1 2\t3\n1\t3 0\t1\n")
    ds = load_atomic(tmp_path, name="mini")
    assert sequences(ds) == {"0": ["0", "1", "2", "3"], "1": ["3", "0", "1"]}
    assert ds.items.set_index("item_id").loc["2", "title"] == "Metroid"
    splits = ds.sorted_interactions().groupby("user")["split"].apply(list).to_dict()
    assert splits[0] == ["train", "train", "valid", "test"]


def test_atomic_presplit_without_index_files_needs_integer_item_ids(tmp_path: Path):
    (tmp_path / "mini.item").write_text("item_id:token\ttitle:token_seq\nB01\tZelda\n")
    (tmp_path / "mini.test.inter").write_text("user_id:token\titem_id_list:token_seq\titem_id:token\n0\t\t0\n")
    with pytest.raises(ValueError, match=r"mini.item, line 2, field 'item_id'.*integer index"):
        load_atomic(tmp_path, name="mini")


@requires_shared_data
def test_real_games():
    ds = load_dataset("games", data_root=SHARED_DATA)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (50546, 16859, 440264)
    assert ds.items.loc[0, "title"] == "Fire Emblem: The Sacred Stones"
    counts = ds.interactions.groupby(["user", "split"]).size().unstack(fill_value=0)
    assert (counts["test"] == 1).all() and (counts["valid"] == 1).all()
