"""Collision-free vs fixed-size hashed item-ID tables in SASRec, and a stream of arriving ids.

``sasrec``: one SASRec per table (collision-free, hashed at 100/50/25/10% of the catalog), each
fit on train with early stopping on valid and scored on test by the standard harness (full
ranking, history masked, valid appended). Test NDCG@10 is reported overall and for rows whose
target is a popular item (the 20% most-trained items) or a rare one (the other 80%), beside the
table's collision report by item-frequency decile. One table per call (each run stays short);
``--merge`` collects them into ``toolbox_id_table_<dataset>.json``.

``stream``: a synthetic stream with power-law popularity where new ids keep arriving; a
first-order transition model keeps its counts in a collision-free table (grows with the ids) or
in a hashed table fixed at 25% of the *initial* catalog. Every block of events is scored
prequentially (next item given the previous one, full ranking over the ids seen so far), then
learned; the output shows NDCG@10 and the popular-item collision rate as the catalog grows.

    python eval/toolbox_id_table.py sasrec --table hashed:0.25 --max-epochs 20
    python eval/toolbox_id_table.py merge
    python eval/toolbox_id_table.py stream
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from textrec.io import write_json
from textrec.metrics.ranking import tail_items
from textrec.models.id_table import collision_report, hash_buckets, table_rows
from textrec.results import git_commit, machine

OUT = Path("eval/results")


def _table_spec(text: str) -> dict | None:
    """``collision_free`` -> None (the default table); ``hashed:0.25`` -> the hashed option."""
    if text == "collision_free":
        return None
    kind, _, size = text.partition(":")
    if kind != "hashed" or not size:
        raise SystemExit(f"--table wants collision_free or hashed:<fraction>, got '{text}'")
    return {"kind": "hashed", "size": float(size), "seed": 0}


def run_sasrec(dataset: str, table: str, seed: int, max_epochs: int | None, command: str,
               overrides: dict | None = None) -> Path:
    """Fit and test one SASRec with the given ID table; write its part file."""
    from textrec.data.registry import load_dataset
    from textrec.data.splits import make_split
    from textrec.evaluation import run_protocol
    from textrec.models.sasrec import SASRec

    torch.set_num_threads(1)
    split = make_split(load_dataset(dataset), "auto")
    spec = _table_spec(table)
    model = SASRec.from_recipe("sasrec", seed=seed, max_epochs=max_epochs, id_table=spec, **(overrides or {}))
    t0 = time.perf_counter()
    res = run_protocol(model, split, progress=True)
    pop = split.item_popularity()
    popular = ~tail_items(pop, 0.2)
    targets = np.array([split.test.targets(i)[0] for i in range(len(split.test))])
    on_popular = popular[targets]
    ndcg = res.test.per_row["ndcg@10"]
    buckets = (model.module.items.buckets.numpy() if spec else np.arange(split.n_items))
    report = collision_report(buckets, pop)
    collides = np.bincount(buckets, minlength=buckets.max() + 1)[buckets] > 1
    row = {
        "table": table, "id_table": spec, "table_rows": int(len(np.unique(buckets)) if not spec
                                                            else table_rows(split.n_items, spec["size"])),
        "seed": seed, "max_epochs": max_epochs, "recipe_overrides": overrides or {}, "best_epoch": model.best_epoch,
        "epochs_run": len(model.history),
        "valid": res.valid.to_dict(), "test": res.test.to_dict(),
        "test_ndcg@10_popular_targets": round(float(ndcg[on_popular].mean()), 6),
        "test_ndcg@10_rare_targets": round(float(ndcg[~on_popular].mean()), 6),
        "test_rows_popular_targets": int(on_popular.sum()), "test_rows_rare_targets": int((~on_popular).sum()),
        "popular_target_collision_rate": round(float(collides[targets[on_popular]].mean()), 4),
        "rare_target_collision_rate": round(float(collides[targets[~on_popular]].mean()), 4),
        "collision_report_by_frequency_decile": report,
        "train_seconds": round(res.train_seconds, 1), "wall_seconds": round(time.perf_counter() - t0, 1),
        "training_history": model.history,
        # top-10 lists for list-level metrics elsewhere; not kept for large test sets (MBs of JSON)
        "test_top10": res.test.topk[:, :10].tolist() if len(split.test) <= 5000 else None,
        "split": split.describe(), "dataset": dataset, "command": command,
        "date": date.today().isoformat(), "machine": machine(), "git_commit": git_commit(),
    }
    path = OUT / f"toolbox_id_table_{dataset}_{table.replace(':', '')}_seed{seed}.part.json"
    write_json(path, row)
    print(json.dumps({k: row[k] for k in ("table", "best_epoch", "test_ndcg@10_popular_targets",
                                         "test_ndcg@10_rare_targets", "popular_target_collision_rate")}))
    print(f"test ndcg@10 {res.test.metrics['ndcg@10']:.4f}; wrote {path}")
    return path


def merge(dataset: str) -> dict:
    """Collect the part files into one table, with each table's NDCG@10 loss vs collision-free."""
    parts = [json.loads(p.read_text()) for p in sorted(OUT.glob(f"toolbox_id_table_{dataset}_*.part.json"))]
    if not parts:
        raise SystemExit(f"no part files for {dataset} in {OUT}")
    free = {p["seed"]: p for p in parts if p["id_table"] is None}
    rows = []
    for p in parts:
        ref = free.get(p["seed"])
        r = {k: p[k] for k in ("table", "seed", "table_rows", "best_epoch", "epochs_run", "max_epochs",
                               "test_ndcg@10_popular_targets", "test_ndcg@10_rare_targets",
                               "popular_target_collision_rate", "rare_target_collision_rate", "train_seconds")}
        r["test_ndcg@10"] = p["test"]["ndcg@10"]
        r["valid_ndcg@10"] = p["valid"]["ndcg@10"]
        if ref is not None:
            for part in ("popular", "rare"):
                key = f"test_ndcg@10_{part}_targets"
                r[f"loss_{part}"] = round(ref[key] - p[key], 6)
                r[f"relative_loss_{part}"] = round(1 - p[key] / ref[key], 4) if ref[key] else None
            r["loss_overall"] = round(ref["test"]["ndcg@10"] - p["test"]["ndcg@10"], 6)
        rows.append(r)
    order = {"collision_free": 0}
    rows.sort(key=lambda r: (r["seed"], order.get(r["table"], 1), -(float(r["table"].partition(":")[2] or 2))))
    result = {
        "benchmark": "toolbox_id_table", "dataset": dataset, "model": "SASRec (recipe sasrec)",
        "split": parts[0]["split"],
        "protocol": "fit on train, early stop on valid, test with valid appended; full ranking, history "
                    "masked; popular = the 20% most-trained items, rare = the rest",
        "seeds": sorted({p["seed"] for p in parts}), "rows": rows,
        "collision_reports": {p["table"]: p["collision_report_by_frequency_decile"] for p in parts
                              if p["id_table"]},
        "commands": [p["command"] for p in parts], "date": date.today().isoformat(), "machine": machine(),
        "git_commit": git_commit(),
    }
    write_json(OUT / f"toolbox_id_table_{dataset}.json", result)
    for r in rows:
        print({k: r.get(k) for k in ("table", "test_ndcg@10", "test_ndcg@10_popular_targets",
                                     "test_ndcg@10_rare_targets", "loss_popular", "loss_rare")})
    return result


# ---- synthetic stream ----------------------------------------------------------------------
def _stream(n_initial: int, n_blocks: int, block_events: int, new_per_block: int, seed: int):
    """Blocks of (prev, next) transitions over a growing catalog with Zipf popularity.

    Item ``i``'s successors are 5 fixed items drawn by popularity; a transition follows them
    with probability 0.8, else goes to a popularity-drawn item. New ids arrive every block and
    enter the popularity draw with a boost that decays, as launches do.
    """
    rng = np.random.default_rng(seed)
    n_total = n_initial + n_blocks * new_per_block
    base = 1.0 / np.arange(1, n_total + 1) ** 1.0  # Zipf weights
    base = base[rng.permutation(n_total)]
    born = np.concatenate([np.zeros(n_initial, np.int64), np.repeat(np.arange(1, n_blocks + 1), new_per_block)])
    succ = np.zeros((n_total, 5), np.int64)
    blocks = []
    for b in range(n_blocks + 1):
        alive = np.flatnonzero(born <= b)
        w = base[alive] * np.where(born[alive] == b, 20.0, 1.0) * np.where(born[alive] == b - 1, 5.0, 1.0)
        w = w / w.sum()
        new = alive[born[alive] == b]
        for i in new if b else alive:
            succ[i] = rng.choice(alive, size=5, p=w)
        prev = rng.choice(alive, size=block_events, p=w)
        follow = rng.random(block_events) < 0.8
        nxt = np.where(follow, succ[prev, rng.integers(0, 5, block_events)], rng.choice(alive, size=block_events, p=w))
        blocks.append((prev, nxt, len(alive)))
    return blocks


def _ndcg_at_10(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """NDCG@10 of one target per row; ties count against the target (a collided bucket ties)."""
    t = scores[np.arange(len(targets)), targets]
    rank = (scores > t[:, None]).sum(1) + (scores == t[:, None]).sum(1) - 1
    return np.where(rank < 10, 1.0 / np.log2(rank + 2.0), 0.0)


def run_stream(n_initial: int = 2000, n_blocks: int = 10, block_events: int = 20000, new_per_block: int = 400,
               size: float = 0.25, seed: int = 0, command: str = "") -> dict:
    """Prequential NDCG@10 and collision rates of hashed vs collision-free transition counts."""
    blocks = _stream(n_initial, n_blocks, block_events, new_per_block, seed)
    n_total = blocks[-1][2]
    n_buckets = table_rows(n_initial, size)
    buckets = hash_buckets(np.arange(n_total), n_buckets, seed)
    free = np.zeros((n_total, n_total), np.float32)     # grows with the ids (allocated once here)
    hashed = np.zeros((n_buckets, n_buckets), np.float32)
    seen_pop = np.zeros(n_total)
    rows = []
    for b, (prev, nxt, n_alive) in enumerate(blocks):
        if b:  # score this block with what the past taught, then learn it
            ev = np.random.default_rng(seed + b).choice(len(prev), size=min(3000, len(prev)), replace=False)
            p, t = prev[ev], nxt[ev]
            s_free = free[p, :n_alive] + 1e-6 * seen_pop[:n_alive]   # popularity breaks cold ties
            s_hash = hashed[buckets[p]][:, buckets[:n_alive]] + 1e-6 * seen_pop[:n_alive]
            popular = ~tail_items(seen_pop[:n_alive], 0.2)
            collides = np.bincount(buckets[:n_alive], minlength=n_buckets)[buckets[:n_alive]] > 1
            top = np.argsort(-seen_pop[:n_alive], kind="stable")[: max(1, n_alive // 10)]
            rows.append({
                "block": b, "catalog": int(n_alive), "hashed_rows": n_buckets,
                "load_factor": round(n_alive / n_buckets, 2),
                "ndcg@10_collision_free": round(float(_ndcg_at_10(s_free, t).mean()), 4),
                "ndcg@10_hashed": round(float(_ndcg_at_10(s_hash, t).mean()), 4),
                "ndcg@10_collision_free_popular_targets": round(float(_ndcg_at_10(s_free, t)[popular[t]].mean()), 4),
                "ndcg@10_hashed_popular_targets": round(float(_ndcg_at_10(s_hash, t)[popular[t]].mean()), 4),
                "ndcg@10_collision_free_rare_targets": round(float(_ndcg_at_10(s_free, t)[~popular[t]].mean()), 4),
                "ndcg@10_hashed_rare_targets": round(float(_ndcg_at_10(s_hash, t)[~popular[t]].mean()), 4),
                "top_decile_item_collision_rate": round(float(collides[top].mean()), 4),
                "item_collision_rate": round(float(collides.mean()), 4),
            })
            print(rows[-1])
        np.add.at(free, (prev, nxt), 1.0)
        np.add.at(hashed, (buckets[prev], buckets[nxt]), 1.0)
        seen_pop += np.bincount(np.concatenate([prev, nxt]), minlength=n_total)
    result = {
        "benchmark": "toolbox_id_table_stream", "model": "first-order transition counts (prequential)",
        "setup": {"n_initial": n_initial, "n_blocks": n_blocks, "block_events": block_events,
                  "new_ids_per_block": new_per_block, "hashed_size_of_initial_catalog": size, "seed": seed,
                  "scored_events_per_block": 3000, "popularity": "Zipf(1), new ids boosted 20x then 5x"},
        "rows": rows, "command": command, "date": date.today().isoformat(), "machine": machine(),
        "git_commit": git_commit(),
    }
    write_json(OUT / "toolbox_id_table_stream.json", result)
    return result


def main(argv: list[str] | None = None) -> None:
    """sasrec | merge | stream (see the module docstring)."""
    argv = sys.argv[1:] if argv is None else argv
    command = "python eval/toolbox_id_table.py " + " ".join(shlex.quote(a) for a in argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("sasrec")
    s.add_argument("--dataset", default="ml-100k")
    s.add_argument("--table", default="collision_free", help="collision_free | hashed:<fraction>")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--max-epochs", type=int, default=None)
    s.add_argument("--window-stride", type=int, default=None, help="override the recipe's (25)")
    s.add_argument("--patience", type=int, default=None, help="override the recipe's (10)")
    m = sub.add_parser("merge")
    m.add_argument("--dataset", default="ml-100k")
    st = sub.add_parser("stream")
    st.add_argument("--size", type=float, default=0.25)
    st.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.what == "sasrec":
        extra = {k: v for k, v in (("window_stride", args.window_stride), ("patience", args.patience)) if v}
        run_sasrec(args.dataset, args.table, args.seed, args.max_epochs, command, extra or None)
    elif args.what == "merge":
        merge(args.dataset)
    else:
        run_stream(size=args.size, seed=args.seed, command=command)


if __name__ == "__main__":
    main()
