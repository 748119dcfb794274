"""``textrec query train | generate | search``: the Rec-R1 engine on the command line.

Heavy modules (torch, transformers, TRL, FAISS) are imported inside the command functions.
Users and items are original ids on the command line and in the output.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from textrec.options import add_seed_option, add_threads_option
from textrec.query.tasks import SETTINGS


def _index_cache(args: argparse.Namespace) -> Path:
    if getattr(args, "index_dir", None):
        return Path(args.index_dir)
    root = os.environ.get("TEXTREC_CACHE")
    return (Path(root).expanduser() if root else Path("~/.cache/textrec").expanduser()) / "query_index"


def _threads(args: argparse.Namespace) -> None:
    from textrec.options import setup_run

    setup_run(args)


def _dataset(args: argparse.Namespace):
    from textrec.options import load_dataset_from_args

    return load_dataset_from_args(args)


def quiet_trainer_logs(hf_trainer) -> None:
    """Show a Trainer's step logs as the progress bar's reward/loss instead of printed raw dicts."""
    from transformers.trainer_callback import ProgressCallback

    class BarOnlyProgress(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and self.training_bar is not None and logs:
                shown = {k: f"{logs[k]:.4g}" for k in ("reward", "loss") if isinstance(logs.get(k), float)}
                if shown:
                    self.training_bar.set_postfix(shown, refresh=False)

    hf_trainer.remove_callback(ProgressCallback)
    hf_trainer.add_callback(BarOnlyProgress)


def _last_checkpoint(folder: Path) -> str | None:
    """The newest complete ``checkpoint-N`` folder of a GRPO run folder, or ``None``."""
    from textrec.query.grpo_trainer import last_complete_checkpoint

    found = last_complete_checkpoint(folder)
    return str(found) if found is not None else None


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
    writer = QueryWriter.from_pretrained(args.writer) if args.writer else \
        QueryWriter.from_base(args.model, max_history=args.max_history or 8, dataset_name=ds.name)
    if args.max_history is None:  # the context the writer was trained on
        args.max_history = writer.max_history
    task = _find_task(ds, args)
    budget = args.max_words or writer.max_words
    # the same cut (and, for a chooser, the same heuristic) as the reward and the benchmark
    query, completion = writer.write_with_completions([task], max_words=budget, do_sample=args.sample,
                                                      temperature=args.temperature, seed=args.seed,
                                                      progress=False)[0]
    if writer.mode == "choose":
        from textrec.query.choice import parse_choice

        kind = parse_choice(completion)
        shape = f"chose {kind}" if kind else "names no heuristic"
    else:
        parsed = parse_query(completion, max_words=budget)
        shape = "well formed" if parsed.well_formed else parsed.problem
    r = retriever_for_dataset(ds, args.retriever, cache_dir=_index_cache(args), progress=False)
    items, scores = r.search([query], k=args.k, exclude=[task.history])
    rank = r.target_rank(query, task.target, exclude=task.history) if query else MISS
    print("context (most recent last):")
    for line in task.context:
        print(f"  - {line}")
    print(f"completion: {completion!r}")
    print(f"query ({budget}-word budget): {query!r} ({shape})")
    print(f"true next item: [{ds.item_ids[task.target]}] {r.catalog.titles[task.target]} -> rank "
          f"{rank + 1 if rank < MISS else 'not retrieved'} of {r.n_items} ({args.retriever})")
    _print_results(ds, r.catalog, items[0], scores[0])
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """SFT warm start (when the recipe has ``sft_steps``) then GRPO; writers in ``<output>/sft/writer`` and ``<output>/final``."""
    from textrec.options import recipe_from_args
    from textrec.query.catalog import Catalog
    from textrec.query.grpo_config import load_grpo_config
    from textrec.query.retrieval import retriever_for_dataset
    from textrec.query.tasks import held_out_frac_for, make_tasks
    from textrec.query.training import train_writers

    _threads(args)
    out = Path(args.output_dir or f"runs/query-{Path(args.dataset).name}-{args.setting}")
    if args.resume and _last_checkpoint(out) is None:
        raise FileNotFoundError(f"--resume: no checkpoint-N folder in {out} (nothing to resume; "
                                f"drop --resume to start a fresh run)")
    cfg = load_grpo_config(recipe_from_args(args, "query"), max_steps=args.max_steps, model=args.model,
                           reward_retrievers=args.retriever, max_train_tasks=args.max_train_tasks,
                           seed=args.seed)
    ds = _dataset(args)
    catalog = Catalog.from_dataset(ds, verbose=False)
    retrievers = {k: retriever_for_dataset(ds, k, cache_dir=_index_cache(args), catalog=catalog)
                  for k in cfg.reward_retrievers}
    # the writer records the fraction it was trained without, so the benchmark can check it
    cfg.held_out_users_frac = held_out_frac_for(args.setting, cfg.held_out_users_frac)
    tasks = make_tasks(ds, args.setting, "train", catalog, max_history=cfg.max_history,
                       held_out_users_frac=cfg.held_out_users_frac)
    if cfg.held_out_users_frac:  # these users are evaluated as never seen (bench setting held_out_users)
        print(f"textrec: {int(round(cfg.held_out_users_frac * ds.n_users))} held-out users left out of "
              f"training (held_out_users_frac={cfg.held_out_users_frac})", file=sys.stderr)
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


TRAIN_HELP = "Rec-R1: GRPO-train an LLM that writes search queries (retrieval NDCG as reward)"


def add_train_arguments(t: argparse.ArgumentParser) -> None:
    """Arguments of ``textrec train query`` (= ``textrec query train``)."""
    from textrec.options import add_recipe_options, positive_int

    _common(t)
    add_recipe_options(t, "recr1_cpu")
    t.add_argument("--setting", default="transductive", choices=list(SETTINGS),
                   help="which split's training data (held_out_items, old name inductive = the new-item split: "
                        "held-out items never seen; the recipe's held_out_users_frac also keeps users out)")
    t.add_argument("--retriever", nargs="+", default=None, choices=["bm25", "dense", "hybrid"],
                   help="reward retriever(s) (default: the recipe's)")
    t.add_argument("--model", default=None, help="base policy (default: the recipe's, smollm2-135m)")
    t.add_argument("--max-steps", type=positive_int, default=None, help="GRPO steps (default: the recipe's)")
    t.add_argument("--max-train-tasks", type=positive_int, default=None)
    add_seed_option(t, None)
    t.add_argument("--output-dir", default=None, help="default runs/query-<dataset>-<setting>")
    t.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --output-dir")


def _common(p) -> None:
    from textrec.options import add_dataset_options

    add_dataset_options(p)
    p.add_argument("--index-dir", help="where retriever indexes are cached (default $TEXTREC_CACHE/query_index)")
    add_threads_option(p)


def register(sub) -> None:
    """Add ``textrec query ...`` to the top-level subparsers."""
    from textrec.options import positive_float, positive_int

    q = sub.add_parser("query", help="Rec-R1: an LLM writes search queries, trained by GRPO")
    qs = q.add_subparsers(dest="query_command", required=True)

    s = qs.add_parser("search", help="search a dataset's catalog with a free-text query")
    s.add_argument("text")
    _common(s)
    s.add_argument("--retriever", default="bm25", choices=["bm25", "dense", "hybrid"])
    s.add_argument("--k", type=positive_int, default=10)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_search)

    g = qs.add_parser("generate", help="write a query for one user and show what it retrieves")
    _common(g)
    g.add_argument("--user", required=True, help="original user id")
    g.add_argument("--writer", help="a saved query writer (textrec train query output/final); default: untrained base")
    g.add_argument("--model", default=None, help="base policy (default smollm2-135m; any HF causal-LM folder/id)")
    g.add_argument("--setting", default="transductive", choices=list(SETTINGS))
    g.add_argument("--part", default="test", choices=["train", "valid", "test"])
    g.add_argument("--retriever", default="bm25", choices=["bm25", "dense", "hybrid"])
    g.add_argument("--max-words", type=positive_int, default=None,
                   help="the query budget in words (default: the writer's, 8); the completion is cut to it")
    g.add_argument("--max-history", type=positive_int, default=None,
                   help="recent items shown (default: the writer's, 8 for the base policy)")
    g.add_argument("--k", type=positive_int, default=10)
    g.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    g.add_argument("--temperature", type=positive_float, default=1.0)
    add_seed_option(g)
    g.set_defaults(func=cmd_generate)

    t = qs.add_parser("train", help="GRPO-train the query writer (= textrec train query)")
    add_train_arguments(t)
    t.set_defaults(func=cmd_train)
