"""Pretraining options of ``textrec train textfusion``: ``--pretrain-on`` and ``--init``.

    textrec train textfusion --pretrain-on games,office,ml-100k --exclude scientific --out models/pre
    textrec train textfusion --dataset scientific --init models/pre --out models/sci

``--pretrain-on`` trains the text path (adaptor, code tables, encoder) on the training events of
every named domain at once and saves it with ``save_pretrained``; the model's config records the
domains (users, items, events), the command and the cost. ``--exclude`` names a target that must
not be among them. ``--init DIR`` starts a target's training from such a model (its quantizer codes
the target's items; the ID residual and EASE are the target's own).

``python -m textrec.transfer_cli --pretrain-on ...`` runs the pretraining path alone.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from textrec.models.transfer import load_init
from textrec.options import (
    add_recipe_options,
    add_run_options,
    positive_float,
    positive_int,
    progress,
    recipe_from_args,
    setup_run,
)


def add_pretrain_arguments(t: argparse.ArgumentParser, init: bool = True) -> None:
    """``--pretrain-on``, ``--exclude``, ``--max-users``, ``--pretrain-cpu-minutes`` (and ``--init``)."""
    g = t.add_argument_group("transfer")
    g.add_argument("--pretrain-on", metavar="D1,D2,...",
                   help="pretrain on these datasets' training events (comma-separated) and save to --out")
    g.add_argument("--exclude", metavar="TARGET", help="with --pretrain-on: a target that must not be pretrained on")
    g.add_argument("--max-users", type=positive_int, default=None,
                   help="with --pretrain-on: at most this many users per domain (a seeded sample)")
    g.add_argument("--pretrain-cpu-minutes", type=positive_float, default=None,
                   help="with --pretrain-on: stop pretraining after this much CPU time (best valid epoch kept)")
    g.add_argument("--zero-shot-probe", metavar="DIR",
                   help="with --pretrain-on: choose the zero-shot settings leave-one-domain-out, with this model "
                        "pretrained without the --held-out domains, on their valid rows")
    g.add_argument("--held-out", metavar="D1,D2",
                   help="with --zero-shot-probe (or --probe): the pretraining domains the probe never saw")
    if init:
        g.add_argument("--init", metavar="DIR", help="start from this pretrained TextFusion (--pretrain-on output)")


def cmd_pretrain(args: argparse.Namespace) -> int:
    """Pretrain on ``--pretrain-on``, save to ``--out``, print the record."""
    from textrec.models.transfer import parse_domains, pretrain_textfusion
    from textrec.results import command_line

    setup_run(args)
    domains = parse_domains(args.pretrain_on, exclude=args.exclude)
    if getattr(args, "recipe", None) in (None, "fusion"):  # `train textfusion` defaults to the scratch recipe
        args.recipe = "fusion_pretrain"
    # --set overrides (e.g. trainer.patience=50) apply to pretraining as to any training
    recipe = recipe_from_args(args, "sequential") if getattr(args, "overrides", None) else args.recipe
    model = pretrain_textfusion(domains, recipe=recipe, seed=args.seed, max_users=args.max_users,
                                max_epochs=args.epochs, max_cpu_minutes=args.pretrain_cpu_minutes,
                                command=getattr(args, "command", None) or command_line(), progress=progress(args),
                                probe=args.zero_shot_probe, held_out=args.held_out)
    model.save_pretrained(args.out)
    record = {k: v for k, v in model.pretraining.items() if k != "history"}
    print(json.dumps({"saved": str(args.out), **record}, indent=2))
    return 0


def choose_zero_shot(path: str, max_rows: int = 2000, probe: str | None = None,
                     held_out: str | list[str] | None = None) -> dict:
    """(Re)choose the zero-shot settings of the pretrained model at ``path`` and save it in place.

    Without ``probe``: on its own pretraining domains' valid rows (the same seeded user samples it
    was trained on). With ``probe`` (a folder pretrained without the domains ``held_out``):
    leave-one-domain-out, on ``held_out``'s valid rows, where the probe's sequence part is out of
    sample. ``held_out`` must be among ``path``'s pretraining domains, so the target is never read."""
    import time

    from textrec.models.transfer import domain_view, held_out_domains, tune_zero_shot

    model = load_init(path)
    rec = model.pretraining
    c0 = time.process_time()
    cap = rec.get("max_users_per_domain")
    if probe is None:
        views = [domain_view(d["name"], cap, model.seed) for d in rec["domains"]]
        report = tune_zero_shot(model, views, max_rows=max_rows)
    else:
        held_out = held_out_domains(held_out, [d["name"] for d in rec["domains"]])
        views = [domain_view(h, cap, model.seed) for h in held_out]
        report = tune_zero_shot(model, views, max_rows=max_rows, probe=load_init(probe), probe_source=str(probe))
    model.pretraining.pop("zero_shot_mix", None)  # the text-cosine weight of the earlier zero-shot scorer
    model.pretraining["zero_shot_cpu_seconds"] = round(time.process_time() - c0, 1)
    model.save_pretrained(path)
    return report


def main(argv: list[str] | None = None) -> int:
    """``python -m textrec.transfer_cli --pretrain-on ... --out DIR``."""
    ap = argparse.ArgumentParser(prog="python -m textrec.transfer_cli", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_pretrain_arguments(ap, init=False)
    ap.add_argument("--epochs", type=positive_int, default=None, help="cap pretraining epochs")
    add_recipe_options(ap, "fusion_pretrain")
    ap.add_argument("--out", help="model folder to write")
    ap.add_argument("--choose-zero-shot", metavar="DIR",
                    help="instead: choose the zero-shot settings of the pretrained model in DIR on its own "
                         "pretraining domains' valid rows, and save them into DIR")
    ap.add_argument("--probe", metavar="DIR",
                    help="with --choose-zero-shot: choose leave-one-domain-out, with this model pretrained "
                         "without the --held-out domains, on their valid rows")
    add_run_options(ap)
    args = ap.parse_args(argv)
    if args.choose_zero_shot:
        setup_run(args)
        report = choose_zero_shot(args.choose_zero_shot, probe=args.probe, held_out=args.held_out)
        print(json.dumps({k: v for k, v in report.items() if k != "table"}, indent=2))
        return 0
    if not args.pretrain_on or not args.out:
        ap.error("--pretrain-on and --out are required")
    args.command = shlex.join(["python", "-m", "textrec.transfer_cli", *(sys.argv[1:] if argv is None else argv)])
    return cmd_pretrain(args)


if __name__ == "__main__":
    sys.exit(main())
