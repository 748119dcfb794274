"""Plot the TextFusion data-efficiency curves (test NDCG@10 against the share of training users).

    python eval/plot_fusion_efficiency.py     # writes eval/results/fusion_efficiency.png

Reads every ``fusion_efficiency_*.json`` in eval/results (the 3-epoch-pretraining sizing run is
left out: it is superseded by the 10-epoch run on the same subsets); seeds are averaged.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
ROW = re.compile(r"(?P<pct>\d+)% users, seed (?P<seed>\d+): (?P<model>.+)")


def curves(dataset: str) -> dict[str, dict[float, float]]:
    """Mean test NDCG@10 per model and user share for one target dataset."""
    points: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(RESULTS.glob(f"fusion_efficiency_{dataset}*.json")):
        if "pretrain3ep" in path.name:
            continue
        for name, row in json.loads(path.read_text())["models"].items():
            m = ROW.match(name)
            if m and not m["model"].endswith("(own codes)"):
                points[m["model"]][int(m["pct"]) / 100].append(row["test"]["ndcg@10"])
    return {model: {x: sum(v) / len(v) for x, v in sorted(xs.items())} for model, xs in points.items()}


def main() -> None:
    """Draw one panel per target dataset."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, dataset in zip(axes, ("scientific", "office")):
        for model, pts in curves(dataset).items():
            ax.plot([100 * x for x in pts], list(pts.values()), marker="o", label=model)
        ax.set_title(f"{dataset}: test NDCG@10 by share of training users")
        ax.set_xlabel("training users (%)")
        ax.set_ylabel("NDCG@10")
        ax.set_xscale("log")
        ax.set_xticks([10, 25, 50, 100], labels=["10", "25", "50", "100"])
        ax.legend(fontsize=8)
    fig.tight_layout()
    out = RESULTS / "fusion_efficiency.png"
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
