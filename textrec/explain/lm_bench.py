"""What the pretrained-LM explainer (ERRA-LM) costs on a CPU, and what it learns per example seen.

    textrec bench erra-lm probe --dataset instruments --name NAME          # CPU-s per example
    textrec bench erra-lm curve --dataset instruments --eval-every 1800 \\
        --reuse eval/results/erra_instruments_decoding.json --name erra_instruments_lm_capped --publish
    textrec bench erra-lm attach --name erra_instruments_lm_capped --reuse OTHER.json --publish

``probe``: CPU seconds (``time.process_time``, one thread) per training example (forward,
backward, optimizer step) and per generated explanation, for the LM option as it was before the
prompt was capped (the model code of ``--before-rev``, run unchanged, with its recipe settings)
and as it is now, plus one-change-at-a-time variants that say where the saving comes from.

``curve``: one training run on a seeded subset of the training pairs (``--limit-train``, sized
from the probe to the CPU budget), with ROUGE-L/USR/BLEU-4 of greedy explanations on a fixed,
seeded set of 100 *valid* pairs after every ``--eval-every`` examples; then the decoding is chosen
on those valid pairs and the whole test split is explained once. Rows of the other models on the
same test split can be taken from an earlier result (``--reuse``), so every row compares on the
same explanations. Writes ``<name>.json``, ``<name>.md`` and ``<name>_samples.md``.
``attach`` adds such rows to a finished curve result afterwards.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
import types
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

#: the LM option's recipe settings before the prompt was capped (training/erra.yaml at --before-rev)
BEFORE_LM = {"k_sentences": 3, "max_sentence_words": 20, "lora_top_layers": 8}
#: decoding settings compared on the valid pairs after training
LM_DECODING = [("greedy_block3", {"num_beams": 1, "no_repeat_ngram": 3, "top_p": None}),
               ("sample_p0.3", {"num_beams": 1, "no_repeat_ngram": 3, "top_p": 0.3})]


def _before_class(rev: str):
    """The LMExplainer class as the file was at git revision ``rev`` (run as it was, for the probe)."""
    root = Path(__file__).resolve().parents[2]
    src = subprocess.run(["git", "show", f"{rev}:textrec/explain/lm.py"], cwd=root, check=True,
                         capture_output=True, text=True).stdout
    mod = types.ModuleType("textrec.explain._lm_before")
    sys.modules[mod.__name__] = mod  # dataclasses look their module up there
    exec(compile(src, f"{rev}:textrec/explain/lm.py", "exec"), mod.__dict__)  # our own file, from our history
    return mod.LMExplainer, mod.LMExplainerConfig


def time_model(model, train: Sequence, gen: Sequence, batch_size: int, lr: float = 1e-3) -> dict[str, float]:
    """CPU seconds per training example and per generated explanation (one warm-up batch first)."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    model.train()

    def step(chunk):
        out = model(model.collate(chunk))
        out["loss"].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step(train[:batch_size])  # warm-up: allocations, lazy init
    t = time.process_time()
    for s in range(0, len(train), batch_size):
        step(train[s:s + batch_size])
    per_train = (time.process_time() - t) / len(train)
    batch = model.collate(train[:batch_size])
    tokens = float(batch["attention_mask"].sum()) / len(train[:batch_size])
    model.eval()
    model.predict(gen[:2], batch_size=2)
    t = time.process_time()
    model.predict(gen, batch_size=batch_size)
    per_gen = (time.process_time() - t) / len(gen)
    return {"cpu_s_per_train_example": round(per_train, 4), "cpu_s_per_explanation": round(per_gen, 4),
            "tokens_per_train_example": round(tokens, 1), "trained_params": sum(p.numel() for p in params)}


def probe(args: argparse.Namespace) -> dict[str, Any]:
    """Time the LM option before and after the prompt cap (see the module docstring)."""
    import torch

    from textrec.explain.lm import LMExplainer, LMExplainerConfig
    from textrec.explain.pipeline import attach_item_texts
    from textrec.recipes import config_from_dict

    data, recipe, tok = _setup(args)
    rng = np.random.default_rng(args.seed)
    train = [data.examples["train"][k] for k in rng.choice(len(data.examples["train"]), args.n, replace=False)]
    gen = [data.examples["valid"][k] for k in rng.choice(len(data.examples["valid"]), args.n, replace=False)]
    mean = float(np.mean([e.rating for e in data.examples["train"]]))
    now = dict(recipe.get("lm") or {})
    runs: list[tuple[str, Any, dict]] = [
        (f"before ({args.before_rev}: IDs at the input, 3 x 20-word sentences, LoRA top 8 q/k/v/o, float32)",
         "before", {**now, **BEFORE_LM}),
        ("after (capped recipe)", LMExplainer, now),
        ("after, but float32 base", LMExplainer, {**now, "base_dtype": "float32"}),
        ("after, but ID vectors at the input", LMExplainer, {**now, "id_prompts": True}),
        ("after, but 3 x 20-word sentences", LMExplainer, {**now, "k_sentences": 3, "max_sentence_words": 20}),
        ("after, but LoRA on the top 8 layers", LMExplainer, {**now, "lora_top_layers": 8}),
    ]
    out = {}
    for label, klass, cfg in runs:
        if args.only and not any(o in label for o in args.only):
            continue
        torch.manual_seed(0)
        if klass == "before":
            klass, cfg_class = _before_class(args.before_rev)
            keep = set(cfg_class.__dataclass_fields__)
            model = klass(cfg_class(**{k: v for k, v in cfg.items() if k in keep}), tok, mean)
        else:
            model = klass(config_from_dict(LMExplainerConfig, cfg, "lm"), tok, mean)
            attach_item_texts(model, data)
        out[label] = time_model(model, train, gen, args.batch_size)
        print(f"{label}: {out[label]}", file=sys.stderr, flush=True)
        del model
    return {"benchmark": "erra_lm_probe", "probe": out, "n_examples": args.n, "batch_size": args.batch_size}


def _setup(args):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from textrec.data.registry import load_dataset
    from textrec.explain.pipeline import build_data, train_tokenizer
    from textrec.recipes import load_recipe

    torch.set_num_threads(1)
    recipe = load_recipe(args.recipe)
    data = build_data(load_dataset(args.dataset), recipe, progress=False)
    return data, recipe, train_tokenizer(data, recipe)


def _metrics_row(m: dict) -> dict:
    return {k: round(float(m[k]), 4) for k in ("bleu4", "rougeL", "usr", "div", "fcr", "grounding") if k in m}


def curve(args: argparse.Namespace) -> dict[str, Any]:
    """Train on ``--limit-train`` pairs with a valid-quality curve; explain the test split once."""
    import torch

    from textrec.explain.bench import decode, sample_indices, select_decoding
    from textrec.explain.pipeline import copy_baseline, evaluate_predictions, train_variant

    t_start, c_start = time.perf_counter(), time.process_time()
    data, recipe, tok = _setup(args)
    train_all = data.examples["train"]
    order = np.random.default_rng(args.seed).permutation(len(train_all))
    n_train = min(args.limit_train or len(train_all), len(train_all))
    data.examples["train"] = [train_all[k] for k in sorted(order[:n_train])]
    vpick = sample_indices(len(data.examples["valid"]), args.valid_size, seed=1)
    valid = [data.examples["valid"][k] for k in vpick]
    test = data.examples["test"][: args.limit_test]
    lm_trainer = {**(recipe.get("trainer") or {}), **(recipe.get("lm_trainer") or {})}
    bs = int(lm_trainer.get("batch_size", 16))
    points: list[dict] = []
    eval_cpu = [0.0]
    train_c0 = [0.0]
    next_at = [0]
    greedy = dict(LM_DECODING)["greedy_block3"]

    def measure(model, seen: int) -> None:
        c = time.process_time()
        texts, ratings = decode(model, valid, greedy)
        m = evaluate_predictions(data, valid, texts, ratings)
        eval_cpu[0] += time.process_time() - c
        row = {"examples_seen": seen, "fraction_of_all_pairs": round(seen / len(train_all), 4),
               "train_cpu_s": round(time.process_time() - train_c0[0] - eval_cpu[0], 1), **_metrics_row(m)}
        points.append(row)
        print(f"curve: {row}", file=sys.stderr, flush=True)

    def on_step(trainer) -> None:
        seen = min(trainer.state.global_step * bs, n_train)
        if seen >= next_at[0]:
            was = trainer.model.training
            measure(trainer.model, seen)
            trainer.model.train(was)
            next_at[0] += args.eval_every

    next_at[0] = 0  # the first point after the first batch: the prompted LM almost untrained
    torch.manual_seed(args.seed)
    train_c0[0] = time.process_time()
    over = {"epochs": 1, "seed": args.seed, "max_minutes": args.max_minutes, "patience": 1}
    model, history = train_variant(data, "erra_lm", recipe, tokenizer=tok, progress=not args.no_progress,
                                   trainer_overrides=over, valid=valid, on_step_end=on_step)
    train_cpu = time.process_time() - train_c0[0] - eval_cpu[0]
    steps = sum(e.get("steps", 0) for e in history["epochs"]) if history["epochs"] else 0
    seen = min(n_train, int(round(steps * bs))) if steps else n_train
    if not points or points[-1]["examples_seen"] != seen:
        measure(model, seen)
    if args.model_out:
        model.save_pretrained(args.model_out)

    grid = {}
    for gname, setting in LM_DECODING:
        c = time.process_time()
        texts, ratings = decode(model, valid, setting)
        grid[gname] = {**evaluate_predictions(data, valid, texts, ratings),
                       "cpu_s": round(time.process_time() - c, 1)}
    chosen = select_decoding(grid)
    c = time.process_time()
    texts, ratings = decode(model, test, dict(LM_DECODING)[chosen], progress=not args.no_progress)
    gen_cpu = time.process_time() - c
    holder: dict = {}
    row = evaluate_predictions(data, test, texts, ratings, conditioned=True, faith=holder)
    ctexts, cratings = copy_baseline(test, data.reviews)
    copy_row = evaluate_predictions(data, test, ctexts, cratings)
    models: dict[str, Any] = {"copy": {"label": "copy top retrieved sentence (recomputed)", "test": copy_row},
                              "erra_lm": {"label": f"ERRA-LM, SmolLM2-135M + LoRA, capped prompt "
                                                   f"({seen} pairs = {seen / len(train_all):.0%} of training)",
                                          "test": row, "config": vars(model.config),
                                          "decoding": {"chosen": chosen, "valid_pairs": len(valid), "grid": {
                                              k: _metrics_row(v) | {"cpu_s": v["cpu_s"]} for k, v in grid.items()}},
                                          "cpu_s_per_test_explanation": round(gen_cpu / max(len(test), 1), 4)}}
    reuse_note = add_reused_rows(models, args.reuse, len(test), _split_report(data)) if args.reuse else None
    result = {
        "benchmark": "erra_lm_capped_curve", "dataset": data.name, "split": _split_report(data),
        "command": "python -m textrec.explain.lm_bench " + " ".join(sys.argv[1:]),
        "date": date.today().isoformat(), "machine": _machine(), "threads": 1, "seeds": 1, "seed": args.seed,
        "evaluated": {"valid_curve_pairs": len(valid), "test": len(test)},
        "train_pairs_available": len(train_all), "train_pairs_used": n_train, "examples_seen": seen,
        "fraction_of_all_pairs": round(seen / len(train_all), 4),
        "train_cpu_seconds": round(train_cpu, 1), "curve_eval_cpu_seconds": round(eval_cpu[0], 1),
        "cpu_s_per_train_example": round(train_cpu / max(seen, 1), 4),
        "history": history, "curve": points, "models": models,
        "selection": "decoding chosen on the 100 valid pairs of the curve; test decoded once; never tuned on test",
        "reuse": reuse_note,
        "wall_seconds": round(time.perf_counter() - t_start, 1),
        "cpu_seconds": round(time.process_time() - c_start, 1)}
    result["samples"] = _samples(data, test, texts, holder["checks"], ctexts)
    return result


def add_reused_rows(models: dict, reuse: str, n_test: int, split: dict) -> str:
    """Add the test rows of the other models of an earlier result on the same split and test pairs
    (its ``copy`` row is not taken: ours is recomputed). Returns a note saying what was done; a
    mismatch leaves the rows out rather than losing the run."""
    from textrec.explain.bench import same_split

    old = json.loads(Path(reuse).read_text(encoding="utf-8"))
    if old.get("evaluated", {}).get("test") != n_test or not same_split(old.get("split"), split):
        note = f"{reuse}: a different test set; its rows were not added"
        print(f"warning: {note}", file=sys.stderr)
        return note
    for k, v in old["models"].items():
        if k != "copy":
            models[k] = {"label": v.get("label", k) + " (from " + Path(reuse).name + ")", "test": v["test"]}
    return f"rows of the other models from {reuse} (same split, same {n_test} test pairs)"


def attach(args: argparse.Namespace) -> dict[str, Any]:
    """Add reused rows to a finished curve result (the run itself is not repeated)."""
    path = Path(args.out_dir) / f"{args.name}.json"
    result = json.loads(path.read_text(encoding="utf-8"))
    result["reuse"] = add_reused_rows(result["models"], args.reuse, result["evaluated"]["test"], result["split"])
    return result


def _split_report(data) -> dict:
    return {**data.report}


def _machine() -> str:
    from textrec.results import machine

    return machine()


def _samples(data, test, texts, checks, ctexts, k: int = 10) -> list[dict]:
    from textrec.explain.bench import sample_indices

    out = []
    for j in sample_indices(len(test), k, seed=0):  # the same picks as the other ERRA sample files
        e = test[j]
        g = checks.grounding[j]
        out.append({"user": str(data.user_ids[e.user]), "item": str(data.item_ids[e.item]),
                    "aspects": list(e.aspects), "reference": e.target,
                    "erra_lm": texts[j], "grounding": None if math.isnan(g) else round(g, 3),
                    "cited": checks.cited[j], "copy": ctexts[j],
                    "retrieved": [{"id": int(r.sid), "text": r.text} for r in e.retrieved]})
    return out


def markdown(result: dict) -> str:
    """The curve, the test table (same explanations for every row) and the decoding choice."""
    cols = ["bleu4", "rougeL", "usr", "div", "fcr", "grounding"]
    lines = [f"**ERRA-LM (SmolLM2-135M + LoRA, capped prompt) — {result['dataset']}**: trained on "
             f"{result['examples_seen']} of {result['train_pairs_available']} training pairs "
             f"({result['fraction_of_all_pairs']:.0%}, one pass, seed {result['seed']}), "
             f"{result['cpu_s_per_train_example']:.3f} CPU-s per training example (1 thread).", "",
             f"Curve: greedy explanations (no repeated 3-grams) of {result['evaluated']['valid_curve_pairs']} "
             "fixed valid pairs against examples seen (BLEU/ROUGE x100).", "",
             "| examples seen | fraction | train CPU-s | " + " | ".join(cols) + " |",
             "|---:|---:|---:|" + "---:|" * len(cols)]
    for p in result["curve"]:
        lines.append(f"| {p['examples_seen']} | {p['fraction_of_all_pairs']:.2f} | {p['train_cpu_s']:.0f} | "
                     + " | ".join(_fmt(k, p.get(k)) for k in cols) + " |")
    lines += ["", f"**Test** ({result['evaluated']['test']} explanations, the same for every row)", "",
              "| model | " + " | ".join(cols) + " | cites >= 1 |", "|---|" + "---:|" * (len(cols) + 1)]
    for row in result["models"].values():
        t = row["test"]
        lines.append(f"| {row['label']} | " + " | ".join(_fmt(k, t.get(k)) for k in cols)
                     + f" | {_fmt('x', t.get('cites_at_least_one'))} |")
    d = result["models"]["erra_lm"]["decoding"]
    lines += ["", f"Decoding `{d['chosen']}` chosen on {d['valid_pairs']} valid pairs: " + ", ".join(
        f"{k} BLEU-4 {v['bleu4']:.2f} ROUGE-L {v['rougeL']:.2f} USR {v['usr']:.3f}" for k, v in d["grid"].items())]
    return "\n".join(lines) + "\n"


def _fmt(k: str, v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.2f}" if k in ("bleu4", "rougeL") else f"{v:.4f}"


def samples_markdown(result: dict) -> str:
    """Ten test explanations of the LM option beside the reference and the copied sentence."""
    lines = [f"# ERRA-LM sample explanations — {result['dataset']} test", "",
             "The same ten seeded test pairs as the other ERRA sample files. `g` = grounding in the cited sentences.", ""]
    for k, s in enumerate(result["samples"], 1):
        g = "–" if s["grounding"] is None else f"{s['grounding']:.2f}"
        lines += [f"## {k}. user `{s['user']}`, item `{s['item']}`, aspects {s['aspects']}", "",
                  f"- **reference**: {s['reference']}", f"- **ERRA-LM**: {s['erra_lm']} (g {g}; cites {s['cited']})",
                  f"- **copy**: {s['copy']}",
                  "- retrieved: " + " | ".join(f"[{r['id']}] “{r['text']}”" for r in s["retrieved"]), ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Kept for old commands: ``python -m textrec.explain.lm_bench ARGS`` runs ``textrec bench erra-lm ARGS``."""
    from textrec.cli import main as cli

    return cli(["bench", "erra-lm", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
