"""``textrec bench transfer``: does a multi-domain pretrained TextFusion pay on a new domain?

    textrec bench transfer --dataset scientific --init runs/pretrained_scientific \\
        --modes zero-shot curve ablation --fractions 0.05 0.1 0.25 0.5 1 --seeds 0 1 2 --all-seeds-at 0.1

``--init DIR`` is a model pretrained with ``textrec train textfusion --pretrain-on ...`` (or pass
``--pretrain-on games,office,ml-100k`` here: it is pretrained first and saved in the run folder);
the target may not be among its domains. Modes, all on the target's own split, every model
judged on the same valid and test rows (every user's), full ranking, history masked:

* ``zero-shot``: the pretrained model on the target with no training on its interactions (item
  text only; the text-cosine weight was chosen on the *source* domains' valid rows), with the
  sequence part alone as an ablation, against TextKNN and Popularity.
* ``curve``: for each share of the target's training users (the same seeded user subset for every
  row of a seed), EASE (L2 on valid), TextFusion from scratch, a scratch control with the pretrained
  model's whitened input, and TextFusion pretrained+fine-tuned; each again with the text term added
  (``fit_text_term``: the settings the pretrained model chose on its sources, and for scratch also
  its own valid's). Valid rows of the kept users select epochs and mixes; ``--fine-tune-lrs`` gives
  every trained row the same learning-rate grid, chosen on valid. Reported valid and test are all
  users'.
* ``ablation``: at ``--ablation-frac`` users, fine-tuned with the adaptor, the code tables or the
  encoder in turn frozen at its pretrained value or re-initialised.

Epoch caps: ``--epochs-full-equiv X`` caps a run on a share ``f`` of users at ``ceil(X / f)`` epochs
(about X full-data epochs of steps at every share), at most ``--epochs``; early stopping on valid
may stop sooner. Rows say their cap. ``targets`` says each target of issue 26 met or missed.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path
from typing import Any

import numpy as np

from textrec.benchmarks.textfusion import fine_tune_epochs  # the epoch cap of `bench textfusion efficiency`
from textrec.options import (
    add_dataset_options,
    add_progress_option,
    add_seeds_option,
    add_threads_option,
    fraction,
    load_dataset_from_args,
    positive_float,
    positive_int,
    progress,
    setup_run,
)
from textrec.results import add_output_options, peak_rss_mb, writer_from_args

KEYS = ("hr@10", "recall@10", "ndcg@10", "mrr@10", "recall@20", "ndcg@20")
MODES = ("zero-shot", "curve", "ablation")
SCRATCH, PRETRAINED, EASE_ROW = "TextFusion scratch", "TextFusion pretrained+fine-tuned", "EASE"
#: the control of a model pretrained on whitened text (``text_whiten``): scratch with the same input,
#: so the gain of the pretrained weights is told apart from the gain of whitening the text
SCRATCH_WH = "TextFusion scratch, whitened text input (control)"
ZERO_SHOT, ZERO_SHOT_SEQ = "TextFusion zero-shot (pretrained, target item text only)", \
    "TextFusion zero-shot, sequence part only"
ZERO_SHOT_TEXT = "TextFusion zero-shot, text term only"
TEXTKNN_LAST = "TextKNN, last item only"
#: a fitted row plus the text term (``TextFusionRec.fit_text_term``: recency-weighted cosine over whitened
#: item vectors) with the decay and whitening its pretrained model chose on the sources; the mix, with
#: the term's weight, chosen again on the kept users' valid rows
TEXT_TERM = " + transferred text term"
#: scratch plus the text term with settings chosen on the kept users' own valid rows (``text_term: valid``)
OWN_TERM = " + text term (own valid)"
#: the parts of a pretrained model the ablation (and ``--fine-tune-reinit/--fine-tune-freeze``) name
ABLATION_PARTS = ("adaptor", "codes", "encoder")
#: the ablation rows: (row name, warm_start keyword arguments)
ABLATIONS = [(f"pretrained+fine-tuned, {part} {how}", {how_kw: [part]})
             for part in ABLATION_PARTS
             for how, how_kw in (("frozen", "freeze"), ("re-initialised", "reinit"))]


def _short(metrics: dict[str, float]) -> dict[str, float]:
    return {k: round(float(metrics[k]), 4) for k in KEYS if k in metrics}


def _pct(frac: float) -> str:
    return f"{frac * 100:g}%"


class Harness:
    """Fits and evaluates rows on one target split; keeps per-row test NDCG@10 for paired errors."""

    def __init__(self, full, args: argparse.Namespace, partial: Path, text_embedder=None) -> None:
        self.full, self.args, self.partial = full, args, partial
        self.text_embedder = text_embedder  # None: MiniLM (tests pass a stand-in)
        self.rows: dict[str, Any] = {}
        self.per_user: dict[str, np.ndarray] = {}

    def record(self, name: str, model, fit_cpu: float, fit_wall: float, extra: dict[str, Any]) -> dict[str, Any]:
        from textrec.evaluation import evaluate
        from textrec.io import write_json

        pop = self.full.item_popularity()
        valid = evaluate(model, self.full.valid, self.full.n_items, popularity=pop)
        test = evaluate(model, self.full.test, self.full.n_items, popularity=pop)
        self.per_user[name] = np.asarray(test.per_row["ndcg@10"], dtype=np.float64)
        row = {"valid": {**_short(valid.metrics), "n_rows": valid.n_rows},
               "test": {**_short(test.metrics), "n_rows": test.n_rows},
               "fit_cpu_seconds": round(fit_cpu, 1), "fit_wall_seconds": round(fit_wall, 1), **extra}
        if hasattr(model, "mix"):
            row["mix"] = dict(model.mix)
        if getattr(model, "history", None):
            row["epochs_run"] = len(model.history)
            row["training_history"] = model.history
        self.rows[name] = row
        print(f"{name}: test N@10 {row['test']['ndcg@10']} valid N@10 {row['valid']['ndcg@10']} "
              f"({fit_cpu:.0f} CPU s)", flush=True)
        write_json(self.partial, {"models": self.rows})  # a run cut short keeps what it measured
        return row

    def fit(self, name: str, model, view, extra: dict[str, Any]) -> dict[str, Any]:
        t0, c0 = time.perf_counter(), time.process_time()
        model.fit(view, progress=progress(self.args))
        return self.record(name, model, time.process_time() - c0, time.perf_counter() - t0, extra)

    def paired(self, a: str, b: str) -> dict[str, float]:
        """Mean and standard error over test rows of ``NDCG@10(a) - NDCG@10(b)`` (same rows)."""
        d = self.per_user[a] - self.per_user[b]
        return {"diff": round(float(d.mean()), 5), "se": round(float(d.std(ddof=1) / np.sqrt(len(d))), 5)}


def _load_or_pretrain(args: argparse.Namespace, target: str, run_dir: Path):
    from textrec.models.transfer import parse_domains, pretrain_textfusion
    from textrec.results import command_line
    from textrec.transfer_cli import load_init

    if args.init:
        return load_init(args.init, target), str(args.init)
    domains = parse_domains(args.pretrain_on, exclude=target)
    pre = pretrain_textfusion(domains, seed=args.seeds[0], max_users=args.pretrain_max_users,
                              max_epochs=args.pretrain_epochs, max_cpu_minutes=args.pretrain_cpu_minutes,
                              command=command_line(), progress=progress(args))
    out = run_dir / "pretrained"
    pre.save_pretrained(out)
    return pre, str(out)


def run_zero_shot(h: Harness, pre, split) -> None:
    from textrec.models.base import TrainView
    from textrec.models.baselines import Popularity
    from textrec.models.text_knn import TextKNN
    from textrec.models.transfer import zero_shot

    view = TrainView.from_split(split, with_text=True)
    h.fit("Popularity", Popularity(), view, {"note": "fitted on every training event of the target"})
    h.fit("TextKNN", TextKNN(), view, {"note": "item text only (mean of history vectors)"})
    h.fit(TEXTKNN_LAST, TextKNN(last_n=1), view, {"note": "reference: item text only (the latest history item)"})
    rows = ((ZERO_SHOT, {}, "no training on the target; settings chosen on the pretraining domains' valid rows"),
            (ZERO_SHOT_SEQ, {"w_seq": 1.0, "w_text": 0.0}, "ablation: the pretrained encoder's h . rep(i) alone"),
            (ZERO_SHOT_TEXT, {"w_seq": 0.0, "w_text": 1.0},
             "ablation: the text term alone (recency decay and whitening chosen on the sources)"))
    for name, settings, note in rows:
        t0, c0 = time.perf_counter(), time.process_time()
        model = zero_shot(pre, view, **settings)
        h.record(name, model, time.process_time() - c0, time.perf_counter() - t0,
                 {"note": note, "settings": dict(model.settings)})


def _fusion(h: Harness, seed: int, epochs: int | None, lam: float, **overrides):
    from textrec.models.fusion import TextFusionRec

    model = TextFusionRec.from_recipe(h.args.recipe, seed=seed, max_epochs=epochs, ease_lam=lam, **overrides)
    if h.text_embedder is not None:
        model.text_embedder = h.text_embedder
    return model


def run_subset(h: Harness, pre, source: str, frac: float, seed: int, ablation: bool, curve: bool) -> None:
    """The rows of one (share of users, seed): EASE, scratch, pretrained (+ ablations)."""
    from textrec.bench import tune
    from textrec.models.base import TrainView
    from textrec.models.baselines import EASE
    from textrec.models.fusion import pretrained_text_term
    from textrec.models.transfer import subset_split

    args = h.args
    split = subset_split(h.full, frac, seed)
    view = TrainView.from_split(split, with_text=True)
    epochs = fine_tune_epochs(frac, args.epochs, args.epochs_full_equiv)
    tag = f"{_pct(frac)} users, seed {seed}"
    common = {"train_users_frac": frac, "train_users": split.report["train_users"],
              "train_events": int(len(split.train)), "seed": seed, "epoch_cap": epochs}
    t0, c0 = time.perf_counter(), time.process_time()
    params, _ = tune("EASE", split, progress=False, grid={"lam": list(args.ease_grid)})
    lam = float(params["lam"])
    ease = EASE(lam=lam).fit(view, progress=False)
    if curve or f"{tag}: {EASE_ROW}" not in h.rows:
        h.record(f"{tag}: {EASE_ROW}", ease, time.process_time() - c0, time.perf_counter() - t0,
                 {**common, "lam_chosen_on_valid": lam})
    if curve:
        parts = {"reinit": list(getattr(args, "fine_tune_reinit", None) or []),
                 "freeze": list(getattr(args, "fine_tune_freeze", None) or [])}
        rows = [(SCRATCH, lambda lr: _fusion(h, seed, epochs, lam, **_lr(lr)))]
        if pre.text_whiten is not None:
            rows.append((SCRATCH_WH, lambda lr: _fusion(h, seed, epochs, lam, text_whiten=pre.text_whiten, **_lr(lr))))
        rows.append((PRETRAINED, lambda lr: _fusion(h, seed, epochs, lam, **_lr(lr)).warm_start(
            pre, source=source, **parts)))
        for name, make in rows:
            extra = {**common, **({"warm_start": parts} if name == PRETRAINED and any(parts.values()) else {})}
            model = fit_over_lrs(h, f"{tag}: {name}", make, view, extra, getattr(args, "fine_tune_lrs", None))
            specs = [(TEXT_TERM, pretrained_text_term(pre))] + ([(OWN_TERM, "valid")] if name == SCRATCH else [])
            for suffix, spec in specs:
                t0, c0 = time.perf_counter(), time.process_time()
                # a shallow copy: fit_text_term reassigns (never mutates) the term, mix and placement, so
                # the trained row keeps its own
                with_term = copy.copy(model).fit_text_term(view, spec)
                h.record(f"{tag}: {name}{suffix}", with_term, time.process_time() - c0, time.perf_counter() - t0,
                         {**common, "text_term": {**with_term.term.settings, "rho": with_term.mix["rho"],
                                                  "settings_from": "the pretrained model's sources" if spec != "valid"
                                                  else "the kept users' valid rows"}})
    if ablation:
        for name, kw in ABLATIONS:
            if "codes" in next(iter(kw.values())) and pre.module.code_emb is None:
                continue  # pretrained without code tables: the target's codes start fresh in every row
            h.fit(f"{tag}: {name}", _fusion(h, seed, epochs, lam).warm_start(pre, source=source, **kw), view,
                  {**common, "ablation": kw})


def _lr(lr: float | None) -> dict[str, Any]:
    return {} if lr is None else {"trainer": {"lr": float(lr)}}


def fit_over_lrs(h: Harness, name: str, make, view, extra: dict[str, Any], lrs: list[float] | None):
    """Fit ``make(lr)`` for every learning rate of ``lrs`` (None: the recipe's) and return the model
    with the best valid NDCG@10. With several, each is its own row (``name, lr X``) and ``name`` is
    a copy of the chosen one saying so: every fine-tuned and scratch row chooses from the same grid,
    on valid rows, never on test."""
    if not lrs:
        model = make(None)
        h.fit(name, model, view, extra)
        return model
    best = None
    for lr in lrs:
        model = make(lr)
        row = h.fit(f"{name}, lr {lr:g}", model, view, {**extra, "lr": lr})
        if best is None or row["valid"]["ndcg@10"] > best[1]["valid"]["ndcg@10"]:
            best = (lr, row, model)
    lr, row, model = best
    h.rows[name] = {**row, "lr_chosen_on_valid": lr, "lr_grid": list(lrs)}
    h.per_user[name] = h.per_user[f"{name}, lr {lr:g}"]
    return model


def _mean_se(values: list[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    se = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else None
    return {"mean": round(float(v.mean()), 5), "se_over_seeds": None if se is None else round(se, 5),
            "n_seeds": int(len(v))}


def summarise(h: Harness, fractions: list[float]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per share of users and model: test NDCG@10 mean over seeds (s.e.); and the targets block."""
    curve: dict[str, Any] = {}
    names = [EASE_ROW, SCRATCH, SCRATCH_WH, PRETRAINED, SCRATCH + TEXT_TERM, SCRATCH + OWN_TERM,
             SCRATCH_WH + TEXT_TERM, PRETRAINED + TEXT_TERM] + [n for n, _ in ABLATIONS]
    for frac in fractions:
        at: dict[str, Any] = {}
        for name in names:
            keys = [k for k in h.rows if k.startswith(f"{_pct(frac)} users, seed ") and k.endswith(f": {name}")]
            if keys:
                at[name] = {**_mean_se([h.rows[k]["test"]["ndcg@10"] for k in keys]),
                            "valid_mean": round(float(np.mean([h.rows[k]["valid"]["ndcg@10"] for k in keys])), 5)}
        seeds = sorted({h.rows[k]["seed"] for k in h.rows if k.startswith(f"{_pct(frac)} users, seed ")
                        and k.endswith(f": {PRETRAINED}")})
        for key, a, b in (("pretrained_minus_scratch_paired_over_test_rows", PRETRAINED, SCRATCH),
                          ("pretrained_minus_whitened_scratch_control_paired", PRETRAINED, SCRATCH_WH),
                          ("pretrained_text_term_minus_scratch_text_term_paired", PRETRAINED + TEXT_TERM,
                           SCRATCH + TEXT_TERM),
                          ("pretrained_text_term_minus_scratch_own_text_term_paired", PRETRAINED + TEXT_TERM,
                           SCRATCH + OWN_TERM),
                          ("pretrained_text_term_minus_whitened_control_text_term_paired", PRETRAINED + TEXT_TERM,
                           SCRATCH_WH + TEXT_TERM)):
            pairs = [h.paired(f"{_pct(frac)} users, seed {s}: {a}", f"{_pct(frac)} users, seed {s}: {b}")
                     for s in seeds if f"{_pct(frac)} users, seed {s}: {b}" in h.rows
                     and f"{_pct(frac)} users, seed {s}: {a}" in h.rows]
            if pairs:
                at[key] = pairs
        if at:
            curve[_pct(frac)] = at
    targets: dict[str, Any] = {}

    def mean(frac: float, name: str) -> dict[str, Any] | None:
        return curve.get(_pct(frac), {}).get(name)

    pt, sc, ea = mean(0.1, PRETRAINED), mean(0.1, SCRATCH), mean(0.1, EASE_ROW)
    if pt and sc and ea:
        ratio = pt["mean"] / sc["mean"]
        targets["10% users"] = {"goal": "pretrained+fine-tuned >= 1.2x scratch and >= EASE (test NDCG@10, mean over seeds)",
                                "pretrained": pt, "scratch": sc, "ease": ea,
                                "pretrained_over_scratch": round(ratio, 3),
                                "pretrained_over_ease": round(pt["mean"] / ea["mean"], 3),
                                "met": bool(ratio >= 1.2 and pt["mean"] >= ea["mean"])}
        ctl = mean(0.1, SCRATCH_WH)
        if ctl:  # how much of the ratio the weights carry, and how much whitening the input alone does
            targets["10% users"].update({"control_scratch_whitened_input": ctl,
                                         "pretrained_over_control": round(pt["mean"] / ctl["mean"], 3)})
    ptt, sct = mean(0.1, PRETRAINED + TEXT_TERM), mean(0.1, SCRATCH + TEXT_TERM)
    if ptt and sc and ea:
        ratio = ptt["mean"] / sc["mean"]
        targets["10% users, with the transferred text term"] = {
            "goal": "pretrained+fine-tuned (+ the text term whose decay and whitening were fixed in pretraining) "
                    ">= 1.2x scratch and >= EASE",
            "pretrained_text_term": ptt, "scratch": sc, "ease": ea, "pretrained_over_scratch": round(ratio, 3),
            "pretrained_over_ease": round(ptt["mean"] / ea["mean"], 3),
            "control_scratch_text_term": sct,
            "over_control": round(ptt["mean"] / sct["mean"], 3) if sct else None,
            "met": bool(ratio >= 1.2 and ptt["mean"] >= ea["mean"])}
        # the same term on models without pretrained weights: what the weights add beyond it
        for key, name in (("scratch_own_text_term", SCRATCH + OWN_TERM),
                          ("whitened_control_text_term", SCRATCH_WH + TEXT_TERM)):
            other = mean(0.1, name)
            if other:
                targets["10% users, with the transferred text term"].update(
                    {key: other, f"over_{key}": round(ptt["mean"] / other["mean"], 3)})
    pt, sc = mean(1.0, PRETRAINED), mean(1.0, SCRATCH)
    if pt and sc:
        pairs = curve[_pct(1.0)].get("pretrained_minus_scratch_paired_over_test_rows", [])
        se = sc["se_over_seeds"] if sc["se_over_seeds"] is not None else (pairs[0]["se"] if pairs else 0.0)
        targets["100% users"] = {"goal": "pretrained+fine-tuned no worse than scratch within one standard error",
                                 "pretrained": pt, "scratch": sc, "standard_error_used": se,
                                 "standard_error_kind": "over seeds" if sc["se_over_seeds"] is not None
                                 else "paired over test rows (one seed)",
                                 "met": bool(pt["mean"] >= sc["mean"] - se)}
    ptt, sct = mean(1.0, PRETRAINED + TEXT_TERM), mean(1.0, SCRATCH + TEXT_TERM)
    if ptt and sct:
        pairs = curve[_pct(1.0)].get("pretrained_text_term_minus_scratch_text_term_paired", [])
        se = sct["se_over_seeds"] if sct["se_over_seeds"] is not None else (pairs[0]["se"] if pairs else 0.0)
        targets["100% users, both with the text term"] = {
            "goal": "pretrained+fine-tuned no worse than scratch within one standard error (both + text term)",
            "pretrained": ptt, "scratch": sct, "standard_error_used": se, "met": bool(ptt["mean"] >= sct["mean"] - se)}
    if ZERO_SHOT in h.rows and "TextKNN" in h.rows:
        # the ratio of the unrounded means: the rows' 4-digit values can put a ratio on the line either side
        z, t = float(h.per_user[ZERO_SHOT].mean()), float(h.per_user["TextKNN"].mean())
        targets["zero-shot"] = {"goal": "zero-shot >= 1.3x TextKNN (test NDCG@10)", "zero_shot": round(z, 5),
                                "textknn": round(t, 5), "ratio": round(z / t, 4) if t else None,
                                "paired_vs_textknn": h.paired(ZERO_SHOT, "TextKNN"), "met": bool(t and z / t >= 1.3)}
        if TEXTKNN_LAST in h.rows:  # a stronger text-only reference than the target's TextKNN, reported beside it
            last = float(h.per_user[TEXTKNN_LAST].mean())
            targets["zero-shot"].update({"textknn_last_item": round(last, 5), "ratio_to_last_item": round(z / last, 4) if last
                                         else None, "paired_vs_textknn_last_item": h.paired(ZERO_SHOT, TEXTKNN_LAST)})
    return curve, targets


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """Arguments of ``textrec bench transfer``."""
    ap.description = __doc__
    ap.formatter_class = argparse.RawDescriptionHelpFormatter
    add_dataset_options(ap, default="scientific")
    ap.add_argument("--init", help="a pretrained TextFusion folder (textrec train textfusion --pretrain-on ...)")
    ap.add_argument("--pretrain-on", help="without --init: pretrain on these comma-separated domains first")
    ap.add_argument("--pretrain-max-users", type=positive_int, default=None,
                    help="cap every pretraining domain at this many users (a seeded sample)")
    ap.add_argument("--pretrain-epochs", type=positive_int, default=None)
    ap.add_argument("--pretrain-cpu-minutes", type=positive_float, default=None)
    ap.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    ap.add_argument("--recipe", default="fusion", help="the TextFusion recipe of scratch and fine-tuned rows")
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.05, 0.1, 0.25, 0.5, 1.0],
                    help="shares of the target's training users (1 = all)")
    add_seeds_option(ap, default=(0, 1, 2))
    ap.add_argument("--all-seeds-at", type=float, nargs="*", default=[0.1],
                    help="shares run with every seed; the others with the first seed only")
    ap.add_argument("--ablation-frac", type=fraction, default=0.1)
    ap.add_argument("--ablation-seeds", type=positive_int, default=1, help="how many of --seeds the ablation runs")
    ap.add_argument("--epochs", type=positive_int, default=None, help="cap every fine-tuning run at this many epochs")
    ap.add_argument("--epochs-full-equiv", type=positive_float, default=None,
                    help="cap a run on a share f of users at ceil(x / f) epochs")
    ap.add_argument("--fine-tune-lrs", type=positive_float, nargs="+", default=None,
                    help="learning rates every scratch and fine-tuned row chooses from on valid (default: the recipe's)")
    ap.add_argument("--fine-tune-reinit", nargs="+", choices=ABLATION_PARTS, default=None,
                    help="parts of the pretrained model the curve's fine-tuned rows start fresh (e.g. adaptor: the encoder alone transfers)")
    ap.add_argument("--fine-tune-freeze", nargs="+", choices=ABLATION_PARTS, default=None,
                    help="parts of the pretrained model the curve's fine-tuned rows keep frozen")
    ap.add_argument("--ease-grid", type=float, nargs="+", default=[20.0, 50.0, 100.0, 200.0, 500.0])
    ap.add_argument("--name", default=None, help="result file stem (default transfer_<dataset>_<modes>)")
    add_threads_option(ap)
    add_progress_option(ap)
    add_output_options(ap, "transfer")


def run(args: argparse.Namespace) -> int:
    """Run the chosen modes on one target and write one JSON."""
    from textrec.data.splits import make_split

    if not args.init and not args.pretrain_on:
        raise ValueError("pass --init DIR (a pretrained TextFusion) or --pretrain-on DOMAINS")
    bad = [f for f in args.fractions if not 0 < f <= 1]
    if bad:
        raise ValueError(f"--fractions must be in (0, 1], got {bad}")
    setup_run(args)
    t0, c0 = time.perf_counter(), time.process_time()
    ds = load_dataset_from_args(args)
    full = make_split(ds, "auto")
    writer = writer_from_args(args, "transfer")
    writer.started = t0
    name = args.name or f"transfer_{ds.name}_{'_'.join(m.replace('-', '') for m in args.modes)}"
    pre, source = _load_or_pretrain(args, ds.name, writer.dir)
    h = Harness(full, args, Path("runs") / f"{name}.part.json")
    if "zero-shot" in args.modes:
        run_zero_shot(h, pre, full)
    fractions = sorted(set(args.fractions) | ({args.ablation_frac} if "ablation" in args.modes else set()))
    for frac in fractions:
        in_curve = "curve" in args.modes and frac in args.fractions
        seeds = args.seeds if any(abs(frac - f) < 1e-9 for f in args.all_seeds_at) else args.seeds[:1]
        abl_seeds = args.seeds[:args.ablation_seeds] if "ablation" in args.modes and frac == args.ablation_frac else []
        for seed in sorted(set(seeds if in_curve else []) | set(abl_seeds)):
            run_subset(h, pre, source, frac, seed, ablation=seed in abl_seeds, curve=in_curve and seed in seeds)
    curve, targets = summarise(h, fractions)
    out = {"benchmark": "transfer", "dataset": ds.name, "split": full.describe(), "modes": args.modes,
           "pretrained": {"source": source, "record": {k: v for k, v in (pre.pretraining or {}).items()
                                                       if k != "history"},
                          "history": (pre.pretraining or {}).get("history")},
           "protocol": "full ranking, history masked; valid and test rows of every user; a share of users "
                       "trains (its users' valid rows select epochs, EASE L2 and the score mix)",
           "seeds": args.seeds, "all_seeds_at": args.all_seeds_at, "epoch_cap": args.epochs,
           "epochs_full_equiv": args.epochs_full_equiv, "recipe": args.recipe,
           "models": h.rows, "test_ndcg@10_by_share": curve, "targets": targets,
           "cpu_seconds": round(time.process_time() - c0, 1), "peak_rss_mb": round(peak_rss_mb(), 1)}
    with writer:
        writer.write_json(f"{name}.json", out)
    return 0
