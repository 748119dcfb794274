"""``textrec query train | generate | search``: the Rec-R1 engine on the command line.

Heavy modules (torch, transformers, TRL, FAISS) are imported inside the command functions.
Users and items are original ids on the command line and in the output.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def _index_cache(args: argparse.Namespace) -> Path:
    if getattr(args, "index_dir", None):
        return Path(args.index_dir)
    root = os.environ.get("TEXTREC_CACHE")
    return (Path(root).expanduser() if root else Path("~/.cache/textrec").expanduser()) / "query_index"


def _threads(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads or 1)


def _dataset(args: argparse.Namespace):
    from textrec.data.registry import load_dataset

    return load_dataset(args.dataset, data_root=getattr(args, "data_root", None))


def _print_results(ds, catalog, items, scores) -> None:
    for rank, (i, s) in enumerate(zip(items, scores), 1):
        if i < 0:
            break
        print(f"{rank:3d}. [{ds.item_ids[i]}] {catalog.titles[i]}  (score {s:.3f})")


def cmd_search(args: argparse.Namespace) -> int:
    """Run one free-text query against a dataset's catalog."""
    from textrec.query.retrieval import retriever_for_dataset

    _threads(args)
    ds = _dataset(args)
    r = retriever_for_dataset(ds, args.retriever, cache_dir=_index_cache(args), progress=True)
    items, scores = r.search([args.text], k=args.k)
    if args.json:
        print(json.dumps([{"item_id": str(ds.item_ids[i]), "title": r.catalog.titles[i], "score": float(s)}
                          for i, s in zip(items[0], scores[0]) if i >= 0], indent=1))
    else:
        _print_results(ds, r.catalog, items[0], scores[0])
    return 0


def _find_task(ds, args):
    from textrec.query.catalog import Catalog
    from textrec.query.tasks import make_tasks

    if args.user not in set(map(str, ds.user_ids)):
        raise ValueError(f"user '{args.user}' not in dataset '{ds.name}' (original user ids, e.g. "
                         f"'{ds.user_ids[0]}')")
    u = int(list(map(str, ds.user_ids)).index(args.user))
    catalog = Catalog.from_dataset(ds, verbose=False)
    tasks = [t for t in make_tasks(ds, args.setting, args.part, catalog, max_history=args.max_history)
             if t.user == u]
    if not tasks:
        raise ValueError(f"user '{args.user}' has no {args.setting} {args.part} row")
    return tasks[0]


def cmd_generate(args: argparse.Namespace) -> int:
    """Write a query for one user (untrained base policy or a saved writer) and search with it."""
    from textrec.metrics.ranking import MISS
    from textrec.query.parsing import parse_query
    from textrec.query.policy import QueryWriter
    from textrec.query.retrieval import retriever_for_dataset

    _threads(args)
    ds = _dataset(args)
    task = _find_task(ds, args)
    writer = QueryWriter.from_pretrained(args.writer) if args.writer else \
        QueryWriter.from_base(args.model, max_history=args.max_history, dataset_name=ds.name)
    completion = writer.generate([task], do_sample=args.sample, temperature=args.temperature,
                                 seed=args.seed, progress=False)[0]
    parsed = parse_query(completion)
    r = retriever_for_dataset(ds, args.retriever, cache_dir=_index_cache(args), progress=False)
    items, scores = r.search([parsed.query], k=args.k, exclude=[task.history])
    rank = r.target_rank(parsed.query, task.target, exclude=task.history) if parsed.query else MISS
    print("context (most recent last):")
    for line in task.context:
        print(f"  - {line}")
    print(f"completion: {completion!r}")
    print(f"query: {parsed.query!r} ({'well formed' if parsed.well_formed else parsed.problem})")
    print(f"true next item: [{ds.item_ids[task.target]}] {r.catalog.titles[task.target]} -> rank "
          f"{rank + 1 if rank < MISS else 'not retrieved'} of {r.n_items} ({args.retriever})")
    _print_results(ds, r.catalog, items[0], scores[0])
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """SFT warm start (when the recipe has ``sft_steps``) then GRPO; writers in ``<output>/sft/writer`` and ``<output>/final``."""
    from textrec.query.catalog import Catalog
    from textrec.query.grpo_config import load_grpo_config
    from textrec.query.retrieval import retriever_for_dataset
    from textrec.query.tasks import make_tasks
    from textrec.query.training import train_writers

    _threads(args)
    cfg = load_grpo_config(args.recipe, max_steps=args.max_steps, model=args.model,
                           reward_retrievers=args.retriever, max_train_tasks=args.max_train_tasks,
                           seed=args.seed)
    ds = _dataset(args)
    catalog = Catalog.from_dataset(ds, verbose=False)
    retrievers = {k: retriever_for_dataset(ds, k, cache_dir=_index_cache(args), catalog=catalog)
                  for k in cfg.reward_retrievers}
    tasks = make_tasks(ds, args.setting, "train", catalog, max_history=cfg.max_history)
    out = Path(args.output_dir or f"runs/query-{ds.name}-{args.setting}")
    s = train_writers(cfg, retrievers, tasks, out, dataset_name=ds.name, resume=args.resume)
    share = s["informative_group_share"]
    print(f"trained {s['steps']} steps in {s['seconds']:.0f}s ({s['seconds_per_step_median']} s/step); "
          f"mean reward first 20 {s['mean_reward_first_20']}, last 20 {s['mean_reward_last_20']}; "
          f"informative groups {'n/a' if share is None else f'{100 * share:.0f}%'}, "
          f"{s['skipped_batches']} batches skipped (all rewards equal); "
          f"writer saved to {out / 'final'}, curve {out / 'reward_curve.png'}")
    if s["verdict_nothing_learned"]:
        print(f"WARNING: {s['verdict']}")
    return 0


def register(sub) -> None:
    """Add ``textrec query ...`` to the top-level subparsers."""
    q = sub.add_parser("query", help="Rec-R1: an LLM writes search queries, trained by GRPO")
    qs = q.add_subparsers(dest="query_command", required=True)

    def common(p, retriever_default="bm25"):
        p.add_argument("--dataset", default="ml-100k", help="ml-100k | scientific | beauty | instruments | a path")
        p.add_argument("--data-root", help="folder holding the shared datasets (default ../shared/data)")
        p.add_argument("--index-dir", help="where retriever indexes are cached (default $TEXTREC_CACHE/query_index)")
        p.add_argument("--threads", type=int, default=None, help="torch threads (default 1)")

    s = qs.add_parser("search", help="search a dataset's catalog with a free-text query")
    s.add_argument("text")
    common(s)
    s.add_argument("--retriever", default="bm25", choices=["bm25", "dense"])
    s.add_argument("--k", type=int, default=10)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_search)

    g = qs.add_parser("generate", help="write a query for one user and show what it retrieves")
    common(g)
    g.add_argument("--user", required=True, help="original user id")
    g.add_argument("--writer", help="a saved query writer (textrec query train output/final); default: untrained base")
    g.add_argument("--model", default=None, help="base policy (default smollm2-135m; any HF causal-LM folder/id)")
    g.add_argument("--setting", default="transductive", choices=["transductive", "inductive"])
    g.add_argument("--part", default="test", choices=["train", "valid", "test"])
    g.add_argument("--retriever", default="bm25", choices=["bm25", "dense"])
    g.add_argument("--max-history", type=int, default=8)
    g.add_argument("--k", type=int, default=10)
    g.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    g.add_argument("--temperature", type=float, default=1.0)
    g.add_argument("--seed", type=int, default=0)
    g.set_defaults(func=cmd_generate)

    t = qs.add_parser("train", help="GRPO-train the query writer (recipe in training/)")
    common(t)
    t.add_argument("--recipe", default="recr1_cpu", help="training/<name>.yaml (recr1 | recr1_cpu) or a path")
    t.add_argument("--setting", default="transductive", choices=["transductive", "inductive"],
                   help="which split's training data (inductive = new-item split, held-out items never seen)")
    t.add_argument("--retriever", nargs="+", default=None, choices=["bm25", "dense"],
                   help="reward retriever(s) (default: the recipe's)")
    t.add_argument("--model", default=None)
    t.add_argument("--max-steps", type=int, default=None)
    t.add_argument("--max-train-tasks", type=int, default=None)
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--output-dir", default=None, help="default runs/query-<dataset>-<setting>")
    t.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --output-dir")
    t.set_defaults(func=cmd_train)
