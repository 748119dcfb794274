"""Classic non-neural baselines: Popularity, ItemKNN, EASE and a first-order Markov chain.

All four are deterministic, score a whole batch with one matrix product (no Python loop over
items), never mask the history (the harness does), and round-trip through
``save_pretrained`` / ``from_pretrained``: dense learned matrices are stored as tensors, sparse
ones as ``(2, nnz)`` int64 indices + float32 values + the item count.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from textrec.models.base import Recommender, TrainView
from textrec.models.memory import (
    ITEMKNN_BYTES_PER_PAIR,
    cooccurrence_pairs,
    ease_memory_bytes,
    require_memory,
)

__all__ = ["EASE", "ItemKNN", "MarkovChain", "Popularity"]


# ---- shared helpers ------------------------------------------------------------------------
def interaction_matrix(train: pd.DataFrame, n_users: int, n_items: int) -> sp.csr_matrix:
    """Binary users×items CSR matrix of the training events (repeats count once)."""
    users = train["user"].to_numpy(dtype=np.int64)
    items = train["item"].to_numpy(dtype=np.int64)
    x = sp.csr_matrix((np.ones(len(users), dtype=np.float32), (users, items)), shape=(n_users, n_items))
    x.sum_duplicates()
    x.data[:] = 1.0
    return x


def history_matrix(histories: list[np.ndarray], n_items: int) -> sp.csr_matrix:
    """Binary rows×items CSR indicator of each history (repeats count once)."""
    lens = np.array([len(h) for h in histories], dtype=np.int64)
    cols = (np.concatenate([np.asarray(h, dtype=np.int64) for h in histories]) if lens.sum()
            else np.zeros(0, np.int64))
    rows = np.repeat(np.arange(len(histories)), lens)
    h = sp.csr_matrix((np.ones(len(cols), dtype=np.float32), (rows, cols)), shape=(len(histories), n_items))
    h.sum_duplicates()
    h.data[:] = 1.0
    return h


def _sparse_to_tensors(m: sp.spmatrix, prefix: str) -> dict[str, torch.Tensor]:
    coo = sp.coo_matrix(m)
    idx = np.vstack([coo.row, coo.col]).astype(np.int64)
    return {f"{prefix}_indices": torch.from_numpy(idx),
            f"{prefix}_values": torch.from_numpy(coo.data.astype(np.float32)),
            f"{prefix}_shape": torch.tensor(coo.shape, dtype=torch.int64)}


def _sparse_from_tensors(t: dict[str, torch.Tensor], prefix: str) -> sp.csr_matrix:
    idx = t[f"{prefix}_indices"].numpy()
    val = t[f"{prefix}_values"].numpy().astype(np.float32)
    shape = tuple(int(s) for s in t[f"{prefix}_shape"].tolist())
    return sp.csr_matrix((val, (idx[0], idx[1])), shape=shape)


def _top_k_per_column(m: sp.spmatrix, k: int) -> sp.csc_matrix:
    """Keep the ``k`` largest entries of each column (ties: lower row index first). Vectorised."""
    csc = sp.csc_matrix(m)
    csc.sort_indices()
    csc.eliminate_zeros()
    n_per_col = np.diff(csc.indptr)
    if k <= 0 or n_per_col.max(initial=0) <= k:
        return csc
    col = np.repeat(np.arange(csc.shape[1]), n_per_col)
    # Stable sort by column, then value descending; equal values keep the (ascending) row order.
    order = np.lexsort((-csc.data, col))
    rank = np.arange(len(order)) - csc.indptr[col[order]]
    keep = np.sort(order[rank < k])
    out = sp.csc_matrix((csc.data[keep], csc.indices[keep], np.concatenate(
        [[0], np.cumsum(np.minimum(n_per_col, k))])), shape=csc.shape)
    return out


def _check_fitted(model: Recommender, attr: str) -> None:
    if getattr(model, attr) is None:
        raise RuntimeError(f"{model.name} is not fitted: call fit() or from_pretrained() first")


# ---- Popularity ----------------------------------------------------------------------------
class Popularity(Recommender):
    """Every user gets the same ranking: training event counts (ties: lower item index)."""

    name = "Popularity"
    fresh_scores = True

    def __init__(self) -> None:
        self.counts: torch.Tensor | None = None

    def fit(self, data: TrainView, progress: bool = True) -> Popularity:
        self.counts = torch.from_numpy(data.popularity().astype(np.float32))
        return self

    def score(self, users: np.ndarray, histories: list[np.ndarray]) -> torch.Tensor:
        _check_fitted(self, "counts")
        return self.counts.unsqueeze(0).repeat(len(histories), 1)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        _check_fitted(self, "counts")
        return {"counts": self.counts}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.counts = tensors["counts"].float()


# ---- ItemKNN -------------------------------------------------------------------------------
class ItemKNN(Recommender):
    """Item-based k-nearest neighbours with cosine similarity over binary user vectors.

    ``sim(i, j) = |U_i ∩ U_j| / (sqrt(|U_i|) sqrt(|U_j|) + shrink)``, self-similarity 0. For each
    target item ``j`` only its ``k`` most similar items are kept; ``score(h, j)`` is the sum of
    ``sim(i, j)`` over the distinct history items ``i``: ``H @ W`` with ``H`` the binary history
    matrix and ``W`` the pruned similarity (sparse).
    """

    name = "ItemKNN"
    fresh_scores = True

    def __init__(self, k: int = 100, shrink: float = 0.0, check_memory: bool = True) -> None:
        if k < 1:
            raise ValueError("ItemKNN needs k >= 1")
        if shrink < 0:
            raise ValueError("ItemKNN needs shrink >= 0")
        self.k = int(k)
        self.shrink = float(shrink)
        self.check_memory = bool(check_memory)
        self.sim: sp.csr_matrix | None = None

    def get_config(self) -> dict[str, Any]:
        return {"k": self.k, "shrink": self.shrink}

    def fit(self, data: TrainView, progress: bool = True) -> ItemKNN:
        x = interaction_matrix(data.train, data.n_users, data.n_items)
        if self.check_memory:
            pairs = cooccurrence_pairs(x)
            require_memory(pairs * ITEMKNN_BYTES_PER_PAIR, f"ItemKNN on {data.n_items} items ({pairs:,} co-occurring "
                           "item pairs)", "Use fewer items (k-core filter the data, or drop the most popular "
                           "items, which co-occur with everything) or fewer users' long histories; the "
                           f"kept model is only n_items x k (k={self.k}). Pass check_memory=False to try anyway.")
        coo = sp.coo_matrix(x.T @ x)  # items×items co-occurrence counts
        off = coo.row != coo.col
        row, col, dot = coo.row[off], coo.col[off], coo.data[off].astype(np.float64)
        norms = np.sqrt(np.asarray(x.sum(axis=0)).ravel().astype(np.float64))
        vals = dot / (norms[row] * norms[col] + self.shrink)
        sim = sp.csc_matrix((vals.astype(np.float32), (row, col)), shape=coo.shape)
        self.sim = _top_k_per_column(sim, self.k).tocsr()
        return self

    def score(self, users: np.ndarray, histories: list[np.ndarray]) -> torch.Tensor:
        _check_fitted(self, "sim")
        h = history_matrix(histories, self.sim.shape[0])
        return torch.from_numpy(np.asarray((h @ self.sim).toarray(), dtype=np.float32))

    def similarity(self, i: int, j: int) -> float:
        """The kept similarity weight of history item ``i`` for target item ``j`` (0 if pruned)."""
        _check_fitted(self, "sim")
        return float(self.sim[i, j])

    def state_tensors(self) -> dict[str, torch.Tensor]:
        _check_fitted(self, "sim")
        return _sparse_to_tensors(self.sim, "sim")

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.sim = _sparse_from_tensors(tensors, "sim")


# ---- EASE ----------------------------------------------------------------------------------
class EASE(Recommender):
    """EASE (Steck 2019): closed-form shallow autoencoder with a zero-diagonal item weight matrix.

    ``P = (XᵀX + λI)⁻¹``, ``B = I - P / diag(P)`` (column-wise), ``diag(B) = 0``, ``X`` binary.
    ``score(h) = x_h @ B`` with ``x_h`` the binary history vector. ``B`` is dense float32
    (items×items); the inverse is computed in float64 up to ``float64_max_items`` items.
    Before allocating, the fit checks its peak memory (:func:`textrec.models.memory.ease_memory_bytes`,
    about ``n² × (3 × 8 + 4)`` bytes in float64) against the available memory and fails with
    advice when it does not fit; ``max_items`` optionally refuses larger catalogs outright.
    """

    name = "EASE"
    fresh_scores = True

    def __init__(self, lam: float = 250.0, max_items: int | None = None,
                 float64_max_items: int = 12_000, check_memory: bool = True) -> None:
        if lam <= 0:
            raise ValueError("EASE needs lam > 0")
        self.lam = float(lam)
        self.max_items = None if max_items is None else int(max_items)
        self.float64_max_items = int(float64_max_items)
        self.check_memory = bool(check_memory)
        self.B: torch.Tensor | None = None

    def get_config(self) -> dict[str, Any]:
        return {"lam": self.lam, "max_items": self.max_items, "float64_max_items": self.float64_max_items}

    def fit(self, data: TrainView, progress: bool = True) -> EASE:
        n = data.n_items
        float64 = n <= self.float64_max_items
        if self.max_items is not None and n > self.max_items:
            raise ValueError(
                f"EASE needs a dense {n}x{n} item matrix (~{ease_memory_bytes(n, float64) / 2**30:.1f} GiB while "
                f"fitting); this catalog has {n} items > max_items={self.max_items}. Use ItemKNN, k-core filter "
                "the data, or raise max_items if you have the memory.")
        if self.check_memory:
            f32 = "" if not float64 else (f"; solve in float32 (float64_max_items={n - 1} or lower: about "
                                          f"{ease_memory_bytes(n, False) / 2**30:.1f} GiB)")
            require_memory(ease_memory_bytes(n, float64),
                           f"EASE on {n} items (dense {n}x{n} {'float64' if float64 else 'float32'} matrices)",
                           f"Use fewer items (k-core filter the data: memory grows with items squared){f32}; or "
                           "ItemKNN, whose memory grows with co-occurring pairs. Pass check_memory=False to try "
                           "anyway.")
        x = interaction_matrix(data.train, data.n_users, n)
        dtype = np.float64 if float64 else np.float32
        g = np.asarray((x.T @ x).toarray(), dtype=dtype)
        g[np.diag_indices(n)] += self.lam
        p = torch.cholesky_inverse(torch.linalg.cholesky(torch.from_numpy(g)))
        del g
        b = p / (-torch.diagonal(p))[None, :]
        b.fill_diagonal_(0.0)
        self.B = b.to(torch.float32).contiguous()
        return self

    def score(self, users: np.ndarray, histories: list[np.ndarray]) -> torch.Tensor:
        _check_fitted(self, "B")
        h = history_matrix(histories, self.B.shape[0])
        return torch.from_numpy(np.ascontiguousarray(h @ self.B.numpy(), dtype=np.float32))

    def state_tensors(self) -> dict[str, torch.Tensor]:
        _check_fitted(self, "B")
        return {"B": self.B}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.B = tensors["B"].float().contiguous()


# ---- Markov chain --------------------------------------------------------------------------
class MarkovChain(Recommender):
    """First-order Markov chain over each user's ordered training sequence.

    ``T[a, b]`` counts consecutive pairs ``a → b``; rows are normalised to ``P(b | a)``. A history
    ``h`` is scored ``Σ_{l<L} decay^l · P(· | h[-1-l]) + alpha · pop / max(pop)``: ``L = 1`` is the
    pure first-order chain, ``alpha`` a small popularity back-off so that a last item with no
    outgoing transitions (or an empty history) still gets a ranking.
    """

    name = "MarkovChain"
    fresh_scores = True

    def __init__(self, alpha: float = 0.01, L: int = 1, decay: float = 0.5) -> None:  # noqa: N803
        if alpha < 0:
            raise ValueError("MarkovChain needs alpha >= 0")
        if L < 1:
            raise ValueError("MarkovChain needs L >= 1")
        if not 0 < decay <= 1:
            raise ValueError("MarkovChain needs 0 < decay <= 1")
        self.alpha = float(alpha)
        self.L = int(L)
        self.decay = float(decay)
        self.trans: sp.csr_matrix | None = None  # row-normalised transition probabilities
        self.pop: torch.Tensor | None = None  # popularity scaled to max 1

    def get_config(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "L": self.L, "decay": self.decay}

    def fit(self, data: TrainView, progress: bool = True) -> MarkovChain:
        n = data.n_items
        cols = [c for c in ("user", "timestamp", "row") if c in data.train.columns]
        train = data.train.sort_values(cols, kind="stable")
        users = train["user"].to_numpy(dtype=np.int64)
        items = train["item"].to_numpy(dtype=np.int64)
        same_user = users[1:] == users[:-1]
        src, dst = items[:-1][same_user], items[1:][same_user]
        counts = sp.csr_matrix((np.ones(len(src), dtype=np.float64), (src, dst)), shape=(n, n))
        counts.sum_duplicates()
        out_deg = np.asarray(counts.sum(axis=1)).ravel()
        inv = np.divide(1.0, out_deg, out=np.zeros(n), where=out_deg > 0)
        self.trans = sp.csr_matrix(sp.diags(inv) @ counts, dtype=np.float32)
        pop = np.bincount(items, minlength=n).astype(np.float64)
        self.pop = torch.from_numpy((pop / max(pop.max(), 1.0)).astype(np.float32))
        return self

    def score(self, users: np.ndarray, histories: list[np.ndarray]) -> torch.Tensor:
        _check_fitted(self, "trans")
        n = self.trans.shape[0]
        tails = [np.asarray(h, dtype=np.int64)[::-1][: self.L] for h in histories]  # most recent first
        lens = np.array([len(t) for t in tails], dtype=np.int64)
        cols = np.concatenate(tails) if lens.sum() else np.zeros(0, np.int64)
        rows = np.repeat(np.arange(len(tails)), lens)
        pos = np.arange(len(cols)) - np.repeat(np.cumsum(lens) - lens, lens)
        w = sp.csr_matrix((self.decay ** pos.astype(np.float64), (rows, cols)), shape=(len(tails), n))
        s = torch.from_numpy(np.asarray((w @ self.trans).toarray(), dtype=np.float32))
        if self.alpha > 0:
            s += self.alpha * self.pop[None, :]
        return s

    def state_tensors(self) -> dict[str, torch.Tensor]:
        _check_fitted(self, "trans")
        return {**_sparse_to_tensors(self.trans, "trans"), "pop": self.pop}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.trans = _sparse_from_tensors(tensors, "trans")
        self.pop = tensors["pop"].float()
