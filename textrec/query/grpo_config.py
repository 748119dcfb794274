"""Configuration of a Rec-R1 GRPO run (policy, LoRA, group, KL, sampling, reward); YAML in ``training/``.

``QueryGRPOConfig`` is plain data; :meth:`QueryGRPOConfig.to_trl` turns it into TRL's
``GRPOConfig``. Recipes live in ``training/recr1*.yaml`` (flat mappings of these fields) and
load with :func:`load_grpo_config`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from textrec.query.heuristics import DEFAULT_MAX_WORDS, SFT_CANDIDATES
from textrec.recipes import config_from_dict, load_recipe


@dataclass
class QueryGRPOConfig:
    """Everything a query-policy GRPO run needs besides the data and the retriever."""

    # policy
    model: str = "smollm2-135m"  # the bundled default, or any HF causal-LM id / folder
    use_lora: bool = True
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    lora_top_layers: int | None = None  # adapt only the top N decoder layers (None = all)
    # task / prompt
    template_family: str = "query/recr1"
    template_id: str = "query-plain"
    max_history: int = 8
    max_prompt_tokens: int | None = 256  # oldest context lines go first beyond this (tasks.cap_context)
    max_train_tasks: int | None = None  # seeded subsample of the training users
    # a seeded fraction of users kept out of SFT and GRPO (tasks.held_out_user_mask): the benchmark's
    # held_out_users setting evaluates them as never seen; 0 trains on every user
    held_out_users_frac: float = 0.0
    # GRPO (Rec-R1 ran group 5, KL 1e-3; TRL names in brackets)
    num_generations: int = 4  # group size G [num_generations]
    prompts_per_step: int = 1  # [per_device_train_batch_size = G * prompts_per_step]
    gradient_accumulation_steps: int = 1
    max_completion_length: int = 24
    temperature: float = 1.0
    top_p: float = 1.0
    beta: float = 0.001  # KL weight to the reference (the base model with adapters disabled)
    epsilon: float = 0.2
    loss_type: str = "dapo"
    scale_rewards: str = "group"
    learning_rate: float = 1e-4
    lr_scheduler_type: str = "constant"
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    max_steps: int = 200
    max_minutes: float | None = None  # wall-clock budget: stop (and save) once it is spent
    # CPU-time budget of this process (a shared machine's wall clock measures the neighbours)
    max_cpu_minutes: float | None = None
    save_steps: int = 50
    save_total_limit: int = 2
    logging_steps: int = 1
    seed: int = 0
    # reward
    reward_retrievers: list[str] = field(default_factory=lambda: ["bm25"])
    reward_metric: str = "ndcg"
    reward_k: int | None = 100  # large in training for a dense signal (null: no cutoff); evaluation uses 10
    reward_weight: float = 1.0  # per retriever
    format_weight: float = 0.5
    format_penalty: float = 1.0
    min_words: int = 1
    # the query budget in words: longer completions are cut to it before retrieval (reward and
    # evaluation alike) and earn the format penalty; the SFT targets are built under it
    max_words: int = DEFAULT_MAX_WORDS
    # write: the completion is the query; choose: it is one word naming the heuristic query to send
    # (textrec.query.choice; use template query-choose and sft_candidates among its heuristics)
    writer_mode: str = "write"
    # evaluation generation
    eval_max_new_tokens: int = 24
    # optional SFT warm start before GRPO (textrec.query.sft; 0 steps = none, as Rec-R1 itself)
    sft_steps: int = 0
    # or start GRPO from a finished SFT writer folder (<run>/sft/writer, full weights) instead of
    # training one: two GRPO runs (e.g. a dense and a BM25 reward) then share one SFT start
    sft_from: str | None = None
    sft_batch_size: int = 8
    sft_learning_rate: float = 5e-4
    sft_max_tasks: int | None = 2000
    sft_max_query_words: int | None = None  # None: the budget, max_words
    # greedy copy check after SFT on this many unseen training tasks (sft_report.json "fidelity")
    sft_fidelity_tasks: int = 64
    # SFT completions are cut at a word boundary to fit this many tokens with EOS (None: the GRPO
    # completion budget, max_completion_length), so that SFT never teaches what GRPO cannot write
    sft_max_target_tokens: int | None = None
    # the heuristic kinds the SFT teacher chooses from
    sft_candidates: list[str] = field(default_factory=lambda: list(SFT_CANDIDATES))

    def __post_init__(self) -> None:
        if self.num_generations < 2:
            raise ValueError("num_generations (group size) must be >= 2: GRPO compares completions")
        if self.prompts_per_step < 1:
            raise ValueError("prompts_per_step must be >= 1")
        if not self.reward_retrievers:
            raise ValueError("reward_retrievers must name at least one retriever (bm25 | dense | hybrid)")
        if not 0.0 <= self.held_out_users_frac < 1.0:
            raise ValueError(f"held_out_users_frac must be in [0, 1), got {self.held_out_users_frac}")
        if self.max_prompt_tokens is not None and self.max_prompt_tokens < 1:
            raise ValueError(f"max_prompt_tokens must be >= 1 or null, got {self.max_prompt_tokens}")
        if self.reward_k is not None and self.reward_k < 1:
            raise ValueError(f"reward_k must be >= 1 or null (no cutoff), got {self.reward_k}")
        bad = [r for r in self.reward_retrievers if r not in ("bm25", "dense", "hybrid")]
        if bad:
            raise ValueError(f"unknown reward retriever(s) {bad}; choose bm25 | dense | hybrid")
        from textrec.query.choice import check_mode

        check_mode(self.writer_mode)
        if self.max_words < max(1, self.min_words):
            raise ValueError(f"max_words (the query budget) must be >= max(1, min_words), got {self.max_words}")

    def sft_config(self):
        """The :class:`textrec.query.sft.QuerySFTConfig` these settings describe."""
        from textrec.query.sft import QuerySFTConfig

        return QuerySFTConfig(steps=self.sft_steps, batch_size=self.sft_batch_size,
                              learning_rate=self.sft_learning_rate, max_query_words=self.sft_max_query_words or self.max_words,
                              max_tasks=self.sft_max_tasks, reward_k=self.reward_k,
                              max_prompt_tokens=self.max_prompt_tokens,
                              max_target_tokens=self.sft_max_target_tokens or self.max_completion_length,
                              candidates=tuple(self.sft_candidates), lora_r=self.lora_r,
                              lora_alpha=self.lora_alpha, lora_dropout=self.lora_dropout,
                              lora_top_layers=self.lora_top_layers, seed=self.seed,
                              fidelity_tasks=self.sft_fidelity_tasks, mode=self.writer_mode)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for JSON result files and checkpoints)."""
        return asdict(self)

    def reward_weights(self) -> list[float]:
        """Weights in the order the trainer passes reward functions: retrievers, then format."""
        return [self.reward_weight] * len(self.reward_retrievers) + [self.format_weight]

    def to_trl(self, output_dir: str, use_cpu: bool | None = None, report_to: str = "none"):
        """TRL ``GRPOConfig`` for this run."""
        import torch
        from trl import GRPOConfig

        cpu = (not torch.cuda.is_available()) if use_cpu is None else use_cpu
        return GRPOConfig(
            output_dir=output_dir, use_cpu=cpu, bf16=(not cpu and torch.cuda.is_bf16_supported()),
            num_generations=self.num_generations,
            per_device_train_batch_size=self.num_generations * self.prompts_per_step,
            gradient_accumulation_steps=self.gradient_accumulation_steps,
            max_completion_length=self.max_completion_length, temperature=self.temperature,
            top_p=self.top_p, beta=self.beta, epsilon=self.epsilon, loss_type=self.loss_type,
            scale_rewards=self.scale_rewards, learning_rate=self.learning_rate,
            lr_scheduler_type=self.lr_scheduler_type, warmup_steps=self.warmup_steps,
            max_grad_norm=self.max_grad_norm, max_steps=self.max_steps, save_steps=self.save_steps,
            # TRL turns checkpointing on to save GPU memory; for a small policy it only recomputes.
            gradient_checkpointing=False,
            save_strategy="steps", save_total_limit=self.save_total_limit,
            logging_steps=self.logging_steps, seed=self.seed, data_seed=self.seed,
            reward_weights=self.reward_weights(), report_to=report_to, remove_unused_columns=False,
            dataloader_num_workers=0, disable_tqdm=False, save_only_model=False,
        )


def load_grpo_config(recipe: str | dict[str, Any] | None = "recr1_cpu", **overrides: Any) -> QueryGRPOConfig:
    """Config from a recipe name/path (``training/<name>.yaml``) or dict, then keyword overrides."""
    d = dict(load_recipe(recipe) if isinstance(recipe, str) else (recipe or {}))
    d.update({k: v for k, v in overrides.items() if v is not None})
    return config_from_dict(QueryGRPOConfig, d, "Rec-R1 GRPO")
