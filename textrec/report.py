"""``textrec report``: one HTML page and one Markdown file with plots, from ``eval/results/*.json``.

The result files come from different benchmarks and differ in shape, so rows are found by
structure rather than by name: any object holding a ``test`` dict with ``ndcg@10`` is a model
row (``valid`` beside it when the benchmark kept one). Per dataset the report shows the tuned
baselines (``benchmark: baselines``) and, for every other result file, its row with the best
*valid* NDCG@10 (never selected on test); then accuracy against popularity bias (share of the
long tail in the top 10), every training curve that a result recorded (valid NDCG@10 per epoch),
VQ-Rec code usage, and the figures the benchmarks wrote themselves (reward curves, code usage).
"""

from __future__ import annotations

import html
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

METRIC = "ndcg@10"


@dataclass
class Row:
    """One model's metrics in one result file."""

    dataset: str
    source: str
    label: str
    test: dict[str, Any]
    valid: dict[str, Any] = field(default_factory=dict)
    baseline: bool = False

    @property
    def name(self) -> str:
        return self.label if self.baseline else f"{self.source}: {self.label}" if self.label else self.source


def _rows_in(obj: Any, path: list[str], out: list[tuple[str, dict, dict]]) -> None:
    if not isinstance(obj, dict):
        return
    test = obj.get("test")
    if isinstance(test, dict) and isinstance(test.get(METRIC), (int, float)):
        valid = obj.get("valid") if isinstance(obj.get("valid"), dict) else {}
        label = obj.get("model") if isinstance(obj.get("model"), str) else "/".join(path)
        out.append((label, test, valid))
    for k, v in obj.items():
        if k not in ("test", "valid"):
            _rows_in(v, path + [str(k)], out)


def collect_rows(results_dir: str | Path) -> list[Row]:
    """Every model row of every result JSON (refit variants left out: another protocol)."""
    rows: list[Row] = []
    for path in sorted(Path(results_dir).glob("*.json")):
        d = _read(path)
        if not isinstance(d, dict) or not isinstance(d.get("dataset"), str):
            continue
        found: list[tuple[str, dict, dict]] = []
        _rows_in(d, [], found)
        for label, test, valid in found:
            if "refit" in label:
                continue
            rows.append(Row(d["dataset"], path.stem, label, test, valid, baseline=d.get("benchmark") == "baselines"))
    return rows


def headline_rows(rows: list[Row]) -> dict[str, list[Row]]:
    """Per dataset: every baseline, and each other file's best row on valid NDCG@10."""
    out: dict[str, list[Row]] = {}
    best: dict[tuple[str, str], Row] = {}
    for r in rows:
        if r.baseline:
            out.setdefault(r.dataset, []).append(r)
            continue
        key = (r.dataset, r.source)
        score = r.valid.get(METRIC, float("-inf"))
        if key not in best or score > best[key].valid.get(METRIC, float("-inf")):
            best[key] = r
    seen: set[tuple] = set()
    for (ds, _), r in sorted(best.items()):
        key = (ds, round(r.test[METRIC], 6), round(r.valid.get(METRIC, -1.0), 6))
        if key not in seen:  # a combined result file repeats the rows of its parts
            seen.add(key)
            out.setdefault(ds, []).append(r)
    return out


def training_curves(results_dir: str | Path) -> dict[str, list[tuple[str, list[int], list[float]]]]:
    """Per dataset: (label, epochs, valid NDCG@10) for every recorded per-epoch history."""
    curves: dict[str, list] = {}
    skip = ("models", "training_history", "history")

    def walk(obj: Any, where: list[str], source: str, ds: str) -> None:
        if isinstance(obj, list) and obj and all(isinstance(e, dict) and "epoch" in e for e in obj):
            key = next((k for k in obj[0] if k.lower() == f"valid_{METRIC}"), None)
            pts = [(int(e["epoch"]), float(e[key])) for e in obj if key and isinstance(e.get(key), (int, float))]
            if len(pts) > 1:
                label = f"{source}: {'/'.join(w for w in where if w not in skip)}".rstrip(": ")
                curves.setdefault(ds, []).append((label, [p[0] for p in pts], [p[1] for p in pts]))
        elif isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, where + [str(k)], source, ds)

    for path in sorted(Path(results_dir).glob("*.json")):
        d = _read(path)
        if isinstance(d, dict) and isinstance(d.get("dataset"), str):
            walk(d, [], path.stem, d["dataset"])
    return curves


def code_usage(results_dir: str | Path) -> list[tuple[str, dict[str, Any]]]:
    """(file, code statistics) of every VQ-Rec result that recorded them."""
    out = []
    for path in sorted(Path(results_dir).glob("vqrec*.json")):
        d = _read(path)
        stats = (d.get("codes") or {}).get("codes") if isinstance(d, dict) else None
        if isinstance(stats, dict) and "n_distinct_codes" in stats:
            out.append((path.stem, stats))
    return out


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# ---- plots ---------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy(ds: str, rows: list[Row], path: Path) -> Path:
    """Horizontal bars of test NDCG@10: baselines grey, engines coloured."""
    plt = _plt()
    rows = sorted(rows, key=lambda r: r.test[METRIC])
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(rows) + 1.2))
    ax.barh([r.name[:60] for r in rows], [r.test[METRIC] for r in rows],
            color=["#9aa3ad" if r.baseline else "#2456d6" for r in rows])
    ax.set_xlabel("test NDCG@10 (full ranking)")
    ax.set_title(f"{ds}: engines (blue) vs baselines (grey)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_popularity(headline: dict[str, list[Row]], path: Path) -> Path | None:
    """Accuracy against the long tail's share of the top 10, one panel per dataset."""
    panels = {ds: [r for r in rows if "tail_share@10" in r.test] for ds, rows in headline.items()}
    panels = {ds: rows for ds, rows in panels.items() if rows}
    if not panels:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (ds, rows) in zip(axes[0], panels.items()):
        for r in rows:
            ax.scatter(r.test["tail_share@10"], r.test[METRIC], color="#9aa3ad" if r.baseline else "#2456d6")
            ax.annotate(r.label[:18] or r.source[:18], (r.test["tail_share@10"], r.test[METRIC]), fontsize=7)
        ax.set_title(ds)
        ax.set_xlabel("long-tail share of the top 10")
        ax.set_ylabel("test NDCG@10")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_curves(ds: str, curves: list[tuple[str, list[int], list[float]]], path: Path, max_lines: int = 10) -> Path:
    """Valid NDCG@10 per epoch for up to ``max_lines`` recorded runs."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4))
    for label, xs, ys in curves[:max_lines]:
        ax.plot(xs, ys, marker=".", label=label[:50])
    ax.set_xlabel("epoch")
    ax.set_ylabel("valid NDCG@10")
    ax.set_title(f"{ds}: training curves")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_codes(usage: list[tuple[str, dict[str, Any]]], path: Path) -> Path | None:
    """Per VQ-Rec result: share of items with a unique code tuple and mean normalised code entropy."""
    if not usage:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(usage) + 1.5))
    names = [u[0] for u in usage]
    unique = [1 - float(u[1].get("collision_rate", 0)) for u in usage]
    entropy = [float(u[1].get("mean_entropy_norm", u[1].get("entropy_norm", 0)) or 0) for u in usage]
    y = range(len(usage))
    ax.barh([i + 0.2 for i in y], unique, height=0.4, label="items with a unique code", color="#2456d6")
    ax.barh([i - 0.2 for i in y], entropy, height=0.4, label="mean normalised code entropy", color="#f0a030")
    ax.set_yticks(list(y), names, fontsize=8)
    ax.set_xlim(0, 1.05)
    ax.set_title("VQ-Rec code usage")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# ---- the report ----------------------------------------------------------------------------
def build_report(results_dir: str | Path = "eval/results", out_dir: str | Path = "report") -> tuple[Path, Path]:
    """Write ``index.html``, ``report.md`` and the PNGs into ``out_dir``; returns (html, markdown)."""
    results_dir, out = Path(results_dir), Path(out_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"{results_dir}: no results folder")
    out.mkdir(parents=True, exist_ok=True)
    rows = collect_rows(results_dir)
    if not rows:
        raise ValueError(f"{results_dir}: no result JSON with test {METRIC} rows")
    headline = headline_rows(rows)
    sections: list[tuple[str, str, list[tuple[str, str]], list[Row] | None]] = []  # title, text, images, table
    for ds, ds_rows in sorted(headline.items()):
        img = plot_accuracy(ds, ds_rows, out / f"accuracy_{_slug(ds)}.png")
        sections.append((f"{ds}: engines vs baselines", "Test NDCG@10 under the full-ranking protocol; each "
                         "non-baseline result file contributes its row with the best valid NDCG@10.",
                         [(img.name, f"{ds} accuracy")], ds_rows))
    pop = plot_popularity(headline, out / "popularity.png")
    if pop:
        sections.append(("Long tail and popularity bias", "Share of long-tail items in the top 10 against "
                         "accuracy: up and to the right recommends beyond the head without losing accuracy.",
                         [(pop.name, "popularity bias")], None))
    curves = training_curves(results_dir)
    imgs = [(plot_curves(ds, c, out / f"curves_{_slug(ds)}.png").name, f"{ds} curves")
            for ds, c in sorted(curves.items())]
    if imgs:
        sections.append(("Training curves", "Valid NDCG@10 per epoch, as the benchmarks recorded them.", imgs, None))
    codes = plot_codes(code_usage(results_dir), out / "vqrec_codes.png")
    copied = []
    for png in sorted(results_dir.glob("*.png")):
        shutil.copy2(png, out / png.name)
        copied.append((png.name, png.stem.replace("_", " ")))
    code_imgs = ([(codes.name, "code usage")] if codes else []) + [c for c in copied if "code" in c[0]]
    if code_imgs:
        sections.append(("VQ-Rec code usage", "How evenly items spread over the product-quantization codes "
                         "(collisions = items sharing all codes).", code_imgs, None))
    reward = [c for c in copied if "reward" in c[0]]
    if reward:
        sections.append(("Rec-R1 reward curves", "GRPO reward per step, as the query benchmarks plotted it.",
                         reward, None))
    stamp = f"generated {time.strftime('%Y-%m-%d %H:%M')} from {len(list(results_dir.glob('*.json')))} result files in {results_dir}"
    html_path, md_path = out / "index.html", out / "report.md"
    html_path.write_text(_html(sections, stamp), encoding="utf-8")
    md_path.write_text(_markdown(sections, stamp), encoding="utf-8")
    return html_path, md_path


def _slug(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in s)


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, (int, float)) else ""


def _table_rows(rows: list[Row]) -> list[list[str]]:
    return [[r.name, "baseline" if r.baseline else "engine", _fmt(r.valid.get(METRIC)), _fmt(r.test.get(METRIC)),
             _fmt(r.test.get("hr@10")), _fmt(r.test.get("tail_share@10"))]
            for r in sorted(rows, key=lambda r: -r.test[METRIC])]


HEADER = ["model", "kind", "valid NDCG@10", "test NDCG@10", "test HR@10", "tail share@10"]


def _html(sections, stamp: str) -> str:
    e = html.escape
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'><title>textrec report</title>",
             "<style>body{font:15px/1.45 system-ui,sans-serif;max-width:1000px;margin:1em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccd;padding:.2em .5em;"
             "font-size:.9em}td:nth-child(n+3){text-align:right}img{max-width:100%;display:block;margin:.5em 0}"
             "</style></head><body>", "<h1>textrec report</h1>", f"<p>{e(stamp)}</p>"]
    for title, text, images, table in sections:
        parts += [f"<h2>{e(title)}</h2>", f"<p>{e(text)}</p>"]
        parts += [f"<img src='{e(src)}' alt='{e(alt)}'>" for src, alt in images]
        if table:
            parts.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in HEADER) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in _table_rows(table)]
            parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _markdown(sections, stamp: str) -> str:
    lines = ["# textrec report", "", stamp, ""]
    for title, text, images, table in sections:
        lines += [f"## {title}", "", text, ""]
        lines += [f"![{alt}]({src})" for src, alt in images] + [""]
        if table:
            lines += ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
            lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in _table_rows(table)]
            lines.append("")
    return "\n".join(lines)


def cmd_report(args) -> int:
    """Build the report and say where it is."""
    html_path, md_path = build_report(args.results, args.out)
    print(f"report: {html_path} and {md_path}")
    return 0


def register(sub) -> None:
    """Add ``textrec report`` to the top-level parser."""
    p = sub.add_parser("report", help="HTML + Markdown report with plots from eval/results/*.json")
    p.add_argument("--results", default="eval/results", help="folder of result JSON files")
    p.add_argument("--out", default="report", help="where to write index.html, report.md and the PNGs")
    p.set_defaults(func=cmd_report)
