"""Transfer for TextFusion: pretrain the text path on several domains, start a new domain from it.

Three uses of one pretrained model (a :class:`~textrec.models.fusion.TextFusionRec` saved with
``save_pretrained``; its config's ``pretraining`` record names the domains, users, items and
events it saw, the command and what pretraining cost):

* :func:`pretrain_textfusion` trains the adaptor, code tables and encoder on the training events
  of several domains at once (one concatenated catalog, mixed batches, one quantizer over every
  domain's items). Pretraining is text-only (no ID residual, as UniSRec and VQ-Rec pretrain): an ID
  vector of a source item can never transfer, and without one the text path has to carry all of
  the sequential signal. A large domain can be capped to a seeded sample of its users.
* ``TextFusionRec(...).warm_start(pretrained).fit(target)`` fine-tunes on a new domain (the
  ``--init`` path of ``textrec train textfusion``).
* :func:`zero_shot` recommends on a domain the model never trained on: the target's item text
  is embedded and coded by the pretrained quantizer; no target interaction is read, except the
  user's own history at inference. The score mix (text-cosine weight) is the one chosen on the
  *source* domains' valid rows after pretraining (:func:`tune_zero_shot_mix`).
"""

from __future__ import annotations

import copy
import dataclasses
import resource
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from textrec.data.splits import Split
from textrec.models.base import TrainView
from textrec.models.fusion import DEFAULT_MIX, TextFusionModule, TextFusionRec
from textrec.models.seq_trainer import seeded

#: the domains with item text that ``--pretrain-on`` accepts by default (Beauty joins once it has text)
TEXT_DOMAINS = ("games", "office", "scientific", "ml-100k")


def parse_domains(text: str | Sequence[str], exclude: str | None = None) -> list[str]:
    """``"games,office"`` (or a list) -> domain names, without duplicates; ``exclude`` (the
    target) may not be among them, so a target's test rows are never pretrained on."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    if not names:
        raise ValueError("no pretraining domains given (e.g. --pretrain-on games,office,ml-100k)")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"pretraining domain(s) named twice: {dup}")
    if exclude is not None and exclude in names:
        raise ValueError(f"the target '{exclude}' is among the pretraining domains {names}: leave it out")
    return names


def subset_split(split: Split, frac: float, seed: int) -> Split:
    """Train on a seeded ``frac`` of the users with training events (their valid rows select
    models); the test rows stay those of every user, so each condition is judged on the same rows.
    The same ``(frac, seed)`` gives the same users for every model."""
    if not 0 < frac <= 1:
        raise ValueError(f"frac must be in (0, 1], got {frac}")
    users = np.unique(split.train["user"].to_numpy())
    if frac >= 1:
        keep = users
    else:
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.choice(users, max(1, int(round(frac * len(users)))), replace=False))
    train = split.train[np.isin(split.train["user"].to_numpy(), keep)].reset_index(drop=True)
    valid = split.valid.select(np.isin(split.valid.users, keep))
    report = {**split.report, "train_user_frac": frac, "train_users": int(len(keep)), "subset_seed": seed}
    return dataclasses.replace(split, train=train, valid=valid, report=report)


def domain_view(name: str, max_users: int | None = None, seed: int = 0) -> TrainView:
    """The train/valid view of a dataset's own split (``auto``), with item text; at most
    ``max_users`` users (a seeded sample) when given. Test rows are never part of a view."""
    from textrec.data.registry import load_dataset
    from textrec.data.splits import make_split

    split = make_split(load_dataset(name), "auto")
    n = int(split.train["user"].nunique())
    if max_users is not None and max_users < n:
        split = subset_split(split, max_users / n, seed)
    return TrainView.from_split(split, with_text=True)


def pretrain_textfusion(domains: Sequence[str], recipe: str = "fusion", seed: int = 0,
                        max_users: int | None = None, max_epochs: int | None = None,
                        max_cpu_minutes: float | None = None, command: str | None = None,
                        progress: bool = True, **overrides: Any) -> TextFusionRec:
    """Pretrain a text-only TextFusion (``recipe`` + ``overrides``) on ``domains``, each capped at
    ``max_users`` users; ``max_cpu_minutes`` caps training by this process's CPU time."""
    views = [domain_view(n, max_users, seed) for n in domains]
    trainer = dict(overrides.pop("trainer", {}) or {})
    if max_cpu_minutes is not None:
        trainer["max_cpu_minutes"] = float(max_cpu_minutes)
    model = TextFusionRec.from_recipe(recipe, seed=seed, max_epochs=max_epochs, trainer=trainer, **overrides)
    return pretrain_views(model, views, command=command, progress=progress,
                          record={"recipe": recipe, "max_users_per_domain": max_users,
                                  "max_cpu_minutes": max_cpu_minutes})


def pretrain_views(model: TextFusionRec, views: Sequence[TrainView], command: str | None = None,
                   progress: bool = True, record: dict[str, Any] | None = None) -> TextFusionRec:
    """Pretrain ``model`` text-only (its ID residual is switched off) on ``views``; return it.

    Records in ``model.pretraining``: the domains (users, items, events seen), the command, CPU and
    wall seconds, peak memory, the epoch count and cap, and the zero-shot mix chosen on the
    sources' valid rows (kept as ``model.mix``, the mix :func:`zero_shot` starts from).
    """
    t0, c0 = time.perf_counter(), time.process_time()
    model.id_residual, model.tune_mix = False, False
    model.pretraining = {"command": command, **(record or {}), "epoch_cap": model.trainer_config.epochs}
    model.pretrain(list(views), progress=progress)
    train_cpu, train_wall = time.process_time() - c0, time.perf_counter() - t0
    merged, _ = TrainView.concat(list(views))
    mix_report = tune_zero_shot_mix(model, merged)
    model.pretraining.update({
        "cpu_seconds": round(train_cpu, 1), "wall_seconds": round(train_wall, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "zero_shot_mix": {"chosen": dict(model.mix), "on": "the pretraining domains' valid rows",
                          **{k: mix_report.get(k) for k in ("valid_rows_used", "best", "seq_only")}},
        "history": model.history})
    return model


def zero_shot(pretrained: TextFusionRec, view: TrainView, mix: dict[str, float] | None = None) -> TextFusionRec:
    """A TextFusion for ``view``'s items built from ``pretrained`` without any training.

    Only ``view.item_text`` (and its catalog, for ids) is read: items are embedded, coded by the
    pretrained quantizer and scored by the pretrained adaptor, code tables and encoder. Every item
    counts as having no events (no ID residual, no co-occurrence), so the score is
    ``h . rep(i)`` plus the text-cosine terms of ``mix`` (default: the pretrained model's mix).
    """
    if pretrained.module is None:
        raise RuntimeError("zero_shot needs a pretrained (fitted) TextFusionRec")
    if view.item_text is None:
        raise ValueError(f"{view.dataset_name}: zero-shot transfer needs item text")
    cfg = copy.deepcopy(pretrained.get_config())
    cfg.update({"id_residual": False, "tune_mix": False, "mix": {**DEFAULT_MIX, **(mix or pretrained.mix)},
                "n_items": int(view.n_items), "n_fit": 0})
    model = TextFusionRec(**cfg)
    model.text_embedder = pretrained.text_embedder
    emb = model.embed(view.item_text)
    codes = None
    if pretrained.module.codes is not None:
        if pretrained.quantizer is None:
            raise RuntimeError("the pretrained model has codes but no quantizer to code new items")
        codes = torch.from_numpy(pretrained.quantizer.encode(emb))
    with seeded(0):
        module = TextFusionModule(torch.from_numpy(emb), codes, pretrained.module.n_centroids,
                                  torch.zeros(len(emb), dtype=torch.bool), model.backbone_config,
                                  n_experts=model.n_experts, adaptor_dropout=model.adaptor_dropout,
                                  id_residual=False, new_item_dropout=0.0)
    skip = ("text_emb", "warm", "codes")
    state = {k: v for k, v in pretrained.module.state_dict().items()
             if k not in skip and not k.startswith("id_residual")}
    module.load_state_dict(state, strict=False)
    model.module = module.to(next(pretrained.module.parameters()).device).eval()
    model.quantizer = pretrained.quantizer
    model.ease_B = None
    model.counts = torch.zeros(len(emb))
    record = copy.deepcopy(pretrained.pretraining or {})
    record["init"] = {"zero_shot_on": view.dataset_name}
    model.pretraining = record
    model.keep_catalog(view)
    return model


def tune_zero_shot_mix(pretrained: TextFusionRec, sources: TrainView, max_rows: int = 6000) -> dict[str, Any]:
    """Choose the zero-shot score mix on the pretraining domains' valid rows (never the target's)
    and keep it as ``pretrained.mix``. Every item counts as new, so only the text-cosine weights
    matter. Returns the tuning report."""
    probe = zero_shot(pretrained, sources, mix=dict(DEFAULT_MIX))
    if len(sources.valid) == 0:
        return {}
    probe.tune(sources.valid, max_rows=max_rows)
    pretrained.mix = dict(probe.mix)
    return probe.mix_report


__all__ = ["TEXT_DOMAINS", "parse_domains", "subset_split", "domain_view", "pretrain_textfusion", "pretrain_views", "zero_shot",
           "tune_zero_shot_mix"]
