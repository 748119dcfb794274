"""``textrec bench query``: Rec-R1 query rows (heuristics, the per-user oracle, saved LLM writers) on
the same users, with paired bootstrap intervals on every ratio to raw history.

    # no-LLM rows (heuristics + oracle) on 1,000 seeded Scientific test users, BM25 also on all users
    textrec bench query --dataset scientific --n-users 1000 --threads 1

    # train (SFT copying the newest title, then GRPO for 20 CPU-minutes, dense reward, 24-token
    # completions) on the new-item split's training users minus the 20% held-out users, then add
    # both writers as rows on 1,000 transductive users and on users never seen in training
    textrec train query --dataset scientific --setting held_out_items --recipe recr1_cpu_dense_t24 \
        --output-dir runs/recr1_t24
    textrec bench query --dataset scientific --n-users 1000 --settings transductive held_out_users \
        --n-users-held-out 500 --retrievers dense --no-valid --no-all-users \
        --writer llm_sft=runs/recr1_t24/sft/writer --writer llm_grpo=runs/recr1_t24/final \
        --compare llm_grpo:llm_sft --name query_scientific_llm_dense_t24 --publish

    # two writers benched in two runs on the same users (e.g. SFT while GRPO still trains) as one
    # table: A's result plus B's row and the paired difference A_ROW - B_ROW in every shared block
    textrec bench query --compare-runs eval/results/A.json:llm_grpo eval/results/B.json:llm_sft --merge \
        --name query_scientific_llm_full_merged --publish

Settings: ``transductive`` (every user's test row), ``held_out_users`` (test rows of the users the
recipe's ``held_out_users_frac`` kept out of SFT and GRPO), ``held_out_items`` (old name
``inductive``: rows whose target is an item held out of all training data).

The logic lives in :mod:`textrec.query.bench`; this module parses options and writes the result
(JSON + Markdown) through the one result writer.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from textrec.options import add_seed_option, add_threads_option, positive_int
from textrec.results import add_output_options, writer_from_args


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """Options of ``textrec bench query``."""
    from textrec.query.heuristics import HEURISTICS
    from textrec.query.tasks import SETTINGS

    ap.add_argument("--dataset", default="scientific")
    ap.add_argument("--n-users", type=positive_int, default=1000, help="seeded test-row subsample shared by every row")
    ap.add_argument("--no-all-users", action="store_true", help="skip the all-user BM25 blocks")
    ap.add_argument("--settings", nargs="+", default=["transductive", "held_out_items"], choices=list(SETTINGS),
                    help="held_out_users: test rows of users never in training; held_out_items (old name "
                         "inductive): rows whose target is an item never in training")
    ap.add_argument("--n-users-held-out", type=positive_int, default=None,
                    help="subsample size for the held_out_users setting (default --n-users)")
    ap.add_argument("--held-out-users-frac", type=float, default=None,
                    help="the fraction of users kept out of training (default: the writers' recorded one)")
    ap.add_argument("--retrievers", nargs="+", default=["bm25", "dense"], choices=["bm25", "dense", "hybrid"],
                    help="evaluation retrievers (hybrid: dense + max-normalised BM25, equal weights)")
    ap.add_argument("--writer", action="append", default=[], metavar="NAME=PATH", help="a saved query writer as a row")
    ap.add_argument("--compare", action="append", default=[], metavar="A:B", help="difference of two rows, with interval")
    ap.add_argument("--heuristics", nargs="*", default=list(HEURISTICS),
                    help="no-LLM rows (the oracle needs every SFT candidate; none: only --writer rows)")
    ap.add_argument("--max-history", type=positive_int, default=5)
    ap.add_argument("--max-query-words", "--max-words", type=positive_int, default=8,
                    help="the headline query budget in words: every row's query is cut to it")
    ap.add_argument("--budgets", nargs="*", type=positive_int, default=[],
                    help="further budgets (e.g. 4 16): test blocks with every row (LLM rows reuse their completions)")
    ap.add_argument("--no-valid", action="store_true")
    ap.add_argument("--bootstrap", type=positive_int, default=2000)
    ap.add_argument("--compare-runs", nargs=2, metavar=("A.json:ROW", "B.json:ROW"),
                    help="only compare two finished runs on the same users (paired difference ROW_A - ROW_B)")
    ap.add_argument("--merge", action="store_true",
                    help="with --compare-runs: write A's result with B's row added to each shared block "
                         "(and the difference A_ROW - B_ROW there) instead of only the differences")
    ap.add_argument("--name", default=None, help="result file stem (default query_<dataset>_bench)")
    add_seed_option(ap)
    add_threads_option(ap)
    add_output_options(ap, "query")


def run(args: argparse.Namespace) -> int:
    """Run the benchmark (or compare two finished runs) and write JSON + Markdown."""
    from textrec.query.bench import (
        compare_runs,
        markdown,
        merge_runs,
        models_block,
        run_benchmark,
        targets_block,
    )

    writers: dict[str, str] = {}
    for w in args.writer:
        name, sep, path = w.partition("=")
        if not sep or not name or not Path(path).is_dir():
            raise ValueError(f"--writer wants NAME=PATH to a saved writer folder, got {w!r}")
        writers[name] = path
    compare = []
    for c in args.compare:
        a, sep, b = c.partition(":")
        if not sep:
            raise ValueError(f"--compare wants A:B, got {c!r}")
        compare.append((a, b))
    out = writer_from_args(args, "query")
    if args.compare_runs:
        (pa, _, ra), (pb, _, rb) = (x.rpartition(":") for x in args.compare_runs)
        a, b = (json.loads(Path(p).read_text(encoding="utf-8")) for p in (pa, pb))
        if args.merge:
            merged = merge_runs(a, ra, b, rb, args.bootstrap, args.seed)
            for k in ("command", "date", "git_commit", "machine", "wall_seconds", "cpu_seconds", "peak_rss_mb"):
                merged.pop(k, None)  # the writer records this command; A's own run is kept below
            merged["merged_from"] = {"a": {"file": pa, "row": ra, "command": a.get("command")},
                                     "b": {"file": pb, "row": rb, "command": b.get("command")}}
            merged["models"] = models_block(merged)
            merged["targets"] = targets_block(merged, ra, rb, int(merged.get("query_settings", {}).get(
                "max_query_words", 8)))
            stem = args.name or "query_merged"
            out.write_json(f"{stem}.json", merged)
            out.write_text(f"{stem}.md", markdown(merged))
            print(markdown(merged))
            out.finish()
            return 0
        res = {"benchmark": "query_recr1_compare", "dataset": a["dataset"], "a": {"file": pa, "row": ra},
               "b": {"file": pb, "row": rb}, "blocks": compare_runs(a, ra, b, rb, args.bootstrap, args.seed)}
        out.write_json(f"{args.name or 'query_compare'}.json", res)
        print(json.dumps(res["blocks"], indent=1))
        out.finish()
        return 0
    res = run_benchmark(args.dataset, n_users=args.n_users, all_users_bm25=not args.no_all_users,
                        settings=args.settings, retrievers=args.retrievers, writers=writers, compare=compare,
                        max_history=args.max_history, max_query_words=args.max_query_words, seed=args.seed,
                        n_boot=args.bootstrap, with_valid=not args.no_valid, heuristics=args.heuristics,
                        held_out_users_frac=args.held_out_users_frac,
                        n_users_by_setting=({"held_out_users": args.n_users_held_out}
                                            if args.n_users_held_out else None),
                        budgets=args.budgets)
    stem = args.name or f"query_{args.dataset}_bench"
    out.write_json(f"{stem}.json", res)
    out.write_text(f"{stem}.md", markdown(res))
    print(markdown(res))
    out.finish()
    return 0
