"""``textrec train textfusion``: TextFusion on any dataset, with the recipe derived from the data.

    textrec train textfusion --dataset scientific --out models/sci
    textrec train textfusion --dataset ratings.csv --columns user=uid,item=iid,time=ts \\
        --items items.csv --out models/mine
    textrec recommend --model models/mine --user U

The split is the dataset's own (``--split auto``); item text comes from the catalog, else from
the review summaries of training events, else there is none and the model is ID + co-occurrence
only (it says so). Catalog size, events and text coverage set EASE's L2 grid, the epoch cap and
the code size (``textrec.models.fusion_recipe``); EASE's L2, the score mix and the stopping epoch
are chosen on valid. ``--set`` overrides any recipe value, ``--epochs`` caps training.

``--pretrain-on D1,D2,...`` pretrains the text path on other domains instead (and saves it);
``--init DIR`` starts training from such a model (:mod:`textrec.transfer_cli`, docs/transfer.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from textrec.options import (
    add_dataset_options,
    add_recipe_options,
    add_run_options,
    load_dataset_from_args,
    positive_int,
    progress,
    recipe_from_args,
    setup_run,
)
from textrec.transfer_cli import add_pretrain_arguments, cmd_pretrain, load_init

TRAIN_HELP = "TextFusion: item text adaptor + PQ codes + ID residual + EASE, mixed on valid (recipe from the data)"


def add_train_arguments(t: argparse.ArgumentParser) -> None:
    """Arguments of ``textrec train textfusion``."""
    from textrec.data.item_text import SOURCES

    add_dataset_options(t, default="")  # required, except with --pretrain-on (checked in cmd_train)
    add_recipe_options(t, "fusion")
    t.add_argument("--split", default="auto", choices=["auto", "leave_one_out", "published", "temporal"])
    t.add_argument("--item-text", default="auto", choices=SOURCES,
                   help="item text: auto (catalog text, else training-period review summaries, else none), "
                        "or force one source")
    t.add_argument("--epochs", type=positive_int, default=None, help="cap training epochs (default: derived)")
    add_run_options(t)
    t.add_argument("--out", required=True, help="model folder to write")
    add_pretrain_arguments(t)


def cmd_train(args: argparse.Namespace) -> int:
    """Derive the recipe from the data, train, evaluate valid/test, save; print what was chosen."""
    from textrec.data.item_text import choose_item_text
    from textrec.data.splits import make_split
    from textrec.evaluation import run_protocol
    from textrec.models.base import TrainView
    from textrec.models.fusion import TextFusionRec
    from textrec.models.fusion_recipe import derive_recipe, text_coverage

    if args.pretrain_on:  # pretraining on other domains: --dataset, if given, is the target to keep out
        if args.init:
            raise ValueError("--pretrain-on and --init do not go together: pretrain first, then --init its folder")
        if args.dataset:
            if args.exclude and args.exclude != args.dataset:
                raise ValueError(f"--dataset {args.dataset} and --exclude {args.exclude}: name one target")
            args.exclude = args.dataset
        return cmd_pretrain(args)
    if not args.dataset:
        raise ValueError("--dataset is required (or --pretrain-on D1,D2,... to pretrain on other domains)")
    setup_run(args)
    recipe = recipe_from_args(args, "sequential")  # a bad --set fails before any data loads
    ds = load_dataset_from_args(args)
    split, text = choose_item_text(make_split(ds, args.split), args.item_text)
    view = TrainView.from_split(split, with_text=True)
    coverage = 0.0 if text["source"] == "none" else text_coverage(view.item_text)
    options, data_report = derive_recipe(view, recipe, coverage=coverage)
    pinned = {o.partition("=")[0].strip() for o in args.overrides}
    # what the user set with --set wins over what the data suggests
    options = {k: v for k, v in options.items() if f"options.{k}" not in pinned}
    if any(p.startswith("trainer.epochs") for p in pinned):
        options.pop("trainer", None)
    model = TextFusionRec.from_recipe(recipe, seed=args.seed, max_epochs=args.epochs, **options)
    if args.init:  # the text path starts from a model pretrained on other domains, with the text term's
        # settings it chose on its sources (valid still weighs the term, 0 included), unless --set names them
        model.warm_start(load_init(args.init, ds.name), source=str(args.init),
                         text_term="options.text_term" not in pinned)
    if text["source"] == "none":
        print(f"note: dataset '{ds.name}' has no item text: TextFusion trains ID + co-occurrence only "
              "(it cannot add items from text)", file=sys.stderr)
    res = run_protocol(model, split, progress=progress(args))
    out = Path(args.out)
    model.save_pretrained(out)
    print(json.dumps({"model": "TextFusion", "saved": str(out), "item_text": text, "text_mode": model.text_mode,
                      "derived_recipe": {"data": {k: v for k, v in data_report.items() if k != "why"},
                                         "why": data_report["why"]},
                      "chosen_on_valid": {"ease_lam": model.ease_lam, "mix": model.mix,
                                          "text_term": None if model.term is None else model.term.settings,
                                          "epochs_run": len(model.history)},
                      "valid": {k: round(v, 4) for k, v in res.valid.metrics.items() if k.endswith("@10")},
                      "test": {k: round(v, 4) for k, v in res.test.metrics.items() if k.endswith("@10")}},
                     indent=2))
    return 0
