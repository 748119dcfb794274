"""Embedding size vs popularity bias: SASRec at hidden sizes 8..256 on ML-100K.

Each size is one call (``run --hidden 32``) that trains SASRec from the recipe with the hidden
size (feed-forward width 4x hidden) under the given budget and writes a part file; ``merge``
collects the parts (and the size-64 collision-free run of ``toolbox_id_table.py`` when its
budget matches) into ``toolbox_dim_sweep_ml-100k.json`` and a plot of test NDCG@10 beside the
catalog coverage, tail share and mean popularity percentile of the top-10 lists.

    python eval/toolbox_dim_sweep.py run --hidden 8 --max-epochs 8 --window-stride 50
    python eval/toolbox_dim_sweep.py merge
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from datetime import date
from pathlib import Path

import torch

from textrec.io import write_json
from textrec.results import git_commit, machine

OUT = Path("eval/results")
METRICS = ("ndcg@10", "hr@10", "coverage@10", "tail_share@10", "mean_pop_percentile@10")


def run(hidden: int, max_epochs: int, stride: int, seed: int, command: str) -> None:
    """Train and test one size; write its part file."""
    from textrec.data.registry import load_dataset
    from textrec.data.splits import make_split
    from textrec.evaluation import run_protocol
    from textrec.models.sasrec import SASRec

    torch.set_num_threads(1)
    split = make_split(load_dataset("ml-100k"), "auto")
    model = SASRec.from_recipe("sasrec", seed=seed, max_epochs=max_epochs, hidden=hidden, ff=4 * hidden,
                               window_stride=stride)
    res = run_protocol(model, split, progress=True)
    part = {"hidden": hidden, "ff": 4 * hidden, "seed": seed, "max_epochs": max_epochs,
            "recipe_overrides": {"window_stride": stride}, "best_epoch": model.best_epoch,
            "valid": res.valid.to_dict(), "test": res.test.to_dict(), "train_seconds": round(res.train_seconds, 1),
            "command": command, "date": date.today().isoformat(), "machine": machine(), "git_commit": git_commit()}
    write_json(OUT / f"toolbox_dim_sweep_ml-100k_h{hidden}_seed{seed}.part.json", part)
    print({m: res.test.metrics[m] for m in METRICS})


def merge(max_epochs: int, stride: int, seed: int) -> dict:
    """One table + plot over every size run with this budget."""
    rows = []
    for p in sorted(OUT.glob(f"toolbox_dim_sweep_ml-100k_h*_seed{seed}.part.json")):
        part = json.loads(p.read_text())
        if part["max_epochs"] == max_epochs and part["recipe_overrides"] == {"window_stride": stride}:
            rows.append({"hidden": part["hidden"], "best_epoch": part["best_epoch"], "source": p.name,
                         "valid_ndcg@10": part["valid"]["ndcg@10"], **{m: part["test"][m] for m in METRICS}})
    ref = OUT / f"toolbox_id_table_ml-100k_collision_free_seed{seed}.part.json"
    if ref.is_file() and not any(r["hidden"] == 64 for r in rows):
        part = json.loads(ref.read_text())
        if part["max_epochs"] == max_epochs and part["recipe_overrides"] == {"window_stride": stride}:
            rows.append({"hidden": 64, "best_epoch": part["best_epoch"], "source": ref.name,
                         "valid_ndcg@10": part["valid"]["ndcg@10"], **{m: part["test"][m] for m in METRICS}})
    if not rows:
        raise SystemExit("no part files with this budget")
    rows.sort(key=lambda r: r["hidden"])
    best_ndcg = max(rows, key=lambda r: r["ndcg@10"])["hidden"]
    best_tail = max(rows, key=lambda r: r["tail_share@10"])["hidden"]
    best_cov = max(rows, key=lambda r: r["coverage@10"])["hidden"]
    result = {"benchmark": "toolbox_dim_sweep", "dataset": "ml-100k", "model": "SASRec (recipe, ff = 4 x hidden)",
              "budget": {"max_epochs": max_epochs, "window_stride": stride, "seed": seed, "n_seeds": 1},
              "protocol": "fit on train, early stop on valid, test with valid appended; full ranking, history "
                          "masked; tail = all but the 20% most-trained items",
              "rows": rows, "hidden_max_ndcg@10": best_ndcg, "hidden_max_tail_share@10": best_tail,
              "hidden_max_coverage@10": best_cov, "plot": "toolbox_dim_sweep_ml-100k.png",
              "date": date.today().isoformat(), "machine": machine(), "git_commit": git_commit()}
    write_json(OUT / "toolbox_dim_sweep_ml-100k.json", result)
    plot(rows, OUT / "toolbox_dim_sweep_ml-100k.png")
    for r in rows:
        print(r)
    return result


def plot(rows: list[dict], path: Path) -> None:
    """NDCG@10 (left axis) and the popularity measures (right axis) against the hidden size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dims = [r["hidden"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.plot(dims, [r["ndcg@10"] for r in rows], "o-", color="black", label="test NDCG@10")
    ax.set_xscale("log", base=2)
    ax.set_xticks(dims, [str(d) for d in dims])
    ax.set_xlabel("SASRec embedding size")
    ax.set_ylabel("NDCG@10")
    ax2 = ax.twinx()
    for key, style in (("coverage@10", "s--"), ("tail_share@10", "^--"), ("mean_pop_percentile@10", "v--")):
        ax2.plot(dims, [r[key] for r in rows], style, label=key)
    ax2.set_ylabel("share (top-10 lists)")
    ax2.set_ylim(0, 1)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="center right", fontsize=8)
    ax.set_title("ML-100K: embedding size vs accuracy and popularity bias")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    """run | merge (see the module docstring)."""
    argv = sys.argv[1:] if argv is None else argv
    command = "python eval/toolbox_dim_sweep.py " + " ".join(shlex.quote(a) for a in argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    for name in ("run", "merge"):
        s = sub.add_parser(name)
        s.add_argument("--max-epochs", type=int, default=8)
        s.add_argument("--window-stride", type=int, default=50)
        s.add_argument("--seed", type=int, default=0)
        if name == "run":
            s.add_argument("--hidden", type=int, required=True)
    args = p.parse_args(argv)
    if args.what == "run":
        run(args.hidden, args.max_epochs, args.window_stride, args.seed, command)
    else:
        merge(args.max_epochs, args.window_stride, args.seed)


if __name__ == "__main__":
    main()
