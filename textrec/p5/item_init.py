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


def encode_texts(texts: Sequence[str], encoder=None) -> np.ndarray:
    """MiniLM vectors of the item texts (``encoder``: anything with ``encode(texts, progress=...)``)."""
    if encoder is None:
        from textrec.text.encoder import TextEncoder

        encoder = TextEncoder()
    return np.asarray(encoder.encode(list(texts), progress=False), dtype=np.float64)


def text_item_vectors(texts: Sequence[str], fit_items: np.ndarray, dim: int, target: np.ndarray | None = None,
                      encoder=None, ridge: float = 1.0) -> np.ndarray:
    """Item text vectors in a ``dim``-wide space, fitted on ``fit_items`` (boolean mask) only.

    With ``target`` (e.g. SVD vectors), a ridge map text -> target is fitted on the training
    items; without it, the text vectors are reduced by PCA fitted on those items.
    """
    emb = encode_texts(texts, encoder)
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
def init_item_embeddings(model: P5Model, vectors: np.ndarray, items: np.ndarray | None = None,
                         max_norm: float | None = None) -> int:
    """Set item-token rows from item vectors (see module doc); returns how many rows were set.

    ``items`` (boolean mask) limits which items' vectors are used; tokens none of them
    contain keep their random start. ``max_norm`` caps each row's norm at that multiple of the
    table's typical row norm: SVD rows carry popularity in their norm, and on a sparse catalog
    the most popular items' rows are 30-100 times the median, which makes the tied output layer
    start with huge logits for them.
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
    if max_norm is not None:
        if not max_norm > 0:
            raise ValueError(f"item_init_max_norm must be > 0, got {max_norm}")
        cap = max_norm * target_norm
        rows = rows * (cap / rows.norm(dim=1, keepdim=True).clamp(min=cap)).clamp(max=1.0)
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
    max_norm = getattr(model.config, "item_init_max_norm", None)
    report["rows_set"] = init_item_embeddings(model, vec, use, max_norm=max_norm)
    if max_norm is not None:
        report["max_norm"] = max_norm
    return report


# ---- new items after training: refit the text map on the trained rows ---------------------------
#
# Training moves the warm items' rows away from their start, while a new item (no training event)
# is never a target and never in a source: its row only ever gets the softmax's push-down. So the
# text rows written before training are stale twice over, and new items never reach the top 10.
# After training, new items' rows are predicted again from their text, from the warm items'
# *trained* rows, as the warm mean row plus a deviation:
#   * ``ridge``: a ridge map text -> deviation fitted on the warm items;
#   * ``knn``: the mean deviation of the ``k`` warm items nearest in text (cosine).
# Both shrink (a ridge prediction towards zero, an average of neighbours too), so the deviations
# are rescaled to the warm deviations' median norm. The mean row carries what every item shares
# (chiefly how popular items are in general, the part a tied output layer has instead of a bias),
# the deviation what tells one item from another; the row written is
# ``mean_weight * mean + scale * deviation``, the method and both weights chosen on valid.

REFIT_METHODS = ("ridge", "knn")


def single_item_token_ids(model: P5Model) -> torch.Tensor:
    """Vocabulary id of every item's single token (one-token-per-item indexes only)."""
    from textrec.p5.tokenizer import item_token_ids

    if any(len(t) != 1 for t in model.index.tokens):
        raise ValueError(f"refitting item rows needs one token per item; '{model.index.scheme}' ids are longer")
    return torch.as_tensor(item_token_ids(model.tokenizer, [t[0] for t in model.index.tokens]))


def ridge_map(x: np.ndarray, y: np.ndarray, fit: np.ndarray, ridge: float = 1.0) -> np.ndarray:
    """Predict ``y`` for every row of ``x`` by a ridge regression (with intercept) fitted on the ``fit`` rows."""
    fit = np.asarray(fit, dtype=bool)
    if fit.sum() < 2:
        raise ValueError("a ridge map needs at least two rows to fit on")
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    mx, my = x[fit].mean(0), y[fit].mean(0)
    a = x[fit] - mx
    w = np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ (y[fit] - my))
    return my + (x - mx) @ w


def knn_map(x: np.ndarray, y: np.ndarray, fit: np.ndarray, k: int = 10) -> np.ndarray:
    """Predict ``y`` for every row of ``x`` as the mean ``y`` of its ``k`` nearest ``fit`` rows by cosine.

    A ``fit`` row is not its own neighbour.
    """
    fit = np.asarray(fit, dtype=bool)
    idx = np.flatnonzero(fit)
    k = min(int(k), len(idx) - 1)
    if k < 1:
        raise ValueError("a k-nearest-neighbour map needs at least two rows to fit on")
    x = np.asarray(x, dtype=np.float64)
    u = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sim = u @ u[idx].T
    sim[idx, np.arange(len(idx))] = -np.inf  # leave-one-out for the fit rows themselves
    nn = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    return np.asarray(y, dtype=np.float64)[idx][nn].mean(1)


def current_item_rows(model: P5Model) -> np.ndarray:
    """``(n_items, d)`` the item tokens' rows as they are now (float64 copy)."""
    table = model.t5.get_input_embeddings().weight
    return table[single_item_token_ids(model).to(table.device)].detach().cpu().double().numpy()


@torch.no_grad()
def refit_text_rows(model: P5Model, text_vectors: np.ndarray, warm: np.ndarray, method: str = "ridge",
                    ridge: float = 1.0, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, deviations)``: the warm items' mean trained row, and every item's deviation from it
    predicted from its text by ``method`` (see above), rescaled as one block so that the non-warm
    items' median deviation norm equals the warm items' (over all items when every item is warm)."""
    if method not in REFIT_METHODS:
        raise ValueError(f"unknown refit method '{method}'; choose from {REFIT_METHODS}")
    rows = current_item_rows(model)
    warm = np.asarray(warm, dtype=bool)
    if len(text_vectors) != len(rows) or len(warm) != len(rows):
        raise ValueError(f"{len(text_vectors)} text vectors and {len(warm)} flags for {len(rows)} items")
    mean = rows[warm].mean(0)
    dev = rows - mean
    pred = ridge_map(text_vectors, dev, warm, ridge) if method == "ridge" else knn_map(text_vectors, dev, warm, k)
    others = ~warm if (~warm).any() else np.ones_like(warm)
    scale = np.median(np.linalg.norm(dev[warm], axis=1)) / max(np.median(np.linalg.norm(pred[others], axis=1)), 1e-12)
    return mean.astype(np.float32), (pred * scale).astype(np.float32)


@torch.no_grad()
def write_item_rows(model: P5Model, rows: np.ndarray, items: np.ndarray) -> int:
    """Overwrite the token rows of ``items`` (boolean mask) with ``rows[items]``; returns how many."""
    items = np.asarray(items, dtype=bool)
    table = model.t5.get_input_embeddings().weight
    ids = single_item_token_ids(model)[torch.from_numpy(np.flatnonzero(items))].to(table.device)
    table[ids] = torch.as_tensor(np.asarray(rows)[items], dtype=table.dtype, device=table.device)
    return int(items.sum())


def refit_new_items(model: P5Model, text_vectors: np.ndarray, warm: np.ndarray, ridge: float = 1.0,
                    scales: Sequence[float] = (1.0,), score=None, methods: Sequence[str] = ("ridge",),
                    mean_weights: Sequence[float] = (1.0,), k: int = 10) -> dict:
    """Write the non-warm items' rows ``mean_weight * mean + scale * deviation`` (see above).

    With more than one combination of ``methods`` x ``mean_weights`` x ``scales``, each is written
    in turn and ``score()`` (a valid metric, higher is better; never test) picks one; the chosen
    rows stay in the model. Returns a report.
    """
    warm = np.asarray(warm, dtype=bool)
    new = ~warm
    report: dict = {"refit": "text map on trained warm rows: mean_weight * mean + scale * deviation",
                    "ridge": ridge, "k": k, "warm_items": int(warm.sum()), "new_items": int(new.sum())}
    if not new.any():
        return {**report, "rows_written": 0}
    grid = [(m, float(a), float(b)) for m in methods for a in (mean_weights or [1.0]) for b in (scales or [1.0])]
    if not grid:
        raise ValueError("no refit method given")
    if len(grid) > 1 and score is None:
        raise ValueError("several refit settings need a valid score to choose between them")
    bases = {m: refit_text_rows(model, text_vectors, warm, m, ridge, k) for m in dict.fromkeys(methods)}

    def rows_for(m: str, a: float, b: float) -> np.ndarray:
        mean, dev = bases[m]
        return a * mean[None] + b * dev

    tried: dict[str, float] = {}
    best, best_score = grid[0], -np.inf
    for m, a, b in grid if len(grid) > 1 else []:
        write_item_rows(model, rows_for(m, a, b), new)
        tried[f"{m} mean_weight={a:g} scale={b:g}"] = v = float(score())
        if v > best_score:
            best, best_score = (m, a, b), v
    report["rows_written"] = write_item_rows(model, rows_for(*best), new)
    report.update({"method": best[0], "mean_weight": best[1], "scale": best[2]})
    if tried:
        report["valid_by_setting"] = tried
    return report


def refit_after_training(model: P5Model, sequences: Sequence[np.ndarray], texts: Sequence[str] | None,
                         score=None, encoder=None) -> dict | None:
    """Run :func:`refit_new_items` if the model config asks for it (``new_item_refit``); else None.

    Warm items are those with a training event in ``sequences``; ``score`` is the valid metric
    used to choose among the configured methods, mean weights and scales.
    """
    cfg = model.config
    if not getattr(cfg, "new_item_refit", False):
        return None
    if texts is None:
        raise ValueError("new_item_refit needs the item texts")
    warm = trained_items(sequences, model.index.n_items)
    return refit_new_items(model, encode_texts(texts, encoder), warm, ridge=cfg.new_item_refit_ridge,
                           scales=cfg.new_item_refit_scales, score=score, methods=cfg.new_item_refit_methods,
                           mean_weights=cfg.new_item_refit_mean_weights, k=cfg.new_item_refit_k)
