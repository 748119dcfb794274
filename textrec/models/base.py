"""The interface every recommender implements, so one harness can judge them all.

A model is fit on a :class:`TrainView` — the training interactions and the *valid* evaluation
set (for model selection / early stopping) — and never sees the test set. It then scores any
batch of (user, ordered history) rows against the whole catalog.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from textrec.data.splits import EvalSet, Split
from textrec.io import atomic_path, atomic_write_text, json_default


@dataclass
class TrainView:
    """What a model may look at while fitting: train events, valid rows, catalog size."""

    train: pd.DataFrame
    valid: EvalSet
    n_users: int
    n_items: int
    dataset_name: str = ""
    item_text: list[str] | None = None

    @classmethod
    def from_split(cls, split: Split, with_text: bool = False) -> TrainView:
        """The train/valid part of a split; the test set is deliberately left out."""
        return cls(train=split.train, valid=split.valid, n_users=split.n_users, n_items=split.n_items,
                   dataset_name=split.dataset.name,
                   item_text=split.dataset.item_text() if with_text else None)

    @classmethod
    def concat(cls, views: list[TrainView], name: str | None = None) -> tuple[TrainView, np.ndarray]:
        """Several domains as one view (users and items offset per domain), e.g. for pretraining.

        Returns the merged view and the item offset of each domain (plus the total at the end).
        """
        if not views:
            raise ValueError("concat needs at least one view")
        u_off = np.concatenate([[0], np.cumsum([v.n_users for v in views])]).astype(np.int64)
        i_off = np.concatenate([[0], np.cumsum([v.n_items for v in views])]).astype(np.int64)
        frames, users, hists, tgts = [], [], [], []
        for v, uo, io in zip(views, u_off, i_off):
            f = v.train.copy()
            f["user"] = f["user"].to_numpy() + uo
            f["item"] = f["item"].to_numpy() + io
            frames.append(f)
            users.append(v.valid.users + uo)
            hists += [h + io for h in v.valid.histories()]
            tgts += [v.valid.targets(i) + io for i in range(len(v.valid))]
        texts = None
        if all(v.item_text is not None for v in views):
            texts = [t for v in views for t in v.item_text]
        valid = EvalSet.from_lists(np.concatenate(users), hists, tgts)
        train = pd.concat(frames, ignore_index=True)
        # sequences() needs rows grouped by user in time order; domains never share users
        train = train.sort_values("user", kind="stable", ignore_index=True)
        merged = cls(train=train, valid=valid, n_users=int(u_off[-1]), n_items=int(i_off[-1]),
                     dataset_name=name or "+".join(v.dataset_name for v in views), item_text=texts)
        return merged, i_off

    def sequences(self) -> list[np.ndarray]:
        """Per user, the ordered training items."""
        frame = self.train
        users = frame["user"].to_numpy()
        items = frame["item"].to_numpy()
        counts = np.bincount(users, minlength=self.n_users)
        bounds = np.concatenate([[0], np.cumsum(counts)])
        return [items[bounds[u]:bounds[u + 1]] for u in range(self.n_users)]

    def popularity(self) -> np.ndarray:
        """Training event count per item."""
        return np.bincount(self.train["item"].to_numpy(), minlength=self.n_items)


class Recommender(ABC):
    """Base class: ``fit`` on a TrainView, ``score`` histories against the full catalog."""

    name: str = "recommender"
    #: whether ``score`` can rank items that had no training events (text-based models)
    scores_new_items: bool = False

    @abstractmethod
    def fit(self, data: TrainView, progress: bool = True) -> Recommender:
        """Learn from training events; may use ``data.valid`` for early stopping."""

    @abstractmethod
    def score(self, users: np.ndarray, histories: list[np.ndarray]) -> torch.Tensor:
        """Scores (len(users), n_items), higher is better. Masking is the harness's job."""

    def recommend(self, history: np.ndarray | list[int], k: int = 10, user: int = -1,
                  exclude_history: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item indexes and scores for one history (fewer when k exceeds the unmasked items)."""
        from textrec.metrics.ranking import topk_items

        hist = np.asarray(history, dtype=np.int64)
        s = torch.as_tensor(self.score(np.array([user]), [hist]), dtype=torch.float32).clone()
        if exclude_history and len(hist):
            s[0, torch.from_numpy(hist)] = float("-inf")
        idx, val = topk_items(s, k)
        keep = torch.isfinite(val[0])  # masked items are never recommended, even when k is large
        return idx[0][keep].numpy(), val[0][keep].numpy()

    # ---- persistence (config JSON + safetensors) --------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments."""
        return {}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Learned state as named tensors (saved with safetensors)."""
        return {}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore what ``state_tensors`` returned."""
        if tensors:
            raise NotImplementedError(f"{type(self).__name__} has no tensors to load")

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write ``config.json`` + ``model.safetensors`` atomically into ``path``."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        config = {"model_type": type(self).__name__, **self.get_config()}
        atomic_write_text(path / "config.json", json.dumps(config, indent=2, default=json_default))
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.state_tensors().items()}
        tmp, final = atomic_path(path / "model.safetensors")
        save_file(tensors, str(tmp))
        os.replace(tmp, final)
        self.save_extra(path)

    def save_extra(self, path: Path) -> None:
        """Hook for models with more than tensors to save (e.g. a quantizer, a tokenizer)."""
        return None

    def load_extra(self, path: Path) -> None:
        """Counterpart of ``save_extra``, called after the tensors are loaded."""
        return None

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> Recommender:
        """Load a model written by ``save_pretrained``."""
        from safetensors.torch import load_file

        path = Path(path)
        config = json.loads((path / "config.json").read_text())
        model_type = config.pop("model_type")
        target = cls if model_type == cls.__name__ else _model_class(model_type)
        model = target(**config)
        model.load_state_tensors(load_file(str(path / "model.safetensors")))
        model.load_extra(path)
        return model


_REGISTRY: dict[str, type[Recommender]] = {}


def register_model(cls: type[Recommender]) -> type[Recommender]:
    """Class decorator: make a model loadable by name from a saved config."""
    _REGISTRY[cls.__name__] = cls
    return cls


def _model_class(name: str) -> type[Recommender]:
    import textrec.models  # noqa: F401  (registers the built-in models)

    if name not in _REGISTRY:
        raise ValueError(f"unknown model_type '{name}' in config.json; known: {sorted(_REGISTRY)}")
    return _REGISTRY[name]
