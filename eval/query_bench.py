"""Rec-R1 benchmark (logic in textrec.query.bench): no-LLM rows, saved LLM writers, paired intervals.

    # no-LLM rows (heuristics + oracle) on 1,000 seeded Scientific test users, BM25 also on all users
    python eval/query_bench.py --dataset scientific --n-users 1000 --threads 1

    # train (SFT then GRPO) on the new-item split's training users, then add both writers as rows
    textrec query train --dataset scientific --setting inductive --recipe recr1_cpu_sft \
        --output-dir runs/recr1_scientific
    python eval/query_bench.py --dataset scientific --n-users 1000 \
        --writer llm_sft=runs/recr1_scientific/sft/writer --writer llm_grpo=runs/recr1_scientific/final \
        --compare llm_grpo:llm_sft --name query_scientific_llm

Writes eval/results/<name>.json and .md (command, date, machine, threads, commit inside).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import torch

from textrec.bench import git_commit, machine, peak_rss_mb
from textrec.io import atomic_write_text, write_json
from textrec.query.bench import compare_runs, markdown, run_benchmark
from textrec.query.heuristics import HEURISTICS


def main(argv: list[str] | None = None) -> None:
    """Parse the options, run the benchmark, write JSON and Markdown."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="scientific")
    ap.add_argument("--n-users", type=int, default=1000, help="seeded test-row subsample shared by every row")
    ap.add_argument("--no-all-users", action="store_true", help="skip the all-user BM25 blocks")
    ap.add_argument("--settings", nargs="+", default=["transductive", "inductive"])
    ap.add_argument("--retrievers", nargs="+", default=["bm25", "dense"])
    ap.add_argument("--writer", action="append", default=[], metavar="NAME=PATH", help="a saved query writer as a row")
    ap.add_argument("--compare", action="append", default=[], metavar="A:B", help="difference of two rows, with interval")
    ap.add_argument("--heuristics", nargs="*", default=list(HEURISTICS),
                    help="no-LLM rows (the oracle needs every SFT candidate; none: only --writer rows, "
                         "compared with raw history of another run by --compare-runs)")
    ap.add_argument("--max-history", type=int, default=5)
    ap.add_argument("--max-query-words", type=int, default=8)
    ap.add_argument("--no-valid", action="store_true")
    ap.add_argument("--bootstrap", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--compare-runs", nargs=2, metavar=("A.json:ROW", "B.json:ROW"),
                    help="only compare two finished runs on the same users (paired difference ROW_A - ROW_B)")
    ap.add_argument("--out-dir", default="eval/results")
    ap.add_argument("--name", default=None, help="result file stem (default query_<dataset>_bench)")
    args = ap.parse_args(argv)
    for opt, v in (("--n-users", args.n_users), ("--threads", args.threads), ("--bootstrap", args.bootstrap)):
        if v < 1:
            ap.error(f"{opt} must be >= 1")
    writers = {}
    for w in args.writer:
        name, sep, path = w.partition("=")
        if not sep or not name or not Path(path).is_dir():
            ap.error(f"--writer wants NAME=PATH to a saved writer folder, got {w!r}")
        writers[name] = path
    compare = []
    for c in args.compare:
        a, sep, b = c.partition(":")
        if not sep:
            ap.error(f"--compare wants A:B, got {c!r}")
        compare.append((a, b))
    if args.compare_runs:
        (pa, _, ra), (pb, _, rb) = (x.rpartition(":") for x in args.compare_runs)
        a, b = (json.loads(Path(p).read_text(encoding="utf-8")) for p in (pa, pb))
        res = {"benchmark": "query_recr1_compare", "dataset": a["dataset"], "a": {"file": pa, "row": ra},
               "b": {"file": pb, "row": rb}, "blocks": compare_runs(a, ra, b, rb, args.bootstrap, args.seed),
               "command": " ".join(["python", "eval/query_bench.py", *map(shlex.quote, sys.argv[1:])]),
               "git_commit": git_commit(), "machine": machine()}
        write_json(Path(args.out_dir) / f"{args.name or 'query_compare'}.json", res)
        print(json.dumps(res["blocks"], indent=1))
        return
    torch.set_num_threads(args.threads)
    res = run_benchmark(args.dataset, n_users=args.n_users, all_users_bm25=not args.no_all_users,
                        settings=args.settings, retrievers=args.retrievers, writers=writers, compare=compare,
                        max_history=args.max_history, max_query_words=args.max_query_words, seed=args.seed,
                        n_boot=args.bootstrap, with_valid=not args.no_valid, heuristics=args.heuristics)
    res.update({"command": " ".join(["python", "eval/query_bench.py", *map(shlex.quote, sys.argv[1:] if argv is None else argv)]),
                "git_commit": git_commit(), "machine": machine(), "threads": args.threads,
                "peak_rss_mb": round(peak_rss_mb(), 1)})
    stem = args.name or f"query_{args.dataset}_bench"
    out = Path(args.out_dir)
    write_json(out / f"{stem}.json", res)
    atomic_write_text(out / f"{stem}.md", markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
