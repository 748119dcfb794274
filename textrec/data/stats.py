"""Small-data diagnostics: how few events per user and how skewed the catalog really is."""

from __future__ import annotations

import os

import numpy as np

from textrec.data.dataset import RecDataset


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative counts (0 = all equal, -> 1 = one item has everything)."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n = len(x)
    if n == 0 or x.sum() == 0:
        return 0.0
    # Standard closed form on sorted values: G = sum_i (2i - n - 1) x_i / (n * sum x).
    i = np.arange(1, n + 1)
    return float(((2 * i - n - 1) * x).sum() / (n * x.sum()))


def dataset_stats(ds: RecDataset) -> dict:
    """Users, items, events, density, per-user quantiles, head share, Gini, cold-item share."""
    users = ds.interactions["user"].to_numpy()
    items = ds.interactions["item"].to_numpy()
    per_user = np.bincount(users, minlength=ds.n_users)
    per_item = np.bincount(items, minlength=ds.n_items)
    n_top = max(1, int(np.ceil(0.01 * ds.n_items)))
    top_share = float(np.sort(per_item)[::-1][:n_top].sum() / max(len(items), 1))
    out = {
        "dataset": ds.name,
        "users": int(ds.n_users),
        "items": int(ds.n_items),
        "events": int(len(items)),
        "density": float(len(items) / max(ds.n_users * ds.n_items, 1)),
        "events_per_user_median": float(np.median(per_user)) if len(per_user) else 0.0,
        "events_per_user_p90": float(np.percentile(per_user, 90)) if len(per_user) else 0.0,
        "share_events_top1pct_items": top_share,
        "item_popularity_gini": gini(per_item),
        "share_items_lt5_events": float((per_item < 5).mean()) if len(per_item) else 0.0,
        "items_without_events": int((per_item == 0).sum()),
        "users_with_1_event": int((per_user == 1).sum()),
        "duplicate_user_item_pairs": int(len(items) - len(set(zip(users.tolist(), items.tolist())))),
    }
    if ds.has_ratings:
        out["has_ratings"] = True
    if ds.reviews is not None:
        out["reviews"] = int(len(ds.reviews))
    out["text_fields"] = list(ds.text_fields)
    if ds.text_fields:
        texts = ds.item_text()
        out["items_with_empty_text"] = int(sum(1 for t in texts if not t.strip()))
    if ds.skipped:
        out["skipped_at_load"] = ds.skipped.summary()
    return out


def format_stats(stats: dict) -> str:
    """Human-readable table of ``dataset_stats`` output."""
    labels = {
        "users": "users", "items": "items", "events": "events", "density": "density",
        "events_per_user_median": "median events / user", "events_per_user_p90": "p90 events / user",
        "share_events_top1pct_items": "share of events on top 1% items",
        "item_popularity_gini": "item popularity Gini", "share_items_lt5_events": "share of items with < 5 events",
        "items_without_events": "items without events", "users_with_1_event": "users with 1 event",
        "duplicate_user_item_pairs": "repeated (user, item) events", "reviews": "reviews",
        "items_with_empty_text": "items with empty text",
    }
    lines = [f"dataset: {stats['dataset']}"]
    for key, label in labels.items():
        if key not in stats:
            continue
        v = stats[key]
        if key == "density":
            s = f"{v:.5f} ({v * 100:.3f}%)"
        elif isinstance(v, float) and key.startswith("share"):
            s = f"{v * 100:.1f}%"
        elif isinstance(v, float):
            s = f"{v:.3f}" if not v.is_integer() else f"{int(v)}"
        else:
            s = f"{v:,}"
        lines.append(f"  {label:<34} {s}")
    lines.append(f"  {'text fields':<34} {', '.join(stats.get('text_fields') or []) or '(none)'}")
    if "skipped_at_load" in stats:
        lines.append(f"  {'skipped at load':<34} {stats['skipped_at_load']}")
    return "\n".join(lines)


def plot_long_tail(ds: RecDataset, path: str | os.PathLike) -> str:
    """Write a PNG of the item popularity curve (items sorted by events, log scale) and the
    cumulative share of events; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from textrec.io import atomic_file

    counts = np.sort(np.bincount(ds.interactions["item"].to_numpy(), minlength=ds.n_items))[::-1]
    rank = np.arange(1, len(counts) + 1)
    cum = np.cumsum(counts) / max(counts.sum(), 1)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(rank / len(counts) * 100, np.maximum(counts, 0.8), color="C0")
    ax.set_yscale("log")
    ax.set_xlabel("items, most to least popular (% of catalog)")
    ax.set_ylabel("events per item (log)", color="C0")
    ax2 = ax.twinx()
    ax2.plot(rank / len(counts) * 100, cum * 100, color="C1")
    ax2.set_ylabel("cumulative % of events", color="C1")
    ax2.set_ylim(0, 101)
    st = dataset_stats(ds)
    ax.set_title(f"{ds.name}: long tail (Gini {st['item_popularity_gini']:.2f}, "
                 f"top 1% items = {st['share_events_top1pct_items'] * 100:.0f}% of events)")
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return str(path)
