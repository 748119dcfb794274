"""``textrec bench erra_trust``: explanations a person would trust, side by side on one split.

    textrec bench erra_trust --dataset instruments --peter DIR --erra DIR --lm DIR --threads 1 --publish

Rows (valid and test apart; one seed): copy the top retrieved sentence; PETER-style and the ERRA
decoder (saved models, ``textrec train erra --variant peter|erra``); ERRA + rerank with retrieved
(bias chosen on a seeded valid sample against copy-retrieved, as ``textrec.explain.bench``);
ERRA-LM (a saved SmolLM2 + LoRA model, decoded greedily on a seeded test sample only: it costs
about 0.4 CPU-s per explanation); and the extractive explainer (:mod:`textrec.explain.extractive`)
with its ablations — the item's own sentences only, + the fitted scorer, + the personal bonus,
+ compression — so each means is priced. Its settings (personal bonus, compression, embedding
features) are chosen on the valid sample: highest BLEU-4 + ROUGE-L among the settings whose
personal hit rate is above copy-retrieved's on the same pairs. Test is decoded once.

Every row carries BLEU/ROUGE/USR/DIV/FCR/FMR, grounding and the trust measures
(:mod:`textrec.explain.trust`). A second table scores every row on the ERRA-LM test sample.
Writes ``<name>.json`` (with ``models``, ``targets``, the word lists), ``<name>.md`` and
``<name>_samples.md`` (30 random test pairs of the LM sample, every row's explanation side by
side with its unsupported words and personal aspects). The chosen extractive explainer is saved
(``--save-explainer``, default ``$TEXTREC_CACHE/erra/<dataset>``, where ``textrec explain``,
the demo and ``textrec serve`` find it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from textrec.options import (
    add_dataset_options,
    add_progress_option,
    add_recipe_options,
    add_threads_option,
    load_dataset_from_args,
    positive_int,
    recipe_from_args,
)
from textrec.results import add_output_options, metadata_line, writer_from_args

TABLE = ["bleu1", "bleu4", "rougeL", "usr", "div", "fcr", "fmr", "grounding", "unsupported_content",
         "unsupported_any", "personal_hit_rate", "personal_precision", "rmse"]
SCALED = ("bleu1", "bleu4", "rouge1", "rouge2", "rougeL")
KEEP = TABLE + ["rouge1", "rouge2", "mae", "n", "cites_at_least_one", "grounding_median", "unsupported_mean",
                "names_aspect", "claim_units_per_explanation", "unsupported_aspect_rate"]


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """Arguments of ``textrec bench erra_trust``."""
    ap.description = __doc__
    ap.formatter_class = argparse.RawDescriptionHelpFormatter
    add_dataset_options(ap, default="instruments")
    add_recipe_options(ap, "erra")
    ap.add_argument("--peter", metavar="DIR", help="saved PETER-style model (textrec train erra --variant peter)")
    ap.add_argument("--erra", metavar="DIR", help="saved ERRA decoder (textrec train erra)")
    ap.add_argument("--erra-decoding", default="sample_p0.3",
                    help="decoding of the ERRA rows (a name of textrec.explain.bench.DECODING_GRID; "
                         "sample_p0.3 was chosen on valid in the earlier benchmark)")
    ap.add_argument("--rerank-biases", type=float, nargs="*", default=[0.0, 0.5, 1.0, 2.0])
    ap.add_argument("--lm", metavar="DIR", help="saved ERRA-LM model (python -m textrec.explain.lm_bench curve)")
    ap.add_argument("--lm-sample", type=positive_int, default=150, help="test pairs the LM row is decoded on")
    ap.add_argument("--valid-sample", type=positive_int, default=300, help="valid pairs for every choice")
    ap.add_argument("--samples", type=positive_int, default=30, help="test pairs in the samples file")
    ap.add_argument("--rec-users", type=positive_int, default=100, help="users whose EASE top-k are explained")
    ap.add_argument("--rec-k", type=positive_int, default=5)
    ap.add_argument("--personal-weights", type=float, nargs="*", default=[0.0, 0.5, 1.0, 2.0, 4.0])
    ap.add_argument("--reference", metavar="JSON", default="eval/results/erra_instruments.json",
                    help="earlier result on the same split whose converged PETER-style row is a second bar")
    ap.add_argument("--save-explainer", metavar="DIR", default=None,
                    help="where the chosen extractive explainer is saved (default $TEXTREC_CACHE/erra/<dataset>)")
    ap.add_argument("--name", default=None, help="result file stem (default erra_trust_<dataset>)")
    add_threads_option(ap)
    add_progress_option(ap)
    add_output_options(ap, "erra_trust")


def _round(m: dict) -> dict:
    return {k: (round(float(v), 4) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
            for k, v in m.items() if k in KEEP}


def _fmt(k: str, v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.2f}" if k in SCALED else f"{v:.3f}"


def run(args: argparse.Namespace) -> int:
    """Build the data once, decode every row on the same pairs, choose on valid, write the results."""
    import torch

    from textrec.explain.base import ExplainModel
    from textrec.explain.bench import (
        DECODING_GRID,
        decode,
        pick_with_bias,
        rerank_scores,
        sample_indices,
        select_rerank_bias,
    )
    from textrec.explain.pipeline import (
        Explainer,
        build_data,
        copy_baseline,
        default_model_dir,
        evaluate_predictions,
        fit_extractive,
    )
    from textrec.explain.trust import word_lists

    progress = not args.quiet
    recipe = recipe_from_args(args, "erra")
    t0 = time.perf_counter()
    writer = writer_from_args(args, "erra_trust")
    writer.started = t0
    ds = load_dataset_from_args(args)
    data = build_data(ds, recipe, progress=progress)
    name = args.name or f"erra_trust_{ds.name}"
    ex = {p: data.examples[p] for p in ("valid", "test")}
    vpick = sample_indices(len(ex["valid"]), args.valid_sample, seed=1)
    vsample = [ex["valid"][k] for k in vpick]
    lpick = sample_indices(len(ex["test"]), args.lm_sample, seed=2)
    lsample = [ex["test"][k] for k in lpick]
    result: dict[str, Any] = {
        "benchmark": "erra_trust", "dataset": ds.name, "split": {**data.report},
        "command": "textrec bench erra_trust " + " ".join(sys.argv[3:] if sys.argv[1:3] == ["bench", "erra_trust"]
                                                          else sys.argv[1:]),
        "evaluated": {"valid": len(ex["valid"]), "test": len(ex["test"]), "lm_test_sample": len(lsample),
                      "valid_sample_for_choices": len(vsample)},
        "seeds": 1, "seed_note": "one training seed (0) per trained model; the extractive fit is seeded (0)",
        "trust_definitions": {
            "unsupported_content": "pooled share of claim units (content words outside the stop-word and "
                                   "generic-sentiment lists, plural folded, plus multi-word aspects) found in none "
                                   "of the item's training reviews (text + summary) or its catalog text",
            "personal_hit_rate": "share of explanations naming at least one aspect the user wrote about in "
                                 "their training reviews (naming none = miss)",
            "grounding": "share of content words found in the sentences the explanation cites"},
        "word_lists": word_lists(), "models": {}, "lm_sample": {}}
    preds: dict[str, dict[str, list[str]]] = {}
    trust_checks: dict[str, Any] = {}
    faith_checks: dict[str, Any] = {}

    def evaluate(part: str, exs, texts, ratings, conditioned=True, citations=None) -> dict:
        holder: dict = {}
        m = evaluate_predictions(data, exs, texts, ratings, conditioned=conditioned, faith=holder,
                                 citations=citations)
        return m, holder

    def record(key: str, label: str, texts: dict, ratings: dict, conditioned: bool = True,
               citations: dict | None = None, **extra) -> None:
        row: dict[str, Any] = {"label": label}
        for part in ("valid", "test"):
            if part not in texts:
                continue
            m, holder = evaluate(part, ex[part], texts[part], ratings[part], conditioned,
                                 citations[part] if citations else None)
            row[part] = _round(m)
            if part == "test":
                trust_checks[key], faith_checks[key] = holder["trust"], holder["checks"]
        row.update(extra)
        result["models"][key] = row
        preds[key] = texts
        t = row.get("test", {})
        print(f"{key}: test BLEU-4 {t.get('bleu4', float('nan')):.2f} ROUGE-L {t.get('rougeL', float('nan')):.2f} "
              f"unsupported {t.get('unsupported_content', float('nan')):.3f} grounding "
              f"{t.get('grounding', float('nan')):.3f} personal {t.get('personal_hit_rate', float('nan')):.3f}",
              file=sys.stderr, flush=True)
        result["wall_seconds"] = round(time.perf_counter() - t0, 1)
        writer.write_json(f"{name}.json", result)

    def timed(fn, *a, **k):
        c = time.process_time()
        out = fn(*a, **k)
        return out, time.process_time() - c

    # ---- copy-retrieved ------------------------------------------------------------------
    texts, ratings = {}, {}
    for p in ("valid", "test"):
        texts[p], ratings[p] = copy_baseline(ex[p], data.reviews)
    record("copy", "copy the top retrieved sentence", texts, ratings)
    copy_v = evaluate_predictions(data, vsample, *copy_baseline(vsample, data.reviews))

    # ---- PETER-style and ERRA decoders -----------------------------------------------------
    models: dict[str, Any] = {}
    torch.manual_seed(0)
    for key, folder, label in (("peter", args.peter, "PETER-style (user/item -> text)"),
                               ("erra", args.erra, "ERRA default (aspects + retrieval decoder)")):
        if not folder:
            continue
        model = ExplainModel.from_pretrained(Path(folder) / "model" if (Path(folder) / "model").is_dir() else folder)
        models[key] = model
        setting = dict(DECODING_GRID)[args.erra_decoding] if key == "erra" else {}
        texts, ratings, cpu = {}, {}, 0.0
        for p in ("valid", "test"):
            (texts[p], ratings[p]), c = timed(decode, model, ex[p], setting, progress=progress)
            cpu += c
        record(key, label, texts, ratings, conditioned=key != "peter", model_dir=str(folder),
               decoding=args.erra_decoding if key == "erra" else "greedy",
               cpu_s_per_explanation=round(cpu / (len(ex["valid"]) + len(ex["test"])), 4))
        if key == "erra" and args.rerank_biases:
            c0 = time.process_time()
            vt = [texts["valid"][k] for k in vpick]
            vr = [ratings["valid"][k] for k in vpick]
            scored = rerank_scores(model, vsample, vt)
            opts = {"none": evaluate_predictions(data, vsample, vt, vr)}
            for b in args.rerank_biases:
                opts[f"bias{b:g}"] = evaluate_predictions(data, vsample, pick_with_bias(scored, b), vr)
            best = select_rerank_bias(opts, copy_v)
            new = dict(texts)
            if best != "none":
                b = float(best[len("bias"):])
                for p in ("valid", "test"):
                    new[p] = pick_with_bias(rerank_scores(model, ex[p], texts[p]), b)
            record("erra_rerank", "ERRA + rerank with retrieved (bias chosen on valid)", new, ratings,
                   model_dir=str(folder), rerank={"chosen": best, "grid": {k: _round(v) for k, v in opts.items()}},
                   cpu_seconds_rerank=round(time.process_time() - c0, 1))

    # ---- the extractive explainer: fit once per embedding setting, choose on valid ----------------
    fits: dict[bool, Any] = {}
    for use_emb in (True, False):
        fits[use_emb] = fit_extractive(data, recipe, seed=0, use_embeddings=use_emb)
    grid: dict[str, dict] = {}
    for use_emb, model in fits.items():
        for pw in args.personal_weights:
            for comp in (False, True):
                model.config.personal_weight, model.config.compress = pw, comp
                t, r, cs = model.predict_with_citations(vsample)
                grid[f"emb{int(use_emb)}_pw{pw:g}_comp{int(comp)}"] = {
                    **_round(evaluate_predictions(data, vsample, t, r, citations=cs)), "use_embeddings": use_emb,
                    "personal_weight": pw, "compress": comp}
    ok = {k: v for k, v in grid.items() if v["personal_hit_rate"] > copy_v["personal_hit_rate"]} or grid
    chosen = max(ok, key=lambda k: (ok[k]["bleu4"] + ok[k]["rougeL"], k))
    pick = grid[chosen]
    print(f"extractive choice on {len(vsample)} valid pairs: {chosen} {pick}", file=sys.stderr, flush=True)

    def extract_row(key: str, label: str, use_emb: bool, pw: float, comp: bool, **extra) -> None:
        model = fits[use_emb]
        model.config.personal_weight, model.config.compress = pw, comp
        texts, ratings, cites, cpu = {}, {}, {}, 0.0
        for p in ("valid", "test"):
            (texts[p], ratings[p], cites[p]), c = timed(model.predict_with_citations, ex[p])
            cpu += c
        record(key, label, texts, ratings, citations=cites, settings={"use_embeddings": use_emb, "personal_weight": pw,
                                                                      "compress": comp},
               fit=model.fit_report, cpu_s_per_explanation=round(cpu / (len(ex["valid"]) + len(ex["test"])), 5),
               **extra)

    # what restricting the pool to the item's own reviews buys, before any scorer: the item sentence
    # most similar to the pair's retrieval query
    texts, ratings = {}, {}
    for p in ("valid", "test"):
        texts[p], ratings[p] = _item_retrieval(data, ex[p])
    record("item_pool_retrieved", "quote: the item's own sentence most similar to the pair (no scorer)", texts,
           ratings)
    e, pw, comp = pick["use_embeddings"], pick["personal_weight"], pick["compress"]
    extract_row("extract_scorer", "quote: + fitted scorer (no personal bonus, no compression)", e, 0.0, False)
    if pw:
        extract_row("extract_personal", "quote: + personal bonus", e, pw, False)
    if comp:
        extract_row("extract_compress", "quote: + personal bonus + compression", e, pw, True)
    extract_row("erra_extract", f"ERRA-Extract, trusted default ({chosen}, chosen on valid)", e, pw, comp,
                choice={"chosen": chosen, "rule": "highest BLEU-4 + ROUGE-L on the valid sample among settings "
                                                  "whose personal hit rate is above copy-retrieved's there",
                        "copy_on_valid_sample": _round(copy_v), "grid": grid})
    if e:
        extract_row("extract_no_embeddings", "ERRA-Extract without MiniLM features (what the demo can afford)",
                    False, pw, comp)
    final = fits[e]
    final.config.personal_weight, final.config.compress = pw, comp

    # ---- ERRA-LM on a test sample; every row on that same sample --------------------------------
    lm_texts = None
    if args.lm:
        lm = ExplainModel.from_pretrained(args.lm)
        greedy = dict(DECODING_GRID)["greedy_block3"]
        (lm_texts, lm_ratings), c = timed(decode, lm, lsample, greedy, progress=progress)
        m, holder = evaluate("test", lsample, lm_texts, lm_ratings)
        trust_checks["erra_lm"], faith_checks["erra_lm"] = holder["trust"], holder["checks"]
        result["models"]["erra_lm"] = {
            "label": f"ERRA-LM, SmolLM2-135M + LoRA (test sample of {len(lsample)} pairs only)",
            "test_sample": _round(m), "model_dir": str(args.lm), "decoding": "greedy_block3",
            "cpu_s_per_explanation": round(c / max(len(lsample), 1), 3),
            "note": "decoded on a seeded sample of test pairs (seed 2); compare with the lm_sample table"}
    for key, p in preds.items():
        t = [p["test"][k] for k in lpick]
        rt = [float("nan")] * len(t)
        result["lm_sample"][key] = _round(evaluate_predictions(data, lsample, t, rt,
                                                               conditioned=key != "peter"))
    if lm_texts is not None:
        result["lm_sample"]["erra_lm"] = result["models"]["erra_lm"]["test_sample"]

    # ---- what a recommender recommends: explained by the trusted explainer, timed -----------------
    result["recommended"] = explain_recommendations(ds, data, final, args.rec_users, args.rec_k)
    print(f"recommended: {result['recommended']['summary']}", file=sys.stderr, flush=True)

    # ---- targets, samples, saved explainer -----------------------------------------------------
    ref = _reference_peter(args.reference, data.report)
    result["reference_peter"] = ref
    result["targets"] = targets(result["models"], "erra_extract", ref)
    result["samples"] = samples(data, ex["test"], lpick, preds, lm_texts, trust_checks, faith_checks, args.samples)
    folder = Path(args.save_explainer) if args.save_explainer else default_model_dir(ds.name)
    saved_data = data
    if not e:  # the saved explainer rebuilds its data without sentence vectors
        saved_data = _without_embeddings(data)
    Explainer(saved_data, final).save(folder, recipe)
    if saved_data is not data:
        final.attach_data(data)
    result["explainer_dir"] = str(folder)
    result["wall_seconds"] = round(time.perf_counter() - t0, 1)
    result.update(writer.metadata())
    with writer:
        writer.write_json(f"{name}.json", result)
        writer.write_text(f"{name}.md", markdown(result))
        writer.write_text(f"{name}_samples.md", samples_markdown(result))
    print(markdown(result))
    return 0


def explain_recommendations(ds, data, model, n_users: int, k: int, seed: int = 0) -> dict[str, Any]:
    """Explain the top-``k`` EASE recommendations (leave-one-out training histories, history masked) of
    ``n_users`` seeded users with ``model``: trust measures, how many got the plain statement, and the
    time of one uncached explanation (what ``/explain`` pays per new pair).

    EASE stands in for the default engine: TextFusion needs item text, and Instruments has none.
    """
    from textrec.data.splits import make_split
    from textrec.explain.pipeline import Explainer
    from textrec.models.base import TrainView
    from textrec.models.baselines import EASE

    c0 = time.process_time()
    split = make_split(ds, "auto")
    view = TrainView.from_split(split)
    rec = EASE().fit(view, progress=False)
    fit_s = time.process_time() - c0
    exp = Explainer(data, model).warm()
    known = {str(u) for u in data.user_ids}
    table = rec.users
    rows, times = [], []
    for n in np.random.default_rng(seed).permutation(len(table.ids)).tolist():
        uid = str(table.ids[n])
        if uid not in known:
            continue
        items, _ = rec.recommend(np.asarray(table.histories[n], dtype=np.int64), k=k, user=n, exclude_history=True)
        for i in items:
            t = time.perf_counter()
            rows.append(exp.explain(uid, str(rec.catalog.ids[int(i)])))
            times.append(time.perf_counter() - t)
        if len({r["user"] for r in rows}) >= n_users:
            break
    quotes = [r for r in rows if r["kind"] == "quote"]
    tr = [r["trust"] for r in quotes]
    units = sum(t["claim_units"] for t in tr)
    ms = np.asarray(times) * 1000.0
    summary = {"users": len({r["user"] for r in rows}), "explanations": len(rows),
               "plain_statements": len(rows) - len(quotes),
               "unsupported_content": (sum(len(t["unsupported"]) for t in tr) / units) if units else 0.0,
               "grounding": float(np.mean([r["grounding"] for r in quotes])) if quotes else float("nan"),
               "personal_hit_rate": float(np.mean([bool(t["personal_aspects"]) for t in tr])) if tr else 0.0,
               "latency_ms_p50": round(float(np.percentile(ms, 50)), 2) if len(ms) else None,
               "latency_ms_p95": round(float(np.percentile(ms, 95)), 2) if len(ms) else None}
    return {"engine": "EASE (leave-one-out training histories)", "k": k, "ease_fit_cpu_s": round(fit_s, 2),
            "summary": {kk: (round(v, 4) if isinstance(v, float) else v) for kk, v in summary.items()},
            "examples": rows[:5],
            "note": "the recommended pairs have no reference review, so BLEU/ROUGE do not apply; latency is "
                    "one uncached Explainer.explain call on one thread (the server adds HTTP and JSON)"}


def _without_embeddings(data):
    """A shallow copy of ``data`` whose config says its index needs no sentence vectors."""
    import copy

    d = copy.copy(data)
    d.config = dataclasses.replace(data.config, sentence_embeddings=False)
    return d


def _item_retrieval(data, examples: Sequence) -> tuple[list[str], list[float]]:
    """The item's own training sentence closest to the pair's retrieval query (own review excluded)."""
    from textrec.text.words import words

    idx = data.index
    texts, ratings = [], []
    for e in examples:
        own = set(idx.sentences_of(e.row)) if e.row >= 0 else set()
        sids = [s for s in idx.item_sentences(e.item) if s not in own]
        if not sids:
            texts.append("")
        else:
            q = idx.query(e.user, e.item, exclude_review=e.row)
            s = sids[int(np.argmax(idx.emb[np.asarray(sids)] @ q))]
            texts.append(" ".join(words(idx.texts[s])))
        ratings.append(float("nan"))
    return texts, ratings


def _reference_peter(path: str | None, split: dict) -> dict | None:
    """The converged PETER-style test row of an earlier result on the same split (BLEU/ROUGE only)."""
    from textrec.explain.bench import same_split

    if not path or not Path(path).is_file():
        return None
    old = json.loads(Path(path).read_text(encoding="utf-8"))
    if not same_split(old.get("split"), split) or "peter" not in old.get("models", {}):
        return None
    t = old["models"]["peter"]["test"]
    return {"source": path, "bleu4": t["bleu4"], "rougeL": t["rougeL"],
            "epochs_run": old["models"]["peter"].get("epochs_run"), "note": "trained to early stopping (8 epochs)"}


def targets(models: dict, key: str, ref: dict | None) -> list[dict]:
    """The issue's targets for row ``key`` on test: unsupported <= 5%, grounding >= 0.8, personal hit
    rate above copy-retrieved's, BLEU-4 and ROUGE-L no worse than PETER-style's (this run's and, when
    given, the converged earlier one's)."""
    if key not in models:
        return []
    t = models[key]["test"]
    out = [{"target": "unsupported content <= 5% of claim units", "met": t["unsupported_content"] <= 0.05,
            "detail": f"{t['unsupported_content']:.4f}"},
           {"target": "grounding >= 0.8", "met": t["grounding"] >= 0.8, "detail": f"{t['grounding']:.4f}"}]
    if "copy" in models:
        c = models["copy"]["test"]
        out.append({"target": "personal hit rate > copy-retrieved's", "met": t["personal_hit_rate"] > c["personal_hit_rate"],
                    "detail": f"{t['personal_hit_rate']:.4f} vs {c['personal_hit_rate']:.4f}"})
    bars = []
    if "peter" in models:
        bars.append(("PETER-style (this run)", models["peter"]["test"]))
    if ref:
        bars.append(("PETER-style (converged, earlier run)", ref))
    for label, b in bars:
        for m in ("bleu4", "rougeL"):
            out.append({"target": f"{m} >= {label}", "met": t[m] >= b[m], "detail": f"{t[m]:.3f} vs {b[m]:.3f}"})
    return out


def samples(data, test: Sequence, lpick: Sequence[int], preds: dict, lm_texts, trust: dict, faith: dict,
            k: int) -> list[dict]:
    """``k`` seeded test pairs drawn from the LM sample, with every row's explanation and checks."""
    rng = np.random.default_rng(3)
    where = sorted(rng.choice(len(lpick), size=min(k, len(lpick)), replace=False).tolist())
    out = []
    for w in where:
        j = lpick[w]
        e = test[j]
        rows: dict[str, dict] = {}
        for key, p in preds.items():
            rows[key] = _sample_row(p["test"][j], trust[key].checks[j], faith[key].grounding[j])
        if lm_texts is not None:
            rows["erra_lm"] = _sample_row(lm_texts[w], trust["erra_lm"].checks[w], faith["erra_lm"].grounding[w])
        out.append({"user": str(data.user_ids[e.user]), "item": str(data.item_ids[e.item]),
                    "selected_aspects": list(e.aspects), "reference": e.target, "rows": rows})
    return out


def _sample_row(text: str, check, g: float) -> dict:
    return {"text": text, "unsupported": check.unsupported, "aspects": check.aspects, "personal": check.personal,
            "grounding": None if g is None or math.isnan(g) else round(float(g), 3)}


def markdown(result: dict) -> str:
    """The tables (test, valid, the LM sample), the extractive choice and the targets."""
    models = result["models"]
    head = ["| row | " + " | ".join(TABLE) + " |", "|---|" + "---:|" * len(TABLE)]
    lines = []
    for part in ("test", "valid"):
        lines += [f"**{result['dataset']} — {part}** ({result['evaluated'][part]} explanations, one seed; "
                  "BLEU/ROUGE ×100; DIV lower is better; unsupported = share of claim units in none of the "
                  "item's training reviews)", ""] + head
        for row in models.values():
            if part in row:
                lines.append(f"| {row['label']} | " + " | ".join(_fmt(k, row[part].get(k)) for k in TABLE) + " |")
        lines.append("")
    if result.get("lm_sample"):
        lines += [f"**Same {result['evaluated']['lm_test_sample']} test pairs for every row** (the ERRA-LM sample)",
                  ""] + head
        for key, m in result["lm_sample"].items():
            lines.append(f"| {models.get(key, {}).get('label', key)} | " + " | ".join(_fmt(k, m.get(k)) for k in TABLE)
                         + " |")
        lines.append("")
    ch = models.get("erra_extract", {}).get("choice")
    if ch:
        lines += [f"Extractive settings chosen on {result['evaluated']['valid_sample_for_choices']} valid pairs: "
                  f"`{ch['chosen']}` ({ch['rule']}); copy-retrieved there: personal hit rate "
                  f"{ch['copy_on_valid_sample']['personal_hit_rate']:.3f}.", ""]
    rec = result.get("recommended")
    if rec:
        r = rec["summary"]
        lines += [f"**What {rec['engine']} recommends** (top {rec['k']} of {r['users']} users, {r['explanations']} "
                  f"explanations by ERRA-Extract): unsupported content {r['unsupported_content']:.3f}, grounding "
                  f"{r['grounding']:.3f}, personal hit rate {r['personal_hit_rate']:.3f}, plain statements (item with "
                  f"too few reviews) {r['plain_statements']}; one uncached explanation p50 {r['latency_ms_p50']} ms, "
                  f"p95 {r['latency_ms_p95']} ms.", ""]
    if result.get("targets"):
        lines += ["**Targets (test, ERRA-Extract)**", ""]
        lines += [f"- {t['target']}: **{'met' if t['met'] else 'missed'}** ({t['detail']})" for t in result["targets"]]
    if "date" in result:
        lines += ["", metadata_line(result)]
    return "\n".join(lines) + "\n"


def samples_markdown(result: dict) -> str:
    """Every row's explanation of the same random test pairs, with its unsupported words and aspects."""
    labels = {k: v["label"] for k, v in result["models"].items()}
    lines = [f"# Explanations side by side — {result['dataset']} test, {len(result['samples'])} random pairs", "",
             "Drawn (seed 3) from the seeded ERRA-LM test sample, so every row is present. After each "
             "explanation: `unsupported` = claim words/aspects found in none of the item's training reviews; "
             "`personal` = named aspects this user wrote about in training reviews; `g` = grounding in its "
             "citations.", ""]
    for n, s in enumerate(result["samples"], 1):
        lines += [f"## {n}. user `{s['user']}`, item `{s['item']}` (selected aspects: {', '.join(s['selected_aspects'])})",
                  "", f"- **reference (the held-out review)**: {s['reference']}"]
        for key, r in s["rows"].items():
            marks = [f"g {r['grounding']:.2f}" if r["grounding"] is not None else "g –"]
            marks.append(f"unsupported: {', '.join(r['unsupported'])}" if r["unsupported"] else "unsupported: none")
            marks.append(f"personal: {', '.join(r['personal'])}" if r["personal"] else "personal: none")
            lines.append(f"- **{labels.get(key, key)}**: {r['text']} ({'; '.join(marks)})")
        lines.append("")
    return "\n".join(lines)
