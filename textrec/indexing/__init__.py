"""Item identifiers for generative recommenders: random, sequential, collaborative, semantic, per-item and hybrid indexing, and the trie.

``build_index(scheme, train_sequences, n_items, texts=...)`` builds any scheme from *training*
data only; every index saves/loads as one JSON file (:class:`ItemIndex`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from textrec.indexing.base import ItemIndex
from textrec.indexing.collaborative import collaborative_index, cooccurrence
from textrec.indexing.item import hybrid_index, item_index, item_token
from textrec.indexing.numeric import random_index, sequential_index
from textrec.indexing.semantic import codes_to_index, semantic_index
from textrec.indexing.trie import Banned, ItemTrie, TrieLogitsProcessor

SCHEMES = ("random", "sequential", "collaborative", "semantic", "item", "collaborative+item", "semantic+item")


def build_index(scheme: str, train_sequences: Sequence[np.ndarray], n_items: int,
                texts: Sequence[str] | None = None, seed: int = 0, **kw) -> ItemIndex:
    """Build an item index by scheme name from training sequences (and item texts for semantic).

    Semantic codes come from a quantizer fitted on the texts of items seen in training only;
    items without training events (new items) are then encoded with it. ``item`` is one token
    per item; ``<base>+item`` appends that token to the base scheme's id (``kw`` go to the base).
    """
    if scheme == "item":
        return item_index(n_items)
    if scheme.endswith("+item"):
        base = scheme[:-len("+item")]
        if base not in ("collaborative", "semantic", "random"):
            raise ValueError(f"unknown hybrid indexing '{scheme}'; choose collaborative+item or semantic+item")
        return hybrid_index(build_index(base, train_sequences, n_items, texts=texts, seed=seed, **kw))
    if scheme == "random":
        return random_index(n_items, seed=seed, **kw)
    if scheme == "sequential":
        return sequential_index(train_sequences, n_items, **kw)
    if scheme == "collaborative":
        return collaborative_index(train_sequences, n_items, seed=seed, **kw)
    if scheme == "semantic":
        if texts is None and "embeddings" not in kw:
            raise ValueError("semantic indexing needs the item texts (or embeddings=...)")
        seen = np.unique(np.concatenate([np.asarray(s, dtype=np.int64) for s in train_sequences] or [[]]))
        kw.setdefault("fit_items", seen if len(seen) else None)
        return semantic_index(texts or [""] * n_items, seed=seed, **kw)[0]
    raise ValueError(f"unknown indexing scheme '{scheme}'; choose from {SCHEMES}")


__all__ = ["SCHEMES", "Banned", "ItemIndex", "ItemTrie", "TrieLogitsProcessor", "build_index",
           "codes_to_index", "collaborative_index", "cooccurrence", "hybrid_index", "item_index", "item_token",
           "random_index", "semantic_index", "sequential_index"]
