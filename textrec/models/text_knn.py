"""Text-kNN: the user is the mean of their history's text embeddings; items ranked by cosine.

The zero-shot reference for text-based recommenders: it needs no training events at all, so it
scores new items exactly as it scores warm ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from textrec.models.base import Recommender, TrainView


class TextKNN(Recommender):
    """Cosine between the mean history embedding and every item's text embedding."""

    name = "TextKNN"
    scores_new_items = True

    def __init__(self, encoder: str | None = None, last_n: int | None = None) -> None:
        self.encoder_name, self.last_n = encoder, last_n
        self.item_emb: torch.Tensor | None = None

    def fit(self, data: TrainView, progress: bool = True) -> TextKNN:
        """Embed every item text (cached on disk); there is nothing else to learn."""
        from textrec.text.encoder import TextEncoder

        if data.item_text is None:
            raise ValueError("TextKNN needs item text (TrainView.item_text)")
        emb = TextEncoder(self.encoder_name).encode(list(data.item_text), progress=progress)
        self.item_emb = F.normalize(torch.from_numpy(np.asarray(emb, dtype=np.float32)), dim=1)
        return self

    def score(self, users: np.ndarray, histories: list[np.ndarray]) -> torch.Tensor:
        if self.item_emb is None:
            raise RuntimeError("TextKNN is not fitted")
        out = torch.zeros(len(histories), self.item_emb.shape[1])
        for i, h in enumerate(histories):
            h = np.asarray(h, dtype=np.int64)
            if self.last_n:
                h = h[-self.last_n:]
            if len(h):
                out[i] = self.item_emb[torch.from_numpy(h)].mean(0)
        return F.normalize(out, dim=1) @ self.item_emb.T

    def add_items(self, texts: list[str], ids: list[str] | None = None) -> np.ndarray:
        """Append new items from their text (no retraining); returns their new item indexes.

        When the model carries a catalog, ``ids`` names the new items and the catalog grows with them.
        """
        from textrec.text.encoder import TextEncoder

        if self.item_emb is None:
            raise RuntimeError("fit or load the model before adding items")
        if not texts or any(not str(t).strip() for t in texts):
            raise ValueError("add_items needs a non-empty text for every new item")
        if self.catalog is not None:
            if ids is None or len(ids) != len(texts):
                raise ValueError(f"this model has an item catalog: pass one id per new item ({len(texts)})")
            clash = [i for i in map(str, ids) if i in set(self.catalog.ids)]
            if clash:
                raise ValueError(f"item id(s) already in the catalog: {clash[:5]}")
        emb = TextEncoder(self.encoder_name).encode(list(texts), progress=False)
        new = F.normalize(torch.from_numpy(np.asarray(emb, dtype=np.float32)), dim=1)
        if self.catalog is not None:
            self.catalog.add(ids, text=texts)
        start = int(self.item_emb.shape[0])
        self.item_emb = torch.cat([self.item_emb, new])
        return np.arange(start, int(self.item_emb.shape[0]))

    def get_config(self) -> dict[str, Any]:
        return {"encoder": self.encoder_name, "last_n": self.last_n}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        if self.item_emb is None:
            raise RuntimeError("TextKNN is not fitted: nothing to save")
        return {"item_emb": self.item_emb}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.item_emb = tensors["item_emb"]


__all__ = ["TextKNN"]
