"""``textrec explain``: explain one (user, item) pair, or a batch of pairs to JSONL."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


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


TRAIN_HELP = "ERRA: explanations from selected aspects and retrieved review sentences"


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``textrec train erra``."""
    from textrec.options import (
        add_dataset_options,
        add_recipe_options,
        add_run_options,
        positive_float,
        positive_int,
    )

    add_dataset_options(p, default="instruments")
    add_recipe_options(p, "erra")
    p.add_argument("--variant", default="erra_extract",
                   help="which explanation model: erra_extract (quotes of the item's own reviews chosen for the "
                        "user: the trusted default), erra (aspects + retrieval decoder), erra_copy (+ copy head), "
                        "erra_no_retrieval, erra_no_aspects, peter, erra_t5, erra_lm, pepler")
    p.add_argument("--epochs", type=positive_int, default=None, help="cap training epochs (default: recipe)")
    p.add_argument("--max-minutes", type=positive_float, default=None, help="wall-clock training cap")
    p.add_argument("--beams", type=positive_int, default=None, help="decoding beams for evaluation (default: greedy)")
    p.add_argument("--out", default=None, help="model folder (default $TEXTREC_CACHE/erra/<dataset>, "
                                               "where `textrec explain` looks)")
    add_run_options(p, seed=None)


def cmd_train(args: argparse.Namespace) -> int:
    """Train one explanation model, evaluate it on valid/test, save it for ``textrec explain``."""
    from pathlib import Path

    from textrec.explain.pipeline import (
        Explainer,
        build_data,
        default_model_dir,
        evaluate_predictions,
        train_tokenizer,
        train_variant,
    )
    from textrec.options import load_dataset_from_args, recipe_from_args, setup_run

    setup_run(args)
    recipe = recipe_from_args(args, "erra")
    over = {k: v for k, v in (("epochs", args.epochs), ("max_minutes", args.max_minutes), ("seed", args.seed))
            if v is not None}
    ds = load_dataset_from_args(args)
    data = build_data(ds, recipe, progress=not args.quiet)
    tok = train_tokenizer(data, recipe)
    model, hist = train_variant(data, args.variant, recipe, tokenizer=tok, progress=not args.quiet,
                                trainer_overrides=over)
    metrics = {}
    for part in ("valid", "test"):
        texts, ratings = model.predict(data.examples[part], num_beams=args.beams, progress=not args.quiet)
        m = evaluate_predictions(data, data.examples[part], texts, ratings)
        metrics[part] = {k: round(float(m[k]), 4) for k in ("bleu4", "rougeL", "usr", "div", "fcr", "rmse", "grounding",
                                                             "unsupported_content", "personal_hit_rate") if k in m}
    out = Path(args.out) if args.out else default_model_dir(ds.name)
    Explainer(data, model).save(out, recipe)
    how = ({"fit": hist} if "epochs" not in hist else
           {"epochs_run": len(hist["epochs"]), "best_epoch": hist["best_epoch"], "stopped": hist["stopped"]})
    print(json.dumps({"model": args.variant, "saved": str(out), **how, **metrics}, indent=2))
    print(f"explain a pair: textrec explain --dataset {args.dataset} --model {out} --user USER --item ITEM",
          file=sys.stderr)
    return 0


def default_explainer(dataset: str, data_root: str | None = None, folder: str | Path | None = None,
                      progress: bool = True):
    """The dataset's saved explainer; when there is none yet, the trusted default (the extractive
    explainer of the recipe, fitted in seconds) is built and saved where later calls find it."""
    from textrec.explain.pipeline import Explainer, build_data, default_model_dir, fit_extractive

    folder = Path(folder) if folder else default_model_dir(dataset)
    if Path(folder).is_dir() and (Path(folder) / "config.json").is_file():
        return Explainer.load(folder, dataset=dataset, data_root=data_root, progress=progress)
    from textrec.data.registry import load_dataset
    from textrec.recipes import load_recipe

    recipe = load_recipe("erra")
    # without MiniLM features the explainer needs no sentence vectors: no encoding pass over the reviews
    recipe["data"] = {**(recipe.get("data") or {}), "sentence_embeddings": bool(recipe["extract"]["use_embeddings"])}
    print(f"textrec: no explainer in {folder}; fitting the default (quotes of the item's own reviews) "
          "and saving it there", file=sys.stderr)
    data = build_data(load_dataset(dataset, data_root=data_root), recipe, progress=progress)
    exp = Explainer(data, fit_extractive(data, recipe))
    exp.save(folder, recipe)
    return exp


def recommended_pairs(user: str, k: int, engine: str | None, dataset: str, data_root: str | None
                      ) -> tuple[list[tuple[str, str]], str]:
    """(user, item) pairs for the top-``k`` items a saved recommender gives ``user``, and what ranked them.

    ``engine``: a saved recommender folder (e.g. a TextFusion artifact); None fits EASE on the dataset's
    interactions (Instruments has no item text, so TextFusion cannot be trained on it).
    """
    from textrec import load

    if engine is None:
        import tempfile

        from textrec.data.registry import load_dataset
        from textrec.data.splits import make_split
        from textrec.models.base import TrainView
        from textrec.models.baselines import EASE

        ds = load_dataset(dataset, data_root=data_root)
        engine = tempfile.mkdtemp(prefix="textrec-ease-")
        EASE().fit(TrainView.from_split(make_split(ds, "auto")), progress=False).save_pretrained(engine)
    model = load(engine)
    return [(user, row["id"]) for row in model.recommend_ids(user_id=user, k=k)], type(model).__name__


def cmd_explain(args: argparse.Namespace) -> int:
    """Load (or build) the dataset's explainer and explain the requested pair(s)."""
    from textrec.options import setup_run

    setup_run(args)
    if args.batch is None and args.user is None:
        raise ValueError("give --user and --item (or --recommend K), or --batch FILE")
    if args.batch is None and args.item is None and not args.recommend:
        raise ValueError("give --item, or --recommend K to explain the user's top-K recommendations")
    exp = default_explainer(args.dataset, args.data_root, args.model, progress=not args.quiet)
    if args.batch is None and args.recommend:
        pairs, engine = recommended_pairs(args.user, args.recommend, args.engine, args.dataset, args.data_root)
        rows = [exp.explain(u, i, num_beams=args.beams) for u, i in pairs]
        if args.json:
            print(json.dumps({"engine": engine, "explanations": rows}, indent=2))
            return 0
        print(f"top {len(rows)} of {engine} for user {args.user}:")
        for n, out in enumerate(rows, 1):
            print(f"\n{n}. item {out['item']}")
            _print_one(out, indent="   ")
        return 0
    if args.batch is None:
        out = exp.explain(args.user, args.item, num_beams=args.beams)
        if args.json:
            print(json.dumps(out, indent=2))
            return 0
        print(f"user {out['user']} · item {out['item']} · predicted rating {out['rating']:.2f}")
        _print_one(out)
        return 0
    from textrec.io import atomic_write_text
    from textrec.options import progress_bar as tqdm

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


def _print_one(out: dict, indent: str = "") -> None:
    """One explanation as text: the explanation, aspects, cited sentences and trust measures."""
    print(f"{indent}explanation: {out['explanation']}")
    if out.get("kind") == "history":
        print(f"{indent}(the item has too few reviews to quote; this says why it was recommended)")
        return
    print(f"{indent}aspects used: {', '.join(out['aspects']) or '(none)'}")
    if out["cited"]:
        print(f"{indent}cited sentences:")
        for c in out["cited"]:
            print(f"{indent}  - [{c['id']}] \"{c['text']}\" (review by {c['review_user']} of {c['review_item']})")
    else:
        print(f"{indent}cited sentences: (none)")
    if out.get("grounding") is not None:
        print(f"{indent}grounding: {out['grounding']:.2f} of its content words are in the cited sentences or item text")
    t = out.get("trust")
    if t:
        print(f"{indent}unsupported by the item's reviews: {', '.join(t['unsupported']) or 'nothing'} "
              f"({t['unsupported_share']:.0%} of {t['claim_units']} claim words); "
              f"aspects this user wrote about: {', '.join(t['personal_aspects']) or 'none'}")
    if out.get("unsupported_aspects"):
        print(f"{indent}unsupported aspects (in no source): {', '.join(out['unsupported_aspects'])}")


def register(sub) -> None:
    """Add ``textrec explain`` to the top-level sub-command parsers."""
    from textrec.options import add_dataset_options, add_threads_option, positive_int

    p = sub.add_parser("explain", help="explain why a user would like an item (ERRA: aspects + cited review sentences)")
    add_dataset_options(p, default="instruments")
    p.add_argument("--user", help="original user id (e.g. reviewerID)")
    p.add_argument("--item", help="original item id (e.g. asin)")
    p.add_argument("--batch", metavar="FILE", help="pairs, one per line: 'user item' or JSON {user, item}")
    p.add_argument("--out", metavar="JSONL", help="batch mode: write JSONL here (default stdout)")
    p.add_argument("--model", help="trained explainer folder (default $TEXTREC_CACHE/erra/<dataset>; built there "
                                   "with the trusted default when missing)")
    p.add_argument("--beams", type=positive_int, default=None, help="beam size (default: the model's, greedy)")
    p.add_argument("--recommend", type=positive_int, default=None, metavar="K",
                   help="explain the user's top-K recommendations (of --engine) instead of one --item")
    p.add_argument("--engine", metavar="DIR", default=None,
                   help="saved recommender for --recommend (e.g. a TextFusion artifact; default: EASE fitted now)")
    p.add_argument("--json", action="store_true", help="print the single explanation as JSON")
    add_threads_option(p)
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_explain)
