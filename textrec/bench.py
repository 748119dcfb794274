"""``textrec bench baselines``: the core baselines tuned on valid, side by side (JSON + Markdown)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from textrec.data.splits import Split, make_split
from textrec.evaluation import DEFAULT_KS, evaluate, run_protocol
from textrec.models.base import Recommender, TrainView
from textrec.options import (
    add_dataset_options,
    add_progress_option,
    add_seed_option,
    add_threads_option,
    dataset_kwargs,
    parse_grids,
    positive_float,
    positive_int,
    progress_log,
    set_threads,
)
from textrec.results import ResultWriter, add_output_options, metadata_line, peak_rss_mb
from textrec.results import markdown_table as _table

TUNED = ("ItemKNN", "EASE", "MarkovChain", "MultVAE", "MultDAE")
DEFAULT_MODELS = ("Popularity", "ItemKNN", "EASE", "MarkovChain", "SASRec")


def make_model(name: str, params: dict | None = None, seed: int = 0, max_epochs: int | None = None) -> Recommender:
    """Build a core model by name with keyword parameters."""
    from textrec.models import baselines

    params = dict(params or {})
    if name == "SASRec":
        from textrec.models.sasrec import SASRec

        return SASRec.from_recipe("sasrec", seed=seed, max_epochs=max_epochs, **params)
    if not hasattr(baselines, name):
        return _registered_model(name, params, seed)
    return getattr(baselines, name)(**params)


def _registered_model(name: str, params: dict, seed: int) -> Recommender:
    """Any other model of ``textrec.registry.MODELS``, seeded when its constructor takes a seed."""
    import inspect

    from textrec.registry import MODELS, model_class

    if name not in MODELS:
        raise ValueError(f"unknown model '{name}'")
    cls = model_class(name)
    if "seed" in inspect.signature(cls).parameters:
        params.setdefault("seed", seed)
    return cls(**params)


def tune(name: str, split: Split, metric: str = "ndcg@10", progress: bool = True, max_widen: int = 2,
         grid: dict[str, list] | None = None, budget_seconds: float | None = None) -> tuple[dict, list[dict]]:
    """Grid search on valid; widen a numeric grid (up to ``max_widen`` times) when the best is at an edge.

    ``grid`` replaces some or all of the default grid's parameters (e.g. a coarser EASE grid on a
    large catalog); the edge widening applies to it all the same. ``budget_seconds`` caps the
    whole search: each round gets what is left, thins its grid to fit (saying which points it
    skipped, see :func:`textrec.models.tuning.grid_search`), and no widening starts once it is spent.
    """
    from textrec.models.tuning import DEFAULT_GRIDS

    grid = {**{k: list(v) for k, v in DEFAULT_GRIDS[name].items()}, **(grid or {})}
    if all(len(v) == 1 for v in grid.values()):
        # one grid point: nothing to choose, so no selection fit (the protocol run fits it once)
        return {k: v[0] for k, v in grid.items()}, []
    table: list[dict] = []
    started = time.perf_counter()
    for round_ in range(max_widen + 1):
        left = None if budget_seconds is None else budget_seconds - (time.perf_counter() - started)
        best, rows, edge = _grid(name, grid, split, metric, progress, left)
        table.extend(rows)
        if not edge:
            return best, table
        if round_ == max_widen:
            if progress:
                print(f"tune {name}: best {best} is still at the grid's edge ({', '.join(edge)}) after {max_widen} "
                      "widenings; keeping it (pass --grid to search further)")
            break
        if budget_seconds is not None and time.perf_counter() - started >= budget_seconds:
            if progress:
                print(f"tune {name}: best {best} is at the grid's edge ({', '.join(edge)}), but the time budget "
                      "is spent: not widening; keeping it")
            break
        grid = _widen(grid, best, edge)
        if progress:
            progress_log(f"{name}: best at the grid's edge; widening "
                         f"{', '.join(f'{p} to {grid[p]}' for p in edge)} and searching again "
                         f"({round_ + 1} of at most {max_widen})")
    return best, table


def _grid(name, grid, split, metric, progress, budget_seconds=None):
    from textrec.models.tuning import grid_search

    res = grid_search(lambda p: make_model(name, p), grid, split, metric=metric, progress=progress,
                      budget_seconds=budget_seconds)
    best, rows = res[0], res[1]
    edge = [r for r in rows if r.get("best_at_edge")] if rows and isinstance(rows[0], dict) else []
    edge_params = sorted({p for r in edge for p in (r.get("edge_params") or [])})
    return best, rows, edge_params


def _widen(grid: dict, best: dict, edge_params: list[str]) -> dict:
    out = dict(grid)
    for p in edge_params:
        vals = sorted(grid[p])
        b = best[p]
        if not isinstance(b, (int, float)) or isinstance(b, bool):
            continue
        if b == vals[-1]:
            new = [b * 2, b * 4] if not isinstance(b, int) else [int(b * 2), int(b * 4)]
        else:
            new = [b / 2, b / 4] if not isinstance(b, int) else [max(1, b // 2), max(1, b // 4)]
        out[p] = sorted(set(vals) | set(new))
    return out


def _row(name: str, res, params: dict, extra: dict | None = None) -> dict:
    d = res.to_dict()
    d["model"] = name
    d["params"] = params
    d["peak_rss_mb"] = round(peak_rss_mb(), 1)
    if extra:
        d.update(extra)
    return d


def bench_baselines(dataset: str = "ml-100k", models: Sequence[str] = DEFAULT_MODELS,
                    out_dir: str | Path | None = None, seed: int = 0,
                    split_kind: str = "auto", sasrec_epochs: int | None = None, refit: bool = False,
                    save_topk_dir: str | None = None, threads: int | None = None, data_root: str | None = None,
                    sampled_negatives: int | None = None, ks: Sequence[int] = DEFAULT_KS,
                    name: str | None = None, progress: bool = True,
                    grids: dict[str, dict[str, list]] | None = None, publish: bool = False,
                    load_kw: dict | None = None, add_to: str | Path | None = None,
                    tune_minutes: float | None = None) -> dict:
    """Tune each baseline on valid, evaluate test (valid appended, no refit), write JSON + Markdown.

    Results go to a new ``runs/baselines-<time>/`` unless ``out_dir`` is given (or ``publish``:
    ``eval/results``). ``grids``: per model, parameter lists that replace the default grid's
    (recorded in the JSON). Unknown model names fail before anything is trained.

    ``add_to``: an existing table (JSON) of the same dataset, split and seed; only ``models`` are
    run and their rows are added to it (replacing rows of the same name), each added row carrying
    its own command, date, commit and machine, so a new model joins a table without rerunning it.
    """
    from textrec.models import baselines
    from textrec.registry import MODELS

    unknown = [m for m in models if m != "SASRec" and not isinstance(getattr(baselines, m, None), type)
               and m not in MODELS]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; known: {list(DEFAULT_MODELS)} and the registry's")
    base_table = _table_to_extend(add_to) if add_to else None
    from textrec.data.registry import load_dataset

    if threads:
        set_threads(threads)
    torch.manual_seed(seed)
    np.random.seed(seed)
    started = time.perf_counter()
    ds = load_dataset(dataset, data_root=data_root, **(load_kw or {}))
    split = make_split(ds, split_kind)
    print(f"{ds!r}\nsplit: {split.describe()}")
    rows: dict[str, dict] = {}
    for m in models:
        print(f"== {m}")
        table: list[dict] = []
        params: dict = {}
        if m in TUNED:
            params, table = tune(m, split, progress=progress, grid=(grids or {}).get(m),
                                 budget_seconds=tune_minutes * 60 if tune_minutes else None)
            print(f"   best on valid: {params}")
        model = make_model(m, params, seed=seed, max_epochs=sasrec_epochs)
        topk_file = Path(save_topk_dir) / f"{ds.name}_{m}_test_top{max(ks)}.parquet" if save_topk_dir else None
        res = run_protocol(model, split, ks=ks, progress=progress, save_topk=topk_file)
        extra: dict = {"tuning": table} if table else {}
        if hasattr(model, "history"):
            extra["training_history"] = model.history
        if getattr(model, "best_beta", None) is not None:
            extra["kl_weight_at_best_valid"] = model.best_beta
        if sampled_negatives:
            extra["test_sampled"] = evaluate(model, split.test, split.n_items, ks=ks,
                                             sampled_negatives=sampled_negatives, seed=seed).to_dict()
        rows[m] = _row(m, res, params if m != "SASRec" else model.get_config(), extra)
        print(f"   valid ndcg@10 {res.valid.metrics['ndcg@10']:.4f}  test hr@10 {res.test.metrics['hr@10']:.4f} "
              f"ndcg@10 {res.test.metrics['ndcg@10']:.4f} mrr@10 {res.test.metrics['mrr@10']:.4f}  "
              f"train {res.train_seconds:.1f}s  {res.test.users_per_second:.0f} users/s")
        if refit and m != "SASRec":
            rows[f"{m} (refit train+valid)"] = _refit_row(m, params, split, ks)
    result = {
        "benchmark": "baselines",
        "dataset": ds.name,
        "split": split.describe(),
        "protocol": "fit on train, select on valid, test with valid appended and no refit; full ranking, "
                    "history masked; ties broken by lower item index",
        "grid_overrides": grids or {},
        "seed": seed,
        "models": rows,
    }
    name = name or f"baselines_{ds.name}"
    with ResultWriter("baselines", out=out_dir, publish=publish, seed=seed, started=started) as writer:
        result = {**result, **writer.metadata()}
        if base_table is not None:
            result = _extend_table(base_table, result, grids or {})
        # an extended table keeps its original metadata; the added rows carry their own
        writer.write_json(f"{name}.json", result, metadata=base_table is None)
        writer.write_text(f"{name}.md", markdown_table(result))
    print(markdown_table(result))
    return result


def _table_to_extend(path: str | Path) -> dict:
    """The table ``--add-to`` extends (read before anything is trained, so a bad path fails fast)."""
    import json

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no baseline table to add rows to")
    table = json.loads(path.read_text(encoding="utf-8"))
    if table.get("benchmark") != "baselines" or not isinstance(table.get("models"), dict):
        raise ValueError(f"{path}: not a baselines table (needs benchmark 'baselines' and a 'models' map)")
    return table


def _extend_table(table: dict, run: dict, grids: dict) -> dict:
    """``table`` with ``run``'s rows added; the run must share the table's dataset, split and seed."""
    import json

    for key in ("dataset", "split", "seed"):
        if table.get(key) != json.loads(json.dumps(run.get(key), default=str)):
            raise ValueError(f"cannot add rows: the table's {key} {table.get(key)!r} differs from this "
                             f"run's {run.get(key)!r}")
    added = dict(table.get("added_rows", {}))
    meta = {k: run[k] for k in ("command", "date", "git_commit", "machine", "threads", "wall_seconds",
                                "peak_rss_mb") if k in run}
    for name in run["models"]:
        added[name] = {**meta, "grid_overrides": {k: v for k, v in grids.items() if k == name}}
    out = {**table, "models": {**table["models"], **run["models"]}, "added_rows": added}
    out["note"] = ("rows listed in added_rows were run later, on their own, in the same harness, split, users "
                   "and seed, and added to this table; the top-level command, date and commit are the "
                   "original run's")
    return out


def _refit_row(name: str, params: dict, split: Split, ks: Sequence[int]) -> dict:
    """The separately labelled variant: fit on train+valid with the chosen params, score test."""
    model = make_model(name, params)
    view = TrainView(train=split.train_plus_valid(), valid=split.valid, n_users=split.n_users,
                     n_items=split.n_items, dataset_name=split.dataset.name)
    t0 = time.perf_counter()
    model.fit(view, progress=False)
    secs = time.perf_counter() - t0
    test = evaluate(model, split.test, split.n_items, ks=ks, popularity=split.item_popularity())
    return {"model": f"{name} (refit train+valid)", "params": params, "train_seconds": round(secs, 3),
            "test": test.to_dict(), "inference_users_per_s": round(test.users_per_second, 1),
            "note": "refit on train+valid: not comparable to the headline protocol"}


def markdown_table(result: dict, k: int = 10) -> str:
    """README-ready table: HR/NDCG/MRR@k on test, valid NDCG, train time, inference users/s; then how it ran."""
    cols = [(f"HR@{k}", lambda r: r["test"][f"hr@{k}"], ".4f"), (f"NDCG@{k}", lambda r: r["test"][f"ndcg@{k}"], ".4f"),
            (f"MRR@{k}", lambda r: r["test"][f"mrr@{k}"], ".4f"),
            (f"valid NDCG@{k}", lambda r: r["valid"][f"ndcg@{k}"], ".4f"),
            ("train s", lambda r: r["train_seconds"], ".1f"), ("users/s", lambda r: r["inference_users_per_s"], ".0f")]
    text = _table(result["models"].items(), cols)
    text += "\n" + metadata_line(result) + "\n" if "date" in result else ""
    for row, meta in result.get("added_rows", {}).items():
        text += f"Row {row} added later: {metadata_line(meta)}\n"
    return text


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``textrec bench baselines``."""
    add_dataset_options(p)
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    p.add_argument("--split", default="auto", help="auto = the published split if shipped, else leave-one-out")
    add_seed_option(p)
    add_threads_option(p)
    add_progress_option(p)
    p.add_argument("--sasrec-epochs", type=positive_int, default=None, help="cap SASRec epochs (default: recipe)")
    p.add_argument("--refit", action="store_true", help="also report the refit-on-train+valid rows (labelled)")
    p.add_argument("--save-topk-dir", help="write each model's test top-K lists (Parquet) here")
    p.add_argument("--sampled-negatives", type=positive_int, default=None,
                   help="ALSO report sampled metrics with this many negatives (never the headline)")
    p.add_argument("--grid", action="append", metavar="MODEL.param=v1,v2",
                   help="replace a default tuning grid (still widened when the best is at an edge)")
    p.add_argument("--tune-minutes", type=positive_float, default=None,
                   help="time budget of each model's grid search (default: the whole grid); a grid that does not "
                        "fit is thinned evenly and the skipped points are listed")
    p.add_argument("--name", default=None, help="result file stem (default baselines_<dataset>)")
    p.add_argument("--add-to", metavar="JSON", default=None,
                   help="run only --models and add their rows to this existing table of the same split")
    add_output_options(p, "baselines")


def run(args: argparse.Namespace) -> int:
    """``textrec bench baselines``."""
    load_kw = dataset_kwargs(args)  # --items included: the baselines rank the catalog `textrec train` ranks
    bench_baselines(dataset=args.dataset, models=args.models, out_dir=args.out, seed=args.seed,
                    split_kind=args.split, sasrec_epochs=args.sasrec_epochs, refit=args.refit,
                    save_topk_dir=args.save_topk_dir, threads=args.threads, data_root=args.data_root,
                    sampled_negatives=args.sampled_negatives, grids=parse_grids(args.grid), name=args.name,
                    progress=not args.quiet, publish=args.publish, load_kw=load_kw, add_to=args.add_to,
                    tune_minutes=args.tune_minutes)
    return 0

