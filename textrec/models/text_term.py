"""The recency-weighted text term: how close an item's text is to what a user read last.

``cos(sum_a decay**a * v(h_{-1-a}), v(i))`` over a domain's own whitened item vectors (whitening
reads item text only). It needs no training: two settings, the recency ``decay`` and the whitening
``shrink``, chosen on valid rows or fixed elsewhere (a pretrained model's sources). It is the
zero-shot scorer of a pretrained TextFusion on a new domain and, with ``TextFusionRec(text_term=...)``,
one more part of TextFusion's score mix.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from textrec.text.whitening import apply_whitening, fit_whitening

#: the settings grids searched on valid rows (a domain's own, or leave-one-domain-out sources')
DECAYS = (1.0, 0.8, 0.6, 0.4, 0.2)
SHRINKS: tuple[float | None, ...] = (None, 0.1, 0.5, 2.0)


def recency_text_scores(text: torch.Tensor, histories: Sequence[np.ndarray], decay: float,
                        max_len: int | None = 50) -> torch.Tensor:
    """(B, n) cosine between every item and a recency-weighted history vector.

    The history vector sums the last ``max_len`` (None: all) items' unit vectors, the item ``a``
    steps before the latest weighted ``decay ** a`` (``decay=1``: TextKNN's plain mean; near 0: the
    latest item).
    """
    user = torch.zeros(len(histories), text.shape[1])
    for i, h in enumerate(histories):
        h = np.asarray(h, dtype=np.int64)
        h = h if max_len is None else h[-max_len:]
        if len(h):
            w = torch.from_numpy(float(decay) ** np.arange(len(h) - 1, -1, -1, dtype=np.float64)).float()
            user[i] = (w[:, None] * text[torch.from_numpy(h)]).sum(0)
    return torch.nn.functional.normalize(user, dim=1) @ text.T


class TextTerm:
    """The term's settings and its whitened item vectors on one domain.

    ``TextTerm(decay, shrink).fit(raw)`` whitens ``raw`` (the domain's unit MiniLM vectors) on
    those items; :meth:`add` places new items with the same whitening; :meth:`scores` is
    :func:`recency_text_scores`. :meth:`choose` picks the settings on valid rows.
    """

    def __init__(self, decay: float = 1.0, shrink: float | None = None) -> None:
        if not 0.0 < float(decay) <= 1.0:
            raise ValueError(f"text term decay must be in (0, 1], got {decay}")
        if shrink is not None and shrink < 0:
            raise ValueError(f"text term shrink must be >= 0 (or None: no whitening), got {shrink}")
        self.decay = float(decay)
        self.shrink = None if shrink is None else float(shrink)
        self.whitening: tuple[np.ndarray, np.ndarray] | None = None
        self.vectors: torch.Tensor | None = None
        self.report: dict[str, Any] = {}

    @property
    def settings(self) -> dict[str, Any]:
        """``{"decay": ..., "shrink": ...}``, what a config saves."""
        return {"decay": self.decay, "shrink": self.shrink}

    def fit(self, raw: np.ndarray) -> TextTerm:
        """Whiten ``raw`` (n, dim) on its own items (``shrink=None``: keep them as they are)."""
        self.whitening = None if self.shrink is None else fit_whitening(raw, self.shrink)
        self.vectors = torch.from_numpy(apply_whitening(raw, self.whitening))
        return self

    def add(self, raw: np.ndarray) -> None:
        """Append new items' vectors, whitened as the fitted ones were."""
        if self.vectors is None:
            raise RuntimeError("fit the text term before adding items")
        self.vectors = torch.cat([self.vectors, torch.from_numpy(apply_whitening(raw, self.whitening))])

    def scores(self, histories: Sequence[np.ndarray]) -> torch.Tensor:
        """(B, n) the term for each history."""
        if self.vectors is None:
            raise RuntimeError("the text term is not fitted")
        return recency_text_scores(self.vectors, histories, self.decay)

    @classmethod
    def choose(cls, raw: np.ndarray, histories: list[np.ndarray],
               value: Callable[[torch.Tensor], float]) -> TextTerm:
        """The settings of ``DECAYS x SHRINKS`` whose term alone ranks best by ``value`` (e.g. valid
        NDCG@10 of these ``histories``), fitted on ``raw``; the table is in ``report``."""
        best, table = None, []
        for shrink in SHRINKS:
            term = cls(1.0, shrink).fit(raw)
            for decay in DECAYS:
                term.decay = decay
                v = value(term.scores(histories))
                table.append({"decay": decay, "shrink": shrink, "valid": round(v, 5)})
                if best is None or v > best[0] + 1e-9:
                    best = (v, decay, shrink)
        out = cls(best[1], best[2]).fit(raw)
        out.report = {"chosen_on": "valid", "valid_rows_used": len(histories), "table": table}
        return out

    def to_tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        """The fitted vectors (and whitening) as named tensors, for a model's safetensors file."""
        out = {f"{prefix}.vectors": self.vectors}
        if self.whitening is not None:
            out[f"{prefix}.mean"] = torch.from_numpy(self.whitening[0])
            out[f"{prefix}.proj"] = torch.from_numpy(self.whitening[1])
        return out

    @classmethod
    def from_tensors(cls, settings: dict[str, Any], tensors: dict[str, torch.Tensor], prefix: str) -> TextTerm | None:
        """The term saved by :meth:`to_tensors` (None when ``tensors`` hold none)."""
        if f"{prefix}.vectors" not in tensors:
            return None
        term = cls(settings["decay"], settings["shrink"])
        term.vectors = tensors[f"{prefix}.vectors"].float()
        if f"{prefix}.mean" in tensors:
            term.whitening = (tensors[f"{prefix}.mean"].numpy(), tensors[f"{prefix}.proj"].numpy())
        return term


__all__ = ["TextTerm", "recency_text_scores", "DECAYS", "SHRINKS"]
