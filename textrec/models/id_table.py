"""Item ID embedding tables: collision-free (one row per id) or fixed-size hashed (Monolith).

A hashed table keeps ``n_buckets`` rows, a fraction of the catalog, and maps every id to a
bucket with a fixed, seeded hash; ids that share a bucket share one vector, so a model cannot
tell them apart, and in a tied-output model such as SASRec they get identical scores. On
power-law data the colliding ids that matter are the frequent ones (they are most of the
traffic and of the test targets); and as new ids arrive a fixed-size table only fills up.
A collision-free table gives every id its own row (what SASRec has by default).

:func:`collision_report` summarises a bucket assignment by item-frequency decile: how many
items share their bucket, how many training events sit on a shared bucket, and how much of a
bucket's event mass belongs to *other* items (the interference an item's vector suffers).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["HashedIdTable", "make_id_table", "hash_buckets", "collision_report", "ID_TABLE_KINDS"]

ID_TABLE_KINDS = ("collision_free", "hashed")

# a 64-bit odd multiplier (splitmix64's golden-ratio constant): consecutive ids spread evenly
_GOLDEN = 0x9E3779B97F4A7C15
_MASK64 = (1 << 64) - 1


def hash_buckets(ids: np.ndarray, n_buckets: int, seed: int = 0) -> np.ndarray:
    """Bucket of each non-negative integer id: a seeded splitmix64-style mix, modulo ``n_buckets``.

    Deterministic across runs and machines, and defined for ids never seen before (a stream of
    new ids needs no table growth).
    """
    if n_buckets < 1:
        raise ValueError(f"n_buckets must be >= 1, got {n_buckets}")
    x = (np.asarray(ids, dtype=np.uint64) + np.uint64((seed * _GOLDEN) & _MASK64))
    with np.errstate(over="ignore"):
        x = x + np.uint64(_GOLDEN)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x % np.uint64(n_buckets)).astype(np.int64)


def table_rows(n_items: int, size: float) -> int:
    """Rows of a hashed table holding ``size`` (a fraction, e.g. 0.25) of ``n_items``."""
    if not 0 < size:
        raise ValueError(f"hashed table size must be a positive fraction of the catalog, got {size}")
    return max(1, math.ceil(n_items * size))


class HashedIdTable(nn.Module):
    """``n_buckets`` learned rows; item ``i`` reads row ``buckets[i]``.

    ``weight`` is the (n_items, d) per-item view, so a model that reads ``table.weight`` (as
    SASRec reads its embedding table) needs no other change; gradients of colliding items add
    up in their shared row.
    """

    def __init__(self, n_items: int, dim: int, size: float = 0.25, seed: int = 0, init_std: float = 0.02) -> None:
        super().__init__()
        self.size, self.seed = float(size), int(seed)
        n_buckets = table_rows(n_items, size)
        self.table = nn.Parameter(torch.randn(n_buckets, dim) * init_std)
        self.register_buffer("buckets", torch.from_numpy(hash_buckets(np.arange(n_items), n_buckets, seed)))

    @property
    def n_buckets(self) -> int:
        """Rows of the learned table."""
        return int(self.table.shape[0])

    @property
    def weight(self) -> torch.Tensor:
        """Per-item vectors (n_items, d); colliding items get the same row."""
        return self.table[self.buckets]

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        return self.table[self.buckets[items]]


def make_id_table(n_items: int, dim: int, kind: str = "collision_free", size: float = 1.0, seed: int = 0,
                  init_std: float = 0.02) -> nn.Module:
    """``collision_free``: an ``nn.Embedding`` with one row per id; ``hashed``: a
    :class:`HashedIdTable` of ``size`` x ``n_items`` rows. Both expose ``.weight`` (n_items, d)."""
    if kind == "collision_free":
        table = nn.Embedding(n_items, dim)
        nn.init.normal_(table.weight, std=init_std)
        return table
    if kind == "hashed":
        return HashedIdTable(n_items, dim, size=size, seed=seed, init_std=init_std)
    raise ValueError(f"unknown id table kind '{kind}'; choose one of {ID_TABLE_KINDS}")


def collision_report(buckets: np.ndarray, popularity: np.ndarray, n_deciles: int = 10) -> list[dict[str, Any]]:
    """Per item-frequency decile (0 = rarest tenth of items, by training events; ties by index):

    - ``items``: items in the decile; ``events``: their training events;
    - ``item_collision_rate``: share of the decile's items whose bucket holds another item;
    - ``event_collision_rate``: share of the decile's events on such items;
    - ``foreign_mass``: mean over the decile's items of the share of their bucket's events that
      belong to other items (0 = the vector is the item's own, ~1 = it mostly learns others).

    A collision-free assignment (``buckets = arange``) reports zeros everywhere.
    """
    buckets = np.asarray(buckets, dtype=np.int64)
    pop = np.asarray(popularity, dtype=np.float64)
    if buckets.shape != pop.shape:
        raise ValueError(f"buckets {buckets.shape} and popularity {pop.shape} must have one entry per item")
    n = len(pop)
    size = np.bincount(buckets, minlength=buckets.max(initial=0) + 1)
    mass = np.bincount(buckets, weights=pop, minlength=len(size))
    collides = size[buckets] > 1
    bucket_mass = mass[buckets]
    foreign = np.divide(bucket_mass - pop, bucket_mass, out=np.where(collides, 1.0, 0.0), where=bucket_mass > 0)
    order = np.lexsort((np.arange(n), pop))  # rarest first
    rows = []
    for d, idx in enumerate(np.array_split(order, n_deciles)):
        ev = pop[idx].sum()
        rows.append({
            "decile": d, "items": int(len(idx)), "events": int(ev),
            "min_events": int(pop[idx].min()) if len(idx) else 0,
            "max_events": int(pop[idx].max()) if len(idx) else 0,
            "item_collision_rate": round(float(collides[idx].mean()) if len(idx) else 0.0, 4),
            "event_collision_rate": round(float(pop[idx][collides[idx]].sum() / ev) if ev else 0.0, 4),
            "foreign_mass": round(float(foreign[idx].mean()) if len(idx) else 0.0, 4),
        })
    return rows
