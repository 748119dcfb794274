"""A tiny rated, reviewed dataset shared by the P5 rating and explanation tests."""

from __future__ import annotations

import pandas as pd

from textrec.data.dataset import RecDataset
from textrec.data.splits import make_split


def tiny_review_split(n_items: int, n_users: int = 24, per_user: int = 5):
    """A dataset whose ratings and review words vary by user and position, and its leave-one-out split."""
    rows = [(f"u{u}", f"i{(u + j) % n_items}", float(j), float(1 + (u * j) % 5))
            for u in range(n_users) for j in range(per_user)]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "rating"])
    reviews = inter.assign(text=[f"solid item {i % 7} works {'well' if i % 2 else 'badly'}" for i in range(len(inter))],
                           summary="ok")
    ds = RecDataset.from_frames("tiny", inter, None, reviews)
    return ds, make_split(ds, "leave_one_out")
