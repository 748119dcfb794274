"""``textrec bench vqrec MODE``: VQ-Rec benchmarks, one mode per run; JSON through the result writer.

  scratch    textrec bench vqrec scratch --dataset scientific [--id-residual] [--epochs N]
             VQ-Rec from scratch (recipe vqrec_scratch) next to the core baselines of
             eval/results/baselines_<dataset>.json (same split, same harness).
  new-items  textrec bench vqrec new-items --dataset scientific [--frac 0.2]
             seeded new-item split: new-item and warm-item rows for VQ-Rec (codes only, and
             codes + ID residual), text-kNN, Popularity, and ID-SASRec (warm only: it cannot
             score an item it never saw). Models never see a new item, not even as a negative.
  transfer   textrec bench vqrec transfer --source ml-100k instruments --target scientific
             pretrain on the source domains (recipe vqrec_pretrain), then on the target:
             zero-shot, fine-tuned code tables, + permutation, + transformer, vs from scratch.
  speed      textrec bench vqrec speed --dataset ml-100k [--n-synthetic 100000]
             seconds per epoch and inference users/s of VQ-Rec vs ID-SASRec in one run, and
             the time to build codes (encode + OPQ/PQ fit + encode) for synthetic item texts.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from textrec.data.splits import make_split
from textrec.evaluation import evaluate, run_protocol
from textrec.models.base import TrainView
from textrec.options import (
    add_dataset_options,
    add_progress_option,
    add_seed_option,
    add_threads_option,
    fraction,
    load_dataset_from_args,
    non_negative_float,
    positive_int,
)
from textrec.recipes import load_recipe
from textrec.results import add_output_options, published_result, writer_from_args
from textrec.vqrec.model import VQRec

KEYS = ("hr@10", "recall@10", "ndcg@10", "mrr@10")


def _vqrec(recipe: str, args: argparse.Namespace, **options: Any) -> VQRec:
    trainer = {"catalog": options.pop("catalog")} if "catalog" in options else {}
    return VQRec.from_recipe(recipe, seed=args.seed, max_epochs=args.epochs,
                             trainer=trainer, **options)


def _short(metrics: dict[str, float]) -> dict[str, float]:
    return {k: round(float(metrics[k]), 4) for k in KEYS if k in metrics}


def _baselines_of(name: str) -> dict[str, Any]:
    """The core baselines' committed rows for this dataset (``textrec bench baselines --publish``)."""
    data = published_result(f"baselines_{name}.json")
    if data is None:
        return {}
    return {"source": f"eval/results/baselines_{name}.json", "git_commit": data.get("git_commit"),
            "models": {name: {"valid": _short(m["valid"]), "test": _short(m["test"])}
                       for name, m in data["models"].items() if "valid" in m and "test" in m}}


# ---- scratch --------------------------------------------------------------------------------
def run_scratch(args: argparse.Namespace) -> dict[str, Any]:
    ds = load_dataset_from_args(args)
    split = make_split(ds, "auto")
    model = _vqrec("vqrec_scratch", args, id_residual=args.id_residual, n_subvectors=args.subvectors,
                   n_centroids=args.centroids, code_dropout=args.code_dropout)
    res = run_protocol(model, split, progress=not args.quiet)
    name = f"vqrec_{ds.name}" + ("_idres" if args.id_residual else "")
    base = _baselines_of(ds.name)
    best = max(base.get("models", {}).items(), key=lambda kv: kv[1]["test"]["ndcg@10"], default=None)
    out = {"benchmark": "vqrec_from_scratch", "dataset": ds.name, "split": split.describe(),
           "model": res.to_dict(), "config": model.get_config(), "codes": model.code_report,
           "training_history": model.history, "core_baselines": base}
    if best is not None:
        t = res.test.metrics
        out["vs_best_core_baseline"] = {"baseline": best[0], **{
            k: round(t[k] / best[1]["test"][k], 3) for k in ("recall@10", "ndcg@10") if best[1]["test"].get(k)}}
    print(f"{name}: test {_short(res.test.metrics)} valid ndcg@10 {res.valid.metrics['ndcg@10']:.4f} "
          f"train {res.train_seconds:.0f}s")
    return {"name": name, **out}


# ---- new items -------------------------------------------------------------------------------
def run_new_items(args: argparse.Namespace) -> dict[str, Any]:
    from textrec.models.baselines import Popularity
    from textrec.models.sasrec import SASRec
    from textrec.models.text_knn import TextKNN

    ds = load_dataset_from_args(args)
    split = make_split(ds, "new_item", frac=args.frac, seed=args.seed)
    models: list[tuple[str, Any]] = [
        ("Popularity", Popularity()),
        ("TextKNN", TextKNN()),
        ("VQRec", _vqrec("vqrec_scratch", args, catalog="train")),
        ("VQRec+codedrop", _vqrec("vqrec_scratch", args, catalog="train", code_dropout=args.code_dropout or 0.3)),
        ("VQRec+IDres", _vqrec("vqrec_scratch", args, catalog="train", id_residual=True)),
        ("SASRec", SASRec.from_recipe("sasrec", seed=args.seed, max_epochs=args.epochs,
                                      trainer={"catalog": "train"})),
    ]
    if args.models:
        models = [(n, m) for n, m in models if n in args.models]
    rows = {}
    for name, model in models:
        res = run_protocol(model, split, progress=not args.quiet)
        row = {"valid": _short(res.valid.metrics),
               **({"valid_new": {**_short(res.valid_new), "n_rows": res.valid_new["n_rows"]},
                   "valid_warm": {**_short(res.valid_warm), "n_rows": res.valid_warm["n_rows"]}}
                  if res.valid_new is not None else {}),
               "test_all": _short(res.test.metrics),
               "test_new": {**_short(res.test_new), "n_rows": res.test_new["n_rows"]},
               "test_warm": {**_short(res.test_warm), "n_rows": res.test_warm["n_rows"]},
               "train_seconds": res.train_seconds, "inference_users_per_s": res.to_dict().get(
                   "inference_users_per_s"), "scores_new_items": model.scores_new_items}
        if isinstance(model, SASRec):
            # an ID model has no representation for an item without training events: its
            # "scores" for them are untrained noise, so the new-item cell is not a result
            row["test_new"] = {"n_rows": res.test_new["n_rows"], "note": "cannot score new items"}
            row["test_all"] = {"note": "not comparable: new-item rows scored by untrained embeddings"}
        if isinstance(model, VQRec):
            row["codes"] = model.code_report
            row["training_history"] = model.history
        rows[name] = row
        print(f"{name}: new {row['test_new']} warm {row['test_warm']}")
        if name == "VQRec" and not args.no_cold_offset:
            rows["VQRec+cold_offset"] = _cold_offset_row(model, split, res.train_seconds)
            print(f"VQRec+cold_offset: new {rows['VQRec+cold_offset']['test_new']} "
                  f"warm {rows['VQRec+cold_offset']['test_warm']}")
    tk = rows.get("TextKNN")
    targets = {}
    for key in ("VQRec", "VQRec+codedrop", "VQRec+cold_offset"):
        vq = rows.get(key)
        if not vq:
            continue
        tag = {"VQRec": "", "VQRec+codedrop": "codedrop_", "VQRec+cold_offset": "cold_offset_"}[key]
        targets[f"{tag}new_recall_over_warm_recall"] = round(
            vq["test_new"]["recall@10"] / max(vq["test_warm"]["recall@10"], 1e-12), 3)
        if tk:
            targets[f"{tag}new_recall_over_textknn_new_recall"] = round(
                vq["test_new"]["recall@10"] / max(tk["test_new"]["recall@10"], 1e-12), 3)
    return {"name": f"vqrec_new_items_{ds.name}", "benchmark": "vqrec_new_items", "dataset": ds.name,
            "split": split.describe(), "models": rows, "targets": {
                "goal": "new-item R@10 >= 0.6x warm-item R@10 and >= 1.3x text-kNN", **targets}}


def _cold_offset_row(model: VQRec, split, train_seconds: float) -> dict[str, Any]:
    """The trained VQRec with its cold-start offset chosen on valid (all valid rows), then tested."""
    from textrec.evaluation import evaluate

    calibration, model.calibration = model.calibration, None  # the offset alone places the cold items here
    offset, table = model.tune_cold_start_offset(split.valid, split.n_items)
    pop = split.item_popularity()
    valid = evaluate(model, split.valid, split.n_items, popularity=pop)
    test = evaluate(model, split.test, split.n_items, popularity=pop)
    vn, tn = split.valid.is_new, split.test.is_new
    model.cold_start_offset = 0.0  # leave the shared model as trained
    model.calibration = calibration
    return {"cold_start_offset": offset, "offset_search_on_valid": table,
            "valid": _short(valid.metrics),
            "valid_new": {**_short(valid.subset(vn)), "n_rows": int(vn.sum())},
            "valid_warm": {**_short(valid.subset(~vn)), "n_rows": int((~vn).sum())},
            "test_all": _short(test.metrics),
            "test_new": {**_short(test.subset(tn)), "n_rows": int(tn.sum())},
            "test_warm": {**_short(test.subset(~tn)), "n_rows": int((~tn).sum())},
            "train_seconds": train_seconds, "scores_new_items": True,
            "note": "the VQRec row's model with its new-item calibration off; cold items scored by code scores "
                    "plus an offset chosen on valid"}


# ---- transfer --------------------------------------------------------------------------------
def _view(name: str, args: argparse.Namespace) -> tuple[Any, TrainView]:
    ds = load_dataset_from_args(args, name)
    split = make_split(ds, "auto")
    view = TrainView.from_split(split, with_text=True)
    if not any(t.strip() for t in view.item_text) and ds.reviews is not None:
        # items without metadata (Instruments): describe each item by its review summaries
        # (a pretraining source only; never a domain we evaluate transfer on)
        r = ds.reviews
        col = "summary" if "summary" in r and r["summary"].fillna("").str.strip().any() else "text"
        by_item = r.groupby("item")[col].apply(lambda s: ". ".join(x for x in s.fillna("").astype(str)[:5] if x))
        view.item_text = [by_item.get(i, "") or f"item {ds.item_ids[i]}" for i in range(ds.n_items)]
    return split, view


def run_transfer(args: argparse.Namespace) -> dict[str, Any]:
    sources = [_view(n, args)[1] for n in args.source]
    split, target = _view(args.target, args)
    t0 = time.perf_counter()
    pre = _vqrec("vqrec_pretrain", args, n_subvectors=args.subvectors, n_centroids=args.centroids)
    if args.pretrain_epochs is not None:
        pre.trainer_config.epochs = args.pretrain_epochs
    pre.pretrain(sources, progress=not args.quiet)
    pretrain_s = time.perf_counter() - t0
    ft = load_recipe("vqrec_finetune")
    ft_trainer = {**ft.get("trainer", {})}
    if args.epochs is not None:
        ft_trainer["epochs"] = min(ft_trainer.get("epochs", args.epochs), args.epochs)
    rows: dict[str, Any] = {}

    def record(name: str, model: VQRec, seconds: float) -> None:
        valid = evaluate(model, split.valid, split.n_items)
        test = evaluate(model, split.test, split.n_items)
        rows[name] = {"valid": _short(valid.metrics), "test": _short(test.metrics),
                      "train_seconds": round(seconds, 1), "epochs": len(model.history),
                      "codes": model.code_report.get("codes"),
                      "permutation": getattr(model, "permutation_report", None)}
        print(f"{name}: test {rows[name]['test']} valid ndcg@10 {rows[name]['valid']['ndcg@10']}")

    variants = [("zero-shot", {"train": "none"}),
                ("fine-tune codes", {"train": "codes"}),
                ("fine-tune codes + permutation", {"train": "codes", "permutation": True,
                                                   "permutation_epochs": ft["transfer"]["permutation_epochs"],
                                                   "permutation_lr": ft["transfer"]["permutation_lr"]}),
                ("fine-tune codes + transformer", {"train": "codes+transformer"})]
    for name, kw in variants:
        t1 = time.perf_counter()
        m = pre.transfer(target, trainer=ft_trainer, progress=not args.quiet, **kw)
        record(f"pretrained on {'+'.join(args.source)}, {name}", m, time.perf_counter() - t1)
    t1 = time.perf_counter()
    scratch = _vqrec("vqrec_scratch", args, n_subvectors=args.subvectors, n_centroids=args.centroids)
    scratch.fit(target, progress=not args.quiet)
    record("from scratch on target", scratch, time.perf_counter() - t1)
    return {"name": f"vqrec_transfer_{'+'.join(args.source)}_to_{args.target}", "benchmark": "vqrec_transfer",
            "dataset": args.target, "split": split.describe(), "source_domains": args.source,
            "pretrain": {"seconds": round(pretrain_s, 1), "history": pre.history,
                         "report": pre.pretrain_report, "codes": pre.code_report,
                         "config": pre.get_config()},
            "finetune_recipe": ft, "models": rows, "core_baselines": _baselines_of(args.target)}


# ---- speed ------------------------------------------------------------------------------------
def synthetic_texts(n: int, seed: int = 0) -> list[str]:
    """Distinct product-like texts from a small grammar (brand, kind, material, colour, size)."""
    rng = np.random.default_rng(seed)
    brands = [f"brand{i}" for i in range(200)]
    kinds = ["guitar string set", "microscope slide", "lab glove", "pipette tip", "drum stick", "cable",
             "amplifier", "tuner", "beaker", "thermometer", "filament spool", "soldering tip"]
    materials = ["steel", "nylon", "glass", "nitrile", "maple", "copper", "plastic", "brass"]
    colours = ["black", "white", "red", "blue", "clear", "green"]
    return [f"{brands[rng.integers(200)]} {materials[rng.integers(8)]} {kinds[rng.integers(12)]}, "
            f"{colours[rng.integers(6)]}, size {rng.integers(1, 50)}, pack of {rng.integers(1, 100)} #{i}"
            for i in range(n)]


def run_speed(args: argparse.Namespace) -> dict[str, Any]:
    from textrec.models.sasrec import SASRec
    from textrec.text.encoder import TextEncoder
    from textrec.text.quantize import ProductQuantizer

    ds = load_dataset_from_args(args)
    split = make_split(ds, "auto")
    view_text = TrainView.from_split(split, with_text=True)
    fixed = {"epochs": args.speed_epochs, "patience": args.speed_epochs + 1}
    out: dict[str, Any] = {}
    ratio: dict[str, Any] = {}
    for name, model in [] if args.codes_only else [("SASRec", SASRec.from_recipe("sasrec", seed=args.seed, trainer=fixed)),
                        ("VQRec", VQRec.from_recipe("vqrec_scratch", seed=args.seed, trainer=fixed))]:
        if isinstance(model, VQRec):
            # codes are built outside the timed epochs (their cost is measured separately below)
            model.codes = model.build_codes(view_text.item_text,
                                            np.unique(view_text.train["item"].to_numpy()))
            model.n_centroids = model.quantizer.n_centroids_
        model.fit(view_text, progress=not args.quiet)
        ep = [h["seconds"] for h in model.history]
        res = evaluate(model, split.test, split.n_items)
        out[name] = {"seconds_per_epoch": round(float(np.median(ep)), 2), "epochs_timed": len(ep),
                     "inference_users_per_s": round(res.users_per_second, 1)}
        print(name, out[name])
    if out:
        ratio = {"vqrec_over_sasrec_seconds_per_epoch": round(
            out["VQRec"]["seconds_per_epoch"] / out["SASRec"]["seconds_per_epoch"], 3),
            "vqrec_over_sasrec_inference_users_per_s": round(
                out["VQRec"]["inference_users_per_s"] / out["SASRec"]["inference_users_per_s"], 3)}
    texts = synthetic_texts(args.n_synthetic, args.seed)
    enc = TextEncoder(cache_dir=False)
    enc.encode(["warm-up: load the model before timing"], progress=False)
    t = time.perf_counter()
    emb = enc.encode(texts, progress=not args.quiet)
    t_enc = time.perf_counter() - t
    t = time.perf_counter()
    q = ProductQuantizer(args.subvectors, args.centroids, opq=True, seed=args.seed).fit(emb, progress=not args.quiet)
    t_fit = time.perf_counter() - t
    t = time.perf_counter()
    codes = q.encode(emb)
    t_code = time.perf_counter() - t
    from textrec.text.quantize import code_stats

    build = {"n_texts": len(texts), "encode_seconds": round(t_enc, 1), "quantizer_fit_seconds": round(t_fit, 1),
             "encode_codes_seconds": round(t_code, 2), "total_seconds": round(t_enc + t_fit + t_code, 1),
             "texts_per_second_encoding": round(len(texts) / t_enc, 1), "codes": code_stats(codes),
             "quantizer": q.report}
    print("code build", {k: v for k, v in build.items() if k not in ("codes", "quantizer")})
    return {"name": f"vqrec_speed_{ds.name}", "benchmark": "vqrec_speed", "dataset": ds.name,
            "split": split.describe(), "models": out, "ratios": ratio, "code_build_synthetic": build}


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """Arguments of ``textrec bench vqrec``."""
    ap.description = __doc__
    ap.formatter_class = argparse.RawDescriptionHelpFormatter
    ap.add_argument("mode", choices=["scratch", "new-items", "transfer", "speed"])
    add_dataset_options(ap)
    ap.add_argument("--source", nargs="+", default=["ml-100k", "instruments"])
    ap.add_argument("--target", default="scientific")
    add_threads_option(ap)
    ap.add_argument("--epochs", type=positive_int, default=None, help="cap training epochs (default: recipe)")
    ap.add_argument("--pretrain-epochs", type=positive_int, default=None)
    ap.add_argument("--subvectors", type=positive_int, default=32)
    ap.add_argument("--centroids", type=positive_int, default=256)
    ap.add_argument("--id-residual", action="store_true")
    ap.add_argument("--code-dropout", type=non_negative_float, default=0.0,
                    help="VQ-Rec code dropout while training (scratch; new-items: the VQRec+codedrop row, default 0.3)")
    ap.add_argument("--name", default=None, help="result file stem (default: per mode)")
    ap.add_argument("--codes-only", action="store_true",
                    help="speed: only time building codes for --n-synthetic texts (no model epochs)")
    ap.add_argument("--frac", type=fraction, default=0.2)
    ap.add_argument("--no-cold-offset", action="store_true",
                    help="new-items: skip the VQRec+cold_offset row (offset tuned on valid)")
    ap.add_argument("--models", nargs="*", help="new-items: only these rows")
    ap.add_argument("--n-synthetic", type=positive_int, default=100_000)
    ap.add_argument("--speed-epochs", type=positive_int, default=3)
    add_seed_option(ap)
    add_progress_option(ap)
    add_output_options(ap, "vqrec")


def run(args: argparse.Namespace) -> int:
    """Run one mode and write its JSON."""
    if args.code_dropout >= 1:
        raise ValueError(f"--code-dropout must be below 1, got {args.code_dropout:g}")
    t0 = time.perf_counter()
    mode = {"scratch": run_scratch, "new-items": run_new_items, "transfer": run_transfer,
            "speed": run_speed}[args.mode]
    out = mode(args)
    name = args.name or out.pop("name")
    out.pop("name", None)
    out["seed"] = args.seed
    writer = writer_from_args(args, "vqrec")
    writer.started = t0
    with writer:
        writer.write_json(f"{name}.json", out)
    return 0
