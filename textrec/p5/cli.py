"""``textrec p5 train|recommend``: train a P5 model on a dataset, recommend from a saved one."""

from __future__ import annotations

import argparse
import json

from textrec.options import add_threads_option

TRAIN_HELP = "P5: recommendation as text-to-text with a T5 and constrained item ids"


def add_train_arguments(tr: argparse.ArgumentParser) -> None:
    """Arguments of ``textrec train p5`` (= ``textrec p5 train``)."""
    from textrec.options import (
        add_dataset_options,
        add_recipe_options,
        add_run_options,
        positive_float,
        positive_int,
    )

    add_dataset_options(tr)
    tr.add_argument("--indexing", default="collaborative", choices=["random", "sequential", "collaborative", "semantic"],
                    help="item ids; 'sequential' leaks the answer and is kept for comparison only")
    add_recipe_options(tr, "p5_ml100k")
    tr.add_argument("--out", required=True, help="folder for the trained model")
    tr.add_argument("--split", default="auto")
    tr.add_argument("--epochs", type=positive_int, default=None, help="training epochs (default: recipe)")
    tr.add_argument("--max-minutes", type=positive_float, default=None, help="wall-clock training cap")
    add_run_options(tr)


def cmd_train(args: argparse.Namespace) -> int:
    """Train P5 with one indexing on a dataset's split, evaluate valid/test, save the model."""
    from textrec.data.splits import make_split
    from textrec.evaluation import evaluate
    from textrec.models.base import TrainView
    from textrec.options import load_dataset_from_args, recipe_from_args, setup_run
    from textrec.p5.recommender import P5Recommender

    setup_run(args)
    recipe = recipe_from_args(args, "p5")
    ds = load_dataset_from_args(args)
    split = make_split(ds, args.split)
    trainer = dict(recipe.get("trainer", {}), seed=args.seed)
    if args.epochs is not None:
        trainer["epochs"] = args.epochs
    if args.max_minutes is not None:
        trainer["max_minutes"] = args.max_minutes
    fields = [f for f in ("title", "year") if f in ds.text_fields]
    beams = int(recipe.get("eval", {}).get("beams", 10))
    rec = P5Recommender(indexing=args.indexing, index_kw=recipe.get("indexing", {}).get(args.indexing) or {},
                        model_config=recipe.get("model"), serializer_config=dict(recipe.get("serializer", {}), seed=args.seed),
                        train_config=trainer, item_titles=ds.item_text(fields or None, sep=" "), k=beams, seed=args.seed)
    rec.fit(TrainView.from_split(split, with_text=True), progress=not args.quiet)
    assert rec.model is not None
    rec.model.item_ids = list(ds.item_ids)
    rec.save_pretrained(args.out)
    ks = tuple(k for k in (5, 10, 20) if k <= beams)
    out = {"model": rec.name, "saved_to": args.out, "valid": evaluate(rec, split.valid, split.n_items, ks=ks).to_dict(),
           "test": evaluate(rec, split.test, split.n_items, ks=ks).to_dict(), "training": rec.history.get("epochs")}
    print(json.dumps(out, indent=2))
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    """Top-k items with titles for a dataset user's full history or a history of original item ids."""
    import numpy as np

    from textrec.cli import dataset_titles, history_from_ids, print_recommendations, user_history
    from textrec.options import load_dataset_from_args, setup_run
    from textrec.p5.recommender import P5Recommender

    setup_run(args)
    rec = P5Recommender.from_pretrained(args.model)
    assert rec.model is not None
    ids = rec.model.item_ids
    if args.template:
        rec.template_id = args.template
    rec.k = args.k
    titles = rec.serializer.item_titles if rec.serializer is not None else None
    user = 0
    if args.user is not None:
        if not args.dataset:
            raise ValueError("--user needs --dataset (the data the user's history comes from)")
        ds = load_dataset_from_args(args)
        user, hist = user_history(ds, args.user)
        titles = titles or dataset_titles(ds)
    elif args.history:
        if ids is None:
            raise ValueError(f"{args.model} has no item_ids.json: give --dataset and --user instead")
        hist = history_from_ids(args.history, ids, f"model {args.model}")
    else:
        raise ValueError("give --dataset D --user USER_ID, or --history ITEM_ID ...")
    items, scores = rec.recommend(hist, k=args.k, user=user)
    rows = [{"rank": r + 1, "item_id": str(ids[i]) if ids else str(int(i)), "title": titles[i] if titles else None,
             "score": round(float(s), 4), "id_tokens": rec.model.index.item_text(i)}
            for r, (i, s) in enumerate(zip(items, scores)) if np.isfinite(s)]
    print_recommendations(rows, args.json)
    return 0


def register(sub) -> None:
    """Add ``p5 train`` and ``p5 recommend`` to the top-level subparsers."""
    from textrec.cli import add_recommend_arguments
    from textrec.options import add_dataset_options

    p5 = sub.add_parser("p5", help="P5: recommendation as text-to-text with T5 and constrained item ids")
    psub = p5.add_subparsers(dest="p5_command", required=True)
    tr = psub.add_parser("train", help="train P5 on a dataset (one indexing), evaluate and save it (= textrec train p5)")
    add_train_arguments(tr)
    tr.set_defaults(func=cmd_train)
    rc = psub.add_parser("recommend", help="top-k items with titles from a saved P5 model (constrained beams)")
    rc.add_argument("--model", required=True, help="folder written by 'textrec train p5'")
    add_dataset_options(rc, default="")
    add_recommend_arguments(rc)
    rc.add_argument("--template", default=None, help="sequential template id (default: the model's)")
    add_threads_option(rc)
    rc.set_defaults(func=cmd_recommend)
