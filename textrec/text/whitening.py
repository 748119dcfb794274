"""Per-domain whitening of item text vectors, fitted on a domain's own item text (no interaction).

MiniLM cosines are high for any two items of one domain because they share a few dominant
directions; centring and rescaling the principal axes per domain (as UniSRec and VQ-Rec do) lets
the cosine compare what differs. TextFusion applies it to its adaptor input (``text_whiten``) and
the transfer engine to its zero-shot text term.
"""

from __future__ import annotations

import numpy as np


def fit_whitening(emb: np.ndarray, shrink: float) -> tuple[np.ndarray, np.ndarray] | None:
    """The whitening of one domain's item vectors, fitted on that domain's own items (text only):
    their mean and the projection onto the principal axes, each divided by
    ``sqrt(eigenvalue + shrink * mean eigenvalue)``. None with fewer than 2 items with text."""
    emb = np.asarray(emb, dtype=np.float64)
    has = np.abs(emb).sum(1) > 0
    if has.sum() < 2:
        return None
    mean = emb[has].mean(0)
    x = emb[has] - mean
    vals, vecs = np.linalg.eigh(x.T @ x / len(x))
    vals = np.clip(vals, 0.0, None)
    proj = vecs / np.sqrt(vals + float(shrink) * max(vals.mean(), 1e-12))[None, :]
    return mean.astype(np.float32), proj.astype(np.float32)


def apply_whitening(emb: np.ndarray, whitening: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """``emb`` centred, projected (:func:`fit_whitening`) and unit-normalised; zero rows (items
    without text) stay zero, and ``whitening=None`` returns the vectors as they are."""
    emb = np.asarray(emb, dtype=np.float64)
    if whitening is None:
        return emb.astype(np.float32)
    mean, proj = (np.asarray(a, dtype=np.float64) for a in whitening)
    has = np.abs(emb).sum(1) > 0
    out = np.zeros_like(emb)
    z = (emb[has] - mean) @ proj
    out[has] = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    return out.astype(np.float32)


def whiten_text(emb: np.ndarray, shrink: float | None) -> np.ndarray:
    """One domain's item vectors whitened on that domain's own items (no interaction is read).

    Centred on the domain's mean item vector, rotated to its principal axes and each axis divided by
    ``sqrt(eigenvalue + shrink * mean eigenvalue)``, then unit-normalised: the directions every item
    of a domain shares (which make MiniLM cosines high for any pair) stop dominating the cosine, as
    UniSRec / VQ-Rec whiten per domain. ``shrink=None`` returns the vectors as they are. Items
    without text (zero vectors) stay zero.
    """
    if shrink is None:
        return np.asarray(emb, dtype=np.float32)
    return apply_whitening(emb, fit_whitening(emb, shrink))
