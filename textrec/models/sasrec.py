"""SASRec (Kang & McAuley, 2018): item ID embeddings -> causal transformer -> tied full-catalog scores.

``score`` of a history = (last hidden state) @ (item embedding table)^T, one matrix multiply
over the whole catalog. Training is :class:`textrec.models.seq_trainer.SeqTrainer` (all-position
softmax cross-entropy, early stopping on valid NDCG@10). Padding is handled by the encoder's
mask (padded inputs are zeroed), so the embedding table has exactly ``n_items`` rows and no
padding row.
"""

from __future__ import annotations

import inspect
from dataclasses import fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from textrec.models.backbone import BackboneConfig, CausalSequenceEncoder
from textrec.models.base import Recommender, TrainView
from textrec.models.id_table import HashedIdTable, make_id_table
from textrec.models.seq_trainer import SeqTrainer, SeqTrainerConfig, resolve_device, score_histories, seeded


class SASRecModule(nn.Module):
    """ID embedding table + :class:`CausalSequenceEncoder`; implements ``SequentialModule``.

    ``id_table`` selects the table (:func:`textrec.models.id_table.make_id_table` options):
    collision-free by default, or ``{"kind": "hashed", "size": 0.25}``.
    """

    def __init__(self, n_items: int, cfg: BackboneConfig, id_table: dict | None = None) -> None:
        super().__init__()
        self.items = make_id_table(n_items, cfg.hidden, init_std=cfg.init_std, **(id_table or {}))
        self.encoder = CausalSequenceEncoder(cfg)

    def item_representations(self) -> torch.Tensor:
        return self.items.weight

    def represent(self, items: torch.Tensor) -> torch.Tensor:
        """Rows ``items`` of :meth:`item_representations`, read with a sparse gradient: a training
        step that uses only these rows costs nothing per catalog item (see ``seq_trainer``)."""
        if isinstance(self.items, HashedIdTable):
            return F.embedding(self.items.buckets[items], self.items.table, sparse=True)
        return F.embedding(items, self.items.weight, sparse=True)

    def encode(self, items: torch.Tensor, mask: torch.Tensor,
               item_reps: torch.Tensor | None = None) -> torch.Tensor:
        reps = self.item_representations() if item_reps is None else item_reps
        return self.encoder(reps[items], mask)


_BACKBONE_KEYS = {f.name for f in fields(BackboneConfig)}
_TRAINER_KEYS = {f.name for f in fields(SeqTrainerConfig)}


class SASRec(Recommender):
    """Self-attentive sequential recommender over item IDs.

    ``SASRec(backbone={...}, trainer={...})`` or flat keywords routed to whichever config owns
    them, e.g. ``SASRec(hidden=64, dropout=0.5, lr=1e-3, epochs=100)``; ``max_len`` sets both
    the positional table and the training window; ``max_epochs`` caps ``epochs``;
    ``id_table={"kind": "hashed", "size": 0.25}`` swaps the collision-free ID table for a
    fixed-size hashed one (see :mod:`textrec.models.id_table`).
    """

    name = "SASRec"
    fresh_scores = True

    def __init__(self, backbone: BackboneConfig | dict | None = None,
                 trainer: SeqTrainerConfig | dict | None = None, n_items: int | None = None,
                 max_epochs: int | None = None, id_table: dict | None = None, **overrides: Any) -> None:
        b = BackboneConfig.from_dict(backbone).to_dict()
        t = SeqTrainerConfig.from_dict(trainer).to_dict()
        if not isinstance(trainer, SeqTrainerConfig) and "max_len" not in (trainer or {}):
            t["max_len"] = b["max_len"]  # the window follows the positional table unless set
        unknown = set(overrides) - _BACKBONE_KEYS - _TRAINER_KEYS
        if unknown:
            raise ValueError(f"unknown SASRec option(s) {sorted(unknown)}; backbone: {sorted(_BACKBONE_KEYS)}, "
                             f"trainer: {sorted(_TRAINER_KEYS)}")
        for k, v in overrides.items():
            if k in _BACKBONE_KEYS:
                b[k] = v
            if k in _TRAINER_KEYS:
                t[k] = v
        if max_epochs is not None:
            t["epochs"] = min(t["epochs"], int(max_epochs))
        self.backbone_config = BackboneConfig(**b)
        self.trainer_config = SeqTrainerConfig(**t)
        if self.trainer_config.max_len > self.backbone_config.max_len:
            raise ValueError(f"trainer max_len {self.trainer_config.max_len} exceeds the backbone's "
                             f"positional table ({self.backbone_config.max_len})")
        self.n_items = n_items
        self.id_table = dict(id_table) if id_table else None
        self.module: SASRecModule | None = None
        self.history: list[dict[str, Any]] = []
        self.best_epoch: int | None = None

    @classmethod
    def from_recipe(cls, recipe: str | dict = "sasrec", seed: int | None = None,
                    max_epochs: int | None = None, **overrides: Any) -> SASRec:
        """Build from a YAML recipe (``training/sasrec.yaml``) with optional overrides."""
        from textrec.recipes import load_recipe

        data = dict(recipe) if isinstance(recipe, dict) else load_recipe(recipe)
        model_type = data.pop("model", cls.__name__)
        if model_type != cls.__name__:
            raise ValueError(f"recipe is for '{model_type}', not {cls.__name__}")
        backbone = dict(data.pop("backbone", {}) or {})
        trainer = dict(data.pop("trainer", {}) or {})
        backbone.update(overrides.pop("backbone", {}) or {})
        trainer.update(overrides.pop("trainer", {}) or {})
        options = dict(data.pop("options", {}) or {})  # model-specific constructor arguments
        options.update(overrides)
        data.pop("description", None)
        if data:
            raise ValueError(f"unknown recipe section(s) {sorted(data)}")
        if seed is not None:
            trainer["seed"] = seed
            if "seed" in inspect.signature(cls.__init__).parameters:
                options.setdefault("seed", seed)
        return cls(backbone=backbone, trainer=trainer, max_epochs=max_epochs, **options)

    # ---- fit / score ----------------------------------------------------------------------
    def _build(self, n_items: int) -> SASRecModule:
        self.n_items = int(n_items)
        with seeded(self.trainer_config.seed):
            module = SASRecModule(self.n_items, self.backbone_config, self.id_table)
        return module.to(resolve_device(self.trainer_config.device))

    def fit(self, data: TrainView, progress: bool = True) -> SASRec:
        self.module = self._build(data.n_items)
        trainer = SeqTrainer(self.trainer_config)
        self.history = trainer.fit(self.module, data, progress=progress, name=self.name)
        self.best_epoch = trainer.best_epoch
        return self

    def score(self, users: np.ndarray, histories: list[np.ndarray]) -> torch.Tensor:
        if self.module is None:
            raise RuntimeError("SASRec is not fitted; call fit() or from_pretrained() first")
        return score_histories(self.module, histories, self.trainer_config.max_len,
                               self.trainer_config.eval_batch_size)

    # ---- persistence ----------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        config = {"backbone": self.backbone_config.to_dict(), "trainer": self.trainer_config.to_dict(),
                  "n_items": self.n_items}
        if self.id_table:
            config["id_table"] = self.id_table
        return config

    def state_tensors(self) -> dict[str, torch.Tensor]:
        if self.module is None:
            raise RuntimeError("SASRec is not fitted: nothing to save")
        return dict(self.module.state_dict())

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if self.n_items is None:
            key = "items.weight" if "items.weight" in tensors else "items.buckets"
            self.n_items = int(tensors[key].shape[0])
        self.module = self._build(self.n_items)
        self.module.load_state_dict(tensors)
        self.module.eval()


__all__ = ["SASRec", "SASRecModule"]
