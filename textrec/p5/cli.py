"""``textrec p5 train|recommend``: train a P5 model on a dataset, recommend from a saved one."""

from __future__ import annotations

import argparse
import json


def cmd_train(args: argparse.Namespace) -> int:
    """Train P5 with one indexing on a dataset's split, evaluate valid/test, save the model."""
    import torch

    from textrec.data.registry import load_dataset
    from textrec.data.splits import make_split
    from textrec.evaluation import evaluate
    from textrec.models.base import TrainView
    from textrec.p5.recommender import P5Recommender
    from textrec.recipes import load_recipe

    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = load_recipe(args.recipe)
    ds = load_dataset(args.dataset, data_root=args.data_root)
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
    rec.fit(TrainView.from_split(split, with_text=True), progress=not args.no_progress)
    assert rec.model is not None
    rec.model.item_ids = list(ds.item_ids)
    rec.save_pretrained(args.out)
    ks = tuple(k for k in (5, 10, 20) if k <= beams)
    out = {"model": rec.name, "saved_to": args.out, "valid": evaluate(rec, split.valid, split.n_items, ks=ks).to_dict(),
           "test": evaluate(rec, split.test, split.n_items, ks=ks).to_dict(), "training": rec.history.get("epochs")}
    print(json.dumps(out, indent=2))
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    """Top-k items for a history (original item ids) or a dataset user's full history."""
    import numpy as np

    from textrec.p5.recommender import P5Recommender

    rec = P5Recommender.from_pretrained(args.model)
    assert rec.model is not None
    ids = rec.model.item_ids
    if args.template:
        rec.template_id = args.template
    rec.k = args.k
    if args.history:
        if ids is None:
            raise ValueError(f"{args.model} has no item_ids.json: pass item indexes, not original ids")
        pos = {str(i): n for n, i in enumerate(ids)}
        unknown = [h for h in args.history if h not in pos]
        if unknown:
            raise ValueError(f"unknown item id(s) {unknown[:5]} for model {args.model}")
        hist = np.array([pos[h] for h in args.history], dtype=np.int64)
        user = 0
    elif args.dataset and args.user:
        from textrec.data.registry import load_dataset

        ds = load_dataset(args.dataset, data_root=args.data_root)
        upos = {str(u): n for n, u in enumerate(ds.user_ids)}
        if args.user not in upos:
            raise ValueError(f"user '{args.user}' not in dataset {ds.name}")
        user = upos[args.user]
        inter = ds.sorted_interactions()
        hist = inter.loc[inter["user"] == user, "item"].to_numpy()
    else:
        raise ValueError("give --history ITEM_ID ... or --dataset NAME --user USER_ID")
    items, scores = rec.recommend(hist, k=args.k, user=user)
    titles = rec.serializer.item_titles if rec.serializer is not None else None
    rows = [{"rank": r + 1, "item_id": ids[i] if ids else int(i), "title": titles[i] if titles else None,
             "score": round(float(s), 4), "id_tokens": rec.model.index.item_text(i)}
            for r, (i, s) in enumerate(zip(items, scores)) if np.isfinite(s)]
    print(json.dumps(rows, indent=2))
    return 0


def register(sub) -> None:
    """Add ``p5 train`` and ``p5 recommend`` to the top-level subparsers."""
    p5 = sub.add_parser("p5", help="P5: recommendation as text-to-text with T5 and constrained item ids")
    psub = p5.add_subparsers(dest="p5_command", required=True)
    tr = psub.add_parser("train", help="train P5 on a dataset (one indexing), evaluate and save it")
    tr.add_argument("--dataset", default="ml-100k")
    from textrec.indexing import SCHEMES

    tr.add_argument("--indexing", default="collaborative", choices=list(SCHEMES),
                    help="item ids; 'sequential' leaks the answer and is kept for comparison only")
    tr.add_argument("--recipe", default="p5_ml100k", help="training/<name>.yaml or a path")
    tr.add_argument("--out", required=True, help="folder for the trained model")
    tr.add_argument("--split", default="auto")
    tr.add_argument("--epochs", type=int, default=None)
    tr.add_argument("--max-minutes", type=float, default=None, help="wall-clock training cap")
    tr.add_argument("--threads", type=int, default=None)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--data-root")
    tr.add_argument("--no-progress", action="store_true")
    tr.set_defaults(func=cmd_train)
    rc = psub.add_parser("recommend", help="top-k items from a saved P5 model (constrained beams)")
    rc.add_argument("--model", required=True, help="folder written by 'textrec p5 train'")
    rc.add_argument("--history", nargs="+", help="original item ids, oldest first")
    rc.add_argument("--dataset", help="with --user: use this user's full history from the dataset")
    rc.add_argument("--user")
    rc.add_argument("--k", type=int, default=10)
    rc.add_argument("--template", default=None, help="sequential template id (default: the model's)")
    rc.add_argument("--data-root")
    rc.set_defaults(func=cmd_recommend)
