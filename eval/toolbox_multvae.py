"""Mult-VAE / Mult-DAE beside EASE and ItemKNN in the baseline harness, one seed per call.

Each call runs ``textrec.bench.bench_baselines`` (tune on valid, test with valid appended, full
ranking, history masked) for one seed and writes ``toolbox_multvae_<dataset>_seed<S>.json``;
then every seed file of that dataset is merged into ``toolbox_multvae_<dataset>.json`` with
per-model test mean and standard deviation over seeds and the gap to the best non-sequential
baseline.

    python eval/toolbox_multvae.py --dataset ml-100k --seed 0
    python eval/toolbox_multvae.py --dataset beauty --seed 0 --grid MultVAE.anneal_cap=0.2
    python eval/toolbox_multvae.py --dataset ml-100k --add-seed-to-table 0
    python eval/toolbox_multvae.py --table-gaps

``--add-seed-to-table S`` adds that seed file's Mult-VAE / Mult-DAE rows to the dataset's
baseline table (``baselines_<dataset>.json``, same split and seed required), as
``textrec bench baselines --add-to`` does for a fresh run. ``--table-gaps`` reads every baseline
table and writes ``toolbox_multvae_tables.json``: per dataset, Mult-VAE's and Mult-DAE's test
NDCG@10 against the best non-sequential baseline of the same table, and how each was selected.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

from textrec.bench import bench_baselines
from textrec.io import write_json
from textrec.results import git_commit, machine

NON_SEQUENTIAL = ("EASE", "ItemKNN")


def parse_grid(items: list[str]) -> dict[str, dict[str, list]]:
    """``["MultVAE.anneal_cap=0.1,0.2"]`` -> ``{"MultVAE": {"anneal_cap": [0.1, 0.2]}}``."""
    out: dict[str, dict[str, list]] = {}
    for item in items:
        key, _, values = item.partition("=")
        model, _, param = key.partition(".")
        if not (model and param and values):
            raise SystemExit(f"--grid wants MODEL.param=v1,v2, got '{item}'")
        out.setdefault(model, {})[param] = [json.loads(v) for v in values.split(",")]
    return out


def merge_seeds(out_dir: Path, dataset: str, metric: str = "ndcg@10") -> dict:
    """Combine every ``toolbox_multvae_<dataset>_seed*.json`` into the dataset's summary file."""
    runs = [json.loads(p.read_text()) for p in sorted(out_dir.glob(f"toolbox_multvae_{dataset}_seed*.json"))]
    if not runs:
        raise FileNotFoundError(f"no seed files for {dataset} in {out_dir}")
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
    result = {
        "benchmark": "toolbox_multvae",
        "dataset": dataset,
        "split": runs[0]["split"],
        "protocol": runs[0]["protocol"],
        "n_seeds": len(runs),
        "seeds": [r["seed"] for r in runs],
        "commands": [r.get("command") for r in runs],
        "best_non_sequential": best_name,
        f"relative_gap_test_{metric}_vs_best_non_sequential": gaps,
        "target": "Mult-VAE within 5% of the best non-sequential baseline (EASE/ItemKNN) test NDCG@10",
        "models": models,
        "per_seed_files": [f"toolbox_multvae_{dataset}_seed{r['seed']}.json" for r in runs],
        "git_commit": git_commit(),
        "machine": machine(),
    }
    write_json(out_dir / f"toolbox_multvae_{dataset}.json", result)
    return result


def run_fixed(dataset: str, models: list[str], grids: dict[str, dict[str, list]], seed: int) -> dict:
    """One seed with fixed parameters (single-value ``grids``), the bench protocol without tuning fits."""
    import time
    from datetime import date

    from textrec.bench import _row, make_model
    from textrec.data.registry import load_dataset
    from textrec.data.splits import make_split
    from textrec.evaluation import run_protocol

    t0 = time.perf_counter()
    ds = load_dataset(dataset)
    split = make_split(ds, "auto")
    rows = {}
    for m in models:
        params = {k: v[0] for k, v in grids.get(m, {}).items()}
        model = make_model(m, params, seed=seed)
        res = run_protocol(model, split, progress=False)
        rows[m] = _row(m, res, params, {"training_history": model.history} if hasattr(model, "history") else None)
        print(m, params, "test ndcg@10", round(res.test.metrics["ndcg@10"], 4))
    return {"benchmark": "baselines", "dataset": ds.name, "split": split.describe(),
            "protocol": "fit on train, parameters fixed from seed 0's valid selection, test with valid appended "
                        "and no refit; full ranking, history masked",
            "fixed_params": grids, "seed": seed, "git_commit": git_commit(), "date": date.today().isoformat(),
            "machine": machine(), "wall_seconds": round(time.perf_counter() - t0, 1), "models": rows}


def add_seed_to_table(out_dir: Path, dataset: str, seed: int, models: tuple[str, ...] = ("MultVAE", "MultDAE")
                      ) -> dict:
    """Add the rows of ``models`` from one seed file to ``baselines_<dataset>.json`` (and its Markdown)."""
    from textrec.bench import _extend_table, _table_to_extend, markdown_table

    table_path = out_dir / f"baselines_{dataset}.json"
    table = _table_to_extend(table_path)
    run = json.loads((out_dir / f"toolbox_multvae_{dataset}_seed{seed}.json").read_text())
    run = {**run, "models": {m: run["models"][m] for m in models if m in run["models"]}}
    merged = _extend_table(table, run, run.get("grid_overrides") or {})
    for m in run["models"]:
        merged["added_rows"][m]["source"] = f"eval/results/toolbox_multvae_{dataset}_seed{seed}.json"
    write_json(table_path, merged)
    (out_dir / f"baselines_{dataset}.md").write_text(markdown_table(merged), encoding="utf-8")
    return merged


def table_gaps(out_dir: Path, datasets: tuple[str, ...] = ("ml-100k", "beauty", "scientific", "instruments",
                                                            "office"), metric: str = "ndcg@10") -> dict:
    """Mult-VAE/DAE against the best non-sequential baseline in every baseline table that has them."""
    per: dict[str, dict] = {}
    for ds in datasets:
        path = out_dir / f"baselines_{ds}.json"
        if not path.is_file():
            per[ds] = {"status": f"no table ({path.name} absent)"}
            continue
        table = json.loads(path.read_text())
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
        seeds = out_dir / f"toolbox_multvae_{ds}.json"
        if seeds.is_file():  # the multi-seed run of the same harness, where one exists
            multi = json.loads(seeds.read_text())
            entry["multi_seed"] = {"file": seeds.name, "seeds": multi["seeds"],
                                   "relative_gap_of_means": multi[f"relative_gap_test_{metric}_vs_best_non_sequential"]}
        per[ds] = entry
    result = {"benchmark": "toolbox_multvae_tables", "metric": f"test {metric}", "seed": 0, "n_seeds": 1,
              "target": "Mult-VAE within 5% of the best non-sequential baseline (EASE/ItemKNN) on ML-100K and Beauty",
              "datasets": per, "git_commit": git_commit(), "machine": machine()}
    write_json(out_dir / "toolbox_multvae_tables.json", result)
    return result


def main(argv: list[str] | None = None) -> None:
    """Run one seed, then merge all seeds of the dataset."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--models", nargs="+", default=["ItemKNN", "EASE", "MultVAE", "MultDAE"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", default="eval/results")
    p.add_argument("--grid", action="append", default=[], help="MODEL.param=v1,v2 (replaces that grid)")
    p.add_argument("--fixed", action="store_true",
                   help="take each --grid as the fixed parameters (chosen on another seed's valid): no tuning fit")
    p.add_argument("--merge-only", action="store_true", help="only merge existing seed files")
    p.add_argument("--add-seed-to-table", type=int, metavar="SEED", default=None,
                   help="add this seed file's MultVAE/MultDAE rows to baselines_<dataset>.json and stop")
    p.add_argument("--table-gaps", action="store_true",
                   help="write toolbox_multvae_tables.json from every baseline table and stop")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out_dir)
    if args.table_gaps:
        print(json.dumps(table_gaps(out)["datasets"], indent=1))
        return
    if args.add_seed_to_table is not None:
        merged = add_seed_to_table(out, args.dataset, args.add_seed_to_table)
        print(f"rows added to baselines_{args.dataset}.json: {sorted(merged['added_rows'])}")
        return
    if not args.merge_only:
        name = f"toolbox_multvae_{args.dataset}_seed{args.seed}"
        if args.fixed:
            res = run_fixed(args.dataset, args.models, parse_grid(args.grid), args.seed)
        else:
            res = bench_baselines(args.dataset, models=args.models, out_dir=args.out_dir, seed=args.seed,
                                  threads=1, name=name, grids=parse_grid(args.grid) or None, progress=False)
        res["command"] = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
        write_json(out / f"{name}.json", res)
    summary = merge_seeds(out, args.dataset)
    print(json.dumps({k: summary[k] for k in ("dataset", "n_seeds", "best_non_sequential",
                                             "relative_gap_test_ndcg@10_vs_best_non_sequential")}, indent=1))


if __name__ == "__main__":
    main()
