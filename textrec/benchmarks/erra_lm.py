"""``textrec bench erra-lm``: what the pretrained-LM explainer (ERRA-LM) costs on a CPU, and what it
learns per example seen.

    textrec bench erra-lm probe --dataset instruments --name erra_instruments_lm_probe
    textrec bench erra-lm curve --dataset instruments --eval-every 1800 \\
        --reuse eval/results/erra_instruments_decoding.json --name erra_instruments_lm_capped --publish
    textrec bench erra-lm attach --name erra_instruments_lm_capped --reuse OTHER.json --publish

``probe`` times training examples and generated explanations per setting; ``curve`` trains on a
seeded subset with a valid curve, then explains the whole test split once; ``attach`` adds rows
of other models (same split) to a finished curve result. The measuring code lives in
:mod:`textrec.explain.lm_bench`; this module parses options and writes through the one result
writer (JSON, and for curves the Markdown table and samples).
"""

from __future__ import annotations

import argparse
import json

from textrec.options import add_seed_option, add_threads_option, positive_float, positive_int
from textrec.results import add_output_options, writer_from_args

BENCH = "erra-lm"


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """``probe`` | ``curve`` | ``attach``."""
    sub = ap.add_subparsers(dest="cmd", required=True)
    helps = {"probe": "CPU seconds per training example and per explanation, before/after the prompt cap",
             "curve": "train on a seeded subset with a valid curve; explain the test split once",
             "attach": "add other models' rows (same split) to a finished curve result"}
    for name, help_ in helps.items():
        p = sub.add_parser(name, help=help_)
        p.add_argument("--dataset", default="instruments")
        p.add_argument("--recipe", default="erra")
        p.add_argument("--name", required=True, help="result file stem")
        p.add_argument("--batch-size", type=positive_int, default=16)
        add_seed_option(p)
        add_threads_option(p)
        add_output_options(p, BENCH)
    pr = sub.choices["probe"]
    pr.add_argument("--n", type=positive_int, default=32, help="training examples and explanations timed per setting")
    pr.add_argument("--before-rev", default="7e3f1c9", help="git revision of the LM code before the cap")
    pr.add_argument("--only", nargs="*", help="run only settings whose label contains one of these")
    cu = sub.choices["curve"]
    cu.add_argument("--limit-train", type=positive_int, default=None, help="training pairs used (seeded subset)")
    cu.add_argument("--limit-test", type=positive_int, default=None)
    cu.add_argument("--valid-size", type=positive_int, default=100)
    cu.add_argument("--eval-every", type=positive_int, default=800, help="examples between curve points")
    cu.add_argument("--max-minutes", type=positive_float, default=60.0, help="wall-clock safety cap on training")
    cu.add_argument("--model-out", default=None)
    cu.add_argument("--reuse", default=None, metavar="JSON")
    sub.choices["attach"].add_argument("--reuse", required=True, metavar="JSON")


def run(args: argparse.Namespace) -> int:
    """Run the chosen step; write ``<name>.json`` (+ ``.md`` and ``_samples.md`` for a curve)."""
    from textrec.explain import lm_bench

    args.no_progress = getattr(args, "quiet", False)
    name = f"{args.name}.json"
    with writer_from_args(args, BENCH) as writer:
        if args.cmd == "attach":
            found = writer.existing(name)
            if found is None:
                raise FileNotFoundError(f"{writer.final_path(name)}: no finished curve result to attach rows to")
            args.out_dir = str(found.parent)
            result = lm_bench.attach(args)
            writer.write_json(name, result, metadata=False)
            writer.write_text(f"{args.name}.md", lm_bench.markdown(result))
            print(result["reuse"])
            return 0
        result = lm_bench.probe(args) if args.cmd == "probe" else lm_bench.curve(args)
        writer.write_json(name, {**result, "dataset": args.dataset})
        if args.cmd == "curve":
            final = json.loads(writer.path(name).read_text(encoding="utf-8"))
            writer.write_text(f"{args.name}.md", lm_bench.markdown(final))
            writer.write_text(f"{args.name}_samples.md", lm_bench.samples_markdown(final))
    print(json.dumps({k: v for k, v in result.items() if k not in ("samples", "history", "split")}, indent=1,
                     default=str)[:6000])
    return 0
