"""``textrec bench query``: raw-history query vs untrained LLM query vs GRPO-trained LLM query.

textrec bench query --dataset ml-100k --n-users 200 --train-minutes 30 --threads 1

Same users, same retrievers for every row: BM25 (bm25s, k1 1.2, b 0.75) and dense (MiniLM +
FAISS flat), transductive (core split, test rows) and inductive (new-item split 0.2/seed 0,
test rows whose target is a held-out item). Full-catalog ranking, history masked; the target's
rank is a count of better-scoring items. CPU budget: the test rows are a fixed seeded subsample
(``--n-users``, said in the JSON) and GRPO runs under a wall-clock budget.

The GRPO policy trains on the *new-item split's* training users (held-out items never seen), so
one policy serves both settings without leakage; its reward is NDCG@k summed over the reward
retrievers of the recipe (overridable with ``--reward-retrievers``).

Writes query_<dataset>.json, query_<dataset>.md (table + 10 example queries before and after
training), query_<dataset>_queries.json (every evaluated query) and query_<dataset>_reward_curve.png
into the run folder (eval/results with --publish). ``--annotate JSON`` only re-derives the hit counts and the
noise verdict of an existing result.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from textrec.io import atomic_write_text, write_json
from textrec.metrics.ranking import MISS, metrics_from_ranks
from textrec.options import (
    add_dataset_options,
    add_seed_option,
    add_threads_option,
    load_dataset_from_args,
    non_negative_int,
    positive_float,
    positive_int,
)
from textrec.query.catalog import Catalog
from textrec.query.grpo_config import load_grpo_config
from textrec.query.parsing import parse_query
from textrec.query.retrieval import retriever_for_dataset
from textrec.query.tasks import make_tasks, split_for, subsample
from textrec.results import add_output_options, metadata_line, published_result, writer_from_args

KS = (10, 100)
ROWS = ("raw_history", "llm_untrained", "llm_sft", "llm_grpo")  # llm_sft only with --sft-steps


def metrics(retriever, queries: list[str], tasks) -> dict:
    """NDCG/Recall/HR/MRR@10,100 of the tasks' targets for these queries (history masked)."""
    ranks = np.full(len(tasks), MISS, dtype=np.int64)
    rows = [i for i, q in enumerate(queries) if q.strip()]
    if rows:
        ranks[rows] = retriever.target_ranks([queries[i] for i in rows], [tasks[i].target for i in rows],
                                             [tasks[i].history for i in rows])
    per = metrics_from_ranks(ranks, np.arange(len(tasks)), len(tasks), KS)
    out = {k: round(float(v.mean()), 6) for k, v in per.items()}
    out["n_rows"] = len(tasks)
    out["not_retrieved"] = int((ranks >= MISS).sum())
    return out


def generate(writer, tasks, label: str) -> tuple[list[str], list[str], dict]:
    """Greedy completions and parsed queries for tasks, with timing and format stats."""
    t0 = time.perf_counter()
    comps = writer.generate(tasks, batch_size=32, progress=True)
    secs = time.perf_counter() - t0
    parsed = [parse_query(c, 1, 24) for c in comps]
    n_tok = sum(len(writer.tokenizer(c, add_special_tokens=False)["input_ids"]) for c in comps)
    stats = {"seconds": round(secs, 1), "queries_per_s": round(len(tasks) / max(secs, 1e-9), 2),
             "generated_tokens_per_s": round(n_tok / max(secs, 1e-9), 1),
             "well_formed_rate": round(float(np.mean([p.well_formed for p in parsed])), 4),
             "mean_query_words": round(float(np.mean([p.n_words for p in parsed])), 2)}
    print(f"[{label}] {len(tasks)} queries in {secs:.0f}s, well formed {stats['well_formed_rate']:.2f}",
          file=sys.stderr, flush=True)
    return comps, [" ".join(p.query.split()[:24]) for p in parsed], stats


def context_baselines(dataset: str) -> dict:
    """The core sequential recommenders' test numbers (all test users) for context."""
    d = published_result(f"baselines_{dataset}.json")
    if d is None:
        return {}
    return {"source": f"eval/results/baselines_{dataset}.json", "note": "all test users of the core split, not the subsample",
            "test": {m: {k: v["test"][k] for k in ("ndcg@10", "recall@10")}
                     for m, v in d.get("models", {}).items() if "test" in v and "refit" not in m}}


def annotate_goal(res: dict) -> dict:
    """Add hit counts and a noise verdict to each goal entry (aggregates only, so it also
    works on an existing result JSON).

    With one target per row, hits@10 = Recall@10 x rows. Two rows whose hit counts differ by
    less than 2 sqrt(sum of hits) (about two Poisson standard deviations) are not told apart.
    """
    for key, g in res["goal"].items():
        setting, retriever = key.split("/")
        rows = res["results"][setting][retriever]
        n = rows["raw_history"]["test"]["n_rows"]
        hits = {row: int(round(rows[row]["test"]["recall@10"] * n)) for row in ROWS if row in rows}
        diff = hits["llm_grpo"] - hits["raw_history"]
        noise = 2.0 * float(np.sqrt(max(hits["llm_grpo"] + hits["raw_history"], 1)))
        g["hits@10"] = hits
        g["distinguishable_from_raw"] = bool(abs(diff) >= noise)
        g["verdict"] = ("reached" if g["reached"] and g["distinguishable_from_raw"] else
                        "ratio >= 1.5 but within noise (too few hits to tell)" if g["reached"] else "not reached")
    return res


def markdown(res: dict) -> str:
    """The README table and the example queries."""
    ds = res["dataset"]
    lines = [f"### Rec-R1 query writing on {ds}", "",
             f"Test rows: fixed seeded subsample of {res['subsample']['n_users']} users per setting "
             f"(seed {res['subsample']['seed']}); full-catalog ranking, history masked. GRPO: "
             f"{res['training']['steps']} steps in {res['training']['seconds']:.0f} s. " + metadata_line(res), "",
             "| setting | retriever | query | NDCG@10 | Recall@10 | NDCG@100 |", "|---|---|---|---|---|---|"]
    for setting, by_r in res["results"].items():
        for r, rows in by_r.items():
            for row, m in rows.items():
                t = m["test"]
                lines.append(f"| {setting} | {r} | {row} | {t['ndcg@10']:.4f} | {t['recall@10']:.4f} | "
                             f"{t['ndcg@100']:.4f} |")
    lines += ["", "Goal (GRPO NDCG@10 >= 1.5x raw-history, same retriever):", ""]
    for k, g in res["goal"].items():
        h = g.get("hits@10", {})
        lines.append(f"- {k}: {g['llm_grpo']:.4f} vs {g['raw_history']:.4f} -> ratio "
                     f"{g['ratio'] if g['ratio'] is not None else 'n/a'}; hits@10 raw/untrained/GRPO "
                     f"{h.get('raw_history')}/{h.get('llm_untrained')}/{h.get('llm_grpo')} "
                     + (f"(SFT {h['llm_sft']}) " if "llm_sft" in h else "")
                     + f"of {res['subsample']['n_users']}; {g.get('verdict', g['reached'])}")
    ctx = res.get("context_baselines", {}).get("test", {})
    if ctx:
        lines += ["", "For context, the core sequential recommenders on the same split (all test users, "
                  "not the subsample): " + ", ".join(f"{m} NDCG@10 {v['ndcg@10']:.4f}" for m, v in ctx.items())]
    lines += ["", "#### Example queries (same users, before / after GRPO; transductive test)", ""]
    for e in res["examples"]:
        lines.append(f"- user {e['user_id']}; recent: {' | '.join(e['context'][-3:])}; next: **{e['target']}**")
        lines.append(f"  - raw: `{e['raw_history'][:120]}` (bm25 rank {e['ranks']['raw_history']})")
        lines.append(f"  - untrained: `{e['llm_untrained']}` (bm25 rank {e['ranks']['llm_untrained']})")
        if "llm_sft" in e:
            lines.append(f"  - SFT: `{e['llm_sft']}` (bm25 rank {e['ranks']['llm_sft']})")
        lines.append(f"  - GRPO: `{e['llm_grpo']}` (bm25 rank {e['ranks']['llm_grpo']})")
    return "\n".join(lines) + "\n"


def heuristics_only(args, ds, tasks: dict, retrievers: dict, cfg, writer) -> None:
    """Score the SFT teacher's four heuristic queries (no LLM) on the same test rows as the LLM rows.

    Shows what the SFT warm start imitates: each heuristic alone, next to the raw-history row.
    Writes ``<stem>_heuristics.json``.
    """
    from textrec.query.sft import CANDIDATES, candidate_queries

    results: dict = {}
    for s, ts in tasks.items():
        cands = [candidate_queries(t, cfg.sft_max_query_words) for t in ts]
        rows = {"raw_history": [t.raw_query() for t in ts], **{k: [c[k] for c in cands] for k in CANDIDATES}}
        results[s] = {r: {row: {"test": metrics(ret, qs, ts)} for row, qs in rows.items()}
                      for r, ret in retrievers.items()}
    res = {"benchmark": "query_recr1_heuristics", "dataset": ds.name, "subsample": {"n_users": args.n_users,
           "seed": args.seed, "is_subsample": True}, "max_query_words": cfg.sft_max_query_words,
           "results": results}
    stem = args.name or f"query_{ds.name}"
    with writer:
        writer.write_json(f"{stem}_heuristics.json", res)
    for s, by_r in results.items():
        for r, rows in by_r.items():
            print(f"{s}/{r}: " + ", ".join(f"{row} {m['test']['ndcg@10']:.4f}" for row, m in rows.items()))


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """Arguments of ``textrec bench query``."""
    ap.description = __doc__
    ap.formatter_class = argparse.RawDescriptionHelpFormatter
    add_dataset_options(ap)
    ap.add_argument("--recipe", default="recr1_cpu")
    ap.add_argument("--n-users", type=positive_int, default=200, help="test rows per setting (fixed seeded subsample)")
    ap.add_argument("--train-minutes", type=positive_float, default=30.0, help="GRPO wall-clock budget")
    ap.add_argument("--max-steps", type=positive_int, default=None, help="GRPO step cap (default: the recipe's)")
    ap.add_argument("--sft-steps", type=non_negative_int, default=None,
                    help="SFT warm start on the best heuristic queries before GRPO (default: the recipe's, 0)")
    ap.add_argument("--name", default=None, help="result file stem (default query_<dataset>)")
    ap.add_argument("--reward-retrievers", nargs="+", default=None, choices=["bm25", "dense"])
    add_threads_option(ap)
    add_seed_option(ap)
    ap.add_argument("--run-dir", default=None, help="GRPO checkpoints (default runs/query_bench/<dataset>)")
    ap.add_argument("--resume", action="store_true", help="resume GRPO from the run dir's last checkpoint")
    ap.add_argument("--heuristics-only", action="store_true",
                    help="only score the SFT teacher's heuristic queries on the same rows (no LLM)")
    ap.add_argument("--annotate", metavar="JSON", help="only re-annotate an existing result JSON (and its .md)")
    add_output_options(ap, "query")


def run(args: argparse.Namespace) -> int:
    """Run the three query rows, train GRPO, write JSON/Markdown/PNG."""
    if args.annotate:
        path = Path(args.annotate)
        res = annotate_goal(json.loads(path.read_text()))
        write_json(path, res)
        atomic_write_text(path.with_suffix(".md"), markdown(res))
        return 0
    import torch

    torch.manual_seed(args.seed)
    t_start = time.perf_counter()

    from textrec.query.cli import quiet_trainer_logs
    from textrec.query.grpo_trainer import QueryGRPOTrainer
    from textrec.query.policy import QueryWriter

    cfg = load_grpo_config(args.recipe, max_minutes=args.train_minutes, max_steps=args.max_steps,
                           reward_retrievers=args.reward_retrievers, seed=args.seed,
                           sft_steps=args.sft_steps)
    ds = load_dataset_from_args(args)
    catalog = Catalog.from_dataset(ds, verbose=False)
    cache = Path.home() / ".cache" / "textrec" / "query_index"
    retrievers = {k: retriever_for_dataset(ds, k, cache_dir=cache) for k in ("bm25", "dense")}
    splits = {s: split_for(ds, s) for s in ("transductive", "inductive")}
    tasks, totals = {}, {}
    for s, sp in splits.items():
        full = make_tasks(ds, s, "test", catalog, max_history=cfg.max_history, split=sp)
        totals[s] = len(full)
        tasks[s] = subsample(full, args.n_users, args.seed)
    valid_tr = subsample(make_tasks(ds, "transductive", "valid", catalog, max_history=cfg.max_history,
                                    split=splits["transductive"]), args.n_users, args.seed)

    queries: dict[str, dict[str, list[str]]] = {s: {} for s in tasks}
    completions: dict[str, dict[str, list[str]]] = {s: {} for s in tasks}
    gen_stats: dict[str, dict] = {}
    for s in tasks:
        queries[s]["raw_history"] = [t.raw_query() for t in tasks[s]]
    if args.heuristics_only:
        writer = writer_from_args(args, "query")
        writer.started = t_start
        heuristics_only(args, ds, tasks, retrievers, cfg, writer)
        return 0

    writer = QueryWriter.from_base(cfg.model, template_id=cfg.template_id, template_family=cfg.template_family,
                                   max_history=cfg.max_history, max_new_tokens=cfg.eval_max_new_tokens,
                                   dataset_name=ds.name)
    for s in tasks:
        completions[s]["llm_untrained"], queries[s]["llm_untrained"], gen_stats[f"untrained/{s}"] = \
            generate(writer, tasks[s], f"untrained {s}")

    # GRPO on the new-item split's training users (no held-out item ever seen).
    train_tasks = make_tasks(ds, "inductive", "train", catalog, max_history=cfg.max_history,
                             split=splits["inductive"])
    run_dir = Path(args.run_dir or f"runs/query_bench/{ds.name}")
    if run_dir.exists() and not args.resume:
        shutil.rmtree(run_dir)
    policy = writer.model
    sft_report = None
    if cfg.sft_steps > 0:
        from textrec.query.sft import sft_warm_start
        from textrec.query.tasks import load_template

        policy, sft_report = sft_warm_start(writer.model, writer.tokenizer,
                                            load_template(cfg.template_id, cfg.template_family), train_tasks,
                                            retrievers[cfg.reward_retrievers[0]], cfg.sft_config(),
                                            run_dir / "sft", dataset_name=ds.name)
        print(f"SFT warm start: {sft_report}", file=sys.stderr, flush=True)
        sft_writer = QueryWriter(policy, writer.tokenizer, template_id=cfg.template_id,
                                 template_family=cfg.template_family, max_history=cfg.max_history,
                                 max_new_tokens=cfg.eval_max_new_tokens, base_model=cfg.model, dataset_name=ds.name)
        for s in tasks:
            completions[s]["llm_sft"], queries[s]["llm_sft"], gen_stats[f"sft/{s}"] = \
                generate(sft_writer, tasks[s], f"sft {s}")
    rows_run = [r for r in ROWS if r in queries["transductive"] or r == "llm_grpo"]
    trainer = QueryGRPOTrainer(cfg, retrievers, train_tasks, run_dir, dataset_name=ds.name,
                               model=policy, tokenizer=writer.tokenizer)
    quiet_trainer_logs(trainer.trainer)
    curve = trainer.train(resume=args.resume)
    steps = int(trainer.trainer.state.global_step)
    trainer.save_pretrained(run_dir / "final")
    trained = trainer.writer()
    for s in tasks:
        completions[s]["llm_grpo"], queries[s]["llm_grpo"], gen_stats[f"grpo/{s}"] = \
            generate(trained, tasks[s], f"grpo {s}")

    results: dict = {}
    goal: dict = {}
    for s in tasks:
        results[s] = {}
        for rname, r in retrievers.items():
            results[s][rname] = {row: {"test": metrics(r, queries[s][row], tasks[s])} for row in rows_run}
            if s == "transductive":
                results[s][rname]["raw_history"]["valid"] = metrics(r, [t.raw_query() for t in valid_tr], valid_tr)
            raw = results[s][rname]["raw_history"]["test"]["ndcg@10"]
            grpo = results[s][rname]["llm_grpo"]["test"]["ndcg@10"]
            goal[f"{s}/{rname}"] = {"raw_history": raw, "llm_grpo": grpo,
                                    "llm_untrained": results[s][rname]["llm_untrained"]["test"]["ndcg@10"],
                                    "ratio": round(grpo / raw, 3) if raw > 0 else None,
                                    "reached": bool(raw > 0 and grpo >= 1.5 * raw)}

    ex_tasks = tasks["transductive"][:10]
    bm = retrievers["bm25"]
    examples = []
    for i, t in enumerate(ex_tasks):
        ranks = {}
        for row in rows_run:
            q = queries["transductive"][row][i]
            rk = bm.target_rank(q, t.target, exclude=t.history) if q.strip() else MISS
            ranks[row] = int(rk) + 1 if rk < MISS else "not retrieved"
        examples.append({"user_id": str(ds.user_ids[t.user]), "context": t.context,
                         "target": catalog.titles[t.target],
                         "raw_history": queries["transductive"]["raw_history"][i],
                         "llm_untrained": queries["transductive"]["llm_untrained"][i],
                         "llm_grpo": queries["transductive"]["llm_grpo"][i],
                         **({"llm_sft": queries["transductive"]["llm_sft"][i]} if "llm_sft" in rows_run else {}),
                         "completion_untrained": completions["transductive"]["llm_untrained"][i],
                         "completion_grpo": completions["transductive"]["llm_grpo"][i],
                         "ranks": ranks})

    rewards = [x for x in curve.get("reward", []) if x is not None]
    train_secs = trainer.train_seconds
    res = {
        "benchmark": "query_recr1", "dataset": ds.name,
        "protocol": ("full-catalog ranking, the user's history masked; rank = count of items scoring higher "
                     "(ties: lower item index first); a BM25 target with score 0 (no query term) is not "
                     "retrieved; one target per row (the next item)"),
        "subsample": {"n_users": args.n_users, "seed": args.seed, "is_subsample": True,
                      "test_rows_total": totals, "valid_rows_used": len(valid_tr),
                      "note": "fixed seeded subsample of test rows; every query row uses the same users"},
        "split": {s: sp.describe() for s, sp in splits.items()},
        "retrievers": {"bm25": {"k1": 1.2, "b": 0.75, "library": "bm25s (lucene)"},
                       "dense": {"model": "all-MiniLM-L6-v2 (bundled)", "index": "FAISS flat inner product"}},
        "config": cfg.to_dict(),
        "training": {"train_tasks": len(train_tasks), "train_data": "new-item split training users (last train item = target)",
                     "steps": steps, "seconds": round(train_secs, 1),
                     "seconds_per_step": round(train_secs / max(steps, 1), 2),
                     "stopped_by_time_budget": trainer.curve_callback.stopped_early_at is not None,
                     "mean_reward_first_20": round(float(np.mean(rewards[:20])), 4) if rewards else None,
                     "mean_reward_last_20": round(float(np.mean(rewards[-20:])), 4) if rewards else None,
                     "writer_saved_to": str(run_dir / "final")},
        "results": results, "goal": goal, "sft": sft_report, "generation": gen_stats,
        "context_baselines": context_baselines(ds.name), "examples": examples,
        "metrics_note": "valid metrics are reported for the raw-history row only (LLM generation budget)",
        "seed": args.seed,
    }
    annotate_goal(res)
    writer = writer_from_args(args, "query")
    writer.started = t_start
    res.update(writer.metadata())
    stem = args.name or f"query_{ds.name}"
    with writer:
        writer.write_json(f"{stem}.json", res)
        writer.write_json(f"{stem}_queries.json", {
            s: {"user_id": [str(ds.user_ids[t.user]) for t in tasks[s]],
                "target_item_id": [str(ds.item_ids[t.target]) for t in tasks[s]],
                **{row: queries[s][row] for row in rows_run}} for s in tasks}, metadata=False)
        writer.write_text(f"{stem}.md", markdown(res))
        png = run_dir / "reward_curve.png"
        if png.is_file():
            writer.copy_file(png, f"{stem}_reward_curve.png")
    for k, g in goal.items():
        print(f"{ds.name} {k}: raw {g['raw_history']:.4f} untrained {g['llm_untrained']:.4f} "
              f"grpo {g['llm_grpo']:.4f} ratio {g['ratio']} reached {g['reached']}")
    return 0
