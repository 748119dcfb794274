"""``textrec bench toolbox-id-table``: collision-free vs fixed-size hashed item-ID tables in SASRec,
and a stream of arriving ids.

``sasrec``: one SASRec per table (collision-free, hashed at 100/50/25/10% of the catalog), each
fit on train with early stopping on valid and scored on test by the standard harness (full
ranking, history masked, valid appended). Test NDCG@10 is reported overall and for rows whose
target is a popular item (the 20% most-trained items) or a rare one (the other 80%), beside the
table's collision report by item-frequency decile. One table per run (each run stays short),
written as a part under ``toolbox_id_table_<dataset>/``; ``merge`` collects the parts of the
same output folder into ``toolbox_id_table_<dataset>.json``.

``stream``: a synthetic stream with power-law popularity where new ids keep arriving; a
first-order transition model keeps its counts in a collision-free table (grows with the ids) or
in a hashed table fixed at 25% of the *initial* catalog. Every block of events is scored
prequentially (next item given the previous one, full ranking over the ids seen so far), then
learned; the output shows NDCG@10 and the popular-item collision rate as the catalog grows.

    textrec bench toolbox-id-table sasrec --table hashed:0.25 --max-epochs 20 --publish
    textrec bench toolbox-id-table merge --publish
    textrec bench toolbox-id-table stream --publish
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from textrec.options import add_seed_option, add_threads_option, positive_float, positive_int, progress
from textrec.results import ResultWriter, add_output_options, part_dir, writer_from_args

BENCH = "toolbox-id-table"


def table_spec(text: str) -> dict | None:
    """argparse type: ``collision_free`` -> None (the default table); ``hashed:0.25`` -> the hashed option."""
    if text == "collision_free":
        return None
    kind, _, size = text.partition(":")
    try:
        value = float(size)
    except ValueError:
        value = -1.0
    if kind != "hashed" or not value > 0:
        raise argparse.ArgumentTypeError(f"expected collision_free or hashed:<fraction > 0>, got '{text}'")
    return {"kind": "hashed", "size": value, "seed": 0}


def record_name(dataset: str) -> str:
    """The merged result of one dataset."""
    return f"toolbox_id_table_{dataset}.json"


def part_name(dataset: str, table: str, seed: int) -> str:
    """Where one table's part goes, relative to the output folder."""
    stem = f"toolbox_id_table_{dataset}_{table.replace(':', '')}_seed{seed}.part.json"
    return str(part_dir(record_name(dataset)) / stem)


def benchmark_sasrec(dataset: str, table: str, seed: int, max_epochs: int | None, overrides: dict | None = None,
                     show: bool = True) -> dict:
    """Fit and test one SASRec with the given ID table; its part record."""
    from textrec.data.registry import load_dataset
    from textrec.data.splits import make_split
    from textrec.evaluation import run_protocol
    from textrec.metrics.ranking import tail_items
    from textrec.models.id_table import collision_report, table_rows
    from textrec.models.sasrec import SASRec

    split = make_split(load_dataset(dataset), "auto")
    spec = table_spec(table)
    model = SASRec.from_recipe("sasrec", seed=seed, max_epochs=max_epochs, id_table=spec, **(overrides or {}))
    t0 = time.perf_counter()
    res = run_protocol(model, split, progress=show)
    pop = split.item_popularity()
    popular = ~tail_items(pop, 0.2)
    targets = np.array([split.test.targets(i)[0] for i in range(len(split.test))])
    on_popular = popular[targets]
    ndcg = res.test.per_row["ndcg@10"]
    buckets = (model.module.items.buckets.numpy() if spec else np.arange(split.n_items))
    report = collision_report(buckets, pop)
    collides = np.bincount(buckets, minlength=buckets.max() + 1)[buckets] > 1
    return {
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
        "split": split.describe(), "dataset": dataset,
    }


def merge_parts(parts: list[dict], dataset: str) -> dict:
    """One table from the part records, with each table's NDCG@10 loss vs collision-free."""
    if not parts:
        raise FileNotFoundError(f"no part files for {dataset}")
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
    return {
        "benchmark": "toolbox_id_table", "dataset": dataset, "model": "SASRec (recipe sasrec)",
        "split": parts[0]["split"],
        "protocol": "fit on train, early stop on valid, test with valid appended; full ranking, history "
                    "masked; popular = the 20% most-trained items, rare = the rest",
        "seeds": sorted({p["seed"] for p in parts}), "rows": rows,
        "collision_reports": {p["table"]: p["collision_report_by_frequency_decile"] for p in parts
                              if p["id_table"]},
        "commands": [p["command"] for p in parts],
    }


def read_parts(writer: ResultWriter, dataset: str) -> list[dict]:
    """The part files of ``dataset`` in the writer's output folder (written now or earlier)."""
    folder = part_dir(record_name(dataset))
    found: dict[str, dict] = {}
    for root in (writer.out, writer.dir):  # this run's files win over earlier ones
        for p in sorted((root / folder).glob(f"toolbox_id_table_{dataset}_*.part.json")):
            found[p.name] = json.loads(p.read_text(encoding="utf-8"))
    return [found[k] for k in sorted(found)]


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


def benchmark_stream(n_initial: int = 2000, n_blocks: int = 10, block_events: int = 20000, new_per_block: int = 400,
                     size: float = 0.25, seed: int = 0) -> dict:
    """Prequential NDCG@10 and collision rates of hashed vs collision-free transition counts."""
    from textrec.metrics.ranking import tail_items
    from textrec.models.id_table import hash_buckets, table_rows

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
    return {
        "benchmark": "toolbox_id_table_stream", "model": "first-order transition counts (prequential)",
        "setup": {"n_initial": n_initial, "n_blocks": n_blocks, "block_events": block_events,
                  "new_ids_per_block": new_per_block, "hashed_size_of_initial_catalog": size, "seed": seed,
                  "scored_events_per_block": 3000, "popularity": "Zipf(1), new ids boosted 20x then 5x"},
        "rows": rows,
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``sasrec`` | ``merge`` | ``stream`` (see the module docstring)."""
    sub = p.add_subparsers(dest="step", required=True)
    s = sub.add_parser("sasrec", help="train and test one SASRec with one ID table (a part file)")
    s.add_argument("--dataset", default="ml-100k")
    s.add_argument("--table", default="collision_free", help="collision_free | hashed:<fraction>")
    s.add_argument("--max-epochs", type=positive_int, default=None)
    s.add_argument("--window-stride", type=positive_int, default=None, help="override the recipe's (25)")
    s.add_argument("--patience", type=positive_int, default=None, help="override the recipe's (10)")
    add_seed_option(s)
    m = sub.add_parser("merge", help="collect a dataset's part files into toolbox_id_table_<dataset>.json")
    m.add_argument("--dataset", default="ml-100k")
    st = sub.add_parser("stream", help="hashed vs collision-free transition counts on a stream of new ids")
    st.add_argument("--size", type=positive_float, default=0.25, help="hashed rows as a share of the initial catalog")
    add_seed_option(st)
    for q in (s, m, st):
        add_threads_option(q)
        add_output_options(q, BENCH)


def run(args: argparse.Namespace) -> int:
    """Run the chosen step through the one result writer."""
    with writer_from_args(args, BENCH) as writer:
        if args.step == "sasrec":
            table_spec(args.table)  # a bad --table fails before any data loads
            extra = {k: v for k, v in (("window_stride", args.window_stride), ("patience", args.patience)) if v}
            row = benchmark_sasrec(args.dataset, args.table, args.seed, args.max_epochs, extra or None, progress(args))
            writer.write_json(part_name(args.dataset, args.table, args.seed), row)
            print(json.dumps({k: row[k] for k in ("table", "best_epoch", "test_ndcg@10_popular_targets",
                                                 "test_ndcg@10_rare_targets", "popular_target_collision_rate")}))
        elif args.step == "merge":
            result = merge_parts(read_parts(writer, args.dataset), args.dataset)
            writer.write_json(record_name(args.dataset), result)
            for r in result["rows"]:
                print({k: r.get(k) for k in ("table", "test_ndcg@10", "test_ndcg@10_popular_targets",
                                             "test_ndcg@10_rare_targets", "loss_popular", "loss_rare")})
        else:
            writer.write_json("toolbox_id_table_stream.json", benchmark_stream(size=args.size, seed=args.seed))
    return 0
