"""``textrec bench toolbox-ghrs``: side-information cold start on ML-100K, GHRS vs Popularity and TextKNN.

new-user split: a seeded 20% of users lose all their events from training; half of them are
valid rows, half test rows; each row has an empty history and all of the user's items as
targets (pure cold start: the model knows the user's attributes only).
new-item split: ``textrec.data.splits.new_item_split`` (20% of items held out of training;
test rows reported for new-item and warm-item targets apart).

GHRS's ``history_weight`` and ``new_item_boost`` are chosen on all valid rows (the boost trades
warm-item for new-item accuracy, so all rows are the right criterion). Full ranking, history
masked, never tuned on test.

    textrec bench toolbox-ghrs --split new_user --publish
    textrec bench toolbox-ghrs --split new_item --publish
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from textrec.data.splits import EvalSet, Split
from textrec.options import add_seed_option, add_threads_option, progress, progress_log
from textrec.results import add_output_options, writer_from_args


def new_user_split(dataset, frac: float = 0.2, seed: int = 0) -> Split:
    """Hold a seeded ``frac`` of users out of training: half valid, half test, empty histories."""
    rng = np.random.default_rng(seed)
    users = rng.permutation(dataset.n_users)[: int(round(dataset.n_users * frac))]
    valid_users, test_users = np.sort(users[: len(users) // 2]), np.sort(users[len(users) // 2:])
    inter = dataset.sorted_interactions()
    held = np.isin(inter["user"].to_numpy(), users)
    train = inter[~held].reset_index(drop=True)

    def rows(us: np.ndarray) -> EvalSet:
        by_user = inter[held].groupby("user")["item"].unique()
        return EvalSet.from_lists(us, [np.zeros(0, np.int64) for _ in us],
                                  [np.sort(by_user[u]).astype(np.int64) for u in us])

    empty = inter.iloc[:0]
    return Split(dataset=dataset, kind="new_user", train=train, valid=rows(valid_users), test=rows(test_users),
                 valid_events=empty, test_events=empty,
                 report={"new_user_frac": frac, "seed": seed, "valid_users": int(len(valid_users)),
                         "test_users": int(len(test_users)), "train_events_removed": int(held.sum()),
                         "history": "empty (attributes only)", "targets": "all of the user's items"})


def _metrics(res, is_new: np.ndarray | None) -> dict:
    out = {"all": res.to_dict()}
    if is_new is not None:
        out["new_item_targets"] = {**res.subset(is_new), "n_rows": int(is_new.sum())}
        out["warm_item_targets"] = {**res.subset(~is_new), "n_rows": int((~is_new).sum())}
    return out


def benchmark_ghrs(split_kind: str, seed: int, grid: list[float], boosts: list[float], show: bool = False) -> dict:
    """Fit Popularity, TextKNN and GHRS (history_weight, new_item_boost tuned on valid); the result."""
    from textrec.data.registry import load_dataset
    from textrec.data.splits import make_split
    from textrec.evaluation import evaluate, run_protocol
    from textrec.models.base import TrainView
    from textrec.models.baselines import Popularity
    from textrec.models.ghrs import GHRS, movielens_side_info
    from textrec.models.text_knn import TextKNN

    ds = load_dataset("ml-100k")
    split = new_user_split(ds, seed=seed) if split_kind == "new_user" else make_split(ds, "new_item", seed=seed)
    user_side, item_side, names = movielens_side_info(ds)
    pop = split.item_popularity()
    models: dict[str, dict] = {}

    def record(name, model, params, tuning=None):
        t0 = time.perf_counter()
        res = run_protocol(model, split, progress=show)
        models[name] = {"params": params,
                        "valid": _metrics(res.valid, split.valid.is_new),
                        "test": _metrics(res.test, split.test.is_new),
                        "train_seconds": round(res.train_seconds, 2), "wall_seconds": round(time.perf_counter() - t0, 1)}
        if tuning:
            models[name]["tuning"] = tuning
        t = models[name]["test"]
        print(name, params, "test ndcg@10", round(t["all"]["ndcg@10"], 4),
              "new-item", round(t.get("new_item_targets", {}).get("ndcg@10", float("nan")), 4))

    record("Popularity", Popularity(), {})
    record("TextKNN", TextKNN(), {})
    # history_weight and new_item_boost act at scoring time only: fit once, score every grid point
    fitted = GHRS(seed=seed).set_side_info(user_side, item_side).fit(TrainView.from_split(split), progress=show)
    tuning, best, best_v = [], None, -1.0
    for w in grid:
        for boost in boosts:
            fitted.history_weight, fitted.new_item_boost = w, boost
            r = evaluate(fitted, split.valid, split.n_items, ks=(10,))
            v = float(r.metrics["ndcg@10"])
            row = {"history_weight": w, "new_item_boost": boost, "valid_ndcg@10": round(v, 6)}
            if split.valid.is_new is not None:  # the warm/new trade-off the boost makes, for the record
                row["valid_ndcg@10_new_item_targets"] = round(float(r.subset(split.valid.is_new)["ndcg@10"]), 6)
                row["valid_ndcg@10_warm_item_targets"] = round(float(r.subset(~split.valid.is_new)["ndcg@10"]), 6)
            tuning.append(row)
            if v > best_v:
                best, best_v = {"history_weight": w, "new_item_boost": boost}, v
    if show:
        progress_log(f"GHRS: best on valid {best} (NDCG@10 {best_v:.4f})")
    record("GHRS", GHRS(seed=seed, **best).set_side_info(user_side, item_side), best, tuning)
    return {
        "benchmark": "toolbox_ghrs", "dataset": ds.name, "split": split.describe(), "seed": seed, "n_seeds": 1,
        "protocol": "fit on train, select on all valid rows, test once; full "
                    "ranking, history masked",
        "side_information": {"user": names["user"], "item": names["item"],
                             "graph": ["degree", "pagerank", "mean_neighbour_degree", "clustering",
                                       "eigenvector_centrality"]},
        "models": models, "popularity_of_test_targets_mean": float(pop.mean()),
    }


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}': expected comma-separated numbers") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``textrec bench toolbox-ghrs``."""
    p.add_argument("--split", choices=["new_user", "new_item"], default="new_user")
    p.add_argument("--history-weights", type=_floats, default=[0, 0.25, 0.5, 1.0], help="grid (default 0,0.25,0.5,1)")
    p.add_argument("--new-item-boosts", type=_floats, default=[1, 2, 4, 8], help="grid (default 1,2,4,8)")
    add_seed_option(p)
    add_threads_option(p)
    add_output_options(p, "toolbox-ghrs")


def run(args: argparse.Namespace) -> int:
    """Run one split; write ``toolbox_ghrs_ml-100k_<split>.json``."""
    with writer_from_args(args, "toolbox-ghrs") as writer:
        res = benchmark_ghrs(args.split, args.seed, args.history_weights, args.new_item_boosts, progress(args))
        writer.write_json(f"toolbox_ghrs_ml-100k_{args.split}.json", res)
    print(json.dumps({n: m["test"]["all"]["ndcg@10"] for n, m in res["models"].items()}))
    return 0
