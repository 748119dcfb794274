"""``textrec bench toolbox-multvae``: Mult-VAE / Mult-DAE beside EASE and ItemKNN in the baseline
harness, one seed per run.

Each run runs ``textrec.bench.bench_baselines`` (tune on valid, test with valid appended, full
ranking, history masked) for one seed and writes ``toolbox_multvae_<dataset>/..._seed<S>.json``;
then every seed file of that dataset in the output folder is merged into
``toolbox_multvae_<dataset>.json`` with per-model test mean and standard deviation over seeds
and the gap to the best non-sequential baseline.

    textrec bench toolbox-multvae --dataset ml-100k --seed 0 --publish
    textrec bench toolbox-multvae --dataset beauty --seed 0 --grid MultVAE.anneal_cap=0.2 --publish
    textrec bench toolbox-multvae --dataset ml-100k --add-seed-to-table 0 --publish
    textrec bench toolbox-multvae --table-gaps --publish

``--add-seed-to-table S`` adds that seed file's Mult-VAE / Mult-DAE rows to the dataset's
baseline table (``baselines_<dataset>.json``, same split and seed required), as
``textrec bench baselines --add-to`` does for a fresh run. ``--table-gaps`` reads every baseline
table and writes ``toolbox_multvae_tables.json``: per dataset, Mult-VAE's and Mult-DAE's test
NDCG@10 against the best non-sequential baseline of the same table, and how each was selected.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from textrec.options import add_seed_option, add_threads_option, parse_grids, progress
from textrec.results import ResultWriter, add_output_options, part_dir, writer_from_args

BENCH = "toolbox-multvae"
NON_SEQUENTIAL = ("EASE", "ItemKNN")
DATASETS = ("ml-100k", "beauty", "scientific", "instruments", "office")


def seed_name(dataset: str, seed: int) -> str:
    """Where one seed's run goes, relative to the output folder."""
    return str(part_dir(f"toolbox_multvae_{dataset}.json") / f"toolbox_multvae_{dataset}_seed{seed}.json")


def _find(writer: ResultWriter, name: str) -> Path | None:
    """A file of this run, else of the output folder, else (for the inputs a step reads) of
    ``eval/results`` when the output folder is a fresh run folder."""
    from textrec.results import PUBLISHED, REPO_ROOT

    return writer.existing(name) or next((p for p in (REPO_ROOT / PUBLISHED / name,) if p.is_file()), None)


def merge_seeds(writer: ResultWriter, dataset: str, metric: str = "ndcg@10") -> dict:
    """Combine every seed file of ``dataset`` in the output folder into the dataset's summary."""
    folder = part_dir(f"toolbox_multvae_{dataset}.json")
    found: dict[str, Path] = {}
    for root in (writer.out, writer.dir):  # this run's files win over earlier ones
        for p in sorted((root / folder).glob(f"toolbox_multvae_{dataset}_seed*.json")):
            found[p.name] = p
    runs = [json.loads(found[k].read_text(encoding="utf-8")) for k in sorted(found)]
    if not runs:
        raise FileNotFoundError(f"no seed files for {dataset} in {writer.out / folder}")
    models: dict[str, dict] = {}
    for name in runs[0]["models"]:
        per_seed = {r["seed"]: r["models"][name] for r in runs if name in r["models"]}
        summary: dict = {"seeds": sorted(per_seed), "params": {s: v["params"] for s, v in per_seed.items()}}
        for part in ("valid", "test"):
            for m in (metric, "hr@10", "mrr@10", "coverage@10", "tail_share@10"):
                vals = [v[part][m] for v in per_seed.values() if m in v[part]]
                if vals:
                    summary[f"{part}_{m}_mean"] = round(float(np.mean(vals)), 6)
                    summary[f"{part}_{m}_std"] = round(float(np.std(vals)), 6)
        summary["train_seconds_mean"] = round(float(np.mean([v["train_seconds"] for v in per_seed.values()])), 2)
        models[name] = summary
    base = {n: models[n][f"test_{metric}_mean"] for n in NON_SEQUENTIAL if n in models}
    best_name = max(base, key=base.get) if base else None
    gaps = {}
    if best_name:
        for name in ("MultVAE", "MultDAE"):
            if name in models:
                gaps[name] = round(models[name][f"test_{metric}_mean"] / base[best_name] - 1.0, 4)
    return {
        "benchmark": "toolbox_multvae", "dataset": dataset, "split": runs[0]["split"],
        "protocol": runs[0]["protocol"], "n_seeds": len(runs), "seeds": [r["seed"] for r in runs],
        "commands": [r.get("command") for r in runs], "best_non_sequential": best_name,
        f"relative_gap_test_{metric}_vs_best_non_sequential": gaps,
        "target": "Mult-VAE within 5% of the best non-sequential baseline (EASE/ItemKNN) test NDCG@10",
        "models": models, "per_seed_files": [seed_name(dataset, r["seed"]) for r in runs],
    }


def run_fixed(dataset: str, models: list[str], grids: dict[str, dict[str, list]], seed: int,
              show: bool = False) -> dict:
    """One seed with fixed parameters (single-value ``grids``), the bench protocol without tuning fits."""
    from textrec.bench import _row, make_model
    from textrec.data.registry import load_dataset
    from textrec.data.splits import make_split
    from textrec.evaluation import run_protocol

    ds = load_dataset(dataset)
    split = make_split(ds, "auto")
    rows = {}
    for m in models:
        params = {k: v[0] for k, v in grids.get(m, {}).items()}
        model = make_model(m, params, seed=seed)
        res = run_protocol(model, split, progress=show)
        rows[m] = _row(m, res, params, {"training_history": model.history} if hasattr(model, "history") else None)
        print(m, params, "test ndcg@10", round(res.test.metrics["ndcg@10"], 4))
    return {"benchmark": "baselines", "dataset": ds.name, "split": split.describe(),
            "protocol": "fit on train, parameters fixed from seed 0's valid selection, test with valid appended "
                        "and no refit; full ranking, history masked",
            "fixed_params": grids, "seed": seed, "models": rows}


def add_seed_to_table(writer: ResultWriter, dataset: str, seed: int,
                      models: tuple[str, ...] = ("MultVAE", "MultDAE")) -> dict:
    """Add the rows of ``models`` from one seed file to ``baselines_<dataset>.json`` (and its Markdown)."""
    from textrec.bench import _extend_table, _table_to_extend, markdown_table

    table_path = _find(writer, f"baselines_{dataset}.json")
    seed_path = _find(writer, seed_name(dataset, seed))
    if table_path is None or seed_path is None:
        raise FileNotFoundError(f"baselines_{dataset}.json and {seed_name(dataset, seed)} are both needed")
    table = _table_to_extend(table_path)
    run = json.loads(seed_path.read_text(encoding="utf-8"))
    run = {**run, "models": {m: run["models"][m] for m in models if m in run["models"]}}
    merged = _extend_table(table, run, run.get("grid_overrides") or {})
    for m in run["models"]:
        merged["added_rows"][m]["source"] = f"eval/results/{seed_name(dataset, seed)}"
    writer.write_json(f"baselines_{dataset}.json", merged, metadata=False)
    writer.write_text(f"baselines_{dataset}.md", markdown_table(merged))
    return merged


def table_gaps(writer: ResultWriter, datasets: tuple[str, ...] = DATASETS, metric: str = "ndcg@10") -> dict:
    """Mult-VAE/DAE against the best non-sequential baseline in every baseline table that has them."""
    per: dict[str, dict] = {}
    for ds in datasets:
        path = _find(writer, f"baselines_{ds}.json")
        if path is None:
            per[ds] = {"status": f"no table (baselines_{ds}.json absent)"}
            continue
        table = json.loads(path.read_text(encoding="utf-8"))
        rows = table["models"]
        base = {n: rows[n]["test"][metric] for n in NON_SEQUENTIAL if n in rows}
        best = max(base, key=base.get)
        entry: dict = {"table": path.name, "best_non_sequential": best, f"best_test_{metric}": base[best],
                       "best_sequential": max((n for n in ("MarkovChain", "SASRec") if n in rows),
                                              key=lambda n: rows[n]["test"][metric], default=None)}
        for name in ("MultVAE", "MultDAE"):
            if name not in rows:
                entry[name] = "not run"
                continue
            r = rows[name]
            entry[name] = {f"test_{metric}": r["test"][metric], f"valid_{metric}": r["valid"][metric],
                           "relative_gap": round(r["test"][metric] / base[best] - 1.0, 4),
                           "within_5_percent": r["test"][metric] >= 0.95 * base[best],
                           "params": r["params"], "epochs_run": len(r.get("training_history", [])),
                           "kl_weight_at_best_valid": r.get("kl_weight_at_best_valid"),
                           "train_seconds": r["train_seconds"],
                           "added": table.get("added_rows", {}).get(name, {}).get("command")}
        seeds = _find(writer, f"toolbox_multvae_{ds}.json")
        if seeds is not None:  # the multi-seed run of the same harness, where one exists
            multi = json.loads(seeds.read_text(encoding="utf-8"))
            entry["multi_seed"] = {"file": seeds.name, "seeds": multi["seeds"],
                                   "relative_gap_of_means": multi[f"relative_gap_test_{metric}_vs_best_non_sequential"]}
        per[ds] = entry
    return {"benchmark": "toolbox_multvae_tables", "metric": f"test {metric}", "seed": 0, "n_seeds": 1,
            "target": "Mult-VAE within 5% of the best non-sequential baseline (EASE/ItemKNN) on ML-100K and Beauty",
            "datasets": per}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``textrec bench toolbox-multvae``."""
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--models", nargs="+", default=["ItemKNN", "EASE", "MultVAE", "MultDAE"])
    p.add_argument("--grid", action="append", default=[], metavar="MODEL.param=v1,v2", help="replaces that grid")
    p.add_argument("--fixed", action="store_true",
                   help="take each --grid as the fixed parameters (chosen on another seed's valid): no tuning fit")
    p.add_argument("--merge-only", action="store_true", help="only merge existing seed files")
    p.add_argument("--add-seed-to-table", type=int, metavar="SEED", default=None,
                   help="add this seed file's MultVAE/MultDAE rows to baselines_<dataset>.json and stop")
    p.add_argument("--table-gaps", action="store_true",
                   help="write toolbox_multvae_tables.json from every baseline table and stop")
    add_seed_option(p)
    add_threads_option(p)
    add_output_options(p, BENCH)


def run(args: argparse.Namespace) -> int:
    """One seed then the merge of all seeds of the dataset (or one of the table steps)."""
    from textrec.bench import bench_baselines

    with writer_from_args(args, BENCH) as writer:
        if args.table_gaps:
            result = table_gaps(writer)
            writer.write_json("toolbox_multvae_tables.json", result)
            print(json.dumps(result["datasets"], indent=1))
            return 0
        if args.add_seed_to_table is not None:
            merged = add_seed_to_table(writer, args.dataset, args.add_seed_to_table)
            print(f"rows added to baselines_{args.dataset}.json: {sorted(merged['added_rows'])}")
            return 0
        if not args.merge_only:
            name = seed_name(args.dataset, args.seed)
            grids = parse_grids(args.grid)
            if args.fixed:
                res = run_fixed(args.dataset, args.models, grids, args.seed, progress(args))
            else:
                res = bench_baselines(args.dataset, models=args.models, out_dir=writer.dir, seed=args.seed,
                                      threads=args.threads, name=name[: -len(".json")], grids=grids or None,
                                      progress=progress(args))
            writer.write_json(name, res, metadata=args.fixed)  # bench_baselines stamped its own
            if not args.fixed:
                writer.record(name[: -len(".json")] + ".md")
        summary = merge_seeds(writer, args.dataset)
        writer.write_json(f"toolbox_multvae_{args.dataset}.json", summary)
    print(json.dumps({k: summary[k] for k in ("dataset", "n_seeds", "best_non_sequential",
                                             "relative_gap_test_ndcg@10_vs_best_non_sequential")}, indent=1))
    return 0
