"""``textrec bench toolbox-dim-sweep``: embedding size vs popularity bias, SASRec and the text engine
at hidden sizes 8..256.

Each size is one run (``run --dataset scientific --model sasrec --hidden 32``) that trains the
model from its recipe with that hidden size (feed-forward width 4x hidden) under the given
budget and writes a part file under ``toolbox_dim_sweep_<dataset>[_textfusion]/``; ``merge``
collects the parts of one dataset and model in the same output folder (and, for SASRec, the
size-64 collision-free part of ``toolbox-id-table`` when its budget matches) into
``toolbox_dim_sweep_<dataset>[_textfusion].json`` and a plot of test NDCG@10 beside the catalog
coverage, tail share and mean popularity percentile of the top-10 lists.

The text engine is TextFusion (:mod:`textrec.models.fusion`): its hidden size is the width of
every item vector (text adaptor output, code tables, ID residual) and of the encoder. Its
sweep reports the sequential score ``h . rep(i)`` alone, so the size is the only thing that
moves (the valid-tuned EASE/text mix would add a size-independent term).

    textrec bench toolbox-dim-sweep run --dataset scientific --model sasrec --hidden 8 --max-epochs 8 --publish
    textrec bench toolbox-dim-sweep merge --dataset scientific --model sasrec --max-epochs 8 --publish
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from textrec.options import add_seed_option, add_threads_option, positive_int, progress
from textrec.results import ResultWriter, add_output_options, part_dir, writer_from_args

BENCH = "toolbox-dim-sweep"
METRICS = ("ndcg@10", "hr@10", "coverage@10", "tail_share@10", "mean_pop_percentile@10")
MODELS = ("sasrec", "textfusion")


def stem(dataset: str, model: str) -> str:
    """File stem of one sweep (SASRec keeps the original ``toolbox_dim_sweep_<dataset>`` name)."""
    return f"toolbox_dim_sweep_{dataset}" + ("" if model == "sasrec" else f"_{model}")


def build_model(model: str, hidden: int, max_epochs: int, stride: int, seed: int, patience: int | None = None):
    """The recipe's model with this hidden size (ff = 4 x hidden)."""
    extra = {} if patience is None else {"patience": patience}
    if model == "sasrec":
        from textrec.models.sasrec import SASRec

        return SASRec.from_recipe("sasrec", seed=seed, max_epochs=max_epochs, hidden=hidden, ff=4 * hidden,
                                  window_stride=stride, **extra)
    from textrec.models.fusion import TextFusionRec

    # sequential score only: the mix is not tuned, so every size is scored by h . rep(i).
    # Plain PQ codes: OPQ's rotation is size-independent and cost ~7 CPU-minutes per run
    return TextFusionRec.from_recipe("fusion", seed=seed, max_epochs=max_epochs, tune_mix=False, opq=False,
                                     backbone={"hidden": hidden, "ff": 4 * hidden},
                                     trainer={"window_stride": stride, **extra})


def standard_errors(res, popularity: np.ndarray) -> dict[str, float]:
    """Standard errors over test rows of NDCG@10 and of the per-list tail share / popularity percentile."""
    from textrec.metrics.ranking import popularity_percentiles, tail_items

    n = res.n_rows
    out = {"ndcg@10_se": float(np.std(res.per_row["ndcg@10"], ddof=1) / np.sqrt(n))}
    top = res.topk[:, :10]
    for key, per_item in (("tail_share@10", tail_items(popularity, 0.2).astype(float)),
                          ("mean_pop_percentile@10", popularity_percentiles(popularity))):
        per_list = np.where(top >= 0, per_item[top.clip(min=0)], np.nan)
        out[f"{key}_se"] = float(np.nanstd(np.nanmean(per_list, 1), ddof=1) / np.sqrt(n))
    return {k: round(v, 6) for k, v in out.items()}


def _best_epoch(model) -> int | None:
    """Epoch with the best valid metric in a model's history (TextFusion keeps no attribute)."""
    rows = [r for r in model.history if "valid_ndcg@10" in r]
    return max(rows, key=lambda r: r["valid_ndcg@10"])["epoch"] if rows else None


def _overrides(stride: int, patience: int | None) -> dict:
    """The recipe settings a sweep changes (its budget, besides max_epochs)."""
    return {"window_stride": stride} if patience is None else {"window_stride": stride, "patience": patience}


def benchmark_size(dataset: str, model_name: str, hidden: int, max_epochs: int, stride: int, seed: int,
                   patience: int | None = None, show: bool = True) -> dict:
    """Train and test one size; its part record."""
    from textrec.data.registry import load_dataset
    from textrec.data.splits import make_split
    from textrec.evaluation import run_protocol

    split = make_split(load_dataset(dataset), "auto")
    model = build_model(model_name, hidden, max_epochs, stride, seed, patience)
    cpu0 = time.process_time()
    res = run_protocol(model, split, progress=show)
    part = {"dataset": dataset, "model": model_name, "hidden": hidden, "ff": 4 * hidden, "seed": seed,
            "max_epochs": max_epochs, "recipe_overrides": _overrides(stride, patience),
            "best_epoch": model.best_epoch if model_name == "sasrec" else _best_epoch(model),
            "valid": res.valid.to_dict(), "test": res.test.to_dict(),
            "test_se": standard_errors(res.test, split.item_popularity()),
            "train_seconds": round(res.train_seconds, 1), "cpu_seconds": round(time.process_time() - cpu0, 1),
            "training_history": model.history, "split": split.describe()}
    print({m: res.test.metrics[m] for m in METRICS}, part["test_se"], "cpu s", part["cpu_seconds"])
    return part


def _parts(writer: ResultWriter, record: str, pattern: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for root in (writer.out, writer.dir):  # this run's files win over earlier ones
        for p in sorted((root / part_dir(record)).glob(pattern)):
            found[p.name] = p
    return found


def merge_sizes(writer: ResultWriter, dataset: str, model_name: str, max_epochs: int, stride: int, seed: int,
                patience: int | None = None) -> dict:
    """One table + plot over every size run with this budget."""
    s = stem(dataset, model_name)
    budget = _overrides(stride, patience)
    rows = []
    for name, p in sorted(_parts(writer, f"{s}.json", f"{s}_h*_seed{seed}.part.json").items()):
        part = json.loads(p.read_text(encoding="utf-8"))
        if part["max_epochs"] == max_epochs and part["recipe_overrides"] == budget:
            rows.append({"hidden": part["hidden"], "best_epoch": part["best_epoch"], "source": name,
                         "valid_ndcg@10": part["valid"]["ndcg@10"], **{m: part["test"][m] for m in METRICS},
                         **part.get("test_se", {}), "cpu_seconds": part.get("cpu_seconds")})
    ref_name = f"toolbox_id_table_{dataset}_collision_free_seed{seed}.part.json"
    ref = _parts(writer, f"toolbox_id_table_{dataset}.json", ref_name).get(ref_name)
    if model_name == "sasrec" and ref is not None and not any(r["hidden"] == 64 for r in rows):
        part = json.loads(ref.read_text(encoding="utf-8"))
        if part["max_epochs"] == max_epochs and part["recipe_overrides"] == budget:
            rows.append({"hidden": 64, "best_epoch": part["best_epoch"], "source": ref.name,
                         "valid_ndcg@10": part["valid"]["ndcg@10"], **{m: part["test"][m] for m in METRICS}})
    if not rows:
        raise FileNotFoundError(f"no part files of {s} with this budget in {writer.out / part_dir(s)}")
    rows.sort(key=lambda r: r["hidden"])
    label = ("SASRec (recipe, ff = 4 x hidden)" if model_name == "sasrec"
             else "TextFusion (recipe fusion, ff = 4 x hidden), sequential score h . rep(i), mix not tuned")
    return {"benchmark": "toolbox_dim_sweep", "dataset": dataset, "model": label,
            "budget": {"max_epochs": max_epochs, **budget, "seed": seed, "n_seeds": 1},
            "protocol": "fit on train, early stop on valid, test with valid appended; full ranking, history "
                        "masked; tail = all but the 20% most-trained items; *_se = standard error over "
                        "test rows (one seed: seed-to-seed spread not included)",
            "rows": rows, "hidden_max_ndcg@10": max(rows, key=lambda r: r["ndcg@10"])["hidden"],
            "hidden_max_tail_share@10": max(rows, key=lambda r: r["tail_share@10"])["hidden"],
            "hidden_max_coverage@10": max(rows, key=lambda r: r["coverage@10"])["hidden"], "plot": f"{s}.png"}


def plot(rows: list[dict], path: Path, title: str) -> None:
    """NDCG@10 (left axis, +-1 s.e. where known) and the popularity measures (right axis) against
    the hidden size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dims = [r["hidden"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.errorbar(dims, [r["ndcg@10"] for r in rows], yerr=[r.get("ndcg@10_se", 0.0) for r in rows],
                fmt="o-", color="black", capsize=3, label="test NDCG@10")
    ax.set_xscale("log", base=2)
    ax.set_xticks(dims, [str(d) for d in dims])
    ax.set_xlabel("embedding size")
    ax.set_ylabel("NDCG@10")
    ax2 = ax.twinx()
    for key, style in (("coverage@10", "s--"), ("tail_share@10", "^--"), ("mean_pop_percentile@10", "v--")):
        ax2.plot(dims, [r[key] for r in rows], style, label=key)
    ax2.set_ylabel("share (top-10 lists)")
    ax2.set_ylim(0, 1)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="center right", fontsize=8)
    ax.set_title(f"{title}: embedding size vs accuracy and popularity bias", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``run`` (one size) | ``merge`` (see the module docstring)."""
    sub = p.add_subparsers(dest="step", required=True)
    for name, help_ in (("run", "train and test one hidden size (a part file)"),
                        ("merge", "collect the sizes of one budget into one table and plot")):
        s = sub.add_parser(name, help=help_)
        s.add_argument("--dataset", default="ml-100k")
        s.add_argument("--model", choices=MODELS, default="sasrec")
        s.add_argument("--max-epochs", type=positive_int, default=8)
        s.add_argument("--window-stride", type=positive_int, default=50)
        s.add_argument("--patience", type=positive_int, default=None,
                       help="override the recipe's early-stopping patience")
        if name == "run":
            s.add_argument("--hidden", type=positive_int, required=True)
        add_seed_option(s)
        add_threads_option(s)
        add_output_options(s, BENCH)


def run(args: argparse.Namespace) -> int:
    """Run one size, or merge the sizes of one budget."""
    s = stem(args.dataset, args.model)
    with writer_from_args(args, BENCH) as writer:
        if args.step == "run":
            part = benchmark_size(args.dataset, args.model, args.hidden, args.max_epochs, args.window_stride,
                                  args.seed, args.patience, progress(args))
            writer.write_json(str(part_dir(s) / f"{s}_h{args.hidden}_seed{args.seed}.part.json"), part)
        else:
            result = merge_sizes(writer, args.dataset, args.model, args.max_epochs, args.window_stride, args.seed,
                                 args.patience)
            writer.write_json(f"{s}.json", result)
            plot(result["rows"], writer.path(f"{s}.png"),
                 f"{args.dataset}: {'SASRec' if args.model == 'sasrec' else 'TextFusion'}")
            writer.record(f"{s}.png")
            for r in result["rows"]:
                print(r)
    return 0
