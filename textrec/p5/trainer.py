"""Multitask P5 training on the one loop (:mod:`textrec.training`): fresh examples each epoch,
early stopping on valid NDCG@10.

Each epoch the serializer renders a new sample of examples (seeded by ``(seed, epoch)``: new
target positions, template choices and negatives), mixed across the configured task families,
in length-grouped shuffled batches. After every ``eval_every`` epochs the sequential task is
evaluated on the valid set with full-catalogue NDCG@10 (history masked): trie-constrained beams,
or with one token per item every item's first-token log-probability; the loop keeps and restores the best weights and stops after ``patience`` evaluations
without gain or when ``max_minutes`` (wall) or ``max_cpu_minutes`` (CPU time) is spent. Not ``Seq2SeqTrainer``: the model adds whole-word
embeddings to the encoder input and early stopping needs constrained generation, so P5 supplies
only its batches, its loss and that evaluation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from textrec.data.splits import EvalSet
from textrec.p5.model import P5Model
from textrec.p5.rating import RatingRows, expected_stars_mse, rating_rmse, star_token_ids
from textrec.p5.serializer import P5Serializer, TrainData
from textrec.training import Trainer, TrainingConfig


@dataclass
class P5TrainConfig(TrainingConfig):
    """The shared loop options with P5's defaults (linear decay after warm-up, early stopping on
    valid NDCG@10), plus the valid-evaluation settings."""

    weight_decay: float = 0.01
    warmup_steps: int = 100
    schedule: str = "linear"
    min_lr_ratio: float = 0.05
    grad_clip: float | None = 1.0
    patience: int = 3
    metric: str = "ndcg@10"
    eval_users: int | None = None  # valid rows used for early stopping (None = all)
    eval_beams: int = 10
    eval_template: str | None = None  # default: the first seen sequential template
    rating_mse_weight: float = 0.0  # rating rows add weight * (expected stars - rating)^2 (textrec.p5.rating)


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
    """Full-ranking HR/NDCG@10 of constrained beams (one-token ids: first-token scores) on (a subset of) valid."""
    from textrec.evaluation import evaluate
    from textrec.p5.generation import item_score_matrix

    class _Beams:  # the harness scores anything with a ``score(users, histories)``
        name = "P5"

        def score(self, users, histories):
            tpl = serializer.template("sequential", template_id)
            sources = [serializer.sequential_source(u, h, tpl) for u, h in zip(users, histories)]
            return item_score_matrix(model, sources, histories, n_items, k=beams)

    ev = valid if rows is None else valid.select(rows)
    res = evaluate(_Beams(), ev, n_items, ks=(10,))
    return {"hr@10": res.metrics["hr@10"], "ndcg@10": res.metrics["ndcg@10"], "users_per_s": res.users_per_second}


def train_p5(model: P5Model, serializer: P5Serializer, data: TrainData, valid: EvalSet | None,
             config: P5TrainConfig | None = None, progress: bool = True,
             rating_valid: RatingRows | None = None) -> dict:
    """Train in place; returns the history (per-epoch loss, valid metrics, seconds, best epoch).

    With ``metric: rating_rmse`` the valid check is the expected-stars RMSE on ``rating_valid``
    (lower is better) instead of sequential NDCG.
    """
    cfg = config or P5TrainConfig()
    by_rating = cfg.metric == "rating_rmse"
    if by_rating and rating_valid is None:
        raise ValueError("metric 'rating_rmse' needs rating_valid rows")
    if by_rating and cfg.greater_is_better is None:
        cfg = replace(cfg, greater_is_better=False)
    star_ids = star_token_ids(model.tokenizer) if cfg.rating_mse_weight > 0 else None
    rng = np.random.default_rng(cfg.seed)
    eval_rows = None
    if valid is not None and cfg.eval_users is not None and cfg.eval_users < len(valid):
        eval_rows = np.sort(rng.choice(len(valid), size=cfg.eval_users, replace=False))
    examples: dict[str, dict] = {}

    def batches(epoch: int) -> list[np.ndarray]:
        cols = serializer.examples(data, epoch=epoch)
        n = len(cols["source"])
        if n == 0:
            raise ValueError("the serializer produced no training examples (users with < 2 training events?)")
        examples["cols"] = cols
        trainer.epoch_info["examples"] = n
        lengths = np.array([len(s) for s in cols["source"]])
        return _batches(n, cfg.batch_size, rng, lengths)

    def loss(b: np.ndarray) -> torch.Tensor:
        cols = examples["cols"]
        enc = model.tokenize_sources([cols["source"][i] for i in b])
        labels = model.tokenize_targets([cols["target"][i] for i in b])
        out = model(enc["input_ids"], enc["attention_mask"], labels)
        if star_ids is None:
            return out.loss
        mse = expected_stars_mse(out.logits[:, 0], [cols["target"][i] for i in b], [cols["task"][i] for i in b],
                                 star_ids)
        if mse is None:
            return {"loss": out.loss, "lm_loss": out.loss.detach()}
        return {"loss": out.loss + cfg.rating_mse_weight * mse, "lm_loss": out.loss.detach(),
                "rating_mse": mse.detach()}

    def evaluate() -> dict[str, float]:
        if by_rating:
            return rating_rmse(model, rating_valid)
        return valid_ndcg(model, serializer, valid, data.n_items, cfg.eval_beams, cfg.eval_template, eval_rows)

    def log(r: dict) -> None:
        if progress:
            print(f"p5 epoch {r['epoch'] - 1}: {_record(r)}", flush=True)

    params = [p for p in model.parameters() if p.requires_grad]
    trainer = Trainer(cfg, model, batches=batches, loss=loss, evaluate=evaluate if valid is not None or by_rating else None,
                      params=params, rngs={"shuffle": rng}, name="p5", progress=progress, on_epoch_end=log)
    result = trainer.fit()
    history: dict = {"config": asdict(cfg), "epochs": [_record(r) for r in result.history]}
    if result.best_epoch is not None:
        history["best_epoch"] = result.best_epoch - 1
        history[f"best_valid_{cfg.metric}"] = result.best_metric
    if result.stopped in ("max_minutes", "max_cpu_minutes"):
        history["stopped"] = f"{result.stopped}={getattr(cfg, result.stopped)} reached"
    elif result.stopped == "early_stop":
        history["stopped"] = f"no valid {cfg.metric} gain in {cfg.patience} evaluations"
    history["train_seconds"] = round(result.train_seconds, 1)
    history["train_cpu_seconds"] = round(result.train_cpu_seconds, 1)  # on a shared machine, the honest budget
    return history


def _record(r: dict) -> dict:
    """One epoch of the P5 history (0-based epochs, as the serializer counts them)."""
    rec = {"epoch": r["epoch"] - 1, "examples": r.get("info", {}).get("examples"), "steps": r["steps"],
           "loss": r["loss"], "train_seconds": round(r["train_seconds"], 1),
           "cpu_seconds_so_far": round(r.get("cpu_seconds", float("nan")), 1)}
    rec.update({k: round(float(v), 5) for k, v in r.get("parts", {}).items() if k != "loss"})
    if "valid" in r:
        rec.update({f"valid_{k}": round(v, 5) for k, v in r["valid"].items()})
        rec["eval_seconds"] = round(r["eval_seconds"], 1)
    return rec
