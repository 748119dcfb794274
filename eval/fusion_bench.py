"""TextFusion benchmarks (issue 13), one command per table; JSON to eval/results/fusion_*.json.

  published  python eval/fusion_bench.py published --dataset scientific --seeds 0 1
             the dataset's own split (Scientific: published LOO; Office: the ReChorus LOO-by-time
             files): EASE (L2 tuned on valid), ItemKNN, MarkovChain, TextKNN, Popularity
             [+ SASRec with --sasrec] and TextFusion per seed, side by side in one run.
  new-items  python eval/fusion_bench.py new-items --dataset scientific --seeds 0 1
             seeded new-item split (20% of items never in training, not even as negatives):
             new-item and warm-item rows for Popularity, EASE, TextKNN and TextFusion (+ its
             sequential part alone, and the mix without the text-cosine term, as ablations).
  efficiency python eval/fusion_bench.py efficiency --dataset scientific --source office instruments
             pretrain TextFusion once on the source domains, then for 10% / 25% (--fractions) of the
             target's training users: EASE, TextFusion from scratch, pretrained + fine-tuned; the
             test rows are every user's (same rows for each condition). --epochs-full-equiv X caps
             each run at ceil(X / fraction) epochs (the same number of steps at every fraction).
  codes      python eval/fusion_bench.py codes --dataset scientific
             code collisions/usage and the new-item quality of the codes alone (kNN over the
             decoded code vectors) for K in 16..256, quantizer fitted on the target's training
             items only vs on every domain's item text (target: training items only).

Every choice (EASE L2, the fusion mix, early stopping) is made on valid; test is computed once per
model. Results record command, date, machine, seeds; valid and test apart.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import torch

from textrec.data.registry import load_dataset
from textrec.data.splits import Split, make_split
from textrec.evaluation import evaluate, run_protocol
from textrec.io import write_json
from textrec.models.base import TrainView
from textrec.models.fusion import DEFAULT_MIX, TextFusionRec
from textrec.results import git_commit, machine, peak_rss_mb

KEYS = ("hr@10", "recall@10", "ndcg@10", "mrr@10", "recall@20", "ndcg@20")
#: the domains whose item text can train the quantizer (the target contributes training items only)
CORPUS = ["scientific", "office", "ml-100k"]


# ---- helpers ----------------------------------------------------------------------------------
def _short(metrics: dict[str, float] | None) -> dict[str, float] | None:
    if metrics is None:
        return None
    out = {k: round(float(metrics[k]), 4) for k in KEYS if k in metrics}
    if "n_rows" in metrics:
        out["n_rows"] = int(metrics["n_rows"])
    return out


def _row(res, model, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    row = {"valid": _short(res.valid.metrics), "test": _short(res.test.metrics),
           "train_seconds": round(res.train_seconds, 1)}
    if res.test_new is not None:
        row.update({"valid_new": _short(res.valid_new), "valid_warm": _short(res.valid_warm),
                    "test_new": _short(res.test_new), "test_warm": _short(res.test_warm)})
    if hasattr(model, "get_config"):
        row["config"] = model.get_config()
    row.update(extra or {})
    return row


def _eval_row(model, split: Split, train_seconds: float, valid: bool = True) -> dict[str, Any]:
    """Test (and valid) rows of an already fitted model (same harness as run_protocol)."""
    test = evaluate(model, split.test, split.n_items)
    row = {"test": _short(test.metrics), "train_seconds": round(train_seconds, 1)}
    if valid:
        v = evaluate(model, split.valid, split.n_items)
        row["valid"] = _short(v.metrics)
        if split.valid.is_new is not None:
            vn = split.valid.is_new
            row.update({"valid_new": _short({**v.subset(vn), "n_rows": int(vn.sum())}),
                        "valid_warm": _short({**v.subset(~vn), "n_rows": int((~vn).sum())})})
    if split.test.is_new is not None:
        tn = split.test.is_new
        row.update({"test_new": _short({**test.subset(tn), "n_rows": int(tn.sum())}),
                    "test_warm": _short({**test.subset(~tn), "n_rows": int((~tn).sum())})})
    return row


def _tuned_ease(split: Split, grid: list[float]) -> tuple[Any, dict[str, Any]]:
    """EASE with its L2 chosen on valid NDCG@10."""
    from textrec.models.baselines import EASE
    from textrec.models.tuning import grid_search

    best, table = grid_search(lambda p: EASE(**p), {"lam": grid}, split, progress=False)
    return best, table


def _baseline_rows(split: Split, args: argparse.Namespace) -> tuple[dict[str, Any], float]:
    from textrec.models.baselines import EASE, ItemKNN, MarkovChain, Popularity
    from textrec.models.text_knn import TextKNN

    rows: dict[str, Any] = {}
    best, table = _tuned_ease(split, args.ease_grid)
    lam = float(best["lam"])
    models: list[tuple[str, Any]] = [("Popularity", Popularity()), ("EASE", EASE(lam=lam)),
                                     ("TextKNN", TextKNN())]
    if args.mode == "published":
        models += [("ItemKNN", ItemKNN(k=100)), ("MarkovChain", MarkovChain())]
    if args.sasrec:
        from textrec.models.sasrec import SASRec

        trainer = {"catalog": "train"} if args.mode == "new-items" else {}
        models.append(("SASRec", SASRec.from_recipe("sasrec", seed=args.seeds[0], max_epochs=args.epochs,
                                                    trainer=trainer)))
    for name, model in models:
        t0 = time.perf_counter()
        res = run_protocol(model, split, progress=False)
        rows[name] = _row(res, model, {"ease_lam_grid_on_valid": table} if name == "EASE" else None)
        if name == "SASRec" and res.test_new is not None:
            rows[name]["test_new"] = {"n_rows": res.test_new["n_rows"], "note": "cannot score new items"}
        print(f"{name}: test {rows[name]['test']} new {rows[name].get('test_new')} "
              f"({time.perf_counter() - t0:.0f}s)", flush=True)
    return rows, lam


def _objective(args: argparse.Namespace) -> str:
    """The mix-tuning objective: ``--tune-objective``, else "balanced" on the new-item split (new and
    warm rows weigh the same there), "rows" elsewhere."""
    return args.tune_objective or ("balanced" if args.mode == "new-items" else "rows")


def _fusion(args: argparse.Namespace, seed: int, lam: float, catalog: str) -> TextFusionRec:
    trainer = {"catalog": catalog}
    opts: dict[str, Any] = {"ease_lam": lam, "n_centroids": args.centroids, "small_catalog": args.small_catalog,
                            "new_item_dropout": args.new_item_dropout, "tune_objective": _objective(args)}
    if args.code_corpus:
        opts["code_corpus"] = list(args.code_corpus)
    return TextFusionRec.from_recipe("fusion", seed=seed, max_epochs=args.epochs, trainer=trainer, **opts)


def _fusion_rows(split: Split, args: argparse.Namespace, lam: float, catalog: str) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for seed in args.seeds:
        model = _fusion(args, seed, lam, catalog)
        t0 = time.perf_counter()
        res = run_protocol(model, split, progress=args.progress)
        row = _row(res, model, {"mix": model.mix_report, "codes": model.code_report,
                                "training_history": model.history})
        rows[f"TextFusion seed {seed}"] = row
        print(f"TextFusion seed {seed}: valid {row['valid']} test {row['test']} new {row.get('test_new')} "
              f"warm {row.get('test_warm')} mix {model.mix} ({time.perf_counter() - t0:.0f}s)", flush=True)
        # ablations of the same trained model (no retraining): which part of the mix does what
        tuned = dict(model.mix)
        variants = {"sequential part only": dict(DEFAULT_MIX)}
        if split.test.is_new is not None:
            variants["mix without text cosine"] = {**tuned, "mu": 0.0, "mu_cold": 0.0}
            variants["mix without cold offset"] = {**tuned, "cold_offset": 0.0}
        else:
            variants["mix without EASE"] = {**tuned, "lam": 0.0}
        if args.few_ablations:
            variants = {"sequential part only": variants["sequential part only"]}
        for name, mix in variants.items():
            model.mix = mix
            rows[f"TextFusion seed {seed}: {name}"] = {**_eval_row(model, split, res.train_seconds, valid=False),
                                                       "mix": dict(mix), "ablation_of": f"TextFusion seed {seed}"}
        if split.test.is_new is not None:  # the same trained model, mix re-tuned on valid with the other objective
            other = "rows" if model.tune_objective == "balanced" else "balanced"
            report = model.mix_report
            model.tune(split.valid, objective=other)
            rows[f"TextFusion seed {seed}: mix tuned on valid by '{other}'"] = {
                **_eval_row(model, split, res.train_seconds), "mix": model.mix_report,
                "ablation_of": f"TextFusion seed {seed}"}
            model.mix_report = report
        model.mix = tuned
    return rows


def _mean_rows(rows: dict[str, Any], prefix: str = "TextFusion seed ") -> dict[str, Any]:
    """Mean over seeds of the main fusion rows (not the ablations)."""
    main = [r for k, r in rows.items() if k.startswith(prefix) and ":" not in k]
    if not main:
        return {}
    out: dict[str, Any] = {"n_seeds": len(main)}
    for part in ("valid", "test", "test_new", "test_warm", "valid_new", "valid_warm"):
        vals = [r[part] for r in main if r.get(part)]
        if vals:
            out[part] = {k: round(float(np.mean([v[k] for v in vals])), 4) for k in vals[0] if k != "n_rows"}
            out[part + "_std"] = {k: round(float(np.std([v[k] for v in vals])), 4)
                                  for k in vals[0] if k != "n_rows"}
    return out


# ---- modes ----------------------------------------------------------------------------------------
def run_published(args: argparse.Namespace) -> dict[str, Any]:
    ds = load_dataset(args.dataset)
    split = make_split(ds, "auto")
    rows, lam = _baseline_rows(split, args)
    rows.update(_fusion_rows(split, args, lam, catalog="all"))
    mean = _mean_rows(rows)
    base = {k: v for k, v in rows.items() if not k.startswith("TextFusion")}
    best_name = max(base, key=lambda k: base[k]["test"]["ndcg@10"])
    targets = {}
    if mean:
        b = base[best_name]["test"]
        targets = {"best_baseline_on_test": best_name,
                   "best_baseline_by_valid": max(base, key=lambda k: base[k]["valid"]["ndcg@10"]),
                   "goal": "TextFusion R@10 and N@10 >= 1.05x the best baseline (test, mean over seeds)",
                   "recall@10_ratio": round(mean["test"]["recall@10"] / b["recall@10"], 3),
                   "ndcg@10_ratio": round(mean["test"]["ndcg@10"] / b["ndcg@10"], 3)}
        targets["met"] = bool(targets["recall@10_ratio"] >= 1.05 and targets["ndcg@10_ratio"] >= 1.05)
    return {"name": f"fusion_{ds.name}_{split.kind}", "benchmark": "fusion_published", "dataset": ds.name,
            "split": split.describe(), "models": rows, "textfusion_mean": mean, "targets": targets}


def run_new_items(args: argparse.Namespace) -> dict[str, Any]:
    ds = load_dataset(args.dataset)
    split = make_split(ds, "new_item", frac=args.frac, seed=args.split_seed)
    rows, lam = _baseline_rows(split, args)
    rows.update(_fusion_rows(split, args, lam, catalog="train"))
    mean = _mean_rows(rows)
    targets = {}
    if mean:
        tk = rows["TextKNN"]["test_new"]["recall@10"]
        new, warm = mean["test_new"]["recall@10"], mean["test_warm"]["recall@10"]
        targets = {"goal": "new-item R@10 >= 1.3x TextKNN, >= 0.6x own warm R@10, warm R@10 >= 0.1183 "
                           "(VQ-Rec, eval/results/vqrec_new_items_scientific.json)",
                   "new_recall@10": new, "warm_recall@10": warm,
                   "new_over_textknn": round(new / tk, 3), "new_over_own_warm": round(new / warm, 3),
                   "warm_over_vqrec_0.1183": round(warm / 0.1183, 3)}
        targets["met"] = bool(new / tk >= 1.3 and new / warm >= 0.6 and warm >= 0.1183)
    return {"name": f"fusion_new_items_{ds.name}", "benchmark": "fusion_new_items", "dataset": ds.name,
            "split": split.describe(), "models": rows, "textfusion_mean": mean, "targets": targets}


def run_codes(args: argparse.Namespace) -> dict[str, Any]:
    """Code statistics and code-kNN new-item quality by K and quantizer corpus (no training)."""
    import torch.nn.functional as F

    from textrec.text.quantize import ProductQuantizer, code_stats

    ds = load_dataset(args.dataset)
    split = make_split(ds, "new_item", frac=args.frac, seed=args.split_seed)
    view = TrainView.from_split(split, with_text=True)
    helper = TextFusionRec(code_corpus=CORPUS)
    emb = helper.embed(view.item_text, progress=args.progress)
    train_items = np.flatnonzero(view.popularity() > 0)
    corpus = helper.embed(helper.corpus_texts(exclude=ds.name), progress=args.progress)

    def knn_rows(vectors: np.ndarray, evalset) -> dict[str, float]:
        from textrec.models.text_knn import TextKNN

        m = TextKNN()
        m.item_emb = F.normalize(torch.from_numpy(vectors.astype(np.float32)), dim=1)
        res = evaluate(m, evalset, split.n_items)
        return {"all": _short(res.metrics), "new": _short({**res.subset(evalset.is_new),
                                                           "n_rows": int(evalset.is_new.sum())})}

    rows: dict[str, Any] = {"full MiniLM vectors (TextKNN)": {"valid": knn_rows(emb, split.valid)}}
    for corpus_name, extra in (("target training items", None), ("all domains", corpus)):
        for k in args.k_grid:
            t0 = time.perf_counter()
            q = ProductQuantizer(args.subvectors, k, opq=k >= 16, seed=0, small_catalog="keep", opq_iters=args.opq_iters)
            q.fit(emb[train_items], extra_embeddings=extra)
            codes = q.encode(emb)
            new = np.setdiff1d(np.arange(len(emb)), train_items)
            stats = code_stats(codes, q.n_centroids_)
            new_stats = code_stats(codes[new], q.n_centroids_)
            keep = ("n_distinct_codes", "n_colliding_items", "n_collision_groups", "largest_collision_group",
                    "collision_rate", "mean_usage", "min_usage", "mean_entropy_norm")
            rows[f"K={k}, quantizer on {corpus_name}"] = {
                "K": q.n_centroids_, "n_train_vectors": q.report["n_train"],
                "points_per_centroid": q.report["points_per_centroid"],
                "reconstruction_mse": round(q.report["reconstruction_mse"], 5),
                "codes_all_items": {k2: stats[k2] for k2 in keep},
                "codes_new_items": {k2: new_stats[k2] for k2 in keep},
                "code_knn_valid": knn_rows(q.decode(codes), split.valid),
                "seconds": round(time.perf_counter() - t0, 1)}
            r = rows[f"K={k}, quantizer on {corpus_name}"]
            print(f"K={k} {corpus_name}: collisions {stats['n_colliding_items']} usage {stats['mean_usage']:.2f} "
                  f"code-kNN valid new R@10 {r['code_knn_valid']['new']['recall@10']}", flush=True)
    return {"name": f"fusion_codes_{ds.name}", "benchmark": "fusion_codes", "dataset": ds.name,
            "split": split.describe(), "corpus_domains": CORPUS, "n_corpus_texts": int(len(corpus)),
            "note": "valid rows only: a choice of K is made here, so test is not read",
            "models": rows}


def subset_split(split: Split, frac: float, seed: int) -> Split:
    """Train on a seeded ``frac`` of the users with training events (their valid rows select
    models); the test rows stay those of every user, so each condition is judged on the same rows."""
    import dataclasses

    users = np.unique(split.train["user"].to_numpy())
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(users, max(1, int(round(frac * len(users)))), replace=False))
    train = split.train[np.isin(split.train["user"].to_numpy(), keep)].reset_index(drop=True)
    valid = split.valid.select(np.isin(split.valid.users, keep))
    report = {**split.report, "train_user_frac": frac, "train_users": int(len(keep)), "subset_seed": seed}
    return dataclasses.replace(split, train=train, valid=valid, report=report)


def fine_tune_epochs(frac: float, cap: int | None, full_equiv: float | None) -> int | None:
    """Epoch cap of one run on a ``frac`` share of users: ``ceil(full_equiv / frac)`` epochs (about
    ``full_equiv`` full-data epochs' worth of steps, so small subsets are not starved of updates),
    at most ``cap``; ``None`` leaves the recipe's cap."""
    if full_equiv is None:
        return cap
    n = int(np.ceil(full_equiv / frac - 1e-9))
    return n if cap is None else min(n, cap)


def run_efficiency(args: argparse.Namespace) -> dict[str, Any]:
    """Pretrain on the source domains, then per share of target training users: EASE, TextFusion
    from scratch, TextFusion warm-started from the pretrained model (same test rows)."""
    from textrec.models.baselines import EASE

    sources = []
    for name in args.source:
        ds = load_dataset(name)
        sources.append(TrainView.from_split(make_split(ds, "auto"), with_text=True))
    t0, c0 = time.perf_counter(), time.process_time()
    pre = TextFusionRec.from_recipe("fusion", seed=args.seeds[0], max_epochs=args.pretrain_epochs,
                                    tune_mix=False, n_centroids=args.centroids, small_catalog=args.small_catalog)
    pre.pretrain(sources, progress=args.progress)
    pretrain = {"domains": args.source, "seconds": round(time.perf_counter() - t0, 1),
                "cpu_seconds": round(time.process_time() - c0, 1), "history": pre.history,
                "codes": pre.code_report}
    print(f"pretrained on {args.source} in {pretrain['seconds']}s ({pretrain['cpu_seconds']} CPU s)", flush=True)
    ds = load_dataset(args.dataset)
    full = make_split(ds, "auto")
    rows: dict[str, Any] = {}
    # the rows so far go to runs/ after every condition, so a run cut short keeps what it measured
    partial = Path("runs") / f"fusion_efficiency_{ds.name}.part.json"
    for frac in args.fractions:
        epochs = fine_tune_epochs(frac, args.epochs, args.epochs_full_equiv)
        for seed in args.seeds:
            split = subset_split(full, frac, seed)
            best, table = _tuned_ease(split, args.ease_grid)
            lam = float(best["lam"])
            tag = f"{int(frac * 100)}% users, seed {seed}"
            conditions: list[tuple[str, Any]] = [
                ("EASE", EASE(lam=lam)),
                ("TextFusion scratch", TextFusionRec.from_recipe(
                    "fusion", seed=seed, max_epochs=epochs, ease_lam=lam, n_centroids=args.centroids,
                    small_catalog=args.small_catalog, tune_objective=_objective(args))),
                ("TextFusion pretrained+fine-tuned", TextFusionRec.from_recipe(
                    "fusion", seed=seed, max_epochs=epochs, ease_lam=lam,
                    tune_objective=_objective(args)).warm_start(pre))]
            if args.own_codes_too:  # transfer the adaptor and encoder only; codes from the target's items
                conditions.append(("TextFusion pretrained (own codes)+fine-tuned", TextFusionRec.from_recipe(
                    "fusion", seed=seed, max_epochs=epochs, ease_lam=lam, n_centroids=args.centroids,
                    small_catalog=args.small_catalog, tune_objective=_objective(args)).warm_start(pre, codes="own")))
            for name, model in conditions:
                t1, c1 = time.perf_counter(), time.process_time()
                res = run_protocol(model, split, progress=args.progress)
                rows[f"{tag}: {name}"] = {"valid": _short(res.valid.metrics), "test": _short(res.test.metrics),
                                          "train_seconds": round(res.train_seconds, 1),
                                          "wall_seconds": round(time.perf_counter() - t1, 1),
                                          "cpu_seconds": round(time.process_time() - c1, 1),
                                          "train_users_frac": frac, "train_users": split.report["train_users"],
                                          "seed": seed, "epoch_cap": epochs, "mix": getattr(model, "mix", None),
                                          "epochs": len(getattr(model, "history", [])),
                                          "training_history": getattr(model, "history", None)}
                print(f"{tag} {name}: test {rows[f'{tag}: {name}']['test']} "
                      f"({time.perf_counter() - t1:.0f}s, {time.process_time() - c1:.0f} CPU s)", flush=True)
                write_json(partial, {"pretrain": pretrain, "models": rows})
    targets = {}
    for frac in args.fractions:
        def mean(name: str, key: str, frac: float = frac) -> float:
            vals = [r["test"][key] for k, r in rows.items() if k.startswith(f"{int(frac * 100)}% users")
                    and k.endswith(name)]
            return float(np.mean(vals)) if vals else float("nan")
        pt, sc, ea = (mean(n, "ndcg@10") for n in (": TextFusion pretrained+fine-tuned", "scratch", ": EASE"))
        targets[f"{int(frac * 100)}%"] = {"pretrained_over_scratch_ndcg@10": round(pt / sc, 3),
                                          "pretrained_over_ease_ndcg@10": round(pt / ea, 3),
                                          "met": bool(pt / sc >= 1.2 and pt >= ea)}
        if args.own_codes_too:
            own = mean("(own codes)+fine-tuned", "ndcg@10")
            targets[f"{int(frac * 100)}%"].update({"own_codes_over_scratch_ndcg@10": round(own / sc, 3),
                                                   "own_codes_over_ease_ndcg@10": round(own / ea, 3)})
    return {"name": f"fusion_efficiency_{ds.name}", "benchmark": "fusion_data_efficiency", "dataset": ds.name,
            "split": full.describe(), "pretrain": pretrain, "models": rows,
            "fine_tune_epoch_cap": args.epochs, "fine_tune_full_data_epochs": args.epochs_full_equiv,
            "pretrain_epoch_cap": args.pretrain_epochs,
            "targets": {"goal": "at 10% and 25% of training users: pretrained+fine-tuned >= 1.2x scratch and "
                                ">= EASE on the same subset", **targets}}


def main() -> None:
    """Parse arguments, run one mode, write its JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["published", "new-items", "codes", "efficiency"])
    ap.add_argument("--dataset", default="scientific")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--frac", type=float, default=0.2)
    ap.add_argument("--epochs", type=int, default=None, help="cap training epochs (default: recipe)")
    ap.add_argument("--centroids", type=int, default=256)
    ap.add_argument("--subvectors", type=int, default=32)
    ap.add_argument("--small-catalog", default="lower", choices=["lower", "keep"])
    ap.add_argument("--code-corpus", nargs="*", default=None, help="datasets whose item text also fits the quantizer")
    ap.add_argument("--new-item-dropout", type=float, default=0.2)
    ap.add_argument("--tune-objective", choices=["rows", "balanced"], default=None,
                    help="how the fusion mix is scored on valid (default: balanced for new-items, else rows)")
    ap.add_argument("--ease-grid", type=float, nargs="+", default=[20.0, 50.0, 100.0, 200.0])
    ap.add_argument("--sasrec", action="store_true", help="also run ID-SASRec side by side")
    ap.add_argument("--few-ablations", action="store_true",
                    help="published/new-items: evaluate only the sequential-part ablation (and the other objective)")
    ap.add_argument("--k-grid", type=int, nargs="+", default=[16, 64, 128, 256])
    ap.add_argument("--opq-iters", type=int, default=50, help="codes: OPQ iterations (FAISS default 50)")
    ap.add_argument("--source", nargs="+", default=["office", "ml-100k"], help="efficiency: pretraining domains")
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.25])
    ap.add_argument("--pretrain-epochs", type=int, default=None)
    ap.add_argument("--own-codes-too", action="store_true",
                    help="efficiency: also fine-tune from the pretrained adaptor+encoder with the target's own codes")
    ap.add_argument("--epochs-full-equiv", type=float, default=None,
                    help="efficiency: cap each run at ceil(x / fraction) epochs (x full-data epochs of steps)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--name", default=None)
    ap.add_argument("--out-dir", default="eval/results")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0, c0 = time.perf_counter(), time.process_time()
    commit = git_commit()  # the code as it was when the run started
    out = {"published": run_published, "new-items": run_new_items, "codes": run_codes,
           "efficiency": run_efficiency}[args.mode](args)
    name = args.name or out.pop("name")
    out.pop("name", None)
    out.update({"seeds": args.seeds, "git_commit": commit, "date": date.today().isoformat(),
                "machine": machine(), "torch_threads": torch.get_num_threads(),
                "wall_seconds": round(time.perf_counter() - t0, 1),
                "cpu_seconds": round(time.process_time() - c0, 1), "peak_rss_mb": round(peak_rss_mb(), 1),
                "command": "python eval/fusion_bench.py " + " ".join(sys.argv[1:])})
    path = Path(args.out_dir) / f"{name}.json"
    write_json(path, out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
