"""``textrec vqrec train | add-items | recommend``: VQ-Rec from the command line; and
``textrec add-items`` for any saved model that scores items from text alone (VQ-Rec, TextFusion).

A model folder written here holds the model (``save_pretrained``) plus ``catalog.json``: the
original item ids in index order, so the CLI speaks original ids while the model speaks indexes.
``add-items`` appends new items from their text alone (JSONL lines ``{"item_id": ..., "text": ...}``)
without retraining; they become recommendable at once.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from textrec.options import (
    add_dataset_options,
    add_recipe_options,
    add_run_options,
    add_threads_option,
    fraction,
    load_dataset_from_args,
    positive_int,
    recipe_from_args,
    setup_run,
)


def read_new_items(path: str | Path) -> tuple[list[str], list[str]]:
    """(item ids, texts) from a JSONL file; bad lines raise a DataError naming line and field."""
    from textrec.data.dataset import DataError

    path = Path(path)
    ids: list[str] = []
    texts: list[str] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 ({e.reason} at byte {e.start})", str(path)) from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"malformed JSON: {e.msg}", str(path), n) from None
        if not isinstance(rec, dict):
            raise DataError("each line must be a JSON object", str(path), n)
        for field in ("item_id", "text"):
            if field not in rec or rec[field] is None or not str(rec[field]).strip():
                raise DataError("missing or empty", str(path), n, field)
        if str(rec["item_id"]) in ids:
            raise DataError(f"item id '{rec['item_id']}' appears twice", str(path), n, "item_id")
        ids.append(str(rec["item_id"]))
        texts.append(str(rec["text"]))
    if not ids:
        raise DataError("no items in file", str(path))
    return ids, texts


TRAIN_HELP = "VQ-Rec: item text -> OPQ codes behind a causal transformer"


def add_train_arguments(t: argparse.ArgumentParser) -> None:
    """Arguments of ``textrec train vqrec`` (= ``textrec vqrec train``)."""
    add_dataset_options(t, default=None)
    add_recipe_options(t, "vqrec_scratch")
    t.add_argument("--split", default="auto", choices=["auto", "leave_one_out", "published", "new_item"])
    t.add_argument("--frac", type=fraction, default=0.2, help="new-item split: held-out share of items")
    t.add_argument("--epochs", type=positive_int, default=None, help="cap training epochs (default: recipe)")
    t.add_argument("--id-residual", action="store_true", help="codes + a per-item ID embedding for warm items")
    add_run_options(t)
    t.add_argument("--out", required=True, help="model folder to write")


def cmd_train(args: argparse.Namespace) -> int:
    """Train VQ-Rec on a dataset with a recipe, report valid/test metrics, save the model."""
    from textrec.data.splits import make_split
    from textrec.evaluation import run_protocol
    from textrec.vqrec.model import VQRec

    setup_run(args)
    recipe = recipe_from_args(args, "sequential")
    ds = load_dataset_from_args(args)
    kw = {"frac": args.frac, "seed": args.seed} if args.split == "new_item" else {}
    split = make_split(ds, args.split, **kw)
    options = {"id_residual": True} if args.id_residual else {}
    trainer = {"catalog": "train"} if args.split == "new_item" else {}
    model = VQRec.from_recipe(recipe, seed=args.seed, max_epochs=args.epochs, trainer=trainer, **options)
    res = run_protocol(model, split, progress=not args.quiet)
    out = Path(args.out)
    model.save_pretrained(out)
    print(json.dumps({"valid": {k: round(v, 4) for k, v in res.valid.metrics.items() if "@10" in k},
                      "test": {k: round(v, 4) for k, v in res.test.metrics.items() if "@10" in k},
                      "saved": str(out)}, indent=2))
    return 0


def cmd_add_items(args: argparse.Namespace) -> int:
    """Append items from text to a trained model's catalog and save it (no retraining)."""
    from textrec.models.base import Recommender

    folder = Path(args.model)
    model = Recommender.from_pretrained(folder)
    if not (getattr(model, "scores_new_items", False) and callable(getattr(model, "add_items", None))):
        raise ValueError(f"{folder}: a {type(model).__name__} model cannot add items from text "
                         "(VQ-Rec and TextFusion can)")
    if model.catalog is None:
        raise ValueError(f"{folder}: the model has no item catalog; retrain it with `textrec train`")
    ids, texts = read_new_items(args.items)
    clash = [i for i in ids if i in set(model.catalog.ids)]
    if clash:
        raise ValueError(f"{args.items}: {len(clash)} item id(s) already in the catalog, e.g. '{clash[0]}'")
    new = model.add_items(texts=texts, ids=ids)
    out = Path(args.out or folder)
    model.save_pretrained(out)  # model, catalog and manifest are replaced together
    print(f"added {len(new)} items (indexes {int(new[0])}..{int(new[-1])}); catalog now {model.n_items} items; "
          f"saved to {out}")
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    """Top-k items (original ids, titles, scores): the same as ``textrec recommend``."""
    from textrec.cli import cmd_recommend as recommend

    return recommend(args)


def cmd_codes(args: argparse.Namespace) -> int:
    """Encode a dataset's item texts, fit OPQ/PQ on training items, report collisions and usage."""
    import numpy as np

    from textrec.data.splits import make_split
    from textrec.text.encoder import TextEncoder, item_texts
    from textrec.text.quantize import ProductQuantizer, code_stats, plot_code_usage

    setup_run(args)
    ds = load_dataset_from_args(args)
    split = make_split(ds, "auto")
    texts = item_texts(ds, args.fields)
    emb = TextEncoder(args.encoder).encode(list(texts.texts), progress=not args.quiet)
    train_items = np.unique(split.train["item"].to_numpy())
    q = ProductQuantizer(args.subvectors, args.centroids, opq=not args.no_opq, seed=args.seed)
    q.fit(emb[train_items], progress=not args.quiet)
    codes = q.encode(emb)
    stats = code_stats(codes, q.n_centroids_)
    report = {"dataset": ds.name, "items": ds.n_items, "quantizer_trained_on": int(len(train_items)),
              "quantizer": q.report, "codes": {k: v for k, v in stats.items() if not isinstance(v, (list, dict))}}
    print(json.dumps(report, indent=2, default=str))
    if args.plot:
        print(f"code-usage plot written to {plot_code_usage(codes, args.plot, q.n_centroids_, title=ds.name)}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``textrec vqrec ...`` to the top-level parser."""
    from textrec.cli import add_recommend_arguments

    p = sub.add_parser("vqrec", help="VQ-Rec: train, add new items from text, recommend")
    vsub = p.add_subparsers(dest="vqrec_command", required=True)
    t = vsub.add_parser("train", help="train on a dataset with a recipe and save the model (= textrec train vqrec)")
    add_train_arguments(t)
    t.set_defaults(func=cmd_train)
    for parent in (vsub, sub):  # `textrec vqrec add-items` and `textrec add-items` (any text model)
        a = parent.add_parser("add-items", help="add items to a trained text model's catalog (VQ-Rec, TextFusion) "
                                                "from their text, no retraining")
        a.add_argument("--model", required=True)
        a.add_argument("--items", required=True, help='JSONL: {"item_id": ..., "text": ...} per line')
        a.add_argument("--out", help="write the grown model here (default: in place)")
        a.set_defaults(func=cmd_add_items)
    r = vsub.add_parser("recommend", help="top-k with titles for a user or a history of item ids")
    r.add_argument("--model", required=True)
    add_dataset_options(r, default="")
    add_recommend_arguments(r)
    add_threads_option(r)
    r.set_defaults(func=cmd_recommend)
    c = vsub.add_parser("codes", help="item text -> OPQ/PQ codes: collisions, code usage, PNG")
    add_dataset_options(c, default=None)
    c.add_argument("--fields", nargs="*", default=None, help="item text fields (default: all, title first)")
    c.add_argument("--encoder", default=None, help="sentence-transformers id or path (default: bundled MiniLM)")
    c.add_argument("--subvectors", type=positive_int, default=32)
    c.add_argument("--centroids", type=positive_int, default=256)
    c.add_argument("--no-opq", action="store_true")
    c.add_argument("--plot", metavar="PNG")
    add_run_options(c)
    c.set_defaults(func=cmd_codes)
