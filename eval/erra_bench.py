"""ERRA benchmark: PETER-style vs copy-retrieved vs ERRA (full / no retrieval / no aspects), one split.

python eval/erra_bench.py --dataset instruments --threads 1

Writes eval/results/erra_<dataset>.json (valid and test metrics keyed apart, configs, split report,
training histories, timings, 10 example explanations with cited sentences) and
eval/results/erra_<dataset>.md (README-ready tables). The JSON is rewritten after every variant so
a long run leaves partial results. The trained ERRA-full model is saved for ``textrec explain``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from textrec.bench import git_commit, machine, peak_rss_mb
from textrec.data.registry import load_dataset
from textrec.explain.pipeline import (
    Explainer,
    build_data,
    cite,
    copy_baseline,
    default_model_dir,
    evaluate_predictions,
    train_tokenizer,
    train_variant,
)
from textrec.io import atomic_write_text, write_json
from textrec.recipes import load_recipe

METRICS = ["bleu1", "bleu4", "rouge1", "rouge2", "rougeL", "usr", "div", "fcr", "fmr", "rmse", "mae", "grounding"]
LABELS = {"peter": "PETER-style (user/item → text)", "copy": "copy top retrieved sentence",
          "erra_lm": "ERRA, SmolLM2-135M + LoRA (PEPLER-style prompts)",
          "saved_erra": "ERRA decoder (saved full-data model)", "saved_peter": "PETER-style (saved model)", "pepler": "PEPLER-style (SmolLM2 + LoRA, IDs only)",
          "erra": "ERRA (aspects + retrieval)", "erra_no_retrieval": "ERRA w/o retrieval",
          "erra_no_aspects": "ERRA w/o aspects"}
GOAL = {"bleu4": "higher", "rougeL": "higher", "usr": "higher", "fcr": "higher", "div": "lower_or_equal"}


def markdown(result: dict) -> str:
    """README-ready tables (test, then valid), the goal check and the example explanations."""
    lines = []
    for part in ("test", "valid"):
        n_eval = result.get("evaluated", {}).get(part, result["split"]["examples"][part])
        lines += [f"**{result['dataset']} — {part}** ({n_eval} explanations; "
                  "BLEU/ROUGE ×100; DIV lower is better)", "",
                  "| model | " + " | ".join(m if m != "grounding" else "grounding*" for m in METRICS) + " |",
                  "|---|" + "---:|" * len(METRICS)]
        for name, row in result["models"].items():
            m = row[part]
            cells = []
            for k in METRICS:
                v = m.get(k)
                cells.append("–" if v is None or (isinstance(v, float) and np.isnan(v)) else
                             f"{v:.2f}" if k in ("bleu1", "bleu4", "rouge1", "rouge2", "rougeL") else f"{v:.4f}")
            lines.append(f"| {LABELS.get(name, name)} | " + " | ".join(cells) + " |")
        lines.append("")
    lines.append("\\* grounding = share of the explanation's content words found in the retrieved sentences it "
                 "shares words with (its citations). For PETER-style and ERRA w/o retrieval those sentences were "
                 "*not* inputs: the number is the chance-level overlap to compare against.")
    if "goal" in result:
        g = result["goal"]
        lines += ["", f"Goal (ERRA vs PETER-style on test: BLEU-4, ROUGE-L, USR, FCR higher; DIV no worse): "
                      f"**{'reached' if g['reached'] else 'not reached'}** — " +
                  ", ".join(f"{k} {v['erra']:.4g} vs {v['peter']:.4g} ({'ok' if v['ok'] else 'no'})"
                            for k, v in g["metrics"].items())]
    if result.get("examples"):
        lines += ["", "**Example explanations (test, ERRA full)**", ""]
        for k, ex in enumerate(result["examples"], 1):
            lines.append(f"{k}. user `{ex['user']}`, item `{ex['item']}`, aspects {ex['aspects']}  ")
            lines.append(f"   ERRA: *{ex['erra']}*  ")
            if ex.get("peter") is not None:
                lines.append(f"   PETER-style: *{ex['peter']}*  ")
            lines.append(f"   reference: {ex['reference']}  ")
            for c in ex["cited"]:
                lines.append(f"   - cites: “{c}”")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Build the data once, run every variant on the same split, write JSON + Markdown."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="instruments")
    ap.add_argument("--recipe", default="erra")
    ap.add_argument("--variants", nargs="*", default=["peter", "erra", "erra_no_retrieval", "erra_no_aspects"])
    ap.add_argument("--epochs", type=int, default=None, help="override trainer.epochs")
    ap.add_argument("--max-minutes", type=float, default=None, help="override trainer.max_minutes (per variant)")
    ap.add_argument("--seed", type=int, default=None, help="override trainer.seed (model init and batch order)")
    ap.add_argument("--limit-train", type=int, default=None, help="smoke runs: train on the first N examples only")
    ap.add_argument("--limit-eval", type=int, default=None,
                    help="evaluate every model on a seeded sample of N valid and N test examples (slow LM option)")
    ap.add_argument("--eval-saved", metavar="DIR", action="append", default=[],
                    help="also evaluate a saved explanation model (no training) on the same examples")
    ap.add_argument("--beams", type=int, default=None, help="decoding beams (default: recipe, 1 = greedy)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out-dir", default="eval/results")
    ap.add_argument("--name", default=None, help="result file stem (default erra_<dataset>)")
    ap.add_argument("--save-model", default=None, help="where to save ERRA-full (default $TEXTREC_CACHE/erra/<dataset>)")
    ap.add_argument("--reuse", metavar="JSON", help="take the rows of models not run now from this earlier result "
                    "(same dataset, split and recipe), e.g. to rerun one variant with more epochs")
    ap.add_argument("--save-predictions", metavar="JSONL", help="also write every test prediction of every model here")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    progress = not args.no_progress
    recipe = load_recipe(args.recipe)
    over = {}
    if args.epochs is not None:
        over["epochs"] = args.epochs
    if args.max_minutes is not None:
        over["max_minutes"] = args.max_minutes
    if args.seed is not None:
        over["seed"] = args.seed
    t0 = time.perf_counter()
    ds = load_dataset(args.dataset)
    data = build_data(ds, recipe, progress=progress)
    prep_s = time.perf_counter() - t0
    tok = train_tokenizer(data, recipe)
    if args.limit_train:
        data.examples["train"] = data.examples["train"][: args.limit_train]
    if args.limit_eval:
        pick = np.random.default_rng(0)
        for part in ("valid", "test"):
            ex = data.examples[part]
            keep = sorted(pick.choice(len(ex), size=min(args.limit_eval, len(ex)), replace=False).tolist())
            data.examples[part] = [ex[k] for k in keep]
    name = args.name or f"erra_{ds.name}"
    out_dir = Path(args.out_dir)
    result = {"benchmark": "erra_explanations", "dataset": ds.name, "split": {**data.report},
              "target": "first sentence of the review (4-25 words) mentioning an aspect of the vocabulary; "
                        "its first aspect is the ground-truth feature (FMR)",
              "retrieval": "MiniLM sentence embeddings + FAISS IndexFlatIP over training-review sentences; "
                           "candidates = the item's and the user's other training reviews",
              "config": {**recipe, "trainer_overrides": over, "limit_train": args.limit_train,
                         "limit_eval": args.limit_eval,
                         "beams": args.beams, "vocab_size": len(tok)},
              "evaluated": {p: len(data.examples[p]) for p in ("valid", "test")},
              "n_aspects": len(data.vocab), "aspect_sample": data.vocab.aspects[:40],
              "seed": recipe.get("trainer", {}).get("seed", 0), "git_commit": git_commit(),
              "date": date.today().isoformat(), "machine": machine() + " (contended: shared by 4 agents)",
              "threads": args.threads, "data_prep_seconds": round(prep_s, 1), "models": {}, "histories": {}}
    preds: dict[str, dict[str, list[str]]] = {}

    def record(key: str, texts: dict, ratings: dict, extra: dict) -> None:
        row = {}
        for part in ("valid", "test"):
            row[part] = evaluate_predictions(data, data.examples[part], texts[part], ratings[part])
        row.update(extra)
        result["models"][key] = row
        preds[key] = texts
        t = row["test"]
        print(f"{key}: test BLEU-1 {t['bleu1']:.2f} BLEU-4 {t['bleu4']:.2f} ROUGE-L {t['rougeL']:.2f} "
              f"USR {t['usr']:.4f} DIV {t['div']:.4f} FCR {t['fcr']:.4f} FMR {t['fmr']:.4f} "
              f"RMSE {t.get('rmse', float('nan')):.4f} grounding {t['grounding']:.3f}", flush=True)
        result["peak_rss_mb"] = round(peak_rss_mb(), 1)
        result["wall_seconds"] = round(time.perf_counter() - t0, 1)
        write_json(out_dir / f"{name}.json", result)

    texts, ratings = {}, {}
    for part in ("valid", "test"):
        texts[part], ratings[part] = copy_baseline(data.examples[part], data.reviews)
    record("copy", texts, ratings, {"train_seconds": 0.0})

    for folder in args.eval_saved:
        from textrec.explain.base import ExplainModel

        saved = ExplainModel.from_pretrained(folder)
        texts, ratings = {}, {}
        for part in ("valid", "test"):
            texts[part], ratings[part] = saved.predict(data.examples[part], num_beams=args.beams, progress=progress)
        record(f"saved_{saved.kind}", texts, ratings, {"train_seconds": None, "model_dir": str(folder),
                                                       "note": "a saved model, evaluated without training"})

    for variant in args.variants:
        model, hist = train_variant(data, variant, recipe, tokenizer=tok, progress=progress, trainer_overrides=over)
        result["histories"][variant] = hist
        texts, ratings = {}, {}
        tg = time.perf_counter()
        for part in ("valid", "test"):
            texts[part], ratings[part] = model.predict(data.examples[part], num_beams=args.beams, progress=progress)
        gen_s = time.perf_counter() - tg
        n_gen = len(data.examples["valid"]) + len(data.examples["test"])
        record(variant, texts, ratings, {"train_seconds": hist["train_seconds"], "epochs_run": len(hist["epochs"]),
                                         "best_epoch": hist["best_epoch"], "stopped": hist["stopped"],
                                         "params": sum(p.numel() for p in model.parameters()),
                                         "inference_pairs_per_s": round(n_gen / max(gen_s, 1e-9), 1)})
        if variant == "erra":
            folder = Path(args.save_model) if args.save_model else default_model_dir(ds.name)
            Explainer(data, model).save(folder, recipe)
            result["erra_model_dir"] = str(folder)
            print(f"ERRA model saved to {folder}", file=sys.stderr)

    if args.reuse:
        import json

        old = json.loads(Path(args.reuse).read_text(encoding="utf-8"))
        if old.get("split") != result["split"]:
            raise SystemExit(f"{args.reuse}: a different split; cannot reuse its rows")
        rows = {k: {**v, "reused_from": args.reuse} for k, v in old["models"].items() if k not in result["models"]}
        result["models"] = {**rows, **result["models"]}
        order = ["copy", "peter", "erra", "erra_no_retrieval", "erra_no_aspects"]
        result["models"] = dict(sorted(result["models"].items(),
                                       key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))
        for k in rows:
            result["histories"].setdefault(k, old.get("histories", {}).get(k))
    if "erra" in result["models"] and "peter" in result["models"]:
        e, p = result["models"]["erra"]["test"], result["models"]["peter"]["test"]
        checks = {k: {"erra": e[k], "peter": p[k], "ok": (e[k] > p[k]) if d == "higher" else (e[k] <= p[k])}
                  for k, d in GOAL.items()}
        result["goal"] = {"metrics": checks, "reached": all(c["ok"] for c in checks.values())}
    if "erra" in preds:
        rng = np.random.default_rng(0)
        test = data.examples["test"]
        picks = sorted(rng.choice(len(test), size=min(10, len(test)), replace=False).tolist())
        result["examples"] = [
            {"user": str(data.user_ids[test[k].user]), "item": str(data.item_ids[test[k].item]),
             "aspects": test[k].aspects, "erra": preds["erra"]["test"][k],
             **({"peter": preds["peter"]["test"][k]} if "peter" in preds else {}),
             "copy": preds["copy"]["test"][k], "reference": test[k].target,
             "cited": [r.text for r in cite(preds["erra"]["test"][k], test[k].retrieved)],
             "retrieved": [r.text for r in test[k].retrieved]} for k in picks]
    if args.save_predictions:
        import json

        test = data.examples["test"]
        atomic_write_text(args.save_predictions, "".join(
            json.dumps({"user": str(data.user_ids[e.user]), "item": str(data.item_ids[e.item]), "reference": e.target,
                        "aspects": e.aspects, **{k: v["test"][j] for k, v in preds.items()}}) + "\n"
            for j, e in enumerate(test)))
    result["wall_seconds"] = round(time.perf_counter() - t0, 1)
    write_json(out_dir / f"{name}.json", result)
    atomic_write_text(out_dir / f"{name}.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
