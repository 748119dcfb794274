"""Splits: tie rule, no leakage, test history = train + valid, new-item and temporal, k-core."""

import numpy as np
import pandas as pd
import pytest

from textrec.data import RecDataset
from textrec.data.splits import (
    k_core,
    leave_one_out,
    make_split,
    new_item_split,
    published_split,
    temporal_split,
)


def _ds(rows, name="t"):
    return RecDataset.from_frames(name, pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]))


def test_loo_ties_broken_by_row_order():
    # u1's last two events share a timestamp: the later source row is "last" (test).
    ds = _ds([("u1", "a", 1), ("u1", "b", 2), ("u1", "c", 3), ("u1", "d", 3),
              ("u2", "a", 5), ("u2", "c", 1), ("u2", "b", 3)])
    s = leave_one_out(ds)
    iid = ds.item_ids
    rows = {ds.user_ids[u]: i for i, u in enumerate(s.test.users)}
    assert iid[s.test.targets(rows["u1"])].tolist() == ["d"]
    assert iid[s.valid.targets(rows["u1"])].tolist() == ["c"]
    # u2 is out of file order by time: a(5) is last, b(3) valid, c(1) train.
    assert iid[s.test.targets(rows["u2"])].tolist() == ["a"]
    assert iid[s.valid.targets(rows["u2"])].tolist() == ["b"]
    assert iid[s.test.history(rows["u2"])].tolist() == ["c", "b"]
    assert iid[s.valid.history(rows["u2"])].tolist() == ["c"]
    assert s.report["last_two_events_tied"] == 1


def test_loo_no_leakage_and_short_users():
    rng = np.random.default_rng(1)
    rows = [(f"u{u}", f"i{rng.integers(30)}", float(rng.integers(100))) for u in range(40)
            for _ in range(rng.integers(1, 9))]
    ds = _ds(rows)
    s = leave_one_out(ds)
    train_by_user = s.train.groupby("user")
    for i, u in enumerate(s.test.users):
        tr = train_by_user.get_group(u)
        ev_t = s.test_events[s.test_events.user == u].iloc[0]
        ev_v = s.valid_events[s.valid_events.user == u].iloc[0]
        # every train event precedes (time, row) the valid event, which precedes the test event
        assert ((tr.timestamp < ev_v.timestamp) | ((tr.timestamp == ev_v.timestamp) & (tr.row < ev_v.row))).all()
        assert (ev_v.timestamp, ev_v.row) < (ev_t.timestamp, ev_t.row)
        assert len(s.test.history(i)) == len(tr) + 1
    n_short = sum(1 for u, g in pd.DataFrame(rows).groupby(0) if len(g) < 3)
    assert s.report["users_too_short"] == n_short
    assert len(s.test) == ds.n_users - n_short
    assert len(s.train) + len(s.valid_events) + len(s.test_events) == ds.n_interactions


def test_new_item_split_removes_items_from_training():
    rng = np.random.default_rng(2)
    rows = [(f"u{u}", f"i{rng.integers(50)}", float(t)) for u in range(100) for t in range(8)]
    ds = _ds(rows)
    s = new_item_split(ds, frac=0.2, seed=3)
    assert len(s.new_items) == 10
    assert not np.isin(s.train["item"], s.new_items).any()
    assert s.report["train_events_removed"] > 0
    expect = np.array([np.isin(s.test.targets(i), s.new_items).any() for i in range(len(s.test))])
    assert (s.test.is_new == expect).all() and expect.any() and (~expect).any()
    again = new_item_split(ds, frac=0.2, seed=3)
    assert (again.new_items == s.new_items).all()


def test_temporal_split_never_sees_future():
    rows = [(f"u{u % 7}", f"i{t % 11}", float(t)) for u, t in zip(range(200), range(200))]
    ds = _ds(rows)
    s = temporal_split(ds, 0.1, 0.1)
    assert s.train.timestamp.max() < s.valid_events.timestamp.min()
    assert s.valid_events.timestamp.max() < s.test_events.timestamp.min()
    for i in range(len(s.test)):
        assert len(s.test.targets(i)) >= 1


def test_published_split_requires_labels():
    ds = _ds([("u", "a", 1), ("u", "b", 2), ("u", "c", 3)])
    with pytest.raises(ValueError, match="ships no split"):
        published_split(ds)
    df = pd.DataFrame({"user_id": ["u"] * 3, "item_id": list("abc"), "timestamp": [1, 2, 3],
                       "split": ["train", "valid", "test"]})
    s = make_split(RecDataset.from_frames("p", df))
    assert s.kind == "published" and len(s.test) == 1


def test_k_core_reports_removals():
    rows = [(f"u{u}", f"i{i}", 0.0) for u in range(6) for i in range(5)] + [("lonely", "rare", 0.0)]
    ds = _ds(rows)
    out, rep = k_core(ds, 5)
    assert rep["users_removed"] == 1 and rep["items_removed"] == 1 and rep["events_removed"] == 1
    assert out.n_users == 6 and out.n_items == 5
