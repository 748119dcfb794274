"""Command line: ``textrec data|bench|demo|vqrec|p5|query|explain``."""

from __future__ import annotations

import argparse
import json
import os
import sys


def _load(args: argparse.Namespace):
    from textrec.data.registry import load_dataset

    kw = {}
    if getattr(args, "on_error", None):
        kw["on_error"] = args.on_error
    return load_dataset(args.dataset, data_root=getattr(args, "data_root", None), **kw)


def cmd_data_info(args: argparse.Namespace) -> int:
    from textrec.data.stats import dataset_stats, format_stats, plot_long_tail

    ds = _load(args)
    stats = dataset_stats(ds)
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        print(format_stats(stats))
        for note in ds.notes:
            print(f"  note: {note}")
    if args.plot:
        path = plot_long_tail(ds, args.plot)
        print(f"long-tail plot written to {path}")
    return 0


def cmd_data_split(args: argparse.Namespace) -> int:
    from textrec.data.splits import make_split

    ds = _load(args)
    kw = {}
    if args.kind == "new_item":
        kw = {"frac": args.frac, "seed": args.seed}
    split = make_split(ds, args.kind, **kw)
    print(json.dumps(split.describe(), indent=2))
    return 0


def cmd_bench_baselines(args: argparse.Namespace) -> int:
    from textrec.bench import bench_baselines

    bench_baselines(dataset=args.dataset, models=args.models, out_dir=args.out_dir, seed=args.seed,
                    split_kind=args.split, sasrec_epochs=args.sasrec_epochs, refit=args.refit,
                    save_topk_dir=args.save_topk_dir, threads=args.threads, data_root=args.data_root,
                    sampled_negatives=args.sampled_negatives, grids=parse_grids(args.grid))
    return 0


def parse_grids(specs: list[str] | None) -> dict[str, dict[str, list]]:
    """``["EASE.lam=100,250,500"]`` -> ``{"EASE": {"lam": [100.0, 250.0, 500.0]}}`` (ints stay ints)."""
    out: dict[str, dict[str, list]] = {}
    for spec in specs or []:
        key, eq, values = spec.partition("=")
        model, dot, param = key.partition(".")
        if not (eq and dot and model and param and values):
            raise ValueError(f"--grid '{spec}': expected MODEL.param=v1,v2,...")
        vals: list = []
        for v in values.split(","):
            try:
                vals.append(int(v) if v.strip().lstrip("-").isdigit() else float(v))
            except ValueError:
                raise ValueError(f"--grid '{spec}': '{v}' is not a number") from None
        out.setdefault(model, {})[param] = vals
    return out


ENGINE_CLIS = ("textrec.vqrec.cli", "textrec.p5.cli", "textrec.query.cli", "textrec.explain.cli", "textrec.serve.cli",
               "textrec.demo", "textrec.report")


def build_parser() -> argparse.ArgumentParser:
    """The ``textrec`` argument parser."""
    p = argparse.ArgumentParser(prog="textrec", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="load, describe and split datasets")
    dsub = data.add_subparsers(dest="data_command", required=True)
    info = dsub.add_parser("info", help="small-data diagnostics of a dataset")
    info.add_argument("dataset", help="ml-100k | scientific | beauty | instruments | a path")
    info.add_argument("--plot", metavar="PNG", help="write the long-tail popularity curve here")
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    info.add_argument("--data-root", help="folder holding the shared datasets (default ../shared/data)")
    info.add_argument("--on-error", choices=["raise", "skip"], help="bad rows: raise (default) or count and skip")
    info.set_defaults(func=cmd_data_info)
    spl = dsub.add_parser("split", help="build a split and print its sizes")
    spl.add_argument("dataset")
    spl.add_argument("--kind", default="auto", choices=["auto", "leave_one_out", "temporal", "new_item", "published"])
    spl.add_argument("--frac", type=float, default=0.2, help="new-item split: held-out share of items")
    spl.add_argument("--seed", type=int, default=0)
    spl.add_argument("--data-root")
    spl.set_defaults(func=cmd_data_split)

    bench = sub.add_parser("bench", help="run a benchmark and write eval/results/<name>.json")
    bsub = bench.add_subparsers(dest="bench_command", required=True)
    bb = bsub.add_parser("baselines", help="Popularity, ItemKNN, EASE, Markov, SASRec side by side")
    bb.add_argument("--dataset", default="ml-100k")
    bb.add_argument("--models", nargs="+", default=["Popularity", "ItemKNN", "EASE", "MarkovChain", "SASRec"])
    bb.add_argument("--split", default="auto", help="auto = the published split if shipped, else leave-one-out")
    bb.add_argument("--out-dir", default="eval/results")
    bb.add_argument("--seed", type=int, default=0)
    bb.add_argument("--sasrec-epochs", type=int, default=None, help="cap SASRec epochs (default: recipe)")
    bb.add_argument("--refit", action="store_true", help="also report the refit-on-train+valid rows (labelled)")
    bb.add_argument("--save-topk-dir", help="write each model's test top-K lists (Parquet) here")
    bb.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    bb.add_argument("--data-root")
    bb.add_argument("--sampled-negatives", type=int, default=None,
                    help="ALSO report sampled metrics with this many negatives (never the headline)")
    bb.add_argument("--grid", action="append", metavar="MODEL.param=v1,v2",
                    help="replace a default tuning grid (still widened when the best is at an edge)")
    bb.set_defaults(func=cmd_bench_baselines)

    # Each engine owns its sub-commands in its own module (``register(sub)``),
    # importing its heavy modules only inside the command functions.
    import importlib

    for module in ENGINE_CLIS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue
        mod.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``textrec`` console script."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"textrec: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
