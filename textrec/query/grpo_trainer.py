"""GRPO training of the query writer with TRL (the Rec-R1 loop on PyPI-only parts).

Each step: a prompt (a user's recent items) -> ``num_generations`` sampled queries -> each is
run through the retriever(s) -> reward = NDCG@k of the user's true next item (+ a format
reward) -> group-relative advantages -> policy update (LoRA by default). No labelled queries.

Checkpoints (``checkpoint-N`` under the output folder, TRL/Trainer layout) make a run
resumable with ``train(resume=True)``. The mean reward per step is logged to
``reward_curve.json`` and plotted to ``reward_curve.png`` in the output folder; both are
rebuilt from the trainer's log history, so a resumed run continues the same curve.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from textrec.io import write_json
from textrec.query.grpo_config import QueryGRPOConfig
from textrec.query.policy import QueryWriter, load_policy, lora_config
from textrec.query.rewards import FormatReward, RetrievalReward, reward_name
from textrec.query.tasks import QueryTask, load_template, subsample, to_hf_dataset

CURVE_JSON = "reward_curve.json"
CURVE_PNG = "reward_curve.png"
CURVE_KEYS = ("reward", "reward_std", "kl", "completions/mean_length", "frac_reward_zero_std", "loss")


def reward_curve(log_history: Sequence[dict[str, Any]]) -> dict[str, list]:
    """Per logged step: mean reward (and its parts, KL, completion length) from a log history."""
    rows = [r for r in log_history if "reward" in r and "step" in r]
    curve: dict[str, list] = {"step": [int(r["step"]) for r in rows]}
    keys = list(CURVE_KEYS) + sorted({k for r in rows for k in r if k.startswith("rewards/") and k.endswith("/mean")})
    for k in keys:
        curve[k] = [r.get(k) for r in rows]
    return curve


def plot_reward_curve(curve: dict[str, list], path: str | os.PathLike, title: str = "GRPO mean reward",
                      window: int = 20) -> Path:
    """PNG of the mean reward per step (raw and a moving average) and each reward part."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from textrec.io import atomic_path

    steps = np.asarray(curve.get("step", []))
    fig, ax = plt.subplots(figsize=(7, 4))
    if len(steps):
        parts = [k for k in curve if k.startswith("rewards/")]
        series = [("reward", "total reward")] + [(k, k.split("/")[1]) for k in parts]
        for key, label in series:
            y = np.nan_to_num(np.asarray([np.nan if v is None else v for v in curve[key]], dtype=float))
            # Trailing mean over up to w steps (shorter at the start), w ~ a fifth of the run.
            w = max(1, min(window, len(y) // 5))
            c = np.concatenate([[0.0], np.cumsum(y)])
            lo = np.maximum(np.arange(1, len(y) + 1) - w, 0)
            smooth = (c[1:] - c[lo]) / (np.arange(1, len(y) + 1) - lo)
            line, = ax.plot(steps, y, alpha=0.25, lw=0.8)
            ax.plot(steps, smooth, color=line.get_color(), lw=1.8, label=f"{label} (trailing avg {w})")
        ax.legend(fontsize=8)
    ax.set_xlabel("step")
    ax.set_ylabel("mean reward over the group")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp, final = atomic_path(path)
    fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    os.replace(tmp, final)
    return final


def _trainer_class():
    """TRL's ``GRPOTrainer`` with a cheaper loss step: completions without a learning signal skip backprop.

    A group whose rewards are all equal has advantage 0 for every completion; with no KL term
    (``beta == 0``) such completions contribute exactly nothing to the loss, yet TRL still runs
    their forward and backward pass. Here they are dropped before the forward pass (the "dapo"
    loss divides by the token count of the whole generation batch, which stays unchanged, so
    the gradient is the same), and a batch with nothing informative skips the pass entirely.
    """
    import torch
    from trl import GRPOTrainer

    class SkippingGRPOTrainer(GRPOTrainer):
        skipped_batches = 0
        dropped_completions = 0
        kept_completions = 0
        #: compute log-probs with a plain LM head (and the prompt once per group) instead of TRL's path
        plain_logps = True
        shared_prompt_batches = 0

        def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep,
                                               batch_size=None, compute_entropy=False, compute_aux_loss=False,
                                               **multimodal):
            # TRL scores completions through a fused, chunked log-prob head built for GPU memory;
            # on a CPU a plain head over the few completion positions is much cheaper, and when
            # every row continues one prompt (one group per step) the prompt runs once and its
            # keys/values are shared by the group.
            if (not self.plain_logps or compute_aux_loss or any(v is not None for v in multimodal.values())):
                return super()._get_per_token_logps_and_entropies(
                    model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy,
                    compute_aux_loss, **multimodal)
            n, p = input_ids.size(0), input_ids.size(1) - logits_to_keep
            prompt, completion = input_ids[:, :p], input_ids[:, p:]
            pmask = attention_mask[:, :p]
            shared = n > 1 and p > 0 and bool((prompt == prompt[:1]).all()) and bool((pmask == pmask[:1]).all())
            with self.accelerator.autocast():
                if shared:
                    self.shared_prompt_batches += 1
                    first = model(input_ids=prompt[:1], attention_mask=pmask[:1], use_cache=True)
                    cache = first.past_key_values
                    cache.batch_repeat_interleave(n)
                    rest = model(input_ids=completion, attention_mask=attention_mask, past_key_values=cache,
                                 use_cache=False)
                    logits = torch.cat([first.logits[:, -1:].expand(n, -1, -1), rest.logits[:, :-1]], dim=1)
                else:
                    out = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=logits_to_keep + 1)
                    logits = out.logits[:, :-1]
            logits = logits.float() / self.temperature
            logp_all = torch.log_softmax(logits, dim=-1)
            logps = logp_all.gather(2, completion.unsqueeze(-1)).squeeze(-1)
            entropy = -(logp_all.exp() * logp_all).sum(-1) if compute_entropy else None
            return logps, entropy, None

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if self.beta != 0.0 or "advantages" not in inputs:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            adv = inputs["advantages"]
            keep = (adv.abs() > 1e-8) if adv.dim() == 1 else (adv.abs() > 1e-8).any(dim=1)
            n = int(keep.shape[0])
            self.kept_completions += int(keep.sum())
            self.dropped_completions += n - int(keep.sum())
            if not bool(keep.any()):
                self.skipped_batches += 1
                # A zero loss that still backpropagates (to nothing): the optimizer step is a no-op.
                return torch.zeros((), device=adv.device, requires_grad=True)
            if not bool(keep.all()) and self.loss_type == "dapo":
                inputs = {k: (v[keep] if isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == n else v)
                          for k, v in inputs.items()}
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    return SkippingGRPOTrainer


def progress_line(logs: dict[str, Any], step: int, max_steps: int, seconds_per_step: float | None,
                  cpu_seconds_per_step: float | None = None) -> str:
    """One readable line for a logged GRPO step (instead of TRL's raw dict)."""
    parts = [f"step {step}/{max_steps}"]
    if logs.get("reward") is not None:
        parts.append(f"mean reward {logs['reward']:.4f}")
    if logs.get("frac_reward_zero_std") is not None:
        parts.append(f"informative groups {100 * (1 - logs['frac_reward_zero_std']):.0f}%")
    if logs.get("completions/mean_length") is not None:
        parts.append(f"{logs['completions/mean_length']:.1f} tokens")
    if seconds_per_step is not None:
        cpu = "" if cpu_seconds_per_step is None else f" ({cpu_seconds_per_step:.1f} CPU s)"
        parts.append(f"{seconds_per_step:.1f} s/step{cpu}")
    return " | ".join(parts)


def learning_verdict(curve: dict[str, list]) -> str | None:
    """Why nothing was learned, when every logged group had equal rewards; ``None`` otherwise."""
    zero = [x for x in curve.get("frac_reward_zero_std", []) if x is not None]
    if zero and all(z >= 1.0 - 1e-9 for z in zero):
        rewards = [x for x in curve.get("reward", []) if x is not None]
        level = f"{rewards[0]:.4f}" if rewards and max(rewards) - min(rewards) < 1e-9 else "equal within each group"
        return (f"nothing was learned: in all {len(zero)} steps every group's rewards were equal (reward {level}), "
                "so every advantage was 0 and no gradient reached the policy. Usually no sampled query retrieved "
                "the target within reward_k: warm-start with SFT (sft_steps), raise reward_k or num_generations, "
                "or sample at a higher temperature.")
    return None


def last_complete_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The newest ``checkpoint-N`` that holds a ``trainer_state.json`` (HF writes it last, so a
    checkpoint interrupted while being written lacks it and is passed over)."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    done = [p for p in folder.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()
            and (p / "trainer_state.json").is_file()]
    return max(done, key=lambda p: int(p.name.split("-")[-1])) if done else None


def _callback_class():
    from transformers import TrainerCallback

    class RewardCurveCallback(TrainerCallback):
        """Rewrites ``reward_curve.json`` at each log and the PNG at each save and at the end."""

        def __init__(self, folder: Path, title: str, max_minutes: float | None = None, verbose: bool = True,
                     max_cpu_minutes: float | None = None):
            self.folder, self.title, self.max_minutes = folder, title, max_minutes
            self.max_cpu_minutes = max_cpu_minutes
            self.verbose = verbose
            self.t0 = time.perf_counter()
            self.cpu0 = time.process_time()
            self.stopped_by: str | None = None
            self.stopped_early_at: int | None = None
            self._last: tuple[float, float, int] | None = None
            self.seconds_per_step: list[float] = []
            # CPU seconds of this process per step: on a shared machine the wall clock measures the
            # neighbours; with one torch thread this is close to the step's uncontended 1-thread time.
            self.cpu_seconds_per_step: list[float] = []

        def on_train_begin(self, args, state, control, **kw):
            self._last = (time.perf_counter(), time.process_time(), state.global_step)

        def on_step_end(self, args, state, control, **kw):
            # A wall-clock or CPU-time budget (CPU runs): stop after this step and save a checkpoint.
            wall = self.max_minutes is not None and time.perf_counter() - self.t0 > 60 * self.max_minutes
            cpu = self.max_cpu_minutes is not None and time.process_time() - self.cpu0 > 60 * self.max_cpu_minutes
            if wall or cpu:
                control.should_training_stop = True
                control.should_save = True
                self.stopped_early_at = state.global_step
                self.stopped_by = "max_minutes" if wall else "max_cpu_minutes"

        def _write(self, state, plot: bool) -> None:
            curve = reward_curve(state.log_history)
            curve["seconds_since_start_of_this_process"] = round(time.perf_counter() - self.t0, 1)
            write_json(self.folder / CURVE_JSON, curve)
            if plot:
                plot_reward_curve(curve, self.folder / CURVE_PNG, title=self.title)

        def on_log(self, args, state, control, logs=None, **kw):
            self._write(state, plot=False)
            now, cpu = time.perf_counter(), time.process_time()
            sps = cps = None
            if self._last is not None and state.global_step > self._last[2]:
                n = state.global_step - self._last[2]
                sps, cps = (now - self._last[0]) / n, (cpu - self._last[1]) / n
                self.seconds_per_step.append(sps)
                self.cpu_seconds_per_step.append(cps)
            self._last = (now, cpu, state.global_step)
            if self.verbose and logs and "reward" in logs:
                print(progress_line(logs, state.global_step, state.max_steps, sps, cps), file=sys.stderr, flush=True)

        def on_save(self, args, state, control, **kw):
            self._write(state, plot=True)

        def on_train_end(self, args, state, control, **kw):
            self._write(state, plot=True)

    return RewardCurveCallback


class QueryGRPOTrainer:
    """Wraps TRL's ``GRPOTrainer`` for the query writer: data, rewards, LoRA, curve, resume."""

    def __init__(self, config: QueryGRPOConfig, retrievers: dict[str, Any], train_tasks: Sequence[QueryTask],
                 output_dir: str | os.PathLike, dataset_name: str = "", model=None, tokenizer=None,
                 verbose: bool = True, base_model: str | None = None):

        missing = [r for r in config.reward_retrievers if r not in retrievers]
        if missing:
            raise ValueError(f"reward retriever(s) {missing} not given (have {sorted(retrievers)})")
        if not train_tasks:
            raise ValueError("no training tasks: every user needs at least two training items")
        self.config = config
        self.output_dir = Path(output_dir)
        self.dataset_name = dataset_name
        # the weights the LoRA adapter sits on: the recipe's model, or e.g. an SFT-merged folder
        self.base_model = str(base_model or config.model)
        if model is None:
            model, tokenizer = load_policy(config.model)
        elif tokenizer is None:
            raise ValueError("pass the tokenizer together with the model")
        self.tokenizer = tokenizer
        self.template = load_template(config.template_id, config.template_family)
        tasks = subsample(list(train_tasks), config.max_train_tasks, config.seed)
        self.train_dataset = to_hf_dataset(tasks, self.template, tokenizer, dataset_name, config.max_prompt_tokens)
        self.reward_funcs = [
            RetrievalReward(retrievers[r], k=config.reward_k, metric=config.reward_metric,
                            min_words=config.min_words, max_words=config.max_words,
                            name=reward_name(config.reward_metric, config.reward_k, r), mode=config.writer_mode)
            for r in config.reward_retrievers
        ] + [FormatReward(config.min_words, config.max_words, config.format_penalty, mode=config.writer_mode)]
        peft = None
        if config.use_lora:
            layers = None
            if config.lora_top_layers:
                n = int(model.config.num_hidden_layers)
                layers = list(range(max(0, n - config.lora_top_layers), n))
            peft = lora_config(config.lora_r, config.lora_alpha, config.lora_dropout, config.lora_targets, layers)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        write_json(self.output_dir / "query_grpo_config.json",
                   {"config": config.to_dict(), "dataset": dataset_name, "n_train_tasks": len(tasks)})
        cb = _callback_class()(self.output_dir, f"Rec-R1 GRPO on {dataset_name or 'data'}: mean reward",
                               config.max_minutes, verbose=verbose, max_cpu_minutes=config.max_cpu_minutes)
        self.curve_callback = cb
        self.trainer = _trainer_class()(model=model, reward_funcs=self.reward_funcs,
                                        args=config.to_trl(str(self.output_dir)), train_dataset=self.train_dataset,
                                        processing_class=tokenizer, peft_config=peft, callbacks=[cb])
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        # The progress line above replaces the trainer's raw log dicts and its progress bar.
        for noisy in (PrinterCallback, ProgressCallback):
            self.trainer.remove_callback(noisy)
        self.train_seconds = 0.0
        self.verdict: str | None = None

    def train(self, resume: bool | str = False) -> dict[str, list]:
        """Run GRPO (from the last complete checkpoint when ``resume``); returns the reward curve."""
        ckpt = None
        if resume is True:
            found = last_complete_checkpoint(self.output_dir)
            ckpt = str(found) if found is not None else None
        elif isinstance(resume, str):
            ckpt = resume
        t0 = time.perf_counter()
        self.trainer.train(resume_from_checkpoint=ckpt)
        self.train_seconds = time.perf_counter() - t0
        curve = reward_curve(self.trainer.state.log_history)
        self.verdict = learning_verdict(curve)
        write_json(self.output_dir / CURVE_JSON, curve)
        plot_reward_curve(curve, self.output_dir / CURVE_PNG,
                          title=f"Rec-R1 GRPO on {self.dataset_name or 'data'}: mean reward")
        return curve

    def summary(self) -> dict[str, Any]:
        """What the last :meth:`train` did: steps, speed, share of informative groups, skips, cache, verdict."""
        import numpy as np

        curve = reward_curve(self.trainer.state.log_history)
        zero = [x for x in curve.get("frac_reward_zero_std", []) if x is not None]
        rewards = [x for x in curve.get("reward", []) if x is not None]
        sps = self.curve_callback.seconds_per_step
        t = self.trainer
        return {
            "steps": int(t.state.global_step), "seconds": round(self.train_seconds, 1),
            "seconds_per_step_median": round(float(np.median(sps)), 2) if sps else None,
            "cpu_seconds_per_step_median": (round(float(np.median(self.curve_callback.cpu_seconds_per_step)), 2)
                                            if self.curve_callback.cpu_seconds_per_step else None),
            "informative_group_share": round(1.0 - float(np.mean(zero)), 4) if zero else None,
            "skipped_batches": int(t.skipped_batches), "dropped_completions": int(t.dropped_completions),
            "kept_completions": int(t.kept_completions),
            "mean_reward_first_20": round(float(np.mean(rewards[:20])), 4) if rewards else None,
            "mean_reward_last_20": round(float(np.mean(rewards[-20:])), 4) if rewards else None,
            "reward_cache": {f.__name__: {"hits": f.cache_hits, "misses": f.cache_misses}
                             for f in self.reward_funcs if isinstance(f, RetrievalReward)},
            "stopped_by_time_budget": self.curve_callback.stopped_early_at is not None,
            "stopped_by": self.curve_callback.stopped_by,
            "cpu_seconds": round(time.process_time() - self.curve_callback.cpu0, 1),
            "verdict": self.verdict or "rewards varied within groups: the policy received gradient",
        }

    def writer(self) -> QueryWriter:
        """The trained policy as a :class:`QueryWriter` (shares the trainer's model)."""
        return QueryWriter(self.trainer.model, self.tokenizer, template_id=self.config.template_id,
                           template_family=self.config.template_family, max_history=self.config.max_history,
                           max_new_tokens=self.config.eval_max_new_tokens, base_model=self.base_model,
                           dataset_name=self.dataset_name, max_prompt_tokens=self.config.max_prompt_tokens,
                           max_words=self.config.max_words, mode=self.config.writer_mode)

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """Save the trained writer (adapter + ``querywriter.json``)."""
        self.writer().save_pretrained(folder)
