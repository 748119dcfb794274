"""``textrec bench fusion-plot``: the TextFusion data-efficiency curves (test NDCG@10 against the
share of training users) as one figure.

Reads every ``fusion_efficiency_*.json`` of the published results (the 3-epoch-pretraining
sizing run is left out: the 10-epoch run on the same subsets supersedes it); seeds are averaged.
Computes nothing new: it draws the published numbers.

    textrec bench fusion-plot --publish      # eval/results/fusion_efficiency.png
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

from textrec.results import PUBLISHED, REPO_ROOT, add_output_options, writer_from_args

ROW = re.compile(r"(?P<pct>\d+)% users, seed (?P<seed>\d+): (?P<model>.+)")


def curves(results: Path, dataset: str) -> dict[str, dict[float, float]]:
    """Mean test NDCG@10 per model and user share for one target dataset."""
    points: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(results.glob(f"fusion_efficiency_{dataset}*.json")):
        if "pretrain3ep" in path.name:
            continue
        for name, row in json.loads(path.read_text(encoding="utf-8"))["models"].items():
            m = ROW.match(name)
            if m and not m["model"].endswith("(own codes)"):
                points[m["model"]][int(m["pct"]) / 100].append(row["test"]["ndcg@10"])
    return {model: {x: sum(v) / len(v) for x, v in sorted(xs.items())} for model, xs in points.items()}


def plot(results: Path, out: Path, datasets: tuple[str, ...] = ("scientific", "office")) -> Path:
    """Draw one panel per target dataset into ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        for model, pts in curves(results, dataset).items():
            ax.plot([100 * x for x in pts], list(pts.values()), marker="o", label=model)
        ax.set_title(f"{dataset}: test NDCG@10 by share of training users")
        ax.set_xlabel("training users (%)")
        ax.set_ylabel("NDCG@10")
        ax.set_xscale("log")
        ax.set_xticks([10, 25, 50, 100], labels=["10", "25", "50", "100"])
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``textrec bench fusion-plot``."""
    p.add_argument("--results", default=str(REPO_ROOT / PUBLISHED), help="folder of the fusion_efficiency_*.json")
    add_output_options(p, "fusion-plot")


def run(args: argparse.Namespace) -> int:
    """Write ``fusion_efficiency.png``."""
    with writer_from_args(args, "fusion-plot") as writer:
        path = writer.path("fusion_efficiency.png")
        path.parent.mkdir(parents=True, exist_ok=True)
        plot(Path(args.results), path)
        writer.record("fusion_efficiency.png")
    return 0
