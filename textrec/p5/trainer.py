"""Multitask P5 training: one simple loop, fresh examples each epoch, early stopping on valid NDCG@10.

Each epoch the serializer renders a new sample of examples (seeded by ``(seed, epoch)``: new
target positions, template choices and negatives), mixed across the configured task families.
After every ``eval_every`` epochs the sequential task is evaluated on the valid set with
trie-constrained beams and full-catalogue NDCG@10 (history masked); the best weights are kept
and restored at the end, and training stops after ``patience`` evaluations without gain or
when ``max_minutes`` is spent. A plain loop rather than ``Seq2SeqTrainer``: the model adds
whole-word embeddings to the encoder input and early stopping needs constrained generation,
both simpler to keep in one visible loop.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from textrec.data.splits import EvalSet
from textrec.p5.model import P5Model
from textrec.p5.serializer import P5Serializer, TrainData


@dataclass
class P5TrainConfig:
    """Optimisation and early-stopping settings."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    grad_clip: float = 1.0
    eval_every: int = 1
    patience: int = 3
    eval_users: int | None = None  # valid rows used for early stopping (None = all)
    eval_beams: int = 10
    eval_template: str | None = None  # default: the first seen sequential template
    max_minutes: float | None = None
    seed: int = 0


def _batches(n: int, batch_size: int, rng: np.random.Generator, lengths: np.ndarray) -> list[np.ndarray]:
    """Shuffled batches, grouped by similar source length inside windows (less padding)."""
    order = rng.permutation(n)
    window = batch_size * 32
    out = []
    for s in range(0, n, window):
        w = order[s:s + window]
        w = w[np.argsort(lengths[w], kind="stable")]
        out.extend(w[i:i + batch_size] for i in range(0, len(w), batch_size))
    rng.shuffle(out)
    return out


def valid_ndcg(model: P5Model, serializer: P5Serializer, valid: EvalSet, n_items: int, beams: int = 10,
               template_id: str | None = None, rows: np.ndarray | None = None) -> dict[str, float]:
    """Full-ranking HR/NDCG@10 of constrained beams on (a subset of) the valid set."""
    from textrec.evaluation import evaluate
    from textrec.p5.generation import beam_score_matrix

    class _Beams:  # the harness scores anything with a ``score(users, histories)``
        name = "P5"

        def score(self, users, histories):
            tpl = serializer.template("sequential", template_id)
            sources = [serializer.sequential_source(u, h, tpl) for u, h in zip(users, histories)]
            return beam_score_matrix(model, sources, histories, n_items, k=beams)

    ev = valid if rows is None else valid.select(rows)
    res = evaluate(_Beams(), ev, n_items, ks=(10,))
    return {"hr@10": res.metrics["hr@10"], "ndcg@10": res.metrics["ndcg@10"], "users_per_s": res.users_per_second}


def train_p5(model: P5Model, serializer: P5Serializer, data: TrainData, valid: EvalSet | None,
             config: P5TrainConfig | None = None, progress: bool = True) -> dict:
    """Train in place; returns the history (per-epoch loss, valid metrics, seconds, best epoch)."""
    cfg = config or P5TrainConfig()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    eval_rows = None
    if valid is not None and cfg.eval_users is not None and cfg.eval_users < len(valid):
        eval_rows = np.sort(rng.choice(len(valid), size=cfg.eval_users, replace=False))
    history: dict = {"config": asdict(cfg), "epochs": []}
    best, best_state, bad, step, total_steps = -1.0, None, 0, 0, None
    t0 = time.perf_counter()
    for epoch in range(cfg.epochs):
        cols = serializer.examples(data, epoch=epoch)
        n = len(cols["source"])
        if n == 0:
            raise ValueError("the serializer produced no training examples (users with < 2 training events?)")
        lengths = np.array([len(s) for s in cols["source"]])
        batches = _batches(n, cfg.batch_size, rng, lengths)
        if total_steps is None:
            total_steps = max(len(batches) * cfg.epochs, 1)
        model.train()
        losses = []
        te = time.perf_counter()
        for b in tqdm(batches, desc=f"p5 epoch {epoch}", disable=not progress, leave=False):
            lr_scale = min(1.0, (step + 1) / max(cfg.warmup_steps, 1))
            lr_scale *= max(0.05, 1.0 - step / total_steps) if step >= cfg.warmup_steps else 1.0
            for g in opt.param_groups:
                g["lr"] = cfg.lr * lr_scale
            enc = model.tokenize_sources([cols["source"][i] for i in b])
            labels = model.tokenize_targets([cols["target"][i] for i in b])
            loss = model(enc["input_ids"], enc["attention_mask"], labels).loss
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"P5 loss became {loss.item()} at epoch {epoch} step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            losses.append(loss.item())
            step += 1
            if cfg.max_minutes is not None and time.perf_counter() - t0 > cfg.max_minutes * 60:
                break
        rec = {"epoch": epoch, "examples": n, "steps": len(losses), "loss": float(np.mean(losses)),
               "train_seconds": round(time.perf_counter() - te, 1)}
        out_of_time = cfg.max_minutes is not None and time.perf_counter() - t0 > cfg.max_minutes * 60
        if valid is not None and ((epoch + 1) % cfg.eval_every == 0 or epoch == cfg.epochs - 1 or out_of_time):
            tv = time.perf_counter()
            m = valid_ndcg(model, serializer, valid, data.n_items, cfg.eval_beams, cfg.eval_template, eval_rows)
            rec.update({f"valid_{k}": round(v, 5) for k, v in m.items()})
            rec["eval_seconds"] = round(time.perf_counter() - tv, 1)
            if m["ndcg@10"] > best:
                best, bad = m["ndcg@10"], 0
                best_state = copy.deepcopy(model.state_dict())
                history["best_epoch"] = epoch
            else:
                bad += 1
        history["epochs"].append(rec)
        if progress:
            print(f"p5 epoch {epoch}: {rec}", flush=True)
        if out_of_time:
            history["stopped"] = f"max_minutes={cfg.max_minutes} reached"
            break
        if valid is not None and bad >= cfg.patience:
            history["stopped"] = f"no valid NDCG@10 gain in {cfg.patience} evaluations"
            break
    if best_state is not None:
        model.load_state_dict(best_state)
        history["best_valid_ndcg@10"] = best
    history["train_seconds"] = round(time.perf_counter() - t0, 1)
    model.eval()
    return history
