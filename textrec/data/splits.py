"""Leakage-proof splits: leave-one-out, global temporal cut, new-item, published; k-core filtering.

Ordering rule (used everywhere): a user's events are ordered by ``timestamp`` and then by
``row`` (the position in the source file). In ML-100K many users rate their last movies in the
same second; the source row order then decides which one is "last", deterministically.

A split holds the training interactions plus two evaluation sets. Each evaluation row is a
user, a history (ordered item indexes the model may read) and one or more targets. The test
history is the training history *plus the valid event(s)*: models are not refit for test.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from textrec.data.dataset import DataError, RecDataset, SkipReport, sort_events


@dataclass
class EvalSet:
    """Evaluation rows in CSR form: ``histories[i]`` and ``targets[i]`` are item index arrays."""

    users: np.ndarray
    hist_indptr: np.ndarray
    hist_items: np.ndarray
    target_indptr: np.ndarray
    target_items: np.ndarray
    is_new: np.ndarray | None = None  # per row: target is a held-out (new) item

    def __len__(self) -> int:
        return len(self.users)

    def history(self, i: int) -> np.ndarray:
        return self.hist_items[self.hist_indptr[i]:self.hist_indptr[i + 1]]

    def targets(self, i: int) -> np.ndarray:
        return self.target_items[self.target_indptr[i]:self.target_indptr[i + 1]]

    def histories(self) -> list[np.ndarray]:
        return [self.history(i) for i in range(len(self))]

    def select(self, rows: np.ndarray) -> EvalSet:
        """A subset of rows (boolean mask or indexes), e.g. only new-item targets."""
        rows = np.flatnonzero(rows) if rows.dtype == bool else np.asarray(rows)
        hist = [self.history(i) for i in rows]
        tgt = [self.targets(i) for i in rows]
        return EvalSet.from_lists(self.users[rows], hist, tgt,
                                  None if self.is_new is None else self.is_new[rows])

    @staticmethod
    def from_lists(users, histories, targets, is_new=None) -> EvalSet:
        """Build from per-row arrays."""
        hl = np.array([len(h) for h in histories], dtype=np.int64)
        tl = np.array([len(t) for t in targets], dtype=np.int64)
        return EvalSet(
            users=np.asarray(users, dtype=np.int64),
            hist_indptr=np.concatenate([[0], np.cumsum(hl)]).astype(np.int64),
            hist_items=(np.concatenate(histories).astype(np.int64) if len(histories) and hl.sum()
                        else np.zeros(0, np.int64)),
            target_indptr=np.concatenate([[0], np.cumsum(tl)]).astype(np.int64),
            target_items=(np.concatenate(targets).astype(np.int64) if len(targets) and tl.sum()
                          else np.zeros(0, np.int64)),
            is_new=None if is_new is None else np.asarray(is_new, dtype=bool),
        )


@dataclass
class Split:
    """Training interactions plus valid/test evaluation sets over one dataset's indexes."""

    dataset: RecDataset
    kind: str
    train: pd.DataFrame  # sorted by user, timestamp, row
    valid: EvalSet
    test: EvalSet
    valid_events: pd.DataFrame  # the interactions used as valid targets (appended for test)
    test_events: pd.DataFrame
    new_items: np.ndarray | None = None  # item indexes held out of all training data
    report: dict = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return self.dataset.n_users

    @property
    def n_items(self) -> int:
        return self.dataset.n_items

    def train_sequences(self) -> list[np.ndarray]:
        """Per user index, the ordered training items (empty array for users with none)."""
        return _sequences(self.train, self.n_users)

    def train_plus_valid(self) -> pd.DataFrame:
        """Train and valid events together, for the separately labelled refit variant."""
        both = pd.concat([self.train, self.valid_events], ignore_index=True)
        return sort_events(both).reset_index(drop=True)

    def item_popularity(self) -> np.ndarray:
        """Training event count per item."""
        return np.bincount(self.train["item"].to_numpy(), minlength=self.n_items)

    def describe(self) -> dict:
        """Sizes of each part, for result JSONs and the CLI."""
        out = {"kind": self.kind, "train_events": int(len(self.train)), "valid_rows": len(self.valid),
               "test_rows": len(self.test), "n_users": self.n_users, "n_items": self.n_items}
        if self.new_items is not None:
            out["new_items"] = int(len(self.new_items))
            out["test_rows_new_item"] = int(self.test.is_new.sum())
            out["test_rows_warm_item"] = int((~self.test.is_new).sum())
        out.update(self.report)
        return out


def _sequences(frame: pd.DataFrame, n_users: int) -> list[np.ndarray]:
    frame = sort_events(frame)
    users = frame["user"].to_numpy()
    items = frame["item"].to_numpy()
    counts = np.bincount(users, minlength=n_users)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    return [items[bounds[u]:bounds[u + 1]] for u in range(n_users)]


def _position_from_end(users: np.ndarray, n_users: int) -> np.ndarray:
    """0 for each user's last event, 1 for the one before, ... (``users`` sorted, as events are)."""
    counts = np.bincount(users, minlength=n_users)
    ends = np.cumsum(counts)
    return (ends[users] - 1 - np.arange(len(users))).astype(np.int64)


def _eval_set(n_users: int, n_items: int, hist_parts: list[pd.DataFrame], targets: pd.DataFrame,
              min_history: int, new_set: np.ndarray | None) -> tuple[EvalSet, int]:
    """An EvalSet for every user with targets, built with array operations (no loop over users).

    ``hist_parts`` are event frames each sorted by user, time, row; a user's history is their
    events of the first part, then of the second, ... Returns the set and the number of users
    dropped for a history shorter than ``min_history``.
    """
    t_users = targets["user"].to_numpy()
    t_count = np.bincount(t_users, minlength=n_users)
    h_users = np.concatenate([f["user"].to_numpy() for f in hist_parts]) if hist_parts else np.zeros(0, np.int64)
    h_items = np.concatenate([f["item"].to_numpy() for f in hist_parts]) if hist_parts else np.zeros(0, np.int64)
    if len(hist_parts) > 1:  # stable by user: each user's first part, then the next
        order = np.argsort(h_users, kind="stable")
        h_users, h_items = h_users[order], h_items[order]
    h_count = np.bincount(h_users, minlength=n_users)
    has_target = t_count > 0
    keep_user = has_target & (h_count >= min_history)
    dropped = int((has_target & ~keep_user).sum())
    users = np.flatnonzero(keep_user)
    hl, tl = h_count[users], t_count[users]
    hist = h_items[keep_user[h_users]]
    tgt = targets["item"].to_numpy()[keep_user[t_users]]
    is_new = None
    if new_set is not None:
        row_of = np.repeat(np.arange(len(users)), tl)
        is_new = np.bincount(row_of, weights=new_set[tgt], minlength=len(users)) > 0
    return EvalSet(users=users.astype(np.int64),
                   hist_indptr=np.concatenate([[0], np.cumsum(hl)]).astype(np.int64),
                   hist_items=hist.astype(np.int64), target_indptr=np.concatenate([[0], np.cumsum(tl)]).astype(np.int64),
                   target_items=tgt.astype(np.int64), is_new=is_new), dropped


def _build(dataset: RecDataset, kind: str, train: pd.DataFrame, valid_ev: pd.DataFrame,
           test_ev: pd.DataFrame, new_items: np.ndarray | None = None, report: dict | None = None,
           min_history: int = 1) -> Split:
    """Assemble eval sets: valid history = train; test history = train + valid events."""
    n_users = dataset.n_users
    train = sort_events(train).reset_index(drop=True)
    valid_ev = sort_events(valid_ev).reset_index(drop=True)
    test_ev = sort_events(test_ev).reset_index(drop=True)
    new_set = None if new_items is None else np.zeros(dataset.n_items, dtype=bool)
    if new_set is not None:
        new_set[new_items] = True
    report = dict(report or {})
    valid, dropped_valid = _eval_set(n_users, dataset.n_items, [train], valid_ev, min_history, new_set)
    test, dropped_test = _eval_set(n_users, dataset.n_items, [train, valid_ev], test_ev, min_history, new_set)
    if dropped_valid or dropped_test:
        report["eval_rows_without_history"] = {"valid": dropped_valid, "test": dropped_test}
    return Split(dataset=dataset, kind=kind, train=train, valid=valid, test=test, valid_events=valid_ev,
                 test_events=test_ev, new_items=new_items, report=report)


def leave_one_out(dataset: RecDataset, min_events: int = 3) -> Split:
    """Per user: last event = test, second to last = valid, the rest = train.

    Users with fewer than ``min_events`` events keep all their events in train and get no
    valid/test row (counted in ``split.report['users_too_short']``).
    """
    if min_events < 3:
        raise ValueError("leave-one-out needs min_events >= 3 (one train, one valid, one test event)")
    inter = dataset.sorted_interactions()
    users = inter["user"].to_numpy()
    pos = _position_from_end(users, dataset.n_users)
    per_user = np.bincount(users, minlength=dataset.n_users)
    eligible = per_user[users] >= min_events
    test_ev = inter[(pos == 0) & eligible]
    valid_ev = inter[(pos == 1) & eligible]
    train = inter[(pos >= 2) | ~eligible]
    report = {"users_too_short": int(((per_user > 0) & (per_user < min_events)).sum()),
              "tie_rule": "timestamp, then source row order",
              "last_two_events_tied": int(_tied_last_two(inter, pos))}
    return _build(dataset, "leave_one_out", train, valid_ev, test_ev, report=report)


def _tied_last_two(inter: pd.DataFrame, pos: np.ndarray) -> int:
    """Users whose last two events share a timestamp (frame sorted by user, time, row)."""
    ts = inter["timestamp"].to_numpy()
    second = np.flatnonzero(pos == 1)  # the next row is the same user's last event
    return int((ts[second] == ts[second + 1]).sum())


def published_split(dataset: RecDataset) -> Split:
    """The split a dataset ships with (its ``split`` column: train / valid / test)."""
    if not dataset.has_predefined_split:
        raise DataError(f"dataset '{dataset.name}' ships no split; use leave_one_out or temporal",
                        path=dataset.source)
    inter = dataset.sorted_interactions()
    lab = inter["split"].to_numpy()
    bad = ~np.isin(lab, ["train", "valid", "test"])
    if bad.any():
        raise DataError(f"unknown split label '{lab[bad][0]}'", path=dataset.source, field="split")
    return _build(dataset, "published", inter[lab == "train"], inter[lab == "valid"], inter[lab == "test"],
                  report={"source": "dataset's own split files"})


def temporal_split(dataset: RecDataset, valid_frac: float = 0.1, test_frac: float = 0.1) -> Split:
    """Global time cut: the last ``test_frac`` of events (by time) are test, the ``valid_frac``
    before them valid. Each user's window events are targets together (set-based Recall);
    histories are everything before the window, so no future event is ever seen.
    """
    if not (0 < valid_frac < 1 and 0 < test_frac < 1 and valid_frac + test_frac < 1):
        raise ValueError("valid_frac and test_frac must be in (0, 1) and sum below 1")
    inter = dataset.interactions.sort_values(["timestamp", "row"], kind="stable")
    n = len(inter)
    n_test = int(round(n * test_frac))
    n_valid = int(round(n * valid_frac))
    t_test = inter["timestamp"].iloc[n - n_test]
    t_valid = inter["timestamp"].iloc[n - n_test - n_valid]
    # Cut on timestamp values (not positions) so events of the same second never straddle a cut.
    ts = inter["timestamp"].to_numpy()
    train = inter[ts < t_valid]
    valid_ev = inter[(ts >= t_valid) & (ts < t_test)]
    test_ev = inter[ts >= t_test]
    report = {"valid_start": float(t_valid), "test_start": float(t_test)}
    return _build(dataset, "temporal", train, valid_ev, test_ev, report=report)


def new_item_split(dataset: RecDataset, frac: float = 0.2, seed: int = 0, base: str = "auto") -> Split:
    """Hold out a seeded fraction of items from *all* training data.

    Start from the base split (published if the dataset ships one, else leave-one-out), pick
    ``frac`` of the catalog at random, drop their events from train (counted in the report) and
    tag each valid/test row whose target is such an item ``is_new``. Histories contain only
    training events (+ the valid event for test), so a new item can appear in a test history
    only as that valid event. Report warm and new rows separately.
    """
    if not 0 < frac < 1:
        raise ValueError("frac must be in (0, 1)")
    if base == "auto":
        base = "published" if dataset.has_predefined_split else "leave_one_out"
    base_split = published_split(dataset) if base == "published" else leave_one_out(dataset)
    rng = np.random.default_rng(seed)
    n_new = int(round(dataset.n_items * frac))
    new_items = np.sort(rng.choice(dataset.n_items, size=n_new, replace=False))
    is_new = np.zeros(dataset.n_items, dtype=bool)
    is_new[new_items] = True
    train = base_split.train
    keep = ~is_new[train["item"].to_numpy()]
    report = {"base": base, "new_item_frac": frac, "seed": seed,
              "train_events_removed": int((~keep).sum()),
              "train_events_kept": int(keep.sum())}
    return _build(dataset, "new_item", train[keep], base_split.valid_events, base_split.test_events,
                  new_items=new_items, report=report)


def k_core(dataset: RecDataset, k: int = 5, user_k: int | None = None, item_k: int | None = None
           ) -> tuple[RecDataset, dict]:
    """Iteratively drop users/items with fewer than k events; return the filtered data and counts.

    Indexes are rebuilt (compact) on the filtered data; the catalog keeps only surviving items.
    """
    user_k = k if user_k is None else user_k
    item_k = k if item_k is None else item_k
    inter = dataset.interactions
    mask = np.ones(len(inter), dtype=bool)
    users = inter["user"].to_numpy()
    items = inter["item"].to_numpy()
    while True:
        uc = np.bincount(users[mask], minlength=dataset.n_users)
        ic = np.bincount(items[mask], minlength=dataset.n_items)
        new_mask = mask & (uc[users] >= user_k) & (ic[items] >= item_k)
        if new_mask.sum() == mask.sum():
            break
        mask = new_mask
    kept = inter[mask]
    report = {
        "k_core": {"user_k": user_k, "item_k": item_k},
        "users_removed": int(dataset.n_users - kept["user"].nunique()),
        "items_removed": int(dataset.n_items - kept["item"].nunique()),
        "events_removed": int(len(inter) - len(kept)),
    }
    frame = pd.DataFrame({
        "user_id": dataset.user_ids[kept["user"].to_numpy()],
        "item_id": dataset.item_ids[kept["item"].to_numpy()],
        "timestamp": kept["timestamp"].to_numpy(),
        "row": kept["row"].to_numpy(),
    })
    for col in ("rating", "split"):
        if col in kept.columns:
            frame[col] = kept[col].to_numpy()
    items = dataset.items.drop(columns=["item"])
    items = items[items["item_id"].isin(set(frame["item_id"]))]
    out = RecDataset.from_frames(dataset.name, frame, items, text_fields=dataset.text_fields,
                                 source=dataset.source, skipped=SkipReport(dict(dataset.skipped.counts)),
                                 keep_all_catalog_items=False)
    if dataset.reviews is not None:
        rev = dataset.reviews
        rev = rev[np.isin(rev["user"], kept["user"].unique()) & np.isin(rev["item"], kept["item"].unique())].copy()
        rev["user_id"] = dataset.user_ids[rev.pop("user").to_numpy()]
        rev["item_id"] = dataset.item_ids[rev.pop("item").to_numpy()]
        out.reviews = RecDataset.from_frames(dataset.name, frame, None, reviews=rev).reviews
    out.notes = list(dataset.notes) + [f"{k}-core: {report}"]
    return out, report


def make_split(dataset: RecDataset, kind: str = "auto", **kw) -> Split:
    """Dispatch by name: auto (published if shipped, else leave-one-out), leave_one_out,
    temporal, new_item, published."""
    if kind == "auto":
        kind = "published" if dataset.has_predefined_split else "leave_one_out"
    fns = {"leave_one_out": leave_one_out, "loo": leave_one_out, "temporal": temporal_split,
           "new_item": new_item_split, "published": published_split}
    if kind not in fns:
        raise ValueError(f"unknown split '{kind}'; choose from {sorted(fns)}")
    return fns[kind](dataset, **kw)
