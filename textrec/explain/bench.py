"""Benchmark of saved explanation models against copying the top retrieved sentence.

    python -m textrec.explain.bench --dataset instruments --model DIR [--model DIR ...] \\
        --reuse eval/results/erra_instruments.json --name erra_instruments_copy

For each saved model (one per training seed): decoding settings are compared on a seeded sample
of *valid* explanations and the best one (highest BLEU-4 + ROUGE-L among those with USR >= 0.6;
else the highest of all) decodes the full valid and test splits. Every model row — and the
copy-retrieved row, always present — carries the faithfulness checks (citations, grounding,
unsupported aspects; :mod:`textrec.explain.faithfulness`). Rows of models not run now can be taken
from an earlier result on the same split (``--reuse``), marked as such.

Writes ``<name>.json`` (valid and test apart, command, date, machine), ``<name>.md`` (tables),
``<name>_grounding.png`` (grounding distribution per model) and ``<name>_samples.md`` (ten test
explanations per model beside the reference review sentence).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

#: decoding settings compared on valid: (name, overrides of the model's decoding config)
DECODING_GRID: list[tuple[str, dict[str, Any]]] = [
    ("greedy_block3", {"num_beams": 1, "no_repeat_ngram": 3}),
    ("beam4_block3", {"num_beams": 4, "no_repeat_ngram": 3, "length_penalty": 1.0}),
    ("sample_p0.3", {"num_beams": 1, "no_repeat_ngram": 3, "top_p": 0.3}),
    ("sample_p0.5", {"num_beams": 1, "no_repeat_ngram": 3, "top_p": 0.5}),
    ("sample_p0.5_rerank1", {"num_beams": 1, "no_repeat_ngram": 3, "top_p": 0.5, "rerank_bias": 1.0}),
]
METRICS = ["bleu1", "bleu4", "rouge1", "rouge2", "rougeL", "usr", "div", "fcr", "fmr", "rmse",
           "grounding", "cites_at_least_one", "unsupported_aspect_rate"]
TARGET_METRICS = ("bleu4", "rougeL", "fcr")


def select_decoding(rows: dict[str, dict[str, float]], min_usr: float = 0.6) -> str:
    """The decoding setting with the highest valid BLEU-4 + ROUGE-L among those with USR >= ``min_usr``."""
    if not rows:
        raise ValueError("no decoding settings to choose from")
    ok = {k: v for k, v in rows.items() if v["usr"] >= min_usr} or rows
    return max(ok, key=lambda k: (ok[k]["bleu4"] + ok[k]["rougeL"], k))


def decode(model, examples: Sequence, setting: dict[str, Any], progress: bool = False) -> tuple[list[str], list[float]]:
    """Predictions with the model's decoding config temporarily overridden by ``setting``.

    ``rerank_bias`` in ``setting`` (not a model option): then :func:`rerank_with_retrieved`.
    """
    import torch

    setting = dict(setting)
    bias = setting.pop("rerank_bias", None)
    old = {k: getattr(model.config, k) for k in setting}
    try:
        for k, v in setting.items():
            setattr(model.config, k, v)
        torch.manual_seed(0)  # sampling settings are reproducible
        texts, ratings = model.predict(examples, batch_size=64, progress=progress)
        if bias is not None:
            texts = rerank_with_retrieved(model, examples, texts, bias)
        return texts, ratings
    finally:
        for k, v in old.items():
            setattr(model.config, k, v)


def sequence_log_probs(model, examples: Sequence, texts: Sequence[str], batch_size: int = 64) -> list[float]:
    """Mean per-token log-probability (``</s>`` included) of ``texts`` as explanations of ``examples``.

    For the PETER-family decoders (one teacher-forced pass; with the copy head when the model has it).
    """
    import dataclasses

    import torch

    from textrec.explain.tokenizer import PAD

    out: list[float] = []
    was = model.training
    model.eval()
    with torch.no_grad():
        for s in range(0, len(examples), batch_size):
            chunk = [dataclasses.replace(e, target=t) for e, t in
                     zip(examples[s:s + batch_size], texts[s:s + batch_size])]
            batch = model.collate(chunk)
            text = batch["text"]
            h, n_pre = model._hidden(batch, text[:, :-1])
            logp = model.word_log_probs(h[:, n_pre:], h, n_pre, batch)
            tgt = text[:, 1:]
            ok = tgt != PAD
            lp = logp.gather(2, tgt[..., None]).squeeze(-1) * ok
            out += (lp.sum(1) / ok.sum(1).clamp(min=1)).tolist()
    model.train(was)
    return out


def rerank_with_retrieved(model, examples: Sequence, texts: Sequence[str], bias: float,
                          k: int = 3) -> list[str]:
    """Retrieval as a draft the model may keep: for each example pick, among its generated text and
    its top-``k`` retrieved sentences, the one the model finds most likely (mean token log-prob;
    retrieved sentences get ``bias`` added). Lets the generator keep a retrieved sentence whole
    when it fits the user and item better than what it would write itself."""
    return pick_with_bias(rerank_scores(model, examples, texts, k), bias)


def rerank_scores(model, examples: Sequence, texts: Sequence[str], k: int = 3) -> list[list[tuple[str, float]]]:
    """Per example, ``(text, mean token log-prob)`` of its generated text first, then of its top-``k``
    retrieved sentences: scored once, so any number of biases can be tried (:func:`pick_with_bias`)."""
    from textrec.explain.sentences import words

    out = [[(t, v)] for t, v in zip(texts, sequence_log_probs(model, examples, texts))]
    for j in range(k):
        idx = [n for n, e in enumerate(examples) if len(e.retrieved) > j]
        if not idx:
            break
        cand = [" ".join(words(examples[n].retrieved[j].text)) for n in idx]
        for n, c, v in zip(idx, cand, sequence_log_probs(model, [examples[n] for n in idx], cand)):
            out[n].append((c, v))
    return out


def pick_with_bias(scored: Sequence[Sequence[tuple[str, float]]], bias: float) -> list[str]:
    """The generated text unless a retrieved sentence's score + ``bias`` beats it (first best wins)."""
    best = []
    for row in scored:
        text, score = row[0]
        for c, v in row[1:]:
            if v + bias > score:
                text, score = c, v + bias
        best.append(text)
    return best


def targets_met_vs(row: dict[str, float], base: dict[str, float]) -> int:
    """How many of the issue's targets a metrics row meets against a baseline row on the same pairs:
    BLEU-4, ROUGE-L and FCR above the baseline's, USR >= 0.6, grounding >= 0.5."""
    return (sum(row[k] > base[k] for k in TARGET_METRICS) + (row["usr"] >= 0.6)
            + (row.get("grounding", 0.0) >= 0.5))


def select_rerank_bias(rows: dict[str, dict[str, float]], copy_row: dict[str, float]) -> str:
    """The rerank setting (``none`` or a bias) meeting the most targets against copy-retrieved on the
    valid sample; ties broken by BLEU-4 + ROUGE-L, then by name."""
    return max(rows, key=lambda k: (targets_met_vs(rows[k], copy_row), rows[k]["bleu4"] + rows[k]["rougeL"], k))


def same_split(a: dict | None, b: dict | None) -> bool:
    """Whether two results' split reports describe the same data: equal, up to a ``sanitized`` count
    (added to the report later) that says no text was changed."""
    def core(r: dict | None) -> dict | None:
        if r is None:
            return None
        r = dict(r)
        if not any((r.get("sanitized") or {}).values()):
            r.pop("sanitized", None)
        return r

    return a is not None and core(a) == core(b)


def sample_indices(n: int, k: int, seed: int = 0) -> list[int]:
    """``k`` sorted distinct indices of ``range(n)`` (seeded; the same picks as eval/erra_bench.py)."""
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(n, size=min(k, n), replace=False).tolist())


def _fmt(k: str, v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.2f}" if k in ("bleu1", "bleu4", "rouge1", "rouge2", "rougeL") else f"{v:.4f}"


def markdown(result: dict) -> str:
    """Tables (test, then valid), the targets and the decoding choice per model."""
    lines = []
    for part in ("test", "valid"):
        lines += [f"**{result['dataset']} — {part}** ({result['evaluated'][part]} explanations; BLEU/ROUGE ×100; "
                  "DIV lower is better)", "", "| model | " + " | ".join(METRICS) + " |", "|---|" + "---:|" * len(METRICS)]
        for name, row in result["models"].items():
            m = row.get(part) or {}
            lines.append(f"| {row.get('label', name)} | " + " | ".join(_fmt(k, m.get(k)) for k in METRICS) + " |")
        lines.append("")
    for name, row in result["models"].items():
        if "decoding" in row:
            d = row["decoding"]
            lines.append(f"- {name}: decoding `{d['chosen']}` chosen on {d['valid_sample']} valid explanations: " +
                         ", ".join(f"{k} BLEU-4 {v['bleu4']:.2f} ROUGE-L {v['rougeL']:.2f} USR {v['usr']:.3f}"
                                   for k, v in d["grid"].items()))
    for name, row in result["models"].items():
        if "rerank" in row:
            r = row["rerank"]
            lines.append(f"- {name}: rerank `{r['chosen']}` chosen on {r['valid_sample']} valid explanations "
                         f"(most targets met vs copy-retrieved on the same pairs): " +
                         ", ".join(f"{k} BLEU-4 {v['bleu4']:.2f} ROUGE-L {v['rougeL']:.2f} FCR {v['fcr']:.3f} "
                                   f"grounding {v['grounding']:.3f}" for k, v in r["grid"].items()))
    for key, title in (("targets", "Targets (test)"), ("targets_rerank", "Targets (test), with the rerank")):
        if key in result:
            lines += ["", f"**{title}**", ""]
            lines += [f"- {t['target']}: **{'met' if t['met'] else 'missed'}** ({t['detail']})" for t in result[key]]
    return "\n".join(lines) + "\n"


def samples_markdown(result: dict) -> str:
    """Ten test explanations per model beside the reference, with citations and grounding."""
    lines = [f"# Sample explanations — {result['dataset']} test", "",
             "Ten seeded test pairs; each model's explanation beside the reference sentence of the real review. "
             "`cites` = sentence ids in the training-review index (text quoted); `g` = grounding; "
             "`unsupported` = aspects in no source.", ""]
    for k, s in enumerate(result["samples"], 1):
        lines += [f"## {k}. user `{s['user']}`, item `{s['item']}`, aspects {s['aspects']}", "",
                  f"- **reference**: {s['reference']}"]
        for name, e in s["models"].items():
            extra = ""
            if e.get("grounding") is not None:
                extra = f" (g {e['grounding']:.2f}; cites {e['cited']}" + \
                        (f"; unsupported {e['unsupported']}" if e.get("unsupported") else "") + ")"
            lines.append(f"- **{name}**: {e['text']}{extra}")
        lines.append("- retrieved: " + " | ".join(f"[{r['id']}] “{r['text']}”" for r in s["retrieved"]))
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Evaluate saved models + copy-retrieved on one split; write JSON, Markdown, PNG, samples."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="instruments")
    ap.add_argument("--recipe", default="erra")
    ap.add_argument("--model", action="append", default=[], metavar="DIR",
                    help="a saved explainer (Explainer.save) or explanation model; repeat per seed")
    ap.add_argument("--label", action="append", default=[], help="row name per --model (default erra_sN)")
    ap.add_argument("--target-prefix", default="erra_s", help="rows (by name prefix) checked against the targets")
    ap.add_argument("--valid-sample", type=int, default=300, help="valid explanations for the decoding choice")
    ap.add_argument("--decoding", nargs="*", default=None, help="names from the grid to compare (default all)")
    ap.add_argument("--reuse", metavar="JSON", help="rows of models not run now, from an earlier result (same split)")
    ap.add_argument("--reuse-rows", nargs="*", default=["peter", "erra"], help="which rows to reuse")
    ap.add_argument("--out-dir", default="eval/results")
    ap.add_argument("--name", default=None)
    ap.add_argument("--limit-eval", type=int, default=None, help="smoke runs: first N valid and test examples only")
    ap.add_argument("--rerank-biases", type=float, nargs="*", default=None,
                    help="after the decoding choice, also try keeping a retrieved sentence when the model scores it "
                         "within BIAS of its own text (chosen on the valid sample; adds <key>_rerank rows)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from textrec.data.registry import load_dataset
    from textrec.explain.base import ExplainModel
    from textrec.explain.faithfulness import plot_grounding
    from textrec.explain.pipeline import build_data, copy_baseline, evaluate_predictions
    from textrec.io import atomic_write_text, write_json
    from textrec.recipes import load_recipe
    from textrec.results import git_commit, machine

    torch.set_num_threads(args.threads)
    progress = not args.no_progress
    t0 = time.perf_counter()
    recipe = load_recipe(args.recipe)
    ds = load_dataset(args.dataset)
    data = build_data(ds, recipe, progress=progress)
    name = args.name or f"erra_{ds.name}_copy"
    out_dir = Path(args.out_dir)
    ex = {p: data.examples[p][: args.limit_eval] for p in ("valid", "test")}
    result: dict[str, Any] = {
        "benchmark": "erra_explanations_vs_copy", "dataset": ds.name, "split": {**data.report},
        "command": "python -m textrec.explain.bench " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": date.today().isoformat(), "machine": machine(),
        "git_commit": git_commit(), "threads": args.threads, "seeds": len(args.model),
        "evaluated": {p: len(v) for p, v in ex.items()}, "models": {}, "faithfulness_histograms": {},
        "selection": "decoding chosen on a seeded valid sample (highest BLEU-4 + ROUGE-L with USR >= 0.6); "
                     "test decoded once with the chosen setting; never tuned on test"}
    preds: dict[str, dict[str, list[str]]] = {}
    checks: dict[str, Any] = {}

    def record(key: str, texts: dict, ratings: dict, conditioned: bool, extra: dict) -> None:
        row: dict[str, Any] = {}
        for part in ("valid", "test"):
            holder: dict = {}
            row[part] = evaluate_predictions(data, ex[part], texts[part], ratings[part], conditioned=conditioned,
                                             faith=holder)
            if part == "test":
                checks[key] = holder["checks"]
                result["faithfulness_histograms"][key] = holder["checks"].histogram()
        row.update(extra)
        result["models"][key] = row
        preds[key] = texts
        t = row["test"]
        print(f"{key}: test BLEU-4 {t['bleu4']:.2f} ROUGE-L {t['rougeL']:.2f} USR {t['usr']:.3f} DIV {t['div']:.3f} "
              f"FCR {t['fcr']:.3f} grounding {t['grounding']:.3f} cites>=1 {t['cites_at_least_one']:.3f}",
              file=sys.stderr, flush=True)
        result["wall_seconds"] = round(time.perf_counter() - t0, 1)
        write_json(out_dir / f"{name}.json", result)

    texts, ratings = {}, {}
    for p in ("valid", "test"):
        texts[p], ratings[p] = copy_baseline(ex[p], data.reviews)
    record("copy", texts, ratings, True, {"label": "copy top retrieved sentence"})
    reranked: dict[str, tuple[dict, dict, dict]] = {}

    def rerank_rows(key, model, setting, texts, ratings, vpick, vsample) -> None:
        """Bias chosen on the valid sample (vs copy-retrieved on the same pairs); test reranked once."""
        c0 = time.process_time()
        vtexts = [texts["valid"][k] for k in vpick]  # the sample's own explanations under the chosen decoding
        vrat = [ratings["valid"][k] for k in vpick]
        scored = rerank_scores(model, vsample, vtexts)
        copy_v = evaluate_predictions(data, vsample, *copy_baseline(vsample, data.reviews))
        opts = {"none": evaluate_predictions(data, vsample, vtexts, vrat)}
        for b in args.rerank_biases:
            opts[f"bias{b:g}"] = evaluate_predictions(data, vsample, pick_with_bias(scored, b), vrat)
        best = select_rerank_bias(opts, copy_v)
        grid_out = {k: {m: round(float(v[m]), 4) for m in ("bleu4", "rougeL", "usr", "fcr", "grounding")}
                    | {"targets_met_vs_copy": targets_met_vs(v, copy_v)} for k, v in opts.items()}
        print(f"{key} rerank on valid sample: {grid_out} -> {best}", file=sys.stderr, flush=True)
        new = dict(texts)
        if best != "none":
            b = float(best[len("bias"):])
            for p in ("valid", "test"):
                new[p] = pick_with_bias(rerank_scores(model, ex[p], texts[p]), b)
        reranked[key] = (new, ratings, {"rerank": {"chosen": best, "valid_sample": len(vsample), "grid": grid_out,
                                                   "copy_on_valid_sample": {m: round(float(copy_v[m]), 4) for m in
                                                                            ("bleu4", "rougeL", "usr", "fcr")},
                                                   "cpu_seconds": round(time.process_time() - c0, 1)}})

    grid = [(n, s) for n, s in DECODING_GRID if args.decoding is None or n in args.decoding]
    vpick = sample_indices(len(ex["valid"]), args.valid_sample, seed=1)
    vsample = [ex["valid"][k] for k in vpick]
    for j, folder in enumerate(args.model):
        folder = Path(folder)
        model = ExplainModel.from_pretrained(folder / "model" if (folder / "model").is_dir() else folder)
        key = args.label[j] if j < len(args.label) else f"erra_s{j}"
        rows = {}
        for gname, setting in grid:
            tg = time.perf_counter()
            t, r = decode(model, vsample, setting)
            rows[gname] = {**evaluate_predictions(data, vsample, t, r), "seconds": round(time.perf_counter() - tg, 1)}
            print(f"{key} valid-sample {gname}: BLEU-4 {rows[gname]['bleu4']:.2f} ROUGE-L {rows[gname]['rougeL']:.2f} "
                  f"USR {rows[gname]['usr']:.3f} ({rows[gname]['seconds']}s)", file=sys.stderr, flush=True)
        chosen = select_decoding(rows)
        setting = dict(grid)[chosen]
        texts, ratings = {}, {}
        tg = time.perf_counter()
        for p in ("valid", "test"):
            texts[p], ratings[p] = decode(model, ex[p], setting, progress=progress)
        n_gen = sum(len(v) for v in ex.values())
        if args.rerank_biases:
            rerank_rows(key, model, setting, texts, ratings, vpick, vsample)
        record(key, texts, ratings, bool(getattr(model.config, "use_retrieval", False)),
               {"label": f"ERRA{' + copy head' if getattr(model, 'copies', False) else ''} ({key})", "model_dir": str(folder), "config": vars(model.config),
                "decoding": {"chosen": chosen, "setting": setting, "valid_sample": len(vsample), "grid": {
                    k: {m: v[m] for m in ("bleu4", "rougeL", "usr", "fcr", "grounding", "seconds")}
                    for k, v in rows.items()}},
                "inference_pairs_per_s": round(n_gen / max(time.perf_counter() - tg, 1e-9), 2)})
        if key in reranked:
            rt, rr, extra = reranked[key]
            rkey = key.replace("_s", "_rerank_s", 1) if "_s" in key else f"{key}_rerank"
            record(rkey, rt, rr, True, {"label": f"ERRA + rerank with retrieved ({key})", "model_dir": str(folder),
                                        **extra})

    old: dict = {}
    if args.reuse:
        old = json.loads(Path(args.reuse).read_text(encoding="utf-8"))
        if not same_split(old.get("split"), result["split"]):
            raise SystemExit(f"{args.reuse}: a different split; cannot reuse its rows")
        for k in args.reuse_rows:
            if k in old.get("models", {}):
                row = {**old["models"][k], "reused_from": args.reuse,
                       "label": {"peter": "PETER-style (earlier run)", "erra": "ERRA, no copy head (earlier run)"}
                       .get(k, k)}
                result["models"][k if k != "erra" else "erra_no_copy"] = row
    result["targets"] = targets(result, args.target_prefix)
    if reranked:
        result["targets_rerank"] = targets(result, args.target_prefix.replace("_s", "_rerank_s", 1))
    result["samples"] = samples(data, ex["test"], preds, checks, old)
    result["wall_seconds"] = round(time.perf_counter() - t0, 1)
    write_json(out_dir / f"{name}.json", result)
    atomic_write_text(out_dir / f"{name}.md", markdown(result))
    atomic_write_text(out_dir / f"{name}_samples.md", samples_markdown(result))
    plot_grounding(checks, out_dir / f"{name}_grounding.png", title=f"{ds.name} test: grounding per explanation")
    print(markdown(result))


def targets(result: dict, prefix: str = "erra_s") -> list[dict]:
    """Issue targets on test: the default generator's rows (names starting with ``prefix``; mean
    over seeds) vs PETER-style and copy-retrieved."""
    models = result["models"]
    ours = [v["test"] for k, v in models.items() if k.startswith(prefix)]
    if not ours:
        return []
    mean = {k: float(np.mean([o[k] for o in ours])) for k in ours[0] if isinstance(ours[0][k], (int, float))}
    out = []
    for base in ("peter", "copy"):
        if base not in models:
            continue
        b = models[base]["test"]
        for k in TARGET_METRICS:
            out.append({"target": f"{k} > {base}", "met": mean[k] > b[k], "detail": f"{mean[k]:.4g} vs {b[k]:.4g}"})
    out.append({"target": "USR >= 0.60", "met": mean["usr"] >= 0.6, "detail": f"{mean['usr']:.4f}"})
    if "peter" in models:
        p = models["peter"]["test"]["div"]
        out.append({"target": "DIV <= PETER-style's", "met": mean["div"] <= p, "detail": f"{mean['div']:.4f} vs {p:.4f}"})
    out.append({"target": "mean grounding >= 0.5", "met": mean["grounding"] >= 0.5, "detail": f"{mean['grounding']:.4f}"})
    out.append({"target": "every explanation cites >= 1 sentence", "met": mean["cites_at_least_one"] >= 1.0,
                "detail": f"{mean['cites_at_least_one']:.4f}"})
    out.append({"target": ">= 2 seeds", "met": len(ours) >= 2, "detail": f"{len(ours)} seed(s)"})
    return out


def samples(data, test: Sequence, preds: dict, checks: dict, old: dict, k: int = 10) -> list[dict]:
    """Ten seeded test pairs (same picks as eval/erra_bench.py) with every model's explanation."""
    earlier = {(e["user"], e["item"]): e for e in old.get("examples", [])}
    out = []
    for j in sample_indices(len(test), k, seed=0):
        e = test[j]
        u, i = str(data.user_ids[e.user]), str(data.item_ids[e.item])
        models: dict[str, dict] = {}
        for name, p in preds.items():
            c = checks[name]
            models[name] = {"text": p["test"][j], "cited": c.cited[j],
                            "grounding": None if math.isnan(c.grounding[j]) else round(c.grounding[j], 3),
                            "unsupported": c.unsupported[j]}
        prev = earlier.get((u, i), {})
        for src, dst in (("peter", "PETER-style (earlier run)"), ("erra", "ERRA, no copy head (earlier run)")):
            if src in prev:
                models[dst] = {"text": prev[src]}
        out.append({"user": u, "item": i, "aspects": list(e.aspects), "reference": e.target, "models": models,
                    "retrieved": [{"id": int(r.sid), "text": r.text} for r in e.retrieved]})
    return out


if __name__ == "__main__":
    main()
