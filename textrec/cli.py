"""Command line: ``textrec data | train | recommend | bench | results | vqrec | p5 | query | explain``.

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

from textrec import __version__
from textrec.options import (
    add_dataset_options,
    add_recipe_options,
    add_run_options,
    add_seed_option,
    add_threads_option,
    fraction,
    load_dataset_from_args,
    positive_int,
    progress,
    recipe_from_args,
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

#: ``textrec bench <name>`` -> (module with ``add_arguments(p)`` and ``run(args)``, one-line help)
BENCHMARKS = {
    "baselines": ("textrec.bench", "Popularity, ItemKNN, EASE, Markov, SASRec tuned on valid, side by side"),
    "textfusion": ("textrec.benchmarks.textfusion", "TextFusion: quality | new-items | codes | efficiency, "
                   "beside the tuned baselines and SASRec"),
    "vqrec": ("textrec.benchmarks.vqrec", "VQ-Rec: scratch | new-items | transfer | speed"),
    "p5": ("textrec.benchmarks.p5", "P5 with every item indexing next to the core baselines"),
    "query": ("textrec.benchmarks.query", "Rec-R1: raw-history vs untrained vs GRPO-trained queries"),
    "erra": ("textrec.benchmarks.erra", "ERRA explanations vs PETER-style and ablations"),
    "transfer": ("textrec.benchmarks.transfer", "TextFusion pretrained on other domains: zero-shot, data efficiency, "
                                                "ablation"),
    "recbole": ("textrec.benchmarks.recbole", "RecBole 1.2.1 SASRec/GRU4Rec side by side (needs .[bench])"),
}


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
def cmd_train_core(args: argparse.Namespace) -> int:
    """Train a core recommender (tuned on valid where it has a grid), evaluate, save it."""
    from textrec.data.splits import make_split
    from textrec.evaluation import run_protocol

    setup_run(args)
    name = CORE_MODELS[args.model]
    recipe = recipe_from_args(args, "sequential") if name == "SASRec" else None  # bad --set fails before any data loads
    ds = load_dataset_from_args(args)
    split = make_split(ds, args.split)
    params: dict = {}
    if recipe is not None:
        from textrec.models.sasrec import SASRec

        model = SASRec.from_recipe(recipe, seed=args.seed, max_epochs=args.epochs)
    else:
        from textrec.bench import TUNED, make_model, tune

        if name in TUNED and not args.no_tune:
            params, _ = tune(name, split, progress=progress(args))
            print(f"best on valid: {params}", file=sys.stderr)
        model = make_model(name, params, seed=args.seed)
    res = run_protocol(model, split, progress=progress(args))
    model.save_pretrained(args.out)  # config, weights, item catalog and users in one folder
    chosen = {"recipe": args.recipe, "overrides": args.overrides} if recipe is not None else {"params": params}
    print(json.dumps({"model": name, **chosen, "saved": str(args.out),
                      "valid": _at10(res.valid.metrics), "test": _at10(res.test.metrics)}, indent=2))
    return 0


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
        # the data given now may carry item text the training run lacked; items added later keep theirs
        ds_titles = dataset_titles(ds)
        titles = ds_titles + list((titles or item_ids)[len(ds_titles):])
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


# ---- bench / results ---------------------------------------------------------------------------
def cmd_bench(args: argparse.Namespace) -> int:
    """Run the chosen benchmark module."""
    module = importlib.import_module(BENCHMARKS[args.bench_command][0])
    setup_run(args)
    return int(module.run(args) or 0)


def cmd_results(args: argparse.Namespace) -> int:
    """Regenerate (or check) eval/README.md from eval/results/."""
    from pathlib import Path

    from textrec.results_readme import write_readme

    return write_readme(Path(args.results), check=args.check)


# ---- parser ------------------------------------------------------------------------------------
def _add_bench_parsers(sub, argv: Sequence[str] | None) -> None:
    bench = sub.add_parser("bench", help="run a benchmark (results to runs/<bench>-<time>/, or --publish)")
    bsub = bench.add_subparsers(dest="bench_command", required=True, metavar="{" + ",".join(BENCHMARKS) + "}")
    # Only the benchmark being run is imported (the others' parsers stay empty), so `textrec --help`
    # and every other command start without loading the benchmark modules.
    wanted = None if argv is None else (argv[1] if len(argv) > 1 and argv[0] == "bench" else "")
    for name, (module, help_) in BENCHMARKS.items():
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

    res = sub.add_parser("results", help="regenerate eval/README.md from eval/results/")
    from textrec.results import REPO_ROOT

    res.add_argument("--results", default=str(REPO_ROOT / "eval" / "results"), help="results folder")
    res.add_argument("--check", action="store_true", help="only check that eval/README.md is up to date")
    res.set_defaults(func=cmd_results)

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
    results.CURRENT_ARGV = argv
    try:
        return args.func(args)
    except BrokenPipeError:  # `textrec ... | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, FileNotFoundError, KeyError) as e:
        if type(e) is KeyError:  # a bare KeyError is a bug; subclasses (unknown id) are user errors
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"textrec: error: {msg}", file=sys.stderr)
        return 2
    finally:
        results.CURRENT_ARGV = None


if __name__ == "__main__":
    sys.exit(main())
