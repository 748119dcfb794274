"""Top-k by inner product over a large catalog with FAISS: exact below a size, IVF above it.

Scoring every item with one matmul is fastest for catalogs of a few thousand items; for a
large catalog a FAISS index answers one user vector without materialising a score per item.
Up to ``exact_max`` items the index is exact (``IndexFlatIP``); above it an IVF index
(``nlist ~ 4 sqrt(n)`` lists, ``nprobe`` of them searched) trades a little recall for speed.
"""

from __future__ import annotations

import math

import numpy as np

#: catalogs up to this size are searched exactly
EXACT_MAX = 200_000


class VectorIndex:
    """Inner-product top-k over item vectors; history items can be excluded from the answer."""

    def __init__(self, item_vectors: np.ndarray, exact_max: int = EXACT_MAX, nprobe: int = 16,
                 seed: int = 0) -> None:
        import faiss

        x = np.ascontiguousarray(item_vectors, dtype=np.float32)
        if x.ndim != 2 or not len(x):
            raise ValueError(f"item vectors must be a non-empty (n, d) array, got shape {x.shape}")
        self.n, self.dim = x.shape
        if self.n <= exact_max:
            self.kind = "exact"
            self.index = faiss.IndexFlatIP(self.dim)
        else:
            self.kind = "ivf"
            nlist = max(1, int(4 * math.sqrt(self.n)))
            quantizer = faiss.IndexFlatIP(self.dim)
            self.index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(seed)
            sample = x[rng.choice(self.n, size=min(self.n, 64 * nlist), replace=False)]
            self.index.train(sample)
            self.index.nprobe = min(nprobe, nlist)
            self._quantizer = quantizer  # the IVF index does not own it: keep it alive
        self.index.add(x)

    def search(self, vector: np.ndarray, k: int, exclude: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (indexes, scores) for one vector, best first, ``exclude`` never returned."""
        ex = np.unique(np.asarray(exclude, dtype=np.int64)) if exclude is not None else np.zeros(0, np.int64)
        want = min(self.n, k + len(ex))
        q = np.ascontiguousarray(np.asarray(vector, dtype=np.float32).reshape(1, -1))
        scores, idx = self.index.search(q, want)
        idx, scores = idx[0], scores[0]
        keep = idx >= 0
        if len(ex):
            keep &= ~np.isin(idx, ex)
        return idx[keep][:k].astype(np.int64), scores[keep][:k].astype(np.float32)
