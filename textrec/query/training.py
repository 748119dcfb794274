"""The Rec-R1 training recipe end to end: optional SFT warm start, then GRPO, each saved as a writer.

``<output>/sft/writer`` holds the SFT policy (full weights: LoRA merged), ``<output>/final`` the
GRPO adapter on top of it (its ``querywriter.json`` names the SFT folder as the base), and each
writer folder has a ``training_info.json`` naming its reward retriever(s) and what the run did.
A resumed run reuses a finished SFT stage and continues GRPO from its last checkpoint.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from textrec.io import write_json
from textrec.query.grpo_config import QueryGRPOConfig
from textrec.query.tasks import QueryTask

TRAINING_INFO = "training_info.json"


def train_writers(cfg: QueryGRPOConfig, retrievers: dict[str, Any], tasks: Sequence[QueryTask],
                  output_dir: str | os.PathLike, dataset_name: str = "", resume: bool = False,
                  progress: bool = True) -> dict[str, Any]:
    """Run SFT (if ``cfg.sft_steps``; ``cfg.sft_from`` reuses a finished one) then GRPO; returns the
    GRPO summary (plus the SFT report)."""
    from textrec.query.grpo_trainer import QueryGRPOTrainer
    from textrec.query.policy import WRITER_FILE, QueryWriter, load_policy
    from textrec.query.sft import sft_warm_start
    from textrec.query.tasks import load_template

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    base_model = cfg.model
    sft_report = None
    if cfg.sft_from:
        sft_dir = Path(cfg.sft_from)
        if not (sft_dir / WRITER_FILE).is_file() or not (sft_dir / "model").is_dir():
            raise FileNotFoundError(f"sft_from={sft_dir}: not a finished SFT writer folder (needs {WRITER_FILE} "
                                    "and model/, as <run>/sft/writer holds them)")
        info = sft_dir / TRAINING_INFO
        sft_frac = json.loads(info.read_text(encoding="utf-8")).get("held_out_users_frac") if info.is_file() else None
        if (sft_frac or 0.0) != (cfg.held_out_users_frac or 0.0):
            # the GRPO writer records one fraction for both stages: the benchmark trusts it
            raise ValueError(f"sft_from={sft_dir}: that SFT kept held_out_users_frac={sft_frac} out, this run "
                             f"{cfg.held_out_users_frac}; the held-out users must be the same in both stages")
        model, tok = load_policy(str(sft_dir / "model"))
        base_model = str((sft_dir / "model").resolve())
        print(f"textrec: GRPO starts from the SFT writer in {sft_dir}", file=sys.stderr)
    elif cfg.sft_steps > 0:
        sft_dir = out / "sft" / "writer"
        if resume and (sft_dir / WRITER_FILE).is_file():
            model, tok = load_policy(str(sft_dir / "model"))
            print(f"textrec: reusing the finished SFT stage in {sft_dir}", file=sys.stderr)
        else:
            model, tok = load_policy(cfg.model)
            template = load_template(cfg.template_id, cfg.template_family)
            reward_retrievers = [retrievers[r] for r in cfg.reward_retrievers]  # several: a hybrid reward
            model, sft_report = sft_warm_start(model, tok, template, tasks, reward_retrievers,
                                               cfg.sft_config(), out / "sft", dataset_name=dataset_name,
                                               progress=progress)
            writer = QueryWriter(model, tok, template_id=cfg.template_id, template_family=cfg.template_family,
                                 max_history=cfg.max_history, max_new_tokens=cfg.eval_max_new_tokens,
                                 base_model=cfg.model, dataset_name=dataset_name,
                                 max_prompt_tokens=cfg.max_prompt_tokens, max_words=cfg.max_words,
                                 mode=cfg.writer_mode)
            writer.save_pretrained(sft_dir)
            write_json(sft_dir / TRAINING_INFO, {
                "stage": "sft", "reward_retrievers": list(cfg.reward_retrievers),
                "held_out_users_frac": cfg.held_out_users_frac,
                "report": {k: v for k, v in sft_report.items() if k != "losses"}})
        base_model = str((sft_dir / "model").resolve())
    else:
        model, tok = load_policy(cfg.model)
    trainer = QueryGRPOTrainer(cfg, retrievers, tasks, out, dataset_name=dataset_name, model=model, tokenizer=tok,
                               verbose=progress, base_model=base_model)
    trainer.train(resume=resume)
    trainer.save_pretrained(out / "final")
    summary = trainer.summary()
    summary["verdict_nothing_learned"] = trainer.verdict is not None
    write_json(out / "final" / TRAINING_INFO, {"stage": "grpo", "reward_retrievers": list(cfg.reward_retrievers),
                                               "held_out_users_frac": cfg.held_out_users_frac,
                                               "config": cfg.to_dict(), "summary": summary})
    if sft_report is not None:
        summary["sft"] = {k: v for k, v in sft_report.items() if k != "losses"}
    return summary
