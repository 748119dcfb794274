"""Command line: ``textrec data | train | recommend | bench | results | report | vqrec | p5 | query | explain``.

``textrec train <model>`` trains any engine or core model on a dataset and saves it;
``textrec recommend --model DIR --dataset D --user U`` prints titled recommendations from any
saved recommender; ``textrec bench <name>`` runs a benchmark into a new run folder (the
committed ``eval/results/`` only with ``--publish``). Every command takes the shared run options
of ``textrec.options``. Heavy libraries are imported inside the command functions.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import warnings
from collections.abc import Sequence
from typing import NamedTuple

from textrec import __version__
from textrec.options import (
    add_dataset_options,
    add_recipe_options,
    add_run_options,
    add_seed_option,
    add_shared_options,
    add_threads_option,
    apply_shared_options,
    fraction,
    load_dataset_from_args,
    positive_float,
    positive_int,
    progress,
    recipe_from_args,
    set_quiet,
    setup_run,
)

#: engine modules that add their own sub-commands with ``register(sub)``
ENGINE_CLIS = ("textrec.vqrec.cli", "textrec.p5.cli", "textrec.query.cli", "textrec.explain.cli", "textrec.serve.cli",
               "textrec.demo", "textrec.report")

#: ``textrec train <name>``: engines -> the module whose ``add_train_arguments`` / ``cmd_train`` run it
ENGINE_TRAINERS = {"textfusion": "textrec.fusion_cli", "vqrec": "textrec.vqrec.cli", "p5": "textrec.p5.cli",
                   "query": "textrec.query.cli", "erra": "textrec.explain.cli"}
#: core recommenders ``textrec train`` builds from the registry (lower-case name -> registry name)
CORE_MODELS = {"popularity": "Popularity", "itemknn": "ItemKNN", "ease": "EASE", "markovchain": "MarkovChain",
               "sasrec": "SASRec", "textknn": "TextKNN"}

class Benchmark(NamedTuple):
    """One ``textrec bench`` entry: the module that runs it, what it measures, what a run costs."""

    module: str  # has ``add_arguments(p)`` and ``run(args)``
    purpose: str  # one line
    cpu: str = "?"  # typical CPU time of one run, as measured on the shared 2-core machine
    #: the ``"benchmark"`` kinds its result files state, as prefixes (default: the name, "-" -> "_")
    results: tuple[str, ...] = ()


#: ``textrec bench <name>``; an entry may also be a plain ``(module, purpose[, cpu])`` tuple
BENCHMARKS: dict[str, Benchmark | tuple] = {
    "baselines": Benchmark("textrec.bench", "Popularity, ItemKNN, EASE, Markov, SASRec tuned on valid, side by side",
                           "5-30 CPU-min per dataset (SASRec dominates)"),
    "textfusion": Benchmark("textrec.benchmarks.textfusion", "TextFusion: quality | new-items | codes | efficiency, "
                            "beside the tuned baselines and SASRec", "5-60 CPU-min per dataset and seed",
                            results=("textfusion", "fusion_")),
    "vqrec": Benchmark("textrec.benchmarks.vqrec", "VQ-Rec: scratch | new-items | transfer | speed",
                       "20-45 CPU-min per mode"),
    "p5": Benchmark("textrec.benchmarks.p5", "P5 with every item indexing next to the core baselines",
                    "6-35 CPU-min per indexing (the recipe's CPU cap)"),
    "p5-planted": Benchmark("textrec.benchmarks.p5_planted",
                            "P5 sanity check: can the model learn planted item-to-item transitions?",
                            "a few CPU-min (3 epochs of the mini model)"),
    "query": Benchmark("textrec.benchmarks.query", "Rec-R1: raw-history vs untrained vs GRPO-trained queries",
                       "2-25 CPU-min (no-LLM rows minutes; LLM writers longer)"),
    "query-probe": Benchmark("textrec.benchmarks.query_probe",
                             "Rec-R1: can a chooser fitted on history features pick among queries about different "
                             "items? (no LLM; oracle, best single, 5-fold CV choosers)", "2-3 CPU-min per dataset",
                             results=("query_candidate_probe",)),
    "erra": Benchmark("textrec.benchmarks.erra", "ERRA explanations vs PETER-style and ablations",
                      "5-35 CPU-min"),
    "erra-lm": Benchmark("textrec.benchmarks.erra_lm",
                         "ERRA-LM (SmolLM2 + LoRA explainer): CPU cost per example, learning curve, test rows",
                         "probe ~6 CPU-min; curve 15-25 CPU-min"),
    "recbole": Benchmark("textrec.benchmarks.recbole",
                         "RecBole 1.2.1 SASRec/GRU4Rec side by side (needs .[bench])", "30-60 CPU-min"),
    "toolbox-multvae": Benchmark("textrec.benchmarks.toolbox_multvae",
                                 "Mult-VAE / Mult-DAE beside EASE and ItemKNN, one seed per run, merged over seeds",
                                 "5-30 CPU-min per seed (ML-100K)"),
    "toolbox-dim-sweep": Benchmark("textrec.benchmarks.toolbox_dim_sweep",
                                   "Embedding size vs accuracy and popularity bias (SASRec or TextFusion)",
                                   "0.5-4 CPU-min per size (SASRec, ML-100K / Scientific); TextFusion more"),
    "toolbox-id-table": Benchmark("textrec.benchmarks.toolbox_id_table",
                                  "Collision-free vs hashed item-ID tables in SASRec; a stream of new ids",
                                  "2-10 CPU-min per table (SASRec); stream ~6 CPU-s"),
    "toolbox-ghrs": Benchmark("textrec.benchmarks.toolbox_ghrs",
                              "Side-information cold start: GHRS vs Popularity and TextKNN (new users / items)",
                              "10-60 CPU-s per split (new_item measured at 11 CPU-s)"),
    "toolbox-persona": Benchmark("textrec.benchmarks.toolbox_persona",
                                 "Multi-persona users vs single-vector SASRec: NDCG@10 and list diversity",
                                 "10-20 CPU-min"),
    "fuzz": Benchmark("textrec.benchmarks.fuzz", "Fuzz every data loader with mutated files; count how each ends",
                      "~25 CPU-min for --n 2000 over the 9 loaders; ~1 CPU-min for --n 100"),
    "fusion-plot": Benchmark("textrec.benchmarks.fusion_plot",
                             "Plot the TextFusion data-efficiency curves from the published results",
                             "seconds (reads the published results only)"),
    "newitems": Benchmark("textrec.benchmarks.newitems",
                          "Items added from text: junk cannot take over, good ones reach their users "
                          "(ML-100K, Scientific new-item split)", "5-15 CPU-min per dataset"),
    "load": Benchmark("textrec.benchmarks.load", "textrec serve under load (wrk): ceiling, ML-100K, 100k items, "
                      "explain, writes, hostile bodies", "about 6 min of a quiet machine for every scenario"),
    "erra_trust": Benchmark("textrec.benchmarks.erra_trust", "Explanations a person would trust: unsupported "
                            "content, personal aspects, grounding beside BLEU/ROUGE", "10-20 CPU-min (Instruments)"),
    "scale": Benchmark("textrec.benchmarks.scale", "Time and peak memory of every step from 0.1M to 10M events, "
                       "log-log growth exponents", "0.1M+1M ~15 CPU-min; 10M about 1.5 CPU-h with capped epochs"),
    "transfer": Benchmark("textrec.benchmarks.transfer", "TextFusion pretrained on other domains: zero-shot, "
                          "data-efficiency curve, ablation of what transfers", "20-25 CPU-min per target"),
}


def benchmark(name: str) -> Benchmark:
    """The ``BENCHMARKS`` entry of ``name`` (a plain tuple entry is read as a ``Benchmark``)."""
    entry = BENCHMARKS[name]
    return entry if isinstance(entry, Benchmark) else Benchmark(*entry)


def benchmark_kinds(name: str) -> tuple[str, ...]:
    """Prefixes of the ``"benchmark"`` kinds a benchmark's results state (``toolbox-ghrs`` -> ``toolbox_ghrs``)."""
    return benchmark(name).results or (name.replace("-", "_"),)


def benchmark_of(kind: str) -> str | None:
    """The registered benchmark that writes results of this kind (the longest matching prefix)."""
    matches = [(len(prefix), name) for name in BENCHMARKS for prefix in benchmark_kinds(name) if kind.startswith(prefix)]
    return max(matches)[1] if matches else None


def format_benchmark_list() -> str:
    """``textrec bench --list``: every benchmark, its purpose and typical CPU time."""
    width = max(map(len, BENCHMARKS))
    lines = [f"{'benchmark':{width}}  typical CPU time / purpose"]
    for name in BENCHMARKS:
        b = benchmark(name)
        lines.append(f"{name:{width}}  {b.cpu}\n{'':{width}}  {b.purpose}")
    lines.append("\nRun one: textrec bench NAME [--publish] (NAME --help for its options).")
    return "\n".join(lines)


class _ListBenchmarks(argparse.Action):
    def __init__(self, option_strings, dest, **kw):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        print(format_benchmark_list())
        parser.exit()


# ---- data ------------------------------------------------------------------------------------
def cmd_data_info(args: argparse.Namespace) -> int:
    """Print a dataset's small-data diagnostics (or JSON), optionally its long-tail plot."""
    from textrec.data.stats import dataset_stats, format_stats, plot_long_tail

    ds = load_dataset_from_args(args)
    stats = dataset_stats(ds)
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        print(format_stats(stats))
        for note in ds.notes:
            print(f"  note: {note}")
    if args.plot:
        path = plot_long_tail(ds, args.plot)
        print(f"long-tail plot written to {path}")
    return 0


def cmd_data_split(args: argparse.Namespace) -> int:
    """Build a split and print its sizes."""
    from textrec.data.splits import make_split

    ds = load_dataset_from_args(args)
    kw = {"frac": args.frac, "seed": args.seed} if args.kind == "new_item" else {}
    split = make_split(ds, args.kind, **kw)
    print(json.dumps(split.describe(), indent=2))
    return 0


# ---- train -----------------------------------------------------------------------------------
def ease_preflight(n_items: int, ignore: bool = False) -> None:
    """Refuse EASE from the catalog size alone, before the events are split: a one-line error
    with the memory it would need and the option that forces it (``--ignore-memory-check``)."""
    from textrec.models.memory import USABLE_FRACTION, available_memory, ease_memory_bytes, format_bytes

    float64 = n_items <= 12_000  # EASE's default float64_max_items
    need = ease_memory_bytes(n_items, float64)
    avail = available_memory()
    if ignore or avail is None or need <= USABLE_FRACTION * avail:
        return
    raise ValueError(f"EASE on {n_items:,} items needs about {format_bytes(need)} (dense {n_items:,} x {n_items:,} "
                     f"matrices: memory grows with items squared, not events) but {format_bytes(avail)} is available; "
                     "use itemknn, or k-core filter the items, or pass --ignore-memory-check to try anyway")


def cmd_train_core(args: argparse.Namespace) -> int:
    """Train a core recommender (tuned on valid where it has a grid), save it, then evaluate it."""
    from textrec.data.splits import make_split
    from textrec.evaluation import run_protocol

    setup_run(args)
    name = CORE_MODELS[args.model]
    recipe = recipe_from_args(args, "sequential") if name == "SASRec" else None  # bad --set fails before any data loads
    ds = load_dataset_from_args(args)
    ignore_memory = getattr(args, "ignore_memory_check", False)
    if name == "EASE":
        ease_preflight(ds.n_items, ignore_memory)
    split = make_split(ds, args.split)
    params: dict = {}
    if recipe is not None:
        from textrec.models.sasrec import SASRec

        model = SASRec.from_recipe(recipe, seed=args.seed, max_epochs=args.epochs)
    else:
        from textrec.bench import TUNED, make_model, tune

        if name in TUNED and not args.no_tune:
            budget = args.tune_minutes * 60 if getattr(args, "tune_minutes", None) else None
            params, _ = tune(name, split, progress=progress(args), budget_seconds=budget)
            print(f"best on valid: {params}", file=sys.stderr)
        if ignore_memory and name in ("EASE", "ItemKNN"):
            params = {**params, "check_memory": False}
        model = make_model(name, params, seed=args.seed)

    def save(fitted) -> None:
        # saved before any evaluation, so a run that fails or is killed while evaluating keeps its model
        save_with_known_users(fitted, ds, args.out)
        print(f"saved {name} to {args.out}; evaluating valid and test", file=sys.stderr)

    res = run_protocol(model, split, progress=progress(args), after_fit=save)
    params.pop("check_memory", None)
    chosen = {"recipe": args.recipe, "overrides": args.overrides} if recipe is not None else {"params": params}
    print(json.dumps({"model": name, **chosen, "saved": str(args.out),
                      "valid": _at10(res.valid.metrics), "test": _at10(res.test.metrics)}, indent=2))
    return 0


def save_with_known_users(model, ds, folder) -> None:
    """Save a trained model whose user table holds every event of ``ds`` (not only the training
    part of the split), so ``textrec recommend --user U`` gives the same list with or without
    ``--dataset`` (which reads every event of U)."""
    from textrec.catalog import UserTable

    model.users = UserTable.from_dataset(ds)
    model.save_pretrained(folder)  # config, weights, item catalog and users in one folder


def _at10(metrics: dict) -> dict:
    return {k: round(float(v), 4) for k, v in metrics.items() if k.endswith("@10")}


# ---- recommend -------------------------------------------------------------------------------
def dataset_titles(ds, words: int = 12) -> list[str]:
    """A short display title per item: the ``title`` field, else the first words of its text, else its id."""
    if "title" in ds.text_fields:
        raw = ds.item_text(["title"])
    elif ds.text_fields:
        raw = ds.item_text()
    else:
        raw = [""] * ds.n_items
    return [" ".join(t.split()[:words]) or str(i) for t, i in zip(raw, ds.item_ids)]


def user_history(ds, user: str):
    """Item indexes of an original user id's events in time order (every event the dataset holds)."""
    import numpy as np

    ids = [str(u) for u in ds.user_ids]
    try:
        u = ids.index(str(user))
    except ValueError:
        raise ValueError(f"user '{user}' is not in dataset '{ds.name}' (original ids, e.g. '{ids[0]}')") from None
    inter = ds.sorted_interactions()
    return u, inter.loc[inter["user"] == u, "item"].to_numpy(dtype=np.int64)


def history_from_ids(history: Sequence[str], item_ids: Sequence[str], where: str):
    """Item indexes of original item ids; unknown ids raise a ``ValueError`` naming them."""
    import numpy as np

    pos = {str(i): n for n, i in enumerate(item_ids)}
    unknown = [h for h in history if h not in pos]
    if unknown:
        raise ValueError(f"unknown item id(s) {unknown[:5]} (not in {where})")
    return np.array([pos[h] for h in history], dtype=np.int64)


def print_recommendations(rows: list[dict], as_json: bool) -> None:
    """Rows of ``{"rank", "item_id", "title", "score"}`` as JSON or as a ranked list with titles."""
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    for r in rows:
        title = f"  {r['title']}" if r.get("title") and r["title"] != r["item_id"] else ""
        print(f"{r['rank']:3d}. [{r['item_id']}]{title}  (score {r['score']:.4f})")
        if "persona" in r:
            because = "; ".join(f"[{b['item_id']}]" + (f" {b['title']}" if b.get("title") else "")
                                + f" ({b['weight']:.2f})" for b in r["because_of"])
            print(f"       persona {r['persona']} ({r['persona_weight']:.0%}) because of: {because}")


def recommend_rows(model, history, k: int, user: int, item_ids: Sequence[str],
                   titles: Sequence[str] | None) -> list[dict]:
    """Top-k of ``model`` for ``history`` as printable rows (original ids, titles, scores; a
    multi-persona model adds each item's persona and the history items behind it)."""
    import numpy as np

    def named(i) -> dict:
        return {"item_id": str(item_ids[int(i)]), "title": titles[int(i)] if titles else None}

    if hasattr(model, "recommend_with_personas"):
        # a multi-persona model names, per item, the persona it serves and that persona's history items
        return [{"rank": r + 1, **named(x["item"]), "score": round(x["score"], 4), "persona": x["persona"],
                 "persona_weight": x["persona_weight"],
                 "because_of": [{**named(b["item"]), "weight": b["weight"]} for b in x["because_of"]]}
                for r, x in enumerate(model.recommend_with_personas(history, k=k))]
    items, scores = model.recommend(history, k=k, user=user)
    return [{"rank": r + 1, **named(i), "score": round(float(s), 4)}
            for r, (i, s) in enumerate(zip(items, scores)) if np.isfinite(s)]


def load_model(folder):
    """Open a saved model folder of any engine (``textrec.load``)."""
    from pathlib import Path

    import textrec

    if not Path(folder).is_dir():
        raise FileNotFoundError(f"{folder}: no such model folder")
    return textrec.load(folder)


def model_catalog(model, folder) -> tuple[list[str] | None, list[str] | None]:
    """(original item ids, titles) a saved model knows, from its catalog or the files beside it."""
    from pathlib import Path

    cat = getattr(model, "catalog", None)
    if cat is not None and getattr(cat, "ids", None) is not None:
        return [str(i) for i in cat.ids], list(cat.titles) if getattr(cat, "titles", None) else None
    path = Path(folder) / "catalog.json"
    if path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
        ids = data.get("ids", data.get("item_ids"))
        return [str(i) for i in ids] if ids is not None else None, data.get("titles")
    inner = getattr(model, "model", None)  # P5 keeps its ids on the T5 wrapper
    ids = getattr(inner, "item_ids", None)
    return ([str(i) for i in ids] if ids is not None else None), None


def cmd_recommend(args: argparse.Namespace) -> int:
    """Top-k with titles for a user (from ``--dataset`` or the model's saved users) or a history of item ids."""
    if args.history and args.user is not None:
        raise ValueError("give --user or --history, not both")
    setup_run(args)
    model = load_model(args.model)
    item_ids, titles = model_catalog(model, args.model)
    user = -1
    if args.user is not None and args.dataset:
        ds = load_dataset_from_args(args)
        if item_ids is not None and [str(i) for i in ds.item_ids] != item_ids[: ds.n_items]:
            raise ValueError(f"dataset '{ds.name}' does not match the item catalog of {args.model}")
        item_ids = item_ids or [str(i) for i in ds.item_ids]
        if titles is None:  # the model's own titles win, so both ways print the same names
            from textrec.catalog import Catalog

            ds_titles = Catalog.from_dataset(ds).titles or [str(i) for i in ds.item_ids]
            titles = ds_titles + list(item_ids[len(ds_titles):])
        user, history = user_history(ds, args.user)
    elif args.user is not None:
        users = getattr(model, "users", None)
        if users is None:
            raise ValueError(f"{args.model} holds no user histories: give --dataset D (the data user "
                             f"'{args.user}' comes from) or --history ITEM_ID ...")
        user = users.index(args.user)  # an unknown id raises UnknownIdError naming it
        history = users.histories[user]
    elif args.history:
        if item_ids is None:
            raise ValueError(f"{args.model} has no item catalog: give --dataset and --user instead")
        history = history_from_ids(args.history, item_ids, f"the catalog of {args.model}")
    else:
        raise ValueError("give --user USER_ID [--dataset D], or --history ITEM_ID ...")
    print_recommendations(recommend_rows(model, history, args.k, user, item_ids, titles), args.json)
    return 0


def add_recommend_arguments(p: argparse.ArgumentParser) -> None:
    """``--dataset/--user`` or ``--history``, ``--k``, ``--json`` (shared by every ``recommend``)."""
    p.add_argument("--user", help="original user id: recommend after their history (all their events in "
                                   "--dataset, else the training history saved with the model)")
    p.add_argument("--history", nargs="+", metavar="ITEM_ID", help="original item ids, oldest first")
    p.add_argument("--k", type=positive_int, default=10, help="how many items (default 10)")
    p.add_argument("--json", action="store_true", help="print JSON rows instead of a ranked list")


# ---- bench ---------------------------------------------------------------------------
def cmd_bench(args: argparse.Namespace) -> int:
    """Run the chosen benchmark module."""
    module = importlib.import_module(benchmark(args.bench_command).module)
    setup_run(args)
    return int(module.run(args) or 0)


# ---- parser ------------------------------------------------------------------------------------
def _add_bench_parsers(sub, argv: Sequence[str] | None) -> None:
    bench = sub.add_parser("bench", help="run a benchmark (results to runs/<bench>-<time>/, or --publish)")
    bench.add_argument("--list", action=_ListBenchmarks, help="list every benchmark with its purpose and CPU time")
    bsub = bench.add_subparsers(dest="bench_command", required=True, metavar="{" + ",".join(BENCHMARKS) + "}")
    # Only the benchmark being run is imported (the others' parsers stay empty), so `textrec --help`
    # and every other command start without loading the benchmark modules.
    wanted = None if argv is None else (argv[1] if len(argv) > 1 and argv[0] == "bench" else "")
    for name in BENCHMARKS:
        module, help_ = benchmark(name).module, benchmark(name).purpose
        p = bsub.add_parser(name, help=help_, description=help_)
        if wanted is None or wanted == name:
            try:
                importlib.import_module(module).add_arguments(p)
            except ModuleNotFoundError as e:
                if wanted is None and e.name != module:
                    continue  # an optional dependency missing: introspection only
                raise
        p.set_defaults(func=cmd_bench)


def _add_train_parsers(sub) -> None:
    train = sub.add_parser("train", help="train a model on a dataset, evaluate valid/test, save it")
    tsub = train.add_subparsers(dest="model", required=True, metavar="MODEL")
    for name, module in ENGINE_TRAINERS.items():
        mod = importlib.import_module(module)
        p = tsub.add_parser(name, help=mod.TRAIN_HELP)
        mod.add_train_arguments(p)
        p.set_defaults(func=mod.cmd_train)
    for name, reg in CORE_MODELS.items():
        p = tsub.add_parser(name, help=f"core recommender {reg}")
        add_dataset_options(p)
        p.add_argument("--split", default="auto", choices=["auto", "leave_one_out", "temporal", "published"])
        p.add_argument("--out", required=True, help="model folder to write")
        add_run_options(p)
        if reg == "SASRec":
            add_recipe_options(p, "sasrec")
            p.add_argument("--epochs", type=positive_int, default=None, help="cap training epochs (default: recipe)")
        else:
            p.set_defaults(overrides=[], epochs=None)
        if reg in ("ItemKNN", "EASE", "MarkovChain"):
            p.add_argument("--no-tune", action="store_true", help="skip the grid search on valid; use defaults")
            p.add_argument("--tune-minutes", type=positive_float, default=10.0,
                           help="time budget of the grid search (default 10): a grid that does not fit is "
                                "thinned evenly and the skipped points are printed")
        if reg in ("ItemKNN", "EASE"):
            p.add_argument("--ignore-memory-check", action="store_true",
                           help="fit even when the memory estimate exceeds the available memory")
        else:
            p.set_defaults(no_tune=True)
        p.set_defaults(func=cmd_train_core)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``textrec`` argument parser (given ``argv``, only the benchmark it runs is imported)."""
    p = argparse.ArgumentParser(prog="textrec", description="textrec: recommendation as language. Train, "
                                "recommend, explain and benchmark from one command; `textrec COMMAND --help` "
                                "for each command's options.")
    p.add_argument("--version", action="version", version=f"textrec {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="load, describe and split datasets")
    dsub = data.add_subparsers(dest="data_command", required=True)
    info = dsub.add_parser("info", help="small-data diagnostics of a dataset")
    add_dataset_options(info, positional=True)
    info.add_argument("--plot", metavar="PNG", help="write the long-tail popularity curve here")
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    info.set_defaults(func=cmd_data_info)
    spl = dsub.add_parser("split", help="build a split and print its sizes")
    add_dataset_options(spl, positional=True)
    spl.add_argument("--kind", default="auto", choices=["auto", "leave_one_out", "temporal", "new_item", "published"])
    spl.add_argument("--frac", type=fraction, default=0.2, help="new-item split: held-out share of items")
    add_seed_option(spl)
    spl.set_defaults(func=cmd_data_split)

    _add_train_parsers(sub)

    rec = sub.add_parser("recommend", help="top-k with titles from any saved recommender")
    rec.add_argument("--model", required=True, help="a folder written by `textrec train`")
    add_dataset_options(rec, default="")
    add_recommend_arguments(rec)
    add_threads_option(rec)
    rec.set_defaults(func=cmd_recommend)

    _add_bench_parsers(sub, argv)

    # Each engine owns its sub-commands in its own module (``register(sub)``),
    # importing its heavy modules only inside the command functions.
    for module in ENGINE_CLIS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue
        mod.register(sub)
    add_shared_options(p)  # --threads and --quiet on every command that did not add them itself
    return p


def quiet_libraries() -> None:
    """Keep library chatter (hub/transformers progress bars, advisory and deprecation warnings) out of CLI output."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("DATASETS_VERBOSITY", "error")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    # torch's note on read-only NumPy views (textrec only reads them) is noise to a CLI user
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    # what is left (textrec's own notes: small catalog, legacy artifact) reads as one line, no source echo
    warnings.formatwarning = lambda message, category, *args, **kwargs: f"{category.__name__}: {message}\n"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``textrec`` console script."""
    from textrec import results

    quiet_libraries()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    apply_shared_options(args)
    results.CURRENT_ARGV = argv
    try:
        return args.func(args)
    except BrokenPipeError:  # `textrec ... | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except MemoryError as e:
        from textrec.models.memory import InsufficientMemoryError

        if not isinstance(e, InsufficientMemoryError):
            raise
        print(f"textrec: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, KeyError) as e:
        if type(e) is KeyError:  # a bare KeyError is a bug; subclasses (unknown id) are user errors
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"textrec: error: {msg}", file=sys.stderr)
        return 2
    finally:
        results.CURRENT_ARGV = None
        set_quiet(False)  # the flag is per command (main may run several in one process: tests)


if __name__ == "__main__":
    sys.exit(main())
