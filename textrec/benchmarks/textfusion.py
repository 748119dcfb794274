"""``textrec bench textfusion``: TextFusion beside the tuned baselines, one mode per table.

  quality     textrec bench textfusion quality --dataset scientific --n-seeds 3 --epochs 10 --publish
              the dataset's own split (``auto``: published files where they exist, else leave-one-out):
              Popularity, EASE, ItemKNN, MarkovChain (their L2/k/shrink/... tuned on valid), TextKNN
              (with text), SASRec and TextFusion with the recipe derived from the data, side by side;
              TextFusion per seed and as a mean with standard error; train CPU seconds and peak
              memory of SASRec and TextFusion at the same epoch cap.
  new-items   textrec bench textfusion new-items --dataset scientific --n-seeds 2
              seeded new-item split (20% of items never in training): new-item and warm-item rows for
              Popularity, EASE, TextKNN and TextFusion (+ ablations of its mix).
  codes       textrec bench textfusion codes --dataset scientific
              code collisions/usage and the code-kNN new-item quality for K in --k-grid (valid only).
  efficiency  textrec bench textfusion efficiency --dataset scientific --source office ml-100k
              pretrain once on the source domains, then per share of the target's training users:
              EASE, TextFusion from scratch, pretrained + fine-tuned (same test rows).

Every choice (baseline grids, EASE's L2, the fusion mix, early stopping) is made on valid; test is
computed once per model. Item text comes from ``textrec.data.item_text.choose_item_text``
(catalog text; else training-period review summaries; else none: ID + co-occurrence only).
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from textrec.data.item_text import SOURCES, choose_item_text
from textrec.data.splits import Split, make_split
from textrec.evaluation import evaluate
from textrec.models.base import TrainView
from textrec.models.fusion import DEFAULT_MIX, TextFusionRec
from textrec.models.transfer import subset_split
from textrec.options import (
    add_dataset_options,
    add_progress_option,
    add_recipe_options,
    add_seed_option,
    add_threads_option,
    fraction,
    load_dataset_from_args,
    parse_grids,
    positive_float,
    positive_int,
    progress,
    recipe_from_args,
)
from textrec.results import (
    add_output_options,
    markdown_table,
    metadata_line,
    published_result,
    writer_from_args,
)

KEYS = ("hr@10", "recall@10", "ndcg@10", "mrr@10", "hr@20", "recall@20", "ndcg@20")
#: baselines tuned on valid in the quality table (SASRec and TextKNN are added separately)
TUNED_BASELINES = ("EASE", "ItemKNN", "MarkovChain")
#: the domains whose item text can train the quantizer (codes mode)
CORPUS = ["scientific", "office", "ml-100k"]


# ---- measuring one model -----------------------------------------------------------------------
def _rss_mb() -> float:
    """Resident memory of this process now (MB), from /proc (0 where unavailable)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        import os

        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


class PeakMemory:
    """Samples this process's resident memory every ``interval`` seconds while active.

    ``peak_mb`` is the highest sample (the process's memory during the block, including what it
    held before); ``added_mb`` is the peak minus the memory at the start (what the block needed).
    """

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.start_mb = self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_mb = max(self.peak_mb, _rss_mb())

    def __enter__(self) -> PeakMemory:
        self.start_mb = self.peak_mb = _rss_mb()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_mb = max(self.peak_mb, _rss_mb())

    @property
    def added_mb(self) -> float:
        return max(0.0, self.peak_mb - self.start_mb)


def _short(metrics: dict[str, float] | None) -> dict[str, float] | None:
    if metrics is None:
        return None
    out = {k: round(float(metrics[k]), 5) for k in KEYS if k in metrics}
    if "n_rows" in metrics:
        out["n_rows"] = int(metrics["n_rows"])
    return out


def measure(model, split: Split, show: bool = False) -> dict[str, Any]:
    """Fit on train (valid for selection), evaluate valid and test; train wall/CPU seconds, memory.

    The same steps as :func:`textrec.evaluation.run_protocol` (the valid event appended to test
    histories, history masked, full catalog), with the training cost measured around ``fit``.
    """
    view = TrainView.from_split(split, with_text=model.scores_new_items)
    with PeakMemory() as mem:
        t0, c0 = time.perf_counter(), time.process_time()
        model.fit(view, progress=show)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    kw = {"popularity": split.item_popularity(), "dataset": split.dataset}
    valid = evaluate(model, split.valid, split.n_items, **kw)
    test = evaluate(model, split.test, split.n_items, **kw)
    row: dict[str, Any] = {"valid": _short(valid.metrics), "test": _short(test.metrics),
                           "train_seconds": round(wall, 1), "train_cpu_seconds": round(cpu, 1),
                           "train_peak_rss_mb": round(mem.peak_mb, 1), "train_added_rss_mb": round(mem.added_mb, 1)}
    for part, res, ev in (("valid", valid, split.valid), ("test", test, split.test)):
        if ev.is_new is not None:
            row[f"{part}_new"] = _short({**res.subset(ev.is_new), "n_rows": int(ev.is_new.sum())})
            row[f"{part}_warm"] = _short({**res.subset(~ev.is_new), "n_rows": int((~ev.is_new).sum())})
    history = getattr(model, "history", None)
    if isinstance(history, list):
        row["epochs_run"] = len(history)
    return row


def _eval_row(model, split: Split, valid: bool = True) -> dict[str, Any]:
    """Valid/test rows of an already fitted model (ablations of the mix: no retraining)."""
    test = evaluate(model, split.test, split.n_items)
    row: dict[str, Any] = {"test": _short(test.metrics)}
    if valid:
        row["valid"] = _short(evaluate(model, split.valid, split.n_items).metrics)
    if split.test.is_new is not None:
        tn = split.test.is_new
        row.update({"test_new": _short({**test.subset(tn), "n_rows": int(tn.sum())}),
                    "test_warm": _short({**test.subset(~tn), "n_rows": int((~tn).sum())})})
    return row


# ---- baselines ---------------------------------------------------------------------------------
def baseline_params(name: str, dataset: str, split: Split, how: str, grids: dict[str, dict[str, list]],
                    show: bool) -> tuple[dict, dict[str, Any]]:
    """Parameters of a tuned baseline: chosen on valid here (``tune``), or the ones the committed
    ``eval/results/baselines_<dataset>.json`` chose on valid of the same split (``published``,
    falling back to tuning when that file or row is missing)."""
    from textrec.bench import tune

    if how == "published" and name not in grids:
        pub = published_result(f"baselines_{dataset}.json")
        row = (pub or {}).get("models", {}).get(name)
        if row is not None and pub.get("split", {}).get("kind") == split.kind and row.get("params") is not None:
            return dict(row["params"]), {"params_from": f"eval/results/baselines_{dataset}.json (tuned on valid)"}
    # a grid given on the command line is searched as given (no widening at its edges): it is sized to a budget
    params, table = tune(name, split, progress=show, grid=grids.get(name), max_widen=0 if name in grids else 2)
    return params, {"params_from": "grid search on valid in this run" + (" (grid as given)" if name in grids else ""),
                    "tuning": [{k: r[k] for k in ("params", "ndcg@10") if k in r} for r in table]}


def baseline_rows(split: Split, text_split: Split, args: argparse.Namespace, seeds: list[int],
                  with_text: bool) -> dict[str, Any]:
    """Popularity, the tuned baselines, TextKNN (with text) and SASRec (``--sasrec-seeds``) rows."""
    from textrec.bench import make_model
    from textrec.models.baselines import Popularity

    show = progress(args)
    grids = parse_grids(args.grid)
    rows: dict[str, Any] = {}
    rows["Popularity"] = measure(Popularity(), split)
    for name in TUNED_BASELINES:
        if name in args.skip_baselines:
            continue
        params, how = baseline_params(name, split.dataset.name, split, args.baseline_params, grids, show)
        t0 = time.perf_counter()
        rows[name] = {**measure(make_model(name, params), split), "params": params, **how}
        print(f"{name} {params}: test {rows[name]['test']} ({time.perf_counter() - t0:.0f}s)", flush=True)
    if with_text and "TextKNN" not in args.skip_baselines:
        from textrec.models.text_knn import TextKNN

        rows["TextKNN"] = measure(TextKNN(), text_split)
    if args.sasrec_seeds:
        from textrec.models.sasrec import SASRec

        for seed in seeds[: args.sasrec_seeds]:
            model = SASRec.from_recipe("sasrec", seed=seed, max_epochs=args.epochs)
            row = measure(model, split, show)
            rows[f"SASRec seed {seed}"] = {**row, "epoch_cap": args.epochs,
                                           "training_history": getattr(model, "history", None)}
            print(f"SASRec seed {seed}: test {row['test']} ({row['train_cpu_seconds']} CPU s, "
                  f"{row.get('epochs_run')} epochs)", flush=True)
    return rows


# ---- TextFusion ----------------------------------------------------------------------------------
def fusion_model(view: TrainView, args: argparse.Namespace, seed: int, coverage: float,
                 trainer: dict[str, Any] | None = None) -> tuple[TextFusionRec, dict[str, Any]]:
    """TextFusion with the recipe derived from ``view`` (``--epochs`` caps it)."""
    from textrec.models.fusion_recipe import derive_recipe

    recipe = recipe_from_args(args, "sequential")
    options, report = derive_recipe(view, recipe, coverage=coverage)
    options["trainer"] = {**options["trainer"], **(trainer or {})}
    if getattr(args, "tune_objective", None):
        options["tune_objective"] = args.tune_objective
    model = TextFusionRec.from_recipe(recipe, seed=seed, max_epochs=args.epochs, **options)
    return model, {"derived": {k: v for k, v in options.items()}, "data": report}


def mean_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and standard error (std / sqrt(n), ddof 1) over seed rows, per metric and part."""
    out: dict[str, Any] = {"n_seeds": len(rows)}
    for part in ("valid", "test", "valid_new", "valid_warm", "test_new", "test_warm"):
        vals = [r[part] for r in rows if r.get(part)]
        if not vals:
            continue
        keys = [k for k in vals[0] if k != "n_rows"]
        out[part] = {k: round(float(np.mean([v[k] for v in vals])), 5) for k in keys}
        if len(vals) > 1:
            out[part + "_se"] = {k: round(float(np.std([v[k] for v in vals], ddof=1) / np.sqrt(len(vals))), 5)
                                 for k in keys}
    for key in ("train_seconds", "train_cpu_seconds", "train_peak_rss_mb", "train_added_rss_mb", "epochs_run"):
        vals = [r[key] for r in rows if r.get(key) is not None]
        if vals:
            out[key] = round(float(np.mean(vals)), 1)
    return out


def _save_partial(name: str, rows: dict[str, Any]) -> None:
    """The rows measured so far, to ``runs/<name>.part.json``: a run cut short keeps what it measured."""
    from textrec.io import write_json

    write_json(Path("runs") / f"{name}.part.json", {"models": rows, "note": "partial: the run had not finished"})


def _seeds(args: argparse.Namespace) -> list[int]:
    return [args.seed + i for i in range(args.n_seeds)]


def _text_split(split: Split, args: argparse.Namespace) -> tuple[Split, dict[str, Any], float]:
    """The split with its item text chosen (``--item-text``), the report, and the text coverage."""
    from textrec.models.fusion_recipe import text_coverage

    text_split, report = choose_item_text(split, args.item_text)
    coverage = 0.0 if report["source"] == "none" else text_coverage(text_split.dataset.item_text())
    report["coverage"] = round(coverage, 4)
    return text_split, report, coverage


# ---- modes ---------------------------------------------------------------------------------------
def run_quality(args: argparse.Namespace) -> dict[str, Any]:
    """TextFusion (n seeds) beside the tuned baselines and SASRec on the dataset's own split."""
    ds = load_dataset_from_args(args)
    split = make_split(ds, args.split)
    text_split, text_report, coverage = _text_split(split, args)
    seeds = _seeds(args)
    rows = baseline_rows(split, text_split, args, seeds, with_text=coverage > 0)
    _save_partial(f"textfusion_{ds.name}", rows)
    view = TrainView.from_split(text_split, with_text=True)
    fusion: list[dict[str, Any]] = []
    recipe_report: dict[str, Any] = {}
    for seed in seeds:
        model, recipe_report = fusion_model(view, args, seed, coverage)
        row = measure(model, text_split, progress(args))
        row.update({"text": model.text_report, "ease": model.ease_report, "transitions": model.trans_report,
                    "mix": model.mix_report,
                    "config": model.get_config(), "training_history": model.history})
        if seed == seeds[0] and not args.no_ablations:
            tuned = dict(model.mix)
            for name, mix in (("sequential part only", dict(DEFAULT_MIX)), ("mix without EASE", {**tuned, "lam": 0.0}),
                              ("mix without transitions", {**tuned, "nu": 0.0}),
                              ("mix without the text term", {**tuned, "rho": 0.0})):
                if mix == tuned:  # the tuned mix already leaves that part out: the row is the model's own
                    continue
                model.mix = mix
                rows[f"TextFusion seed {seed}: {name}"] = {**_eval_row(model, text_split, valid=True),
                                                           "mix": mix, "ablation_of": f"TextFusion seed {seed}"}
            model.mix = tuned
        rows[f"TextFusion seed {seed}"] = row
        fusion.append(row)
        _save_partial(f"textfusion_{ds.name}", rows)
        print(f"TextFusion seed {seed}: valid {row['valid']['ndcg@10']} test {row['test']} mix {model.mix} "
              f"({row['train_cpu_seconds']} CPU s, {row.get('epochs_run')} epochs)", flush=True)
    mean = mean_rows(fusion)
    rows["TextFusion (mean)"] = mean
    sasrec = [r for k, r in rows.items() if k.startswith("SASRec seed")]
    if sasrec:
        rows["SASRec (mean)"] = mean_rows(sasrec)
    targets = quality_targets(rows, mean, args.epochs)
    return {"name": args.name or f"textfusion_{ds.name}", "benchmark": "textfusion_quality", "dataset": ds.name,
            "split": split.describe(), "item_text": text_report, "recipe": recipe_report,
            "seeds": seeds, "sasrec_seeds": seeds[: args.sasrec_seeds], "epoch_cap": args.epochs,
            "models": rows, "targets": targets}


def quality_targets(rows: dict[str, Any], mean: dict[str, Any], epoch_cap: int | None) -> dict[str, Any]:
    """Issue 25's targets: >= 1.05x the best baseline (test N@10 and HR@10, seed mean), and train
    CPU <= 2x SASRec's at the same epoch cap."""
    base = {k: v for k, v in rows.items() if not k.startswith(("TextFusion", "SASRec seed")) and v.get("test")}
    if not base or not mean.get("test"):
        return {}
    best = max(base, key=lambda k: base[k]["test"]["ndcg@10"])
    by_valid = max(base, key=lambda k: (base[k].get("valid") or {}).get("ndcg@10", -1))
    b = base[best]["test"]
    out: dict[str, Any] = {
        "quality_goal": "TextFusion test NDCG@10 and HR@10 (mean over seeds) >= 1.05x the best baseline",
        "best_baseline_on_test": best, "best_baseline_by_valid": by_valid,
        "ndcg@10": {"textfusion": mean["test"]["ndcg@10"], "se": (mean.get("test_se") or {}).get("ndcg@10"),
                    "best_baseline": b["ndcg@10"], "ratio": round(mean["test"]["ndcg@10"] / b["ndcg@10"], 3)},
        "hr@10": {"textfusion": mean["test"]["hr@10"], "se": (mean.get("test_se") or {}).get("hr@10"),
                  "best_baseline": b["hr@10"], "ratio": round(mean["test"]["hr@10"] / b["hr@10"], 3)}}
    out["quality_met"] = bool(out["ndcg@10"]["ratio"] >= 1.05 and out["hr@10"]["ratio"] >= 1.05)
    # cost: the first seed of each (later TextFusion seeds reuse the EASE matrices of the first)
    sas = next((r for k, r in rows.items() if k.startswith("SASRec seed")), None)
    tf = next((r for k, r in rows.items() if k.startswith("TextFusion seed") and ":" not in k), None)
    if sas is not None and tf is not None and sas.get("train_cpu_seconds") is not None:
        ratio = tf["train_cpu_seconds"] / max(sas["train_cpu_seconds"], 0.1)
        out["cost_goal"] = f"TextFusion train CPU seconds <= 2x SASRec's at the same epoch cap ({epoch_cap})"
        out["cost"] = {"textfusion_train_cpu_seconds": tf["train_cpu_seconds"],
                       "sasrec_train_cpu_seconds": sas["train_cpu_seconds"], "ratio": round(ratio, 2),
                       "textfusion_epochs_run": tf.get("epochs_run"), "sasrec_epochs_run": sas.get("epochs_run"),
                       "textfusion_train_added_rss_mb": tf.get("train_added_rss_mb"),
                       "sasrec_train_added_rss_mb": sas.get("train_added_rss_mb"),
                       "note": "first seed of each; TextFusion's includes its EASE grid, quantizer and mix search; "
                               "item texts are MiniLM-encoded once per catalog and read from the disk cache after"}
        out["cost_met"] = bool(ratio <= 2.0)
    return out


def quality_markdown(out: dict[str, Any]) -> str:
    """The quality table as Markdown (one row per model; TextFusion's mean with its standard error)."""
    def metric(part: str, key: str):
        def get(r):
            v = r[part][key]
            se = (r.get(part + "_se") or {}).get(key)
            return f"{v:.4f}" + (f" ± {se:.4f}" if se is not None else "")
        return get

    cols = [("valid N@10", lambda r: r["valid"]["ndcg@10"], ".4f"), ("test N@10", metric("test", "ndcg@10"), ""),
            ("test HR@10", metric("test", "hr@10"), ""), ("train CPU s", lambda r: r.get("train_cpu_seconds"), ""),
            ("train peak MB (added)", lambda r: f"{r['train_peak_rss_mb']:.0f} (+{r['train_added_rss_mb']:.0f})", "")]
    rows = [(k, v) for k, v in out["models"].items() if ":" not in k]
    t = out.get("targets", {})
    lines = [f"# TextFusion on {out['dataset']} ({out['split'].get('kind')} split)", "",
             f"Item text: {out['item_text'].get('source')} (coverage {out['item_text'].get('coverage')}). "
             f"Seeds {out['seeds']} (SASRec {out['sasrec_seeds']}); epoch cap {out['epoch_cap']} for both.", "",
             markdown_table(rows, cols)]
    if t:
        lines.append(f"Best baseline on test: {t['best_baseline_on_test']}; N@10 ratio {t['ndcg@10']['ratio']}, "
                     f"HR@10 ratio {t['hr@10']['ratio']} (target 1.05: {'met' if t['quality_met'] else 'missed'}).")
        if "cost" in t:
            lines.append(f"Train CPU vs SASRec: {t['cost']['ratio']}x (target <= 2: "
                         f"{'met' if t['cost_met'] else 'missed'}).")
    lines += ["", metadata_line(out)]
    return "\n".join(lines) + "\n"


def run_new_items(args: argparse.Namespace) -> dict[str, Any]:
    """New-item split: new and warm rows for Popularity, EASE, TextKNN and TextFusion (+ mix ablations)."""
    from textrec.bench import tune
    from textrec.models.baselines import EASE, Popularity
    from textrec.models.text_knn import TextKNN

    ds = load_dataset_from_args(args)
    split = make_split(ds, "new_item", frac=args.frac, seed=args.split_seed)
    text_split, text_report, coverage = _text_split(split, args)
    if coverage == 0:
        raise ValueError(f"new-items needs item text; dataset '{ds.name}' has none")
    seeds = _seeds(args)
    params, _ = tune("EASE", split, progress=False, grid=parse_grids(args.grid).get("EASE"))
    rows: dict[str, Any] = {"Popularity": measure(Popularity(), split),
                            "EASE": {**measure(EASE(**params), split), "params": params},
                            "TextKNN": measure(TextKNN(), text_split)}
    view = TrainView.from_split(text_split, with_text=True)
    fusion = []
    for seed in seeds:
        model, recipe_report = fusion_model(view, args, seed, coverage, trainer={"catalog": "train"})
        if not args.tune_objective:
            model.tune_objective = "balanced"
        row = measure(model, text_split, progress(args))
        row.update({"mix": model.mix_report, "ease": model.ease_report, "recipe": recipe_report})
        rows[f"TextFusion seed {seed}"] = row
        fusion.append(row)
        tuned = dict(model.mix)
        for name, mix in (("sequential part only", dict(DEFAULT_MIX)),
                          ("mix without text cosine", {**tuned, "mu": 0.0, "mu_cold": 0.0}),
                          ("mix without cold offset", {**tuned, "cold_offset": 0.0})):
            model.mix = mix
            rows[f"TextFusion seed {seed}: {name}"] = {**_eval_row(model, text_split, valid=False), "mix": mix}
        model.mix = tuned
        print(f"TextFusion seed {seed}: new {row.get('test_new')} warm {row.get('test_warm')}", flush=True)
    mean = mean_rows(fusion)
    rows["TextFusion (mean)"] = mean
    tk = rows["TextKNN"]["test_new"]["recall@10"]
    ease_warm = rows["EASE"]["test_warm"]["recall@10"]
    new, warm = mean["test_new"]["recall@10"], mean["test_warm"]["recall@10"]
    targets = {"goal": "new-item R@10 >= 1.3x TextKNN; warm R@10 >= EASE's warm R@10 (same split)",
               "new_recall@10": new, "warm_recall@10": warm, "new_over_textknn": round(new / tk, 3),
               "warm_over_ease_warm": round(warm / ease_warm, 3),
               "met": bool(new / tk >= 1.3 and warm >= ease_warm)}
    return {"name": args.name or f"textfusion_new_items_{ds.name}", "benchmark": "textfusion_new_items",
            "dataset": ds.name, "split": split.describe(), "item_text": text_report, "seeds": seeds,
            "epoch_cap": args.epochs, "models": rows, "targets": targets}


def run_codes(args: argparse.Namespace) -> dict[str, Any]:
    """Code statistics and code-kNN new-item quality by K and quantizer corpus (valid only, no training)."""
    import torch.nn.functional as F

    from textrec.models.text_knn import TextKNN
    from textrec.text.quantize import ProductQuantizer, code_stats

    ds = load_dataset_from_args(args)
    split = make_split(ds, "new_item", frac=args.frac, seed=args.split_seed)
    view = TrainView.from_split(split, with_text=True)
    helper = TextFusionRec(code_corpus=CORPUS)
    emb = helper.embed(view.item_text, progress=progress(args))
    train_items = np.flatnonzero(view.popularity() > 0)
    corpus = helper.embed(helper.corpus_texts(exclude=ds.name), progress=progress(args))

    def knn_rows(vectors: np.ndarray, evalset) -> dict[str, Any]:
        m = TextKNN()
        m.item_emb = F.normalize(torch.from_numpy(vectors.astype(np.float32)), dim=1)
        res = evaluate(m, evalset, split.n_items)
        return {"all": _short(res.metrics), "new": _short({**res.subset(evalset.is_new),
                                                           "n_rows": int(evalset.is_new.sum())})}

    rows: dict[str, Any] = {"full MiniLM vectors (TextKNN)": {"valid": knn_rows(emb, split.valid)}}
    keep = ("n_distinct_codes", "n_colliding_items", "n_collision_groups", "largest_collision_group",
            "collision_rate", "mean_usage", "min_usage", "mean_entropy_norm")
    for corpus_name, extra in (("target training items", None), ("all domains", corpus)):
        for k in args.k_grid:
            t0 = time.perf_counter()
            q = ProductQuantizer(args.subvectors, k, opq=k >= 16, seed=0, small_catalog="keep")
            q.fit(emb[train_items], extra_embeddings=extra)
            codes = q.encode(emb)
            new = np.setdiff1d(np.arange(len(emb)), train_items)
            stats, new_stats = code_stats(codes, q.n_centroids_), code_stats(codes[new], q.n_centroids_)
            rows[f"K={k}, quantizer on {corpus_name}"] = {
                "K": q.n_centroids_, "n_train_vectors": q.report["n_train"],
                "reconstruction_mse": round(q.report["reconstruction_mse"], 5),
                "codes_all_items": {k2: stats[k2] for k2 in keep}, "codes_new_items": {k2: new_stats[k2] for k2 in keep},
                "code_knn_valid": knn_rows(q.decode(codes), split.valid), "seconds": round(time.perf_counter() - t0, 1)}
    return {"name": args.name or f"textfusion_codes_{ds.name}", "benchmark": "textfusion_codes", "dataset": ds.name,
            "split": split.describe(), "corpus_domains": CORPUS, "n_corpus_texts": int(len(corpus)),
            "note": "valid rows only: a choice of K is made here, so test is not read", "models": rows}


def fine_tune_epochs(frac: float, cap: int | None, full_equiv: float | None) -> int | None:
    """Epoch cap of one run on a ``frac`` share of users: ``ceil(full_equiv / frac)`` (about
    ``full_equiv`` full-data epochs of steps), at most ``cap``; ``None``: the recipe's cap."""
    if full_equiv is None:
        return cap
    n = int(np.ceil(full_equiv / frac - 1e-9))
    return n if cap is None else min(n, cap)


def run_efficiency(args: argparse.Namespace) -> dict[str, Any]:
    """Pretrain on the source domains, then per share of target training users: EASE, TextFusion
    from scratch, TextFusion warm-started from the pretrained model (same test rows)."""
    from textrec.bench import tune
    from textrec.data.registry import load_dataset
    from textrec.models.baselines import EASE

    show = progress(args)
    sources = [TrainView.from_split(make_split(load_dataset(n, data_root=args.data_root), "auto"), with_text=True)
               for n in args.source]
    t0, c0 = time.perf_counter(), time.process_time()
    pre = TextFusionRec.from_recipe(args.recipe, seed=args.seed, max_epochs=args.pretrain_epochs, tune_mix=False)
    pre.pretrain(sources, progress=show)
    pretrain = {"domains": args.source, "seconds": round(time.perf_counter() - t0, 1),
                "cpu_seconds": round(time.process_time() - c0, 1), "history": pre.history, "codes": pre.code_report}
    full = make_split(load_dataset_from_args(args), "auto")
    rows: dict[str, Any] = {}
    targets: dict[str, Any] = {}
    for frac in args.fractions:
        epochs = fine_tune_epochs(frac, args.epochs, args.epochs_full_equiv)
        for seed in _seeds(args):
            split = subset_split(full, frac, seed)
            params, _ = tune("EASE", split, progress=False, grid=parse_grids(args.grid).get("EASE"))
            tag = f"{int(frac * 100)}% users, seed {seed}"
            opts = {"seed": seed, "max_epochs": epochs, "ease_lam": float(params["lam"])}
            for name, model in (("EASE", EASE(**params)),
                                ("TextFusion scratch", TextFusionRec.from_recipe(args.recipe, **opts)),
                                ("TextFusion pretrained+fine-tuned",
                                 TextFusionRec.from_recipe(args.recipe, **opts).warm_start(pre))):
                rows[f"{tag}: {name}"] = {**measure(model, split, show), "train_users_frac": frac, "seed": seed,
                                          "epoch_cap": epochs}
                print(f"{tag} {name}: test {rows[f'{tag}: {name}']['test']}", flush=True)

        def mean(suffix: str, frac: float = frac) -> float:
            vals = [r["test"]["ndcg@10"] for k, r in rows.items()
                    if k.startswith(f"{int(frac * 100)}% users") and k.endswith(suffix)]
            return float(np.mean(vals)) if vals else float("nan")

        pt, sc, ea = mean("pretrained+fine-tuned"), mean("scratch"), mean(": EASE")
        targets[f"{int(frac * 100)}%"] = {"pretrained_over_scratch_ndcg@10": round(pt / sc, 3),
                                          "pretrained_over_ease_ndcg@10": round(pt / ea, 3),
                                          "met": bool(pt / sc >= 1.2 and pt >= ea)}
    return {"name": args.name or f"textfusion_efficiency_{full.dataset.name}", "benchmark": "textfusion_efficiency",
            "dataset": full.dataset.name, "split": full.describe(), "pretrain": pretrain, "models": rows,
            "targets": {"goal": "pretrained+fine-tuned >= 1.2x scratch and >= EASE on the same subset", **targets}}


# ---- command line ----------------------------------------------------------------------------------
def add_arguments(ap: argparse.ArgumentParser) -> None:
    """Arguments of ``textrec bench textfusion``."""
    ap.description = __doc__
    ap.formatter_class = argparse.RawDescriptionHelpFormatter
    ap.add_argument("mode", nargs="?", default="quality", choices=["quality", "new-items", "codes", "efficiency"])
    add_dataset_options(ap)
    ap.add_argument("--split", default="auto", choices=["auto", "leave_one_out", "published", "temporal"],
                    help="quality: the split (default: the dataset's own files, else leave-one-out)")
    ap.add_argument("--item-text", default="auto", choices=SOURCES,
                    help="where item text comes from (auto: catalog, else training-period reviews, else none)")
    add_recipe_options(ap, "fusion")  # --recipe NAME|PATH and --set key=value (quality and new-items)
    add_seed_option(ap)
    ap.add_argument("--n-seeds", type=positive_int, default=1, help="TextFusion seeds: --seed, --seed+1, ...")
    ap.add_argument("--sasrec-seeds", type=int, default=1, choices=range(0, 11), metavar="N",
                    help="quality: SASRec runs (the first N seeds; 0 = none), same epoch cap (default 1)")
    ap.add_argument("--epochs", type=positive_int, default=None,
                    help="epoch cap for TextFusion and SASRec alike (default: the derived recipe / SASRec recipe)")
    ap.add_argument("--baseline-params", default="published", choices=["published", "tune"],
                    help="quality: baseline parameters from eval/results/baselines_<dataset>.json (chosen on valid "
                         "of the same split) or a grid search on valid now (default published, tune when absent)")
    ap.add_argument("--grid", action="append", metavar="MODEL.param=v1,v2",
                    help="replace a baseline's grid (tuned here), e.g. MarkovChain.L=5,10 (repeatable)")
    ap.add_argument("--skip-baselines", nargs="*", default=[], help="quality: baselines to leave out")
    ap.add_argument("--no-ablations", action="store_true", help="quality: no mix ablation rows")
    ap.add_argument("--tune-objective", choices=["rows", "balanced"], default=None,
                    help="override the derived mix objective")
    ap.add_argument("--frac", type=fraction, default=0.2, help="new-items/codes: held-out share of items")
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--k-grid", type=positive_int, nargs="+", default=[16, 64, 128, 256])
    ap.add_argument("--subvectors", type=positive_int, default=32)
    ap.add_argument("--source", nargs="+", default=["office", "ml-100k"], help="efficiency: pretraining domains")
    ap.add_argument("--fractions", type=fraction, nargs="+", default=[0.1, 0.25])
    ap.add_argument("--pretrain-epochs", type=positive_int, default=None)
    ap.add_argument("--epochs-full-equiv", type=positive_float, default=None,
                    help="efficiency: cap each run at ceil(x / fraction) epochs")
    ap.add_argument("--name", default=None, help="result file stem (default: per mode and dataset)")
    add_threads_option(ap)
    add_progress_option(ap)
    add_output_options(ap, "textfusion")


def run(args: argparse.Namespace) -> int:
    """Run one mode; write its JSON (and the quality table as Markdown)."""
    t0 = time.perf_counter()
    mode = {"quality": run_quality, "new-items": run_new_items, "codes": run_codes,
            "efficiency": run_efficiency}[args.mode]
    torch.manual_seed(args.seed)
    out = mode(args)
    name = out.pop("name")
    writer = writer_from_args(args, "textfusion")
    writer.started = t0
    with writer:
        writer.write_json(f"{name}.json", out)
        if args.mode == "quality":
            writer.write_text(f"{name}.md", quality_markdown({**out, **writer.metadata()}))
    print(f"wrote {Path(writer.final_path(name + '.json'))}")
    return 0
