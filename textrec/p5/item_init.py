"""Initial item-token embeddings from training interactions (SVD) or item text (MiniLM, projected).

A P5 model from scratch starts its item tokens at random, so before it can learn transitions
it must first learn which items are alike; on a CPU budget that is most of the run. Starting
the rows from collaborative vectors gives that structure at step 0 (GPTRec builds its item
tokens from an SVD of the interactions in the same spirit).

* ``svd_item_vectors``: truncated SVD of the binary *training* user-item matrix; items with no
  training event get zero rows (they are the text initialisation's job).
* ``text_item_vectors``: MiniLM vectors of the item texts mapped into the same space by a ridge
  regression fitted on the training items only (or reduced by PCA when there is no target
  space), so a new item's token starts near the warm items its text resembles.
* ``init_item_embeddings``: writes the vectors into the model's token table (shared with the
  output layer): each item token gets the mean vector of the items whose id contains it (for
  one token per item, the item's own vector), rescaled to the table's typical row norm.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from textrec.p5.model import P5Model

ITEM_INITS = ("none", "svd", "text", "svd+text")


def trained_items(sequences: Sequence[np.ndarray], n_items: int) -> np.ndarray:
    """Boolean mask of items with at least one training event."""
    seen = np.zeros(n_items, dtype=bool)
    for s in sequences:
        seen[np.asarray(s, dtype=np.int64)] = True
    return seen


def svd_item_vectors(sequences: Sequence[np.ndarray], n_items: int, dim: int, seed: int = 0) -> np.ndarray:
    """``(n_items, dim)`` item factors ``V * sqrt(S)`` of the binary training user-item matrix."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import svds

    rows = np.concatenate([np.full(len(s), u) for u, s in enumerate(sequences)] or [np.zeros(0)]).astype(np.int64)
    cols = np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences] or [np.zeros(0)]).astype(np.int64)
    x = sp.csr_matrix((np.ones(len(rows), dtype=np.float64), (rows, cols)), shape=(len(sequences), n_items))
    x.data[:] = 1.0  # repeated events count once
    k = min(dim, min(x.shape) - 1)
    if k < 1 or x.nnz == 0:
        raise ValueError(f"cannot factorise a {x.shape} training matrix with {x.nnz} events")
    v0 = np.random.default_rng(seed).standard_normal(min(x.shape))
    _, sv, vt = svds(x, k=k, v0=v0)
    order = np.argsort(-sv)
    vec = (vt[order].T * np.sqrt(sv[order])).astype(np.float32)
    out = np.zeros((n_items, dim), dtype=np.float32)
    out[:, :k] = vec
    return out


def text_item_vectors(texts: Sequence[str], fit_items: np.ndarray, dim: int, target: np.ndarray | None = None,
                      encoder=None, ridge: float = 1.0) -> np.ndarray:
    """Item text vectors in a ``dim``-wide space, fitted on ``fit_items`` (boolean mask) only.

    With ``target`` (e.g. SVD vectors), a ridge map text -> target is fitted on the training
    items; without it, the text vectors are reduced by PCA fitted on those items.
    """
    if encoder is None:
        from textrec.text.encoder import TextEncoder

        encoder = TextEncoder()
    emb = np.asarray(encoder.encode(list(texts), progress=False), dtype=np.float64)
    fit = np.asarray(fit_items, dtype=bool)
    if fit.sum() < 2:
        raise ValueError("text initialisation needs at least two training items to fit on")
    mu = emb[fit].mean(0)
    e = emb - mu
    if target is not None:
        a = e[fit]
        w = np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ np.asarray(target, dtype=np.float64)[fit])
        return (e @ w).astype(np.float32)
    _, _, vt = np.linalg.svd(e[fit], full_matrices=False)
    k = min(dim, vt.shape[0])
    out = np.zeros((len(emb), dim), dtype=np.float32)
    out[:, :k] = e @ vt[:k].T
    return out


@torch.no_grad()
def init_item_embeddings(model: P5Model, vectors: np.ndarray, items: np.ndarray | None = None) -> int:
    """Set item-token rows from item vectors (see module doc); returns how many rows were set.

    ``items`` (boolean mask) limits which items' vectors are used; tokens none of them
    contain keep their random start.
    """
    table = model.t5.get_input_embeddings().weight
    vec = torch.as_tensor(np.asarray(vectors), dtype=torch.float32)
    if vec.shape[0] != model.index.n_items:
        raise ValueError(f"{vec.shape[0]} item vectors for {model.index.n_items} indexed items")
    d = table.shape[1]
    if vec.shape[1] < d:
        vec = torch.cat([vec, torch.zeros(vec.shape[0], d - vec.shape[1])], 1)
    vec = vec[:, :d]
    use = np.ones(model.index.n_items, dtype=bool) if items is None else np.asarray(items, dtype=bool)
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    for i in np.flatnonzero(use):
        for t in model.index.tokens[i]:
            sums[t] = sums.get(t, 0) + vec[i]
            counts[t] = counts.get(t, 0) + 1
    if not sums:
        return 0
    ids = model.tokenizer.convert_tokens_to_ids(list(sums))
    rows = torch.stack([sums[t] / counts[t] for t in sums])
    target_norm = table.norm(dim=1).median()
    rows = rows / rows.norm(dim=1).median().clamp(min=1e-8) * target_norm
    table[torch.as_tensor(ids)] = rows.to(table.dtype).to(table.device)
    return len(ids)


def apply_item_init(model: P5Model, how: str, sequences: Sequence[np.ndarray], texts: Sequence[str] | None = None,
                    seed: int = 0, encoder=None) -> dict:
    """Initialise item tokens by ``how`` (one of ``ITEM_INITS``) from training data; returns a report.

    ``svd+text``: SVD vectors for items with training events, text vectors mapped into the
    SVD space for the others (new items).
    """
    if how not in ITEM_INITS:
        raise ValueError(f"unknown item initialisation '{how}'; choose from {ITEM_INITS}")
    if how == "none":
        return {"item_init": "none"}
    n = model.index.n_items
    d = model.t5.config.d_model
    seen = trained_items(sequences, n)
    report: dict = {"item_init": how, "trained_items": int(seen.sum()), "new_items": int((~seen).sum())}
    if how in ("text", "svd+text") and texts is None:
        raise ValueError(f"item_init='{how}' needs the item texts")
    if how == "text":
        vec, use = text_item_vectors(texts, seen, d, encoder=encoder), np.ones(n, dtype=bool)
    else:
        vec, use = svd_item_vectors(sequences, n, d, seed=seed), seen.copy()
        if how == "svd+text" and (~seen).any():
            vec[~seen] = text_item_vectors(texts, seen, d, target=vec, encoder=encoder)[~seen]
            use[:] = True
    report["rows_set"] = init_item_embeddings(model, vec, use)
    return report
