"""Training of every explanation model on the one loop (:class:`textrec.training.Trainer`).

The model supplies ``collate`` and ``forward`` (a dict with ``loss`` and logged parts); the loop
keeps the weights of the best validation epoch (lowest valid ``loss``, improved by more than
``min_delta``) and restores them at the end.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from textrec.training import Trainer, TrainingConfig, send_to_device


@dataclass
class TrainConfig(TrainingConfig):
    """The shared loop options with the explainers' defaults (early stopping on valid loss)
    (``trainer`` section of ``training/erra.yaml``)."""

    weight_decay: float = 0.01
    warmup_steps: int = 100
    grad_clip: float | None = 1.0
    patience: int = 2  # epochs without valid improvement before stopping
    metric: str = "loss"
    min_delta: float = 1e-4
    eval_batch_size: int = 256


@torch.no_grad()
def evaluate_loss(model, examples: Sequence, batch_size: int = 256) -> dict[str, float]:
    """Mean of each loss part over examples (eval mode)."""
    was = model.training
    model.eval()
    tot: dict[str, float] = {}
    n = 0
    for s in range(0, len(examples), batch_size):
        chunk = examples[s:s + batch_size]
        out = model(model.collate(chunk))
        for k, v in out.items():
            tot[k] = tot.get(k, 0.0) + float(v) * len(chunk)
        n += len(chunk)
    model.train(was)
    return {k: v / max(n, 1) for k, v in tot.items()}


def train_model(model, train: Sequence, valid: Sequence, config: TrainConfig | None = None,
                progress: bool = True, log=None, name: str | None = None, on_step_end=None) -> dict:
    """Train ``model`` in place; returns the history (per-epoch losses, seconds, best epoch).

    ``on_step_end(trainer)``: called after every batch (e.g. to record a learning curve).
    """
    cfg = config or TrainConfig()
    rng = np.random.default_rng(cfg.seed)
    name = name or model.kind

    def batches(epoch: int) -> list[np.ndarray]:
        order = rng.permutation(len(train))
        return [order[s:s + cfg.batch_size] for s in range(0, len(train), cfg.batch_size)]

    def loss(idx: np.ndarray) -> dict:
        batch = send_to_device(model.collate([train[i] for i in idx]), trainer.accelerator.device)
        return model(batch)

    def evaluate() -> dict[str, float]:
        return evaluate_loss(model, valid, cfg.eval_batch_size)

    def on_epoch(r: dict) -> None:
        row = _row(r)
        msg = f"textrec: {name} epoch {row['epoch']}: train {row['train']} valid {row['valid']} ({row['seconds']:.0f}s)"
        print(msg, file=sys.stderr, flush=True)
        if log is not None:
            log(msg)

    trainer = Trainer(cfg, model, batches=batches, loss=loss, evaluate=evaluate if len(valid) else None,
                      rngs={"shuffle": rng}, name=name, progress=progress, on_epoch_end=on_epoch,
                      on_step_end=on_step_end)
    result = trainer.fit()
    stopped = {"completed": "max_epochs", "early_stop": "early_stop", "max_minutes": "time_budget"}[result.stopped]
    # without a valid set the last epoch counts as the best
    best = result.best_epoch if result.best_epoch is not None else len(result.history)
    return {"epochs": [_row(r) for r in result.history], "best_epoch": best, "stopped": stopped,
            "train_seconds": round(result.train_seconds, 1)}


def _row(r: dict) -> dict:
    """One epoch of the explainer history: rounded train and valid loss parts."""
    train = r["parts"] or {"loss": r["loss"]}
    return {"epoch": r["epoch"], "seconds": round(r["train_seconds"], 1),
            "train": {k: round(v, 4) for k, v in train.items()},
            "valid": {k: round(v, 4) for k, v in r.get("valid", {}).items()}}
