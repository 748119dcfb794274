"""``textrec bench erra``: PETER-style vs copy-retrieved vs ERRA (full / no retrieval / no aspects), one split.

textrec bench erra --dataset instruments --threads 1

Writes erra_<dataset>.json (valid and test metrics keyed apart, configs, split report, training
histories, timings, 10 example explanations with cited sentences) and erra_<dataset>.md
(README-ready tables) into the run folder (eval/results with --publish). The JSON is rewritten
after every variant so a long run leaves partial results. The trained ERRA-full model is saved
for ``textrec explain`` (``textrec train erra`` trains only that model).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

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
from textrec.io import atomic_write_text
from textrec.options import (
    add_dataset_options,
    add_progress_option,
    add_recipe_options,
    add_threads_option,
    load_dataset_from_args,
    positive_float,
    positive_int,
    recipe_from_args,
)
from textrec.results import add_output_options, metadata_line, writer_from_args

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
    if "date" in result:
        lines += ["", metadata_line(result)]
    return "\n".join(lines) + "\n"


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """Arguments of ``textrec bench erra``."""
    ap.description = __doc__
    ap.formatter_class = argparse.RawDescriptionHelpFormatter
    add_dataset_options(ap, default="instruments")
    add_recipe_options(ap, "erra")
    ap.add_argument("--variants", nargs="*", default=["peter", "erra", "erra_no_retrieval", "erra_no_aspects"])
    ap.add_argument("--epochs", type=positive_int, default=None, help="override trainer.epochs")
    ap.add_argument("--max-minutes", type=positive_float, default=None,
                    help="override trainer.max_minutes (per variant)")
    ap.add_argument("--limit-train", type=positive_int, default=None,
                    help="smoke runs: train on the first N examples only")
    ap.add_argument("--limit-eval", type=positive_int, default=None,
                    help="evaluate every model on a seeded sample of N valid and N test examples (slow LM option)")
    ap.add_argument("--eval-saved", metavar="DIR", action="append", default=[],
                    help="also evaluate a saved explanation model (no training) on the same examples")
    ap.add_argument("--beams", type=positive_int, default=None, help="decoding beams (default: recipe, 1 = greedy)")
    add_threads_option(ap)
    ap.add_argument("--name", default=None, help="result file stem (default erra_<dataset>)")
    ap.add_argument("--save-model", default=None,
                    help="where to save ERRA-full (default $TEXTREC_CACHE/erra/<dataset>)")
    ap.add_argument("--reuse", metavar="JSON", help="take the rows of models not run now from this earlier result "
                    "(same dataset, split and recipe), e.g. to rerun one variant with more epochs")
    ap.add_argument("--save-predictions", metavar="JSONL",
                    help="also write every test prediction of every model here")
    add_progress_option(ap)
    add_output_options(ap, "erra")


def run(args: argparse.Namespace) -> int:
    """Build the data once, run every variant on the same split, write JSON + Markdown."""
    progress = not args.quiet
    recipe = recipe_from_args(args, "erra")
    over = {}
    if args.epochs is not None:
        over["epochs"] = args.epochs
    if args.max_minutes is not None:
        over["max_minutes"] = args.max_minutes
    t0 = time.perf_counter()
    ds = load_dataset_from_args(args)
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
    writer = writer_from_args(args, "erra")
    writer.started = t0
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
              "seed": recipe.get("trainer", {}).get("seed", 0),
              "data_prep_seconds": round(prep_s, 1), "models": {}, "histories": {}}
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
        writer.write_json(f"{name}.json", result)

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
    result.update(writer.metadata())
    with writer:
        writer.write_json(f"{name}.json", result)
        writer.write_text(f"{name}.md", markdown(result))
    print(markdown(result))
    return 0
