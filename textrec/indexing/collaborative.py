"""Collaborative indexing (OpenP5's CID): recursive spectral clustering of item co-occurrence.

Two items co-occur when one user consumed both in the *training* events (valid/test events
are never read, so the ids cannot leak held-out answers). The item-item co-occurrence graph is
split into ``n_clusters`` groups by spectral clustering (regularised normalised adjacency ->
top eigenvectors -> k-means on the row-normalised embedding); each group larger than
``leaf_size`` is split again on its own sub-graph. An item's id is its path of cluster
numbers plus its position inside the final leaf: ``<c0_3><c1_12><c2_5>`` (level-specific
tokens, so items in the same cluster share id prefixes and the decoder shares statistics).

Degenerate splits (k-means putting every item in one group, e.g. items without any
co-occurrence) fall back to cutting the group into equal chunks in embedding order, so the
recursion always ends; how often that happened is in ``report``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from textrec.indexing.base import ItemIndex


def cooccurrence(train_sequences: Sequence[np.ndarray], n_items: int) -> sp.csr_matrix:
    """Item-item counts of users who consumed both (diagonal zeroed), from training sequences."""
    rows = np.concatenate([np.full(len(s), u) for u, s in enumerate(train_sequences)]) if train_sequences \
        else np.zeros(0, np.int64)
    cols = np.concatenate(list(train_sequences)) if train_sequences else np.zeros(0, np.int64)
    x = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)),
                      shape=(len(train_sequences), n_items))
    x.data[:] = 1.0  # a user counts once per item pair
    c = (x.T @ x).tocsr()
    c.setdiag(0)
    c.eliminate_zeros()
    return c


def _spectral_labels(adj: sp.csr_matrix, k: int, seed: int) -> np.ndarray:
    """Cluster labels of a (sub-)graph: regularised spectral embedding + k-means."""
    from scipy.sparse.linalg import eigsh
    from sklearn.cluster import KMeans

    n = adj.shape[0]
    deg = np.asarray(adj.sum(1)).ravel()
    tau = max(float(deg.mean()), 1e-6)  # regularisation keeps low-degree items from dominating
    dinv = 1.0 / np.sqrt(deg + tau)
    m = sp.diags(dinv) @ adj @ sp.diags(dinv)
    dim = min(k, n - 1)
    if n <= 600:
        _, vecs = np.linalg.eigh(m.toarray())
        vecs = vecs[:, -dim:]
    else:
        rng = np.random.default_rng(seed)
        _, vecs = eigsh(m.astype(np.float64), k=dim, which="LA", v0=rng.standard_normal(n))
    vecs = vecs / (np.linalg.norm(vecs, axis=1, keepdims=True) + 1e-9)
    return KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(vecs)


def collaborative_index(train_sequences: Sequence[np.ndarray], n_items: int, n_clusters: int = 16,
                        leaf_size: int = 16, seed: int = 0, max_depth: int = 8) -> ItemIndex:
    """Recursive spectral clustering of training co-occurrence (see module doc)."""
    if n_clusters < 2 or leaf_size < 1:
        raise ValueError("n_clusters must be >= 2 and leaf_size >= 1")
    c = cooccurrence(train_sequences, n_items)
    tokens: list[list[str] | None] = [None] * n_items
    stats = {"splits": 0, "fallback_chunk_splits": 0, "max_depth": 0}

    def assign(items: np.ndarray, prefix: list[str], level: int) -> None:
        stats["max_depth"] = max(stats["max_depth"], level + 1)
        if len(items) <= leaf_size:
            for j, it in enumerate(items):
                tokens[it] = prefix + [f"<c{level}_{j}>"]
            return
        k = min(n_clusters, len(items))
        labels = None
        if level < max_depth:
            sub = c[items][:, items].tocsr()
            if sub.nnz:
                labels = _spectral_labels(sub, k, seed + level)
                stats["splits"] += 1
        if labels is None or len(np.unique(labels)) < 2:
            stats["fallback_chunk_splits"] += 1
            labels = np.arange(len(items)) * k // len(items)
        # Number clusters by size (largest first) so ids are deterministic and readable.
        uniq, counts = np.unique(labels, return_counts=True)
        order = uniq[np.lexsort((uniq, -counts))]
        for new, old in enumerate(order):
            assign(items[labels == old], prefix + [f"<c{level}_{new}>"], level + 1)

    assign(np.arange(n_items), [], 0)
    lens = [len(t) for t in tokens if t is not None]
    return ItemIndex("collaborative", [t for t in tokens if t is not None], leaky=False,
                     report={"n_clusters": n_clusters, "leaf_size": leaf_size, "seed": seed,
                             "cooccurrence_nnz": int(c.nnz), "id_length_min": min(lens),
                             "id_length_max": max(lens), **stats})
