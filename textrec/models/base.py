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

from textrec.catalog import Catalog, UserTable
from textrec.data.splits import EvalSet, Split


@dataclass
class TrainView:
    """What a model may look at while fitting: train events, valid rows, catalog size."""

    train: pd.DataFrame
    valid: EvalSet
    n_users: int
    n_items: int
    dataset_name: str = ""
    item_text: list[str] | None = None
    #: original ids (and text) of the items and users, carried into saved artifacts
    catalog: Catalog | None = None
    user_ids: list[str] | None = None

    @classmethod
    def from_split(cls, split: Split, with_text: bool = False) -> TrainView:
        """The train/valid part of a split; the test set is deliberately left out."""
        return cls(train=split.train, valid=split.valid, n_users=split.n_users, n_items=split.n_items,
                   dataset_name=split.dataset.name,
                   item_text=split.dataset.item_text() if with_text else None,
                   catalog=Catalog.from_dataset(split.dataset),
                   user_ids=[str(u) for u in split.dataset.user_ids])

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
    """Base class: ``fit`` on a TrainView, ``score`` histories against the full catalog.

    After ``fit`` the model keeps the view's :class:`~textrec.catalog.Catalog` (``self.catalog``)
    and user table (``self.users``), so a saved folder maps scores to original ids on its own.
    """

    name: str = "recommender"
    #: whether ``score`` can rank items that had no training events (text-based models)
    scores_new_items: bool = False
    #: whether ``score`` returns a tensor no one else holds, so the harness may mask it in place
    #: instead of copying a (batch x items) matrix first
    fresh_scores: bool = False
    catalog: Catalog | None = None
    users: UserTable | None = None

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        fit = cls.__dict__.get("fit")
        if fit is not None and not getattr(fit, "_keeps_catalog", False):
            cls.fit = _keeping_catalog(fit)  # type: ignore[method-assign]

    @abstractmethod
    def fit(self, data: TrainView, progress: bool = True) -> Recommender:
        """Learn from training events; may use ``data.valid`` for early stopping."""

    def keep_catalog(self, data: TrainView) -> None:
        """Adopt the view's item catalog and user table (``fit`` does this; so must other ways to train)."""
        if getattr(data, "catalog", None) is not None:
            self.catalog = data.catalog
            if getattr(data, "user_ids", None) is not None:
                self.users = UserTable(data.user_ids, data.sequences())

    @abstractmethod
    def score(self, users: np.ndarray, histories: list[np.ndarray]) -> torch.Tensor:
        """Scores (len(users), n_items), higher is better. Masking is the harness's job."""

    def recommend(self, history: np.ndarray | list[int], k: int = 10, user: int = -1,
                  exclude_history: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item indexes and scores for one history (fewer when k exceeds the unmasked items)."""
        from textrec.metrics.ranking import topk_items

        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        hist = np.asarray(history, dtype=np.int64)
        s = torch.as_tensor(self.score(np.array([user]), [hist]), dtype=torch.float32).clone()
        if len(hist) and (hist.min() < 0 or hist.max() >= s.shape[1]):
            raise ValueError(f"history holds item indices outside [0, {s.shape[1]})")
        if exclude_history and len(hist):
            s[0, torch.from_numpy(hist)] = float("-inf")
        idx, val = topk_items(s, k)
        keep = torch.isfinite(val[0])  # masked items are never recommended, even when k is large
        return idx[0][keep].numpy(), val[0][keep].numpy()

    def recommend_ids(self, history_ids: list[str] | None = None, user_id: str | None = None, k: int = 10,
                      exclude_history: bool = True) -> list[dict[str, Any]]:
        """Top-k for a known user id or a history of original item ids: ``[{id, title, score}]``."""
        if self.catalog is None:
            raise RuntimeError(f"{type(self).__name__} has no catalog: fit it on a TrainView or load a saved one")
        user = -1
        hist: list[int] = []
        if user_id is not None:
            if self.users is None:
                raise RuntimeError("this model was saved without users: pass a history instead")
            user = self.users.index(user_id)
            hist = list(self.users.histories[user])
        if history_ids:
            hist += [int(i) for i in self.catalog.indices(history_ids)]
        idx, val = self.recommend(np.asarray(hist, dtype=np.int64), k=k, user=user, exclude_history=exclude_history)
        return [{"id": self.catalog.id(i), "title": self.catalog.title(i), "score": float(v)}
                for i, v in zip(idx, val)]

    # ---- persistence (one artifact format: textrec.artifact) -------------------------------
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

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write the artifact folder (config, weights, catalog, users, extras, manifest) as one unit."""
        from textrec.artifact import save_model
        from textrec.registry import registered_name

        catalog = self.catalog
        n = self.n_scored_items()
        if catalog is not None and n is not None and len(catalog) != n:
            raise RuntimeError(f"catalog has {len(catalog)} items but the model scores {n}")
        return save_model(path, registered_name(type(self)), self.get_config(), self.state_tensors(),
                          catalog=catalog, users=self.users, extra=self.save_extra)

    def n_scored_items(self) -> int | None:
        """How many items ``score`` returns columns for (probed with a one-item history; None if unfitted)."""
        try:
            return int(self.score(np.array([-1]), [np.zeros(1, dtype=np.int64)]).shape[1])
        except (RuntimeError, ValueError, AttributeError):
            return None

    def save_extra(self, path: Path) -> None:
        """Hook for models with more than tensors to save (e.g. a quantizer, a tokenizer)."""
        return None

    def load_extra(self, path: Path) -> None:
        """Counterpart of ``save_extra``, called after the tensors are loaded."""
        return None

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> Recommender:
        """Load a model folder written by ``save_pretrained`` (verified against its manifest)."""
        from textrec.artifact import ArtifactError, detect_format, read_config, read_tensors
        from textrec.registry import model_class

        path = Path(path)
        fmt = detect_format(path)
        if fmt == "current":
            body = read_config(path)
            model_type, config = str(body["model_type"]), dict(body["config"])
        elif fmt.startswith("a textrec 0.1 core model"):
            config = json.loads((path / "config.json").read_text(encoding="utf-8"))
            model_type = str(config.pop("model_type"))
        else:
            raise ArtifactError(f"{path}: {fmt}, not a recommender this loader reads")
        target = model_class(model_type)
        if not (isinstance(target, type) and issubclass(target, cls)):
            raise ArtifactError(f"{path}/config.json: model_type '{model_type}' is not a {cls.__name__}")
        check_config(target, config, path / "config.json")
        try:
            model = target(**config)
        except (TypeError, ValueError) as e:
            raise ArtifactError(f"{path / 'config.json'}: invalid config for {model_type}: {e}") from None
        model.load_state_tensors(read_tensors(path))
        model.load_extra(path)
        if (path / "catalog.json").is_file():
            model.catalog = Catalog.load(path)
        model.users = UserTable.load(path)
        n = model.n_scored_items()
        if model.catalog is not None and n is not None and len(model.catalog) != n:
            raise ArtifactError(f"{path / 'catalog.json'}: {len(model.catalog)} items but the weights "
                                f"score {n}")
        return model


def _keeping_catalog(fit):
    """Wrap a subclass's ``fit`` so the fitted model keeps the view's catalog and users."""
    import functools

    @functools.wraps(fit)
    def wrapped(self, data, *args, **kw):
        out = fit(self, data, *args, **kw)
        self.keep_catalog(data)
        return out

    wrapped._keeps_catalog = True
    return wrapped


def check_config(cls: type, config: dict[str, Any], where: Any) -> None:
    """Type-check config values against ``cls.__init__``'s annotations; unknown keys are an error."""
    import inspect
    import typing

    from textrec.artifact import ArtifactError

    sig = inspect.signature(cls.__init__)
    takes_kw = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    unknown = [k for k in config if k not in sig.parameters]
    if unknown and not takes_kw:
        raise ArtifactError(f"{where}: unknown field(s) {unknown} for {cls.__name__}")
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # noqa: BLE001 - unresolvable annotations: the constructor checks what it can
        return
    for key, value in config.items():
        hint = hints.get(key)
        if hint is not None and not _matches(value, hint):
            raise ArtifactError(f"{where}: field '{key}' = {value!r} is not {_hint_name(hint)}")


def _matches(value: Any, hint: Any) -> bool:
    import collections.abc
    import types
    import typing

    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    base = origin or hint
    if base in (list, tuple, collections.abc.Sequence):
        return isinstance(value, (list, tuple))
    if base is dict:
        return isinstance(value, dict)
    if isinstance(base, type) and hasattr(base, "__dataclass_fields__"):
        return isinstance(value, (dict, base))
    return True  # other annotations: the constructor validates


def _hint_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
