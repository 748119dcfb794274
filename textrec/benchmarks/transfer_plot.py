"""Data-efficiency plot of ``textrec bench transfer`` results (one target per figure).

    python -m textrec.benchmarks.transfer_plot eval/results/transfer_scientific_*.json \\
        --out eval/results/transfer_scientific.png

Test NDCG@10 against the share of the target's training users (log scale): EASE, TextFusion from
scratch and pretrained+fine-tuned (mean over seeds, error bars = standard error over seeds where
there are several), with the zero-shot model and TextKNN as horizontal lines when present. Rows
of several result files (e.g. a curve run and a zero-shot run of the same target) are merged.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from textrec.benchmarks.transfer import EASE_ROW, OWN_TERM, PRETRAINED, SCRATCH, SCRATCH_WH, TEXT_TERM

ROW = re.compile(r"^(?P<pct>[0-9.]+)% users, seed (?P<seed>\d+): (?P<model>.+)$")
LINES = (EASE_ROW, SCRATCH, SCRATCH_WH, PRETRAINED, SCRATCH + TEXT_TERM, SCRATCH + OWN_TERM, SCRATCH_WH + TEXT_TERM,
         PRETRAINED + TEXT_TERM)


def collect(results: list[dict[str, Any]]) -> tuple[str, dict[str, dict[float, list[float]]], dict[str, float]]:
    """Dataset name, ``{model: {share: [test NDCG@10 per seed]}}`` and the flat rows (zero-shot etc.)."""
    names = {r["dataset"] for r in results}
    if len(names) != 1:
        raise ValueError(f"results of several targets given: {sorted(names)}")
    curves: dict[str, dict[float, list[float]]] = {}
    flat: dict[str, float] = {}
    for r in results:
        for key, row in r["models"].items():
            m = ROW.match(key)
            value = row["test"]["ndcg@10"]
            if m:
                curves.setdefault(m["model"], {}).setdefault(float(m["pct"]) / 100, []).append(value)
            else:
                flat[key] = value
    return names.pop(), curves, flat


def plot(results: list[dict[str, Any]], out: str | Path) -> Path:
    """Write the figure of ``results`` (loaded result JSONs of one target) to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dataset, curves, flat = collect(results)
    fig, ax = plt.subplots(figsize=(7.0, 6.2))
    for name in LINES:
        pts = curves.get(name)
        if not pts:
            continue
        xs = sorted(pts)
        ys = [float(np.mean(pts[x])) for x in xs]
        es = [float(np.std(pts[x], ddof=1) / np.sqrt(len(pts[x]))) if len(pts[x]) > 1 else 0.0 for x in xs]
        dashed = TEXT_TERM in name or OWN_TERM in name  # the same model plus the text term
        ax.errorbar([x * 100 for x in xs], ys, yerr=es, marker="s" if dashed else "o", capsize=3, label=name,
                    linestyle="--" if dashed else "-")
    styles = {"TextFusion zero-shot (pretrained, target item text only)": ("zero-shot (pretrained, no target training)", "-."),
              "TextKNN": ("TextKNN", ":"), "TextKNN, last item only": ("TextKNN, last item only", (0, (1, 4)))}
    for key, (label, ls) in styles.items():
        if key in flat:
            ax.axhline(flat[key], linestyle=ls, color="black" if key.startswith("TextFusion") else "grey", label=label)
    ax.set_xscale("log")
    ax.set_xticks([5, 10, 25, 50, 100])
    ax.set_xticklabels(["5", "10", "25", "50", "100"])
    ax.set_xlabel("% of the target's training users")
    ax.set_ylabel("test NDCG@10 (all users, full ranking)")
    ax.set_title(f"Transfer to {dataset}: pretrained on the other text domains")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)  # below: no curve hidden
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    """Plot the given result files into ``--out``."""
    ap = argparse.ArgumentParser(prog="python -m textrec.benchmarks.transfer_plot", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", help="transfer result JSON files of one target")
    ap.add_argument("--out", required=True, help="PNG to write")
    args = ap.parse_args(argv)
    results = [json.loads(Path(p).read_text(encoding="utf-8")) for p in args.results]
    print(f"wrote {plot(results, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
