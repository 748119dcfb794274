"""SFT warm start for the query writer: imitate the best of a few heuristic queries.

Rec-R1 starts GRPO from an instruction-tuned model and reports an SFT baseline trained on
queries written by a stronger LLM. No stronger LLM is reachable offline, so the teacher here
is retrieval itself: for each *training* task a handful of heuristic queries built from the
context (the last title, the last two, all of them newest first, the distinct content words
most recent first; :mod:`textrec.query.heuristics`) are scored with the reward retriever
against that task's training target, and the best ones (all of them where they tie) become SFT
completions. GRPO then explores around a policy that already writes useful
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

from textrec.metrics.ranking import MISS
from textrec.query.heuristics import (
    DEFAULT_MAX_WORDS,
    SFT_CANDIDATES,
    TermWeights,
    heuristic_queries,
    term_weights,
)
from textrec.query.rewards import cutoff_name, reward_metric
from textrec.query.tasks import QueryTask, cap_context, is_bare, prompt_text

CANDIDATES = SFT_CANDIDATES


@dataclass
class QuerySFTConfig:
    """SFT warm-start settings (``sft_*`` keys of a Rec-R1 recipe, without the prefix)."""

    steps: int = 100
    batch_size: int = 8
    learning_rate: float = 5e-4
    max_query_words: int = DEFAULT_MAX_WORDS  # the query budget the targets are built under
    max_tasks: int | None = 2000  # seeded subsample of training tasks used as SFT data
    reward_k: int | None = 1000  # None: NDCG over the full ranking
    max_prompt_tokens: int | None = None  # the GRPO/generation prompt cap
    max_target_tokens: int | None = None  # completion tokens incl. EOS (the GRPO/generation budget)
    # the heuristic kinds the teacher chooses from (a subset of CANDIDATES); one kind makes the
    # target a function of the prompt (e.g. ("last_title",): copy the newest line), which greedy
    # decoding reproduces, where a per-task choice among kinds is a mixture it cannot
    candidates: tuple[str, ...] = CANDIDATES
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_top_layers: int | None = 8
    seed: int = 0
    # after training, greedy decoding on this many training tasks outside the SFT sample is checked
    # against their targets (sft_report.json "fidelity"); 0 skips the check
    fidelity_tasks: int = 64
    # write: the target is the best query itself; choose: the word naming its heuristic (textrec.query.choice)
    mode: str = "write"


def candidate_queries(task: QueryTask, max_words: int = DEFAULT_MAX_WORDS, kinds: Sequence[str] = CANDIDATES,
                      weights: TermWeights | None = None) -> dict[str, str]:
    """Heuristic queries from the context, by kind (see ``CANDIDATES``), each at most ``max_words``
    (``weights``: the catalog's term weights, needed for ``tfidf_keywords``)."""
    return heuristic_queries(task.context, max_words, kinds, weights)


def sft_targets(tasks: Sequence[QueryTask], retriever, config: QuerySFTConfig | None = None
                ) -> tuple[list[list[str]], dict[str, Any]]:
    """The best heuristic queries per task under the reward retriever(s), and a report.

    Each candidate is scored with the reward itself (NDCG@reward_k of the task's target,
    history masked, ``retriever`` = the GRPO reward retriever, or a list of them for a hybrid
    reward: their NDCGs summed, as GRPO sums its reward functions). Every distinct candidate that
    reaches a task's best score is a target (ties keep several); where no candidate retrieves
    the target at all, the kind that is best on average is the one target.
    """
    cfg = config or QuerySFTConfig()
    kinds = tuple(cfg.candidates)
    bad = [k for k in kinds if k not in CANDIDATES]
    if not kinds or bad:
        raise ValueError(f"SFT candidates must be a non-empty subset of {list(CANDIDATES)}, got {list(kinds)}")
    if cfg.mode == "choose":
        from textrec.query.choice import CHOICE_WORD

        if any(k not in CHOICE_WORD for k in kinds):
            raise ValueError(f"a chooser's SFT candidates must be among {list(CHOICE_WORD)}, got {list(kinds)}")
    retrievers = list(retriever) if isinstance(retriever, (list, tuple)) else [retriever]
    weights = term_weights(retrievers[0].catalog) if "tfidf_keywords" in kinds else None
    cands = [candidate_queries(t, cfg.max_query_words, kinds, weights) for t in tasks]
    score = {}
    for kind in kinds:
        qs = [c[kind] for c in cands]
        rows = [i for i, q in enumerate(qs) if q]
        score[kind] = np.zeros(len(tasks))
        for r in retrievers:
            ranks = np.full(len(tasks), MISS, dtype=np.int64)
            if rows:
                ranks[rows] = r.target_ranks([qs[i] for i in rows], [int(tasks[i].target) for i in rows],
                                             [tasks[i].history for i in rows])
            score[kind] += reward_metric(ranks, cfg.reward_k, "ndcg")
    order = sorted(kinds, key=lambda k: (-float(score[k].mean()), CANDIDATES.index(k)))
    mat = np.stack([score[k] for k in order], axis=1)
    best = mat.max(1)
    targets: list[list[str]] = []
    won: Counter = Counter()
    for i in range(len(tasks)):
        kinds = [order[j] for j in range(len(order)) if mat[i, j] == best[i]] if best[i] > 0 else [order[0]]
        won.update(kinds)
        if cfg.mode == "choose":  # the word that names each best heuristic
            from textrec.query.choice import CHOICE_WORD

            targets.append([CHOICE_WORD[k] for k in kinds if cands[i][k]])
        else:
            targets.append(list(dict.fromkeys(cands[i][k] for k in kinds if cands[i][k])))
    at = cutoff_name("ndcg", cfg.reward_k)
    report = {"n_tasks": len(tasks), "reward_retriever": "+".join(getattr(r, "kind", "?") for r in retrievers),
              "chosen": {k: int(won.get(k, 0)) for k in order},
              f"mean_{at}": {k: round(float(score[k].mean()), 4) for k in order},
              f"mean_{at}_best": round(float(best.mean()), 4),
              "tasks_no_candidate_retrieves": int((best <= 0).sum()),
              "tasks_with_tied_targets": int(sum(1 for t in targets if len(t) > 1)),
              "n_targets": int(sum(len(t) for t in targets)),
              "empty_targets": int(sum(1 for t in targets if not t))}
    return targets, report


def completion_ids(query: str, tokenizer, bare: bool, max_tokens: int | None = None) -> tuple[list[int], bool]:
    """Token ids of ``query`` as a completion, EOS included, and whether words were cut to fit.

    With ``max_tokens`` the query keeps its longest word prefix whose ids plus EOS fit: a target
    cut mid-word (as a too-small generation budget cuts it) would teach the writer to stop inside
    a model number. A first word that alone does not fit is cut at the token level.
    """
    def ids_of(text: str) -> list[int]:
        # A leading space: the query continues the prompt's last line like natural text.
        return tokenizer((" " + text) if bare else text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]

    ids = ids_of(query)
    if max_tokens is None or len(ids) <= max_tokens:
        return ids, False
    words = query.split()
    for n in range(len(words) - 1, 0, -1):
        ids = ids_of(" ".join(words[:n]))
        if len(ids) <= max_tokens:
            return ids, True
    return ids[: max(0, max_tokens - 1)] + [tokenizer.eos_token_id], True


def sft_pairs(tasks: Sequence[QueryTask], targets: Sequence[str | Sequence[str]], template, tokenizer,
              dataset_name: str = "", max_prompt_tokens: int | None = None, max_target_tokens: int | None = None,
              stats: dict[str, int] | None = None) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, completion ids + EOS) per task and target (a task may have several targets).

    Prompts are rendered exactly as GRPO and evaluation render them (bare, or the chat template
    with the generation prompt), capped at ``max_prompt_tokens``, so SFT, GRPO and generation see
    one format; completions are cut to ``max_target_tokens`` at a word boundary
    (:func:`completion_ids`). ``stats`` (if given) receives ``targets_cut``.
    """
    out = []
    cut = 0
    for t, qs in zip(tasks, targets):
        qs = [qs] if isinstance(qs, str) else list(qs)
        qs = [q for q in qs if q]
        if not qs:
            continue
        prompt = prompt_text(t, template, tokenizer, dataset_name, max_prompt_tokens)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        seen: set[tuple[int, ...]] = set()
        for q in qs:
            ids, was_cut = completion_ids(q, tokenizer, is_bare(template), max_target_tokens)
            cut += was_cut
            if tuple(ids) not in seen:  # two targets may be one after cutting
                seen.add(tuple(ids))
                out.append((prompt_ids, ids))
    if stats is not None:
        stats["targets_cut"] = cut
    return out


def copy_fidelity(model, tokenizer, template, tasks: Sequence[QueryTask], targets: Sequence[Sequence[str]],
                  dataset_name: str = "", max_prompt_tokens: int | None = None, max_new_tokens: int = 24,
                  n_examples: int = 8) -> dict[str, Any]:
    """How faithfully greedy decoding writes the SFT targets of ``tasks`` (one or more per task).

    ``exact``: the written query is a target (as its completion budget cuts it); ``same_start``:
    its first three words are a target's (the right title was copied, its end may differ);
    ``older_line``: it starts like another line of the prompt instead; ``starts_with_digit``
    among the rest (the failure where a small model drifts into dates and numbers). Shares of
    ``n`` tasks, plus the first inexact ones as examples.
    """
    from textrec.query.parsing import parse_query
    from textrec.query.policy import QueryWriter

    writer = QueryWriter(model, tokenizer, template_id=getattr(template, "id", "query-plain"),
                         max_new_tokens=max_new_tokens, dataset_name=dataset_name,
                         max_prompt_tokens=max_prompt_tokens)
    writer.template = template  # the template object itself (it may not come from the shipped family)
    outs = writer.generate(list(tasks), progress=False)
    bare = is_bare(template)

    def as_written(q: str) -> list[str]:  # the target as the completion budget lets it be written
        ids, _ = completion_ids(q, tokenizer, bare, max_new_tokens)
        return tokenizer.decode(ids[:-1], skip_special_tokens=True).split()

    counts = Counter()
    examples = []
    for t, qs, out in zip(tasks, targets, outs):
        words = parse_query(out).query.split()
        want = [as_written(q) for q in qs if q]
        exact = any(words == w for w in want)
        counts["exact"] += exact
        if any(words[:3] == w[:3] for w in want):
            counts["same_start"] += 1
        elif any(words[:3] == line.split()[:3] for line in t.context[:-1]):
            counts["older_line"] += 1
        elif words and words[0][:1].isdigit():
            counts["starts_with_digit"] += 1
        if not exact and len(examples) < n_examples:
            examples.append({"target": qs[0] if qs else "", "written": out})
    n = max(1, len(outs))
    return {"n": len(outs), **{k: round(counts[k] / n, 4) for k in ("exact", "same_start", "older_line",
                                                                       "starts_with_digit")},
            "examples": examples}


def choice_fidelity(model, tokenizer, template, tasks: Sequence[QueryTask], targets: Sequence[Sequence[str]],
                    dataset_name: str = "", max_prompt_tokens: int | None = None, max_new_tokens: int = 3,
                    n_examples: int = 8) -> dict[str, Any]:
    """How a chooser's greedy choices meet the SFT targets (choice words) of ``tasks``.

    ``exact``: the chosen word is one of the task's best; ``invalid``: the completion names no
    heuristic; ``chosen``: how often each word was chosen (a chooser that always names one word
    is a single heuristic).
    """
    from textrec.query.choice import CHOICE_WORD, parse_choice
    from textrec.query.policy import QueryWriter

    writer = QueryWriter(model, tokenizer, template_id=getattr(template, "id", "query-plain"),
                         max_new_tokens=max_new_tokens, dataset_name=dataset_name,
                         max_prompt_tokens=max_prompt_tokens, mode="choose")
    writer.template = template
    outs = writer.generate(list(tasks), progress=False)
    kinds = [parse_choice(o) for o in outs]
    chosen = Counter(CHOICE_WORD[k] if k else "(invalid)" for k in kinds)
    exact = sum(1 for k, qs in zip(kinds, targets) if k is not None and CHOICE_WORD[k] in qs)
    n = max(1, len(outs))
    return {"n": len(outs), "exact": round(exact / n, 4), "invalid": round(chosen.get("(invalid)", 0) / n, 4),
            "chosen": dict(chosen.most_common()),
            "examples": [{"targets": list(qs), "written": o} for o, qs in list(zip(outs, targets))[:n_examples]]}


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
    all_tasks = list(tasks)
    tasks = subsample(all_tasks, cfg.max_tasks, cfg.seed)
    # the fidelity check reads training tasks SFT did not see (all of them when SFT saw every one)
    seen = {id(t) for t in tasks}
    unseen = [t for t in all_tasks if id(t) not in seen] or tasks
    check = subsample(unseen, cfg.fidelity_tasks, cfg.seed + 1) if cfg.fidelity_tasks > 0 else []
    t0, cpu0 = time.perf_counter(), time.process_time()
    if cfg.max_prompt_tokens is not None and cfg.mode != "choose":
        # the candidates are built from what the capped prompt shows, not from titles it dropped (a
        # chooser's query is built from the whole context at evaluation, so its labels are too)
        tasks = [cap_context(t, template, tokenizer, dataset_name, cfg.max_prompt_tokens) for t in tasks]
        check = [cap_context(t, template, tokenizer, dataset_name, cfg.max_prompt_tokens) for t in check]
    targets, report = sft_targets(tasks, retriever, cfg)
    stats: dict[str, int] = {}
    rows = sft_pairs(tasks, targets, template, tokenizer, dataset_name, cfg.max_prompt_tokens,
                     cfg.max_target_tokens, stats)
    report.update(stats)
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
    if check:
        cpu_check = time.process_time()
        check_targets, _ = sft_targets(check, retriever, cfg)
        fidelity = choice_fidelity if cfg.mode == "choose" else copy_fidelity
        report["fidelity"] = {
            **fidelity(merged, tokenizer, template, check, check_targets, dataset_name,
                       cfg.max_prompt_tokens, cfg.max_target_tokens or 24),
            "tasks": "training tasks outside the SFT sample", "cpu_seconds": round(time.process_time() - cpu_check, 1)}
    report.update({"config": asdict(cfg), "sft_examples": len(rows), "steps": len(losses), "losses": losses,
                   "loss_first": losses[0] if losses else None,
                   "loss_last": float(np.mean(losses[-5:])) if losses else None,
                   "seconds": round(time.perf_counter() - t0, 1),
                   "cpu_seconds": round(time.process_time() - cpu0, 1), "output_dir": str(Path(output_dir))})
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    write_json(Path(output_dir) / "sft_report.json", report)
    return merged, report


__all__ = ["QuerySFTConfig", "candidate_queries", "sft_targets", "sft_pairs", "completion_ids", "copy_fidelity",
           "choice_fidelity",
           "sft_warm_start", "CANDIDATES"]
