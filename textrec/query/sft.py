"""SFT warm start for the query writer: imitate the best of a few heuristic queries.

Rec-R1 starts GRPO from an instruction-tuned model and reports an SFT baseline trained on
queries written by a stronger LLM. No stronger LLM is reachable offline, so the teacher here
is retrieval itself: for each *training* task a handful of heuristic queries built from the
context (the last title, the last two, all of them, the distinct content words most recent
first) are scored with the reward retriever against that task's training target, and the best
one becomes the SFT completion. GRPO then explores around a policy that already writes useful
queries instead of copying a truncated title. Only training tasks are used.

Training runs on the one loop (:class:`textrec.training.Trainer`; loss on the completion only)
with LoRA; the adapter is merged afterwards so GRPO can add its own. TRL's ``SFTTrainer`` was tried first and was 12x slower
per step on CPU (see ``sft_warm_start``).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from textrec.query.retrieval import MISS
from textrec.query.rewards import METRIC_FNS
from textrec.query.tasks import QueryTask, prompt_messages, render_prompt

CANDIDATES = ("last_title", "last_two_titles", "all_titles", "keywords")


@dataclass
class QuerySFTConfig:
    """SFT warm-start settings (``sft_*`` keys of a Rec-R1 recipe, without the prefix)."""

    steps: int = 100
    batch_size: int = 8
    learning_rate: float = 5e-4
    max_query_words: int = 16
    max_tasks: int | None = 2000  # seeded subsample of training tasks used as SFT data
    reward_k: int = 1000
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_top_layers: int | None = 8
    seed: int = 0


def _content(text: str) -> list[str]:
    from textrec.query.retrieval import tokenize

    return tokenize(text)


def candidate_queries(task: QueryTask, max_words: int = 16) -> dict[str, str]:
    """Heuristic queries from the context, by kind (see ``CANDIDATES``), each at most ``max_words``."""
    ctx = [c for c in task.context if c.strip()]

    def cut(s: str) -> str:
        return " ".join(s.split()[:max_words])

    out = {"last_title": cut(ctx[-1]) if ctx else "", "last_two_titles": cut(" ".join(ctx[-2:])),
           "all_titles": cut(" ".join(ctx))}
    seen: list[str] = []
    for c in reversed(ctx):  # most recent first, each content word once
        for w in _content(c):
            if w not in seen:
                seen.append(w)
    out["keywords"] = " ".join(seen[:max_words])
    return out


def sft_targets(tasks: Sequence[QueryTask], retriever, config: QuerySFTConfig | None = None
                ) -> tuple[list[str], dict[str, Any]]:
    """The best heuristic query per task under ``retriever`` (NDCG@reward_k), and a report."""
    cfg = config or QuerySFTConfig()
    cands = [candidate_queries(t, cfg.max_query_words) for t in tasks]
    score = {}
    for kind in CANDIDATES:
        qs = [c[kind] for c in cands]
        rows = [i for i, q in enumerate(qs) if q]
        ranks = np.full(len(tasks), MISS, dtype=np.int64)
        if rows:
            ranks[rows] = retriever.target_ranks([qs[i] for i in rows], [int(tasks[i].target) for i in rows],
                                                 [tasks[i].history for i in rows])
        score[kind] = METRIC_FNS["ndcg"](ranks, cfg.reward_k)
    # ties (often: no candidate retrieves the target) go to the kind that is best on average
    order = sorted(CANDIDATES, key=lambda k: (-float(score[k].mean()), CANDIDATES.index(k)))
    mat = np.stack([score[k] for k in order], axis=1)
    best = mat.argmax(1)
    targets = [cands[i][order[b]] for i, b in enumerate(best)]
    won = Counter(order[b] for b in best)
    report = {"n_tasks": len(tasks), "chosen": {k: int(won.get(k, 0)) for k in CANDIDATES},
              f"mean_ndcg@{cfg.reward_k}": {k: round(float(score[k].mean()), 4) for k in CANDIDATES},
              f"mean_ndcg@{cfg.reward_k}_best": round(float(mat.max(1).mean()), 4),
              "empty_targets": int(sum(1 for t in targets if not t))}
    return targets, report


def sft_pairs(tasks: Sequence[QueryTask], targets: Sequence[str], template, tokenizer, dataset_name: str = ""
              ) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, completion ids + EOS) per task with a non-empty target.

    Prompts are rendered exactly as GRPO and evaluation render them (the chat template with the
    generation prompt, or the plain layout), so SFT, GRPO and generation see one format.
    """
    out = []
    for t, q in zip(tasks, targets):
        if q:
            prompt = render_prompt(prompt_messages(t, template, dataset_name), tokenizer)
            out.append((tokenizer(prompt, add_special_tokens=False)["input_ids"],
                        tokenizer(q, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]))
    return out


def sft_warm_start(model, tokenizer, template, tasks: Sequence[QueryTask], retriever,
                   config: QuerySFTConfig | None = None, output_dir: str | os.PathLike = "runs/query_sft",
                   dataset_name: str = "", progress: bool = True):
    """Fine-tune ``model`` (LoRA, then merged) on the best heuristic queries; (model, report)."""
    from peft import get_peft_model

    from textrec.io import write_json
    from textrec.query.policy import completion_batch, lora_config
    from textrec.query.tasks import subsample
    from textrec.training import Trainer, TrainingConfig

    cfg = config or QuerySFTConfig()
    tasks = subsample(list(tasks), cfg.max_tasks, cfg.seed)
    t0 = time.perf_counter()
    targets, report = sft_targets(tasks, retriever, cfg)
    rows = sft_pairs(tasks, targets, template, tokenizer, dataset_name)
    layers = None
    if cfg.lora_top_layers:
        n = int(model.config.num_hidden_layers)
        layers = list(range(max(0, n - cfg.lora_top_layers), n))
    peft_model = get_peft_model(model, lora_config(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, layers=layers))
    # A plain loop rather than TRL's SFTTrainer: on CPU its fused chunked log-prob head made a step
    # of 8 examples take 170 s against 14 s for this forward/backward (py-spy, Scientific prompts).
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    params = [q for q in peft_model.parameters() if q.requires_grad]
    rng = np.random.default_rng(cfg.seed)
    order: list[int] = []
    batches = []
    for _ in range(cfg.steps):  # fixed-size batches over reshuffled passes, a pass may end mid-batch
        if len(order) < cfg.batch_size:
            order += rng.permutation(len(rows)).tolist()
        batches.append([rows[i] for i in order[: cfg.batch_size]])
        order = order[cfg.batch_size:]
    losses: list[float] = []

    def loss(batch):
        out = peft_model(**completion_batch(batch, pad)).loss
        losses.append(round(float(out.detach()), 4))
        return out

    # weight_decay 0.01: torch's AdamW default, which this warm start has always used
    Trainer(TrainingConfig(epochs=1, batch_size=cfg.batch_size, lr=cfg.learning_rate, weight_decay=0.01,
                           grad_clip=1.0, seed=cfg.seed),
            peft_model, batches=lambda epoch: batches, loss=loss, params=params, name="SFT", progress=progress).fit()
    merged = peft_model.merge_and_unload()
    merged.eval()
    report.update({"config": asdict(cfg), "sft_examples": len(rows), "steps": len(losses), "losses": losses,
                   "loss_first": losses[0] if losses else None,
                   "loss_last": float(np.mean(losses[-5:])) if losses else None,
                   "seconds": round(time.perf_counter() - t0, 1), "output_dir": str(Path(output_dir))})
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    write_json(Path(output_dir) / "sft_report.json", report)
    return merged, report


__all__ = ["QuerySFTConfig", "candidate_queries", "sft_targets", "sft_pairs", "sft_warm_start", "CANDIDATES"]
