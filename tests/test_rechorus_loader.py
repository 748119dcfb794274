"""The ReChorus folder reader (Amazon Office): split kept, ids and text mapped, bad rows named."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SHARED_DATA, requires_shared_data

from textrec.data import DataError
from textrec.data.loaders import load_rechorus
from textrec.data.registry import available_datasets, detect_format, load_dataset
from textrec.data.splits import make_split

HEADER = "user_id\titem_id\ttime"


def write_folder(folder, train=None, dev=None, test=None, item2index=True, text=True):
    """A 3-user, 4-item ReChorus folder; any file's lines can be replaced."""
    folder.mkdir(parents=True, exist_ok=True)
    train = train or [HEADER, "1\t1\t100", "1\t2\t200", "2\t2\t100", "2\t3\t150", "3\t1\t50", "3\t3\t60"]
    dev = dev or [HEADER + "\tneg_items", "1\t3\t300\t[4, 2]", "2\t1\t200\t[4]", "3\t2\t70\t[4]"]
    test = test or [HEADER + "\tneg_items", "1\t4\t400\t[2]", "2\t4\t300\t[3]", "3\t4\t80\t[2]"]
    for name, lines in (("train.csv", train), ("dev.csv", dev), ("test.csv", test)):
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    if item2index:
        (folder / "Mini.item2index").write_text("A1\t1\nA2\t2\nA3\t3\nA4\t4\n", encoding="utf-8")
    if text:
        (folder / "Mini.text").write_text("id\ttext\nA1\tRed stapler\nA2\tBlue pen\nA4\tPaper clips\n",
                                          encoding="utf-8")
    return folder


def test_split_ids_and_text_are_kept(tmp_path):
    ds = load_rechorus(write_folder(tmp_path / "mini"))
    assert (ds.n_users, ds.n_items, len(ds.interactions)) == (3, 4, 12)
    assert list(ds.item_ids) == ["A1", "A2", "A3", "A4"]  # original ids in index order
    assert ds.item_text() == ["Red stapler", "Blue pen", "", "Paper clips"]  # A3 has no text line
    split = make_split(ds, "auto")
    assert split.kind == "published"
    # user "1": train A1, A2; valid target A3 after history [A1, A2]; test target A4 after [A1, A2, A3]
    u = int(np.flatnonzero(ds.user_ids == "1")[0])
    row = int(np.flatnonzero(split.test.users == u)[0])
    assert list(ds.item_ids[split.test.history(row)]) == ["A1", "A2", "A3"]
    assert list(ds.item_ids[split.test.targets(row)]) == ["A4"]
    assert len(split.train) == 6 and len(split.valid) == 3 and len(split.test) == 3


def test_without_item2index_the_integer_ids_stay(tmp_path):
    ds = load_rechorus(write_folder(tmp_path / "plain", item2index=False, text=False))
    assert set(ds.item_ids) == {"1", "2", "3", "4"}
    assert any("no <Name>.text" in n for n in ds.notes)


def test_a_folder_path_is_detected(tmp_path):
    folder = write_folder(tmp_path / "mini")
    assert detect_format(folder) == "rechorus"
    assert load_dataset(str(folder)).n_items == 4


def test_bad_time_names_file_line_and_field(tmp_path):
    train = [HEADER, "1\t1\t100", "1\t2\tyesterday", "2\t2\t100", "2\t3\t150", "3\t1\t50", "3\t3\t60"]
    folder = write_folder(tmp_path / "bad", train=train)
    with pytest.raises(DataError) as exc:
        load_rechorus(folder)
    msg = str(exc.value)
    assert "train.csv" in msg and "3" in msg and "time" in msg
    ds = load_rechorus(folder, on_error="skip")
    assert len(ds.interactions) == 11 and ds.skipped


def test_unknown_item_index_and_missing_column_are_errors(tmp_path):
    dev = [HEADER, "1\t3\t300", "2\t9\t200", "3\t2\t70"]
    with pytest.raises(DataError, match="not in the .item2index"):
        load_rechorus(write_folder(tmp_path / "unknown", dev=dev))
    test = ["user_id\titem_id", "1\t4", "2\t4", "3\t4"]
    with pytest.raises(DataError, match="header lacks column"):
        load_rechorus(write_folder(tmp_path / "nocol", test=test))
    with pytest.raises(DataError, match="not a ReChorus folder"):
        load_rechorus(tmp_path)


@requires_shared_data
def test_office_loads_by_name_with_its_published_split():
    if not (SHARED_DATA / "office").is_dir():
        pytest.skip(f"{SHARED_DATA / 'office'} is absent: the Office check is skipped")
    assert "office" in available_datasets()
    ds = load_dataset("office")
    assert (ds.n_users, ds.n_items, len(ds.interactions)) == (4905, 2420, 53258)  # shared/data/README.md
    assert ds.item_ids[0] == "B0000AG93P"  # Office.item2index line 1 (index 1)
    assert ds.item_text()[0].startswith("HP 78 Tri-Color Printer Cartridge")  # its Office.text line
    split = make_split(ds, "auto")
    train_items = set(split.train["item"].to_numpy().tolist())
    cold = [sum(int(t) not in train_items for i in range(len(e)) for t in e.targets(i))
            for e in (split.valid, split.test)]
    assert cold == [30, 66]  # "30 dev and 66 test targets never occur in train"
