"""``textrec explain``: explain one (user, item) pair, or a batch of pairs to JSONL."""

from __future__ import annotations

import argparse
import json
import sys


def _read_pairs(path: str) -> list[tuple[str, str]]:
    """Pairs from a file: JSON lines ``{"user": .., "item": ..}`` or ``user item`` (tab/space/comma)."""
    from textrec.data.dataset import DataError

    pairs = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("{"):
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"invalid JSON ({e.msg})", path=path, line=lineno) from None
                for f in ("user", "item"):
                    if f not in obj:
                        raise DataError(f"missing '{f}'", path=path, line=lineno, field=f)
                pairs.append((str(obj["user"]), str(obj["item"])))
            else:
                parts = line.replace(",", " ").split()
                if len(parts) != 2:
                    raise DataError(f"expected 'user item', got {len(parts)} fields", path=path, line=lineno)
                pairs.append((parts[0], parts[1]))
    return pairs


def cmd_explain(args: argparse.Namespace) -> int:
    """Load the trained explainer of the dataset and explain the requested pair(s)."""
    import torch

    from textrec.explain.pipeline import Explainer, default_model_dir

    torch.set_num_threads(args.threads)
    if args.batch is None and (args.user is None or args.item is None):
        raise ValueError("give --user and --item, or --batch FILE")
    folder = args.model or default_model_dir(args.dataset)
    exp = Explainer.load(folder, dataset=args.dataset, data_root=args.data_root, progress=not args.quiet)
    if args.batch is None:
        out = exp.explain(args.user, args.item, num_beams=args.beams)
        if args.json:
            print(json.dumps(out, indent=2))
            return 0
        print(f"user {out['user']} · item {out['item']} · predicted rating {out['rating']:.2f}")
        print(f"explanation: {out['explanation']}")
        print(f"aspects used: {', '.join(out['aspects']) or '(none)'}")
        if out["cited"]:
            print("cited sentences:")
            for c in out["cited"]:
                print(f"  - \"{c['text']}\" (review by {c['review_user']} of {c['review_item']})")
        else:
            print("cited sentences: (none)")
        return 0
    from tqdm.auto import tqdm

    from textrec.io import atomic_write_text

    rows = []
    for u, i in tqdm(_read_pairs(args.batch), desc="explaining", disable=args.quiet):
        try:
            rows.append(exp.explain(u, i, num_beams=args.beams))
        except ValueError as e:  # unknown id: reported in the row, counted below, never silent
            rows.append({"user": u, "item": i, "error": str(e)})
    text = "".join(json.dumps(r) + "\n" for r in rows)
    n_err = sum("error" in r for r in rows)
    if args.out:
        atomic_write_text(args.out, text)
        print(f"wrote {len(rows)} explanations to {args.out} ({n_err} errors)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 1 if n_err and n_err == len(rows) else 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train an explainer on a dataset (registered name or any Amazon reviews file) and save it."""
    import os
    from pathlib import Path

    import torch

    from textrec.data.registry import load_dataset
    from textrec.explain.pipeline import (
        VARIANTS,
        Explainer,
        build_data,
        default_model_dir,
        evaluate_predictions,
        train_tokenizer,
        train_variant,
    )
    from textrec.recipes import load_recipe

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    if args.variant not in VARIANTS:
        raise ValueError(f"unknown variant {args.variant!r}; known: {sorted(VARIANTS)}")
    recipe = load_recipe(args.recipe)
    over = {k: v for k, v in (("seed", args.seed), ("max_minutes", args.max_minutes), ("epochs", args.epochs))
            if v is not None}
    ds = load_dataset(args.dataset, data_root=args.data_root)
    data = build_data(ds, recipe, progress=not args.quiet)
    if not data.examples.get("train"):
        raise ValueError(f"{args.dataset}: no training explanations (reviews with an aspect sentence of "
                         f"{data.config.min_target_words}-{data.config.max_target_words} words)")
    model, hist = train_variant(data, args.variant, recipe, tokenizer=train_tokenizer(data, recipe),
                                progress=not args.quiet, trainer_overrides=over)
    folder = Path(args.out) if args.out else default_model_dir(ds.name)
    Explainer(data, model).save(folder, recipe)
    valid = data.examples.get("valid", [])[: args.check]
    summary = {"model_dir": str(folder), "dataset": ds.name, "variant": args.variant, "examples": data.report["examples"],
               "best_epoch": hist["best_epoch"], "stopped": hist["stopped"], "train_seconds": hist["train_seconds"]}
    if valid:
        texts, ratings = model.predict(valid)
        m = evaluate_predictions(data, valid, texts, ratings)
        summary[f"valid_first_{len(valid)}"] = {k: round(float(m[k]), 4) for k in
                                                 ("bleu4", "rougeL", "usr", "fcr", "grounding", "cites_at_least_one")}
    print(json.dumps(summary, indent=2))
    return 0


def register_train(sub) -> None:
    """Add ``erra`` to a ``textrec train`` sub-command group (``sub``: its subparsers)."""
    p = sub.add_parser("erra", help="train an ERRA explainer on a reviews dataset and save it for `textrec explain`")
    p.add_argument("dataset", help="registered dataset name or a reviews file (Amazon JSON lines, ...)")
    p.add_argument("--recipe", default="erra", help="recipe name or YAML path (default training/erra.yaml)")
    p.add_argument("--variant", default="erra", help="model variant (default: ERRA with the copy head)")
    p.add_argument("--out", help="where to save (default $TEXTREC_CACHE/erra/<dataset>)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--max-minutes", type=float, default=None, help="wall-clock cap on training")
    p.add_argument("--check", type=int, default=200, help="valid explanations scored after training (0 = none)")
    p.add_argument("--data-root", help="folder holding the shared datasets")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_train)


def register(sub) -> None:
    """Add ``textrec explain`` to the top-level sub-command parsers."""
    p = sub.add_parser("explain", help="explain why a user would like an item (ERRA: aspects + cited review sentences)")
    p.add_argument("--dataset", default="instruments", help="dataset the model was trained on")
    p.add_argument("--user", help="original user id (e.g. reviewerID)")
    p.add_argument("--item", help="original item id (e.g. asin)")
    p.add_argument("--batch", metavar="FILE", help="pairs, one per line: 'user item' or JSON {user, item}")
    p.add_argument("--out", metavar="JSONL", help="batch mode: write JSONL here (default stdout)")
    p.add_argument("--model", help="trained explainer folder (default $TEXTREC_CACHE/erra/<dataset>)")
    p.add_argument("--beams", type=int, default=None, help="beam size (default: the model's, greedy)")
    p.add_argument("--json", action="store_true", help="print the single explanation as JSON")
    p.add_argument("--data-root", help="folder holding the shared datasets")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_explain)
