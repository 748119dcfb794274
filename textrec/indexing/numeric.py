"""Number ids written digit by digit: random (honest) and sequential (P5's, leaky).

Sequential indexing numbers items in order of first appearance while walking the users'
*training* sequences one user after the other (as P5 does). Consecutive items of one user get
consecutive numbers, so "next item = largest id in the history + 1" is often right: the id
itself leaks the answer. It is kept only for comparison and flagged ``leaky=True``.
Random indexing draws a seeded permutation of ``1..n_items``: the same token machinery
without the leak.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from textrec.indexing.base import ItemIndex, digits


def random_index(n_items: int, seed: int = 0, start: int = 1) -> ItemIndex:
    """Each item gets a distinct random number in ``start..start+n_items-1``."""
    perm = np.random.default_rng(seed).permutation(n_items) + start
    return ItemIndex("random", [digits(int(p)) for p in perm], leaky=False,
                     report={"seed": seed, "start": start})


def sequential_index(train_sequences: Sequence[np.ndarray], n_items: int, start: int = 1) -> ItemIndex:
    """Number items by first appearance in the users' training sequences (LEAKY, see module doc).

    Items that never appear in training get the numbers after all seen items, in index order.
    """
    number = np.full(n_items, -1, dtype=np.int64)
    nxt = start
    for seq in train_sequences:
        for it in seq:
            if number[it] < 0:
                number[it] = nxt
                nxt += 1
    unseen = np.flatnonzero(number < 0)
    number[unseen] = np.arange(nxt, nxt + len(unseen))
    return ItemIndex("sequential", [digits(int(n)) for n in number], leaky=True,
                     report={"start": start, "items_not_in_train": int(len(unseen)),
                             "warning": "ids follow training order: the next item is often last id + 1"})
