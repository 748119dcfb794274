"""Top-k by inner product over a large catalog: a bfloat16 scan rescored exactly, IVF above a size.

One float32 matrix-vector product over 100,000 x 384 item vectors reads 150 MB per query, so a
large catalog is memory-bound, not compute-bound. Up to ``exact_max`` items the index keeps a
bfloat16 copy (half the bytes) and scans it for a whole batch of queries at once (one pass over
memory serves every query in the batch); the best ``k + excluded + RESCORE_PAD`` candidates of
each query are then rescored in float32, so the answer is the exact top-k unless bfloat16
rounding pushed a true top-k item more than ``RESCORE_PAD`` places down. Above ``exact_max`` a
FAISS IVF index (``nlist ~ 4 sqrt(n)`` lists, ``nprobe`` of them searched) trades a little recall
for speed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: catalogs up to this size are scanned in full
EXACT_MAX = 200_000
#: extra candidates per query rescored in float32 after the bfloat16 scan
RESCORE_PAD = 64


class VectorIndex:
    """Inner-product top-k over item vectors; history items can be excluded from the answer."""

    def __init__(self, item_vectors: np.ndarray, exact_max: int = EXACT_MAX, nprobe: int = 16,
                 seed: int = 0) -> None:
        import torch

        x = np.ascontiguousarray(item_vectors, dtype=np.float32)
        if x.ndim != 2 or not len(x):
            raise ValueError(f"item vectors must be a non-empty (n, d) array, got shape {x.shape}")
        self.n, self.dim = x.shape
        self._x = torch.from_numpy(x)
        if self.n <= exact_max:
            self.kind = "scan"
            self._low = self._x.to(torch.bfloat16)
            return
        import faiss

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
        ex = np.zeros(0, np.int64) if exclude is None else exclude
        return self.search_batch(np.asarray(vector, dtype=np.float32).reshape(1, -1), k, [ex])[0]

    def search_batch(self, vectors: np.ndarray, k: int, excludes: Sequence[np.ndarray]
                     ) -> list[tuple[np.ndarray, np.ndarray]]:
        """:meth:`search` for a batch of vectors (one row each), one exclusion array per row."""
        import torch

        q = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32).reshape(-1, self.dim))
        exs = [np.unique(np.asarray(e, dtype=np.int64)) for e in excludes]
        want = min(self.n, k + max((len(e) for e in exs), default=0) + (RESCORE_PAD if self.kind == "scan" else 0))
        if self.kind == "scan":
            with torch.no_grad():
                qt = torch.from_numpy(q)
                cand = torch.topk((qt.to(torch.bfloat16) @ self._low.T).float(), want, dim=1).indices
                exact = torch.einsum("bd,bcd->bc", qt, self._x[cand])  # float32 rescoring
                order = torch.argsort(-exact, dim=1, stable=True)
            idx_all = torch.gather(cand, 1, order).numpy()
            val_all = torch.gather(exact, 1, order).numpy()
        else:
            val_all, idx_all = self.index.search(q, want)
        out = []
        for idx, val, ex in zip(idx_all, val_all, exs):
            keep = idx >= 0
            if len(ex):
                keep &= ~np.isin(idx, ex)
            out.append((idx[keep][:k].astype(np.int64), val[keep][:k].astype(np.float32)))
        return out
