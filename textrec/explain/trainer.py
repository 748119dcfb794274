"""One training loop for every explanation model: AdamW, warm-up, early stopping on valid loss.

The model supplies ``collate`` and ``forward`` (a dict with ``loss`` and logged parts); the loop
keeps the weights of the best validation epoch (lowest valid ``loss``) and restores them at the end.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class TrainConfig:
    """Optimiser and stopping settings (``trainer`` section of ``training/erra.yaml``)."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    grad_clip: float = 1.0
    patience: int = 2  # epochs without valid improvement before stopping
    max_minutes: float | None = None  # wall-clock budget; stops after the epoch that crosses it
    seed: int = 0
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
                progress: bool = True, log=None, name: str | None = None) -> dict:
    """Train ``model`` in place; returns the history (per-epoch losses, seconds, best epoch)."""
    from tqdm.auto import tqdm

    cfg = config or TrainConfig()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(cfg.warmup_steps, 1)))
    history: dict = {"epochs": [], "best_epoch": 0, "stopped": "max_epochs"}
    best, best_state, bad = math.inf, None, 0
    t_start = time.perf_counter()
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    name = name or model.kind
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        order = rng.permutation(len(train))
        run: dict[str, float] = {}
        bar = tqdm(range(steps_per_epoch), desc=f"{name} epoch {epoch}", disable=not progress, leave=False)
        for step in bar:
            batch = model.collate([train[i] for i in order[step * cfg.batch_size:(step + 1) * cfg.batch_size]])
            out = model(batch)
            opt.zero_grad()
            out["loss"].backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            for k, v in out.items():
                run[k] = run.get(k, 0.0) + float(v.detach())
            bar.set_postfix(loss=f"{run['loss'] / (step + 1):.3f}")
        secs = time.perf_counter() - t0
        val = evaluate_loss(model, valid, cfg.eval_batch_size) if len(valid) else {"loss": -epoch}
        row = {"epoch": epoch, "seconds": round(secs, 1),
               "train": {k: round(v / steps_per_epoch, 4) for k, v in run.items()},
               "valid": {k: round(v, 4) for k, v in val.items()}}
        history["epochs"].append(row)
        msg = f"textrec: {name} epoch {epoch}: train {row['train']} valid {row['valid']} ({secs:.0f}s)"
        print(msg, file=sys.stderr, flush=True)
        if log is not None:
            log(msg)
        if val["loss"] < best - 1e-4:
            best, bad, history["best_epoch"] = val["loss"], 0, epoch
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad += 1
            if bad >= cfg.patience:
                history["stopped"] = "early_stop"
                break
        if cfg.max_minutes is not None and time.perf_counter() - t_start > 60 * cfg.max_minutes:
            history["stopped"] = "time_budget"
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    history["train_seconds"] = round(time.perf_counter() - t_start, 1)
    model.eval()
    return history
