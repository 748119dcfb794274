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
* :func:`zero_shot` recommends on a domain the model never trained on (a
  :class:`ZeroShotTextFusion`): the target's item text is embedded and coded by the pretrained
  quantizer and scored by the pretrained encoder, plus a text term: the cosine between each item
  and a recency-weighted history vector, over the target's own whitened item vectors (whitening
  reads item text only). No target interaction is read, except the user's own history at
  inference. The recency decay, whitening strength and weights are chosen on the *source*
  domains' valid rows after pretraining (:func:`tune_zero_shot`) and saved with the model.
"""

from __future__ import annotations

import copy
import dataclasses
import resource
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from textrec.data.splits import Split
from textrec.models.base import Recommender, TrainView
from textrec.models.fusion import DEFAULT_MIX, TextFusionModule, TextFusionRec, zero_shot_choice
from textrec.models.seq_trainer import score_histories, seeded
from textrec.models.text_term import DECAYS, SHRINKS, TextTerm, recency_text_scores

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


def held_out_domains(held_out: str | Sequence[str] | None, domains: Sequence[str]) -> list[str]:
    """The leave-one-domain-out domains (``"office"``, ``"a,b"`` or a list): at least one, each among
    the pretrained model's ``domains`` (so the target itself is never read to choose settings)."""
    names = [n.strip() for n in ((held_out or "").split(",") if isinstance(held_out, str) or held_out is None
                                 else held_out) if n.strip()]
    if not names or any(n not in domains for n in names):
        raise ValueError(f"--held-out must name some of the pretraining domains {list(domains)} (the domains "
                         f"the zero-shot probe never saw), got {names}")
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


def pretrain_textfusion(domains: Sequence[str], recipe: str | dict[str, Any] = "fusion_pretrain", seed: int = 0,
                        max_users: int | None = None, max_epochs: int | None = None,
                        max_cpu_minutes: float | None = None, command: str | None = None,
                        progress: bool = True, probe: str | None = None, held_out: str | Sequence[str] = (),
                        **overrides: Any) -> TextFusionRec:
    """Pretrain a text-only TextFusion (``recipe`` + ``overrides``) on ``domains``, each capped at
    ``max_users`` users; ``max_cpu_minutes`` caps training by this process's CPU time. ``probe`` (a
    folder pretrained without the ``held_out`` domains) chooses the zero-shot settings
    leave-one-domain-out (:func:`tune_zero_shot`)."""
    views = [domain_view(n, max_users, seed) for n in domains]
    trainer = dict(overrides.pop("trainer", {}) or {})
    if max_cpu_minutes is not None:
        trainer["max_cpu_minutes"] = float(max_cpu_minutes)
    model = TextFusionRec.from_recipe(recipe, seed=seed, max_epochs=max_epochs, trainer=trainer, **overrides)
    return pretrain_views(model, views, command=command, progress=progress,
                          record={"recipe": recipe, "max_users_per_domain": max_users,
                                  "max_cpu_minutes": max_cpu_minutes},
                          probe=None if probe is None else load_init(probe), probe_source=probe, held_out=held_out)


def pretrain_views(model: TextFusionRec, views: Sequence[TrainView], command: str | None = None,
                   progress: bool = True, record: dict[str, Any] | None = None,
                   probe: TextFusionRec | None = None, probe_source: str | None = None,
                   held_out: str | Sequence[str] = ()) -> TextFusionRec:
    """Pretrain ``model`` text-only (its ID residual is switched off) on ``views``; return it.

    Records in ``model.pretraining``: the domains (users, items, events seen), the command, CPU and
    wall seconds, peak memory, the epoch count and cap, and the zero-shot settings
    (``pretraining["zero_shot"]``, what :func:`zero_shot` uses): chosen on the sources' valid rows,
    or with ``probe`` (a model pretrained without the ``held_out`` domains, a subset of ``views``)
    leave-one-domain-out on those domains' valid rows.
    """
    if probe is not None:
        held_out = held_out_domains(held_out, [v.dataset_name for v in views])
    t0, c0 = time.perf_counter(), time.process_time()
    model.id_residual, model.tune_mix = False, False
    model.pretraining = {"command": command, **(record or {}), "epoch_cap": model.trainer_config.epochs}
    model.pretrain(list(views), progress=progress)
    train_cpu, train_wall = time.process_time() - c0, time.perf_counter() - t0
    c1 = time.process_time()
    if probe is None:
        tune_zero_shot(model, list(views))
    else:
        tune_zero_shot(model, [v for v in views if v.dataset_name in held_out], probe=probe, probe_source=probe_source)
    model.pretraining.update({
        "zero_shot_cpu_seconds": round(time.process_time() - c1, 1),
        "cpu_seconds": round(train_cpu, 1), "wall_seconds": round(train_wall, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "history": model.history})
    return model


#: the zero-shot weights searched on the *source* domains' valid rows (never the target's), with the
#: text term's settings grids (``textrec.models.text_term.DECAYS`` and ``SHRINKS``)
ZS_WEIGHTS: tuple[tuple[float, float], ...] = ((1.0, 0.0), (0.0, 1.0)) + tuple(
    (1.0, w) for w in (0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0))
#: the settings of a model pretrained before they were chosen: TextKNN's text term plus the sequence part
ZS_FALLBACK = {"decay": 1.0, "shrink": None, "w_seq": 1.0, "w_text": 0.0}


class ZeroShotTextFusion(Recommender):
    """A pretrained TextFusion on a domain it never trained on, from that domain's item text alone.

    ``score = w_seq * h . rep(i) + w_text * cos(recency-weighted history, i)``: the pretrained
    encoder over the pretrained adaptor and code tables (items coded by the pretrained quantizer),
    plus a text term over the domain's own whitened item vectors
    (:class:`~textrec.models.text_term.TextTerm`). ``decay``, ``shrink``, ``w_seq`` and ``w_text`` are the ones
    chosen on the pretraining domains' valid rows (:func:`tune_zero_shot`) unless ``settings``
    overrides them; nothing is fitted on the target's interactions.

    ``ZeroShotTextFusion(pretrained="DIR").fit(view)`` reads only ``view``'s item text (and its
    catalog, for ids); :func:`zero_shot` does the same from a loaded model. Saved and loaded like
    any model (the pretrained weights moved onto the domain travel with it).
    """

    name = "TextFusion zero-shot"
    scores_new_items = True
    fresh_scores = True

    def __init__(self, pretrained: str | None = None, settings: dict[str, Any] | None = None,
                 fusion: dict[str, Any] | None = None) -> None:
        unknown = set(settings or {}) - set(ZS_FALLBACK)
        if unknown:
            raise ValueError(f"unknown zero-shot setting(s) {sorted(unknown)}; known: {sorted(ZS_FALLBACK)}")
        self.pretrained = pretrained
        self.settings = dict(settings or {})
        self.fusion_config = copy.deepcopy(fusion)
        self.fusion: TextFusionRec | None = None
        self.text: torch.Tensor | None = None  # (n_items, dim) the domain's whitened item vectors

    @property
    def pretraining(self) -> dict[str, Any] | None:
        """The pretrained model's record (domains, cost, and ``init.zero_shot_on``)."""
        return None if self.fusion is None else self.fusion.pretraining

    def fit(self, data: TrainView, progress: bool = True) -> ZeroShotTextFusion:
        """Build from the pretrained folder ``pretrained`` on ``data``'s item text (no event is read)."""
        if self.pretrained is None:
            raise ValueError("ZeroShotTextFusion needs pretrained=DIR (a model from --pretrain-on) to fit")
        return self.build(load_init(self.pretrained, data.dataset_name), data)

    def build(self, pretrained: TextFusionRec, data: TrainView) -> ZeroShotTextFusion:
        """Move ``pretrained``'s text path onto ``data``'s items and whiten their vectors."""
        self.settings = {**zero_shot_settings(pretrained), **self.settings}
        s = self.settings
        if not 0.0 < s["decay"] <= 1.0:
            raise ValueError(f"decay must be in (0, 1], got {s['decay']}")
        if s["w_seq"] < 0 or s["w_text"] < 0 or s["w_seq"] + s["w_text"] == 0:
            raise ValueError(f"w_seq and w_text must be >= 0 and not both 0, got {s['w_seq']}, {s['w_text']}")
        self.fusion = _transplant(pretrained, data)
        self.fusion_config = self.fusion.get_config()
        self.text = TextTerm(s["decay"], s["shrink"]).fit(raw_text(self.fusion, data)).vectors
        self.keep_catalog(data)
        return self

    def score(self, users: np.ndarray, histories: list[np.ndarray]) -> torch.Tensor:
        if self.fusion is None or self.text is None:
            raise RuntimeError("ZeroShotTextFusion is not built: fit it (pretrained=DIR) or use zero_shot()")
        w_seq, w_text = self.settings["w_seq"], self.settings["w_text"]
        out = None
        if w_seq:
            cfg = self.fusion.trainer_config
            out = w_seq * score_histories(self.fusion.module, histories, cfg.max_len, cfg.eval_batch_size)
        if w_text:
            text = w_text * recency_text_scores(self.text, histories, self.settings["decay"])
            out = text if out is None else out.add_(text)
        return out

    def get_config(self) -> dict[str, Any]:
        return {"pretrained": self.pretrained, "settings": dict(self.settings),
                "fusion": copy.deepcopy(self.fusion_config)}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        if self.fusion is None or self.text is None:
            raise RuntimeError("ZeroShotTextFusion is not built: nothing to save")
        return {**{f"fusion.{k}": v for k, v in self.fusion.state_tensors().items()}, "text": self.text}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if self.fusion_config is None:
            raise ValueError("a saved zero-shot model needs its 'fusion' config")
        self.fusion = TextFusionRec(**self.fusion_config)
        self.fusion.load_state_tensors({k[len("fusion."):]: v for k, v in tensors.items() if k.startswith("fusion.")})
        self.text = tensors["text"].float()

    def n_scored_items(self) -> int | None:
        return None if self.text is None else int(self.text.shape[0])

    def save_extra(self, path: Path) -> None:
        self.fusion.save_extra(path)

    def load_extra(self, path: Path) -> None:
        self.fusion.load_extra(path)


def raw_text(model: TextFusionRec, view: TrainView) -> np.ndarray:
    """``view``'s MiniLM item vectors as embedded (unit norm), what the text term whitens: the
    model's own input vectors unless its adaptor reads per-domain whitened ones (``text_whiten``)."""
    if model.text_whiten is None:
        return model.module.text_emb.cpu().numpy()
    return model.embed(view.item_text)


def _transplant(pretrained: TextFusionRec, view: TrainView) -> TextFusionRec:
    """The pretrained adaptor, code tables and encoder over ``view``'s items (text only, no events)."""
    if pretrained.module is None:
        raise RuntimeError("zero_shot needs a pretrained (fitted) TextFusionRec")
    if view.item_text is None:
        raise ValueError(f"{view.dataset_name}: zero-shot transfer needs item text")
    cfg = copy.deepcopy(pretrained.get_config())
    cfg.update({"id_residual": False, "tune_mix": False, "mix": dict(DEFAULT_MIX),
                "n_items": int(view.n_items), "n_fit": 0})
    model = TextFusionRec(**cfg)
    model.text_embedder = pretrained.text_embedder
    emb = model.whiten(model.embed(view.item_text))  # as the pretrained adaptor read its domains
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


def zero_shot_settings(pretrained: TextFusionRec) -> dict[str, Any]:
    """The zero-shot settings chosen after pretraining (``ZS_FALLBACK`` for a model saved before them)."""
    chosen = zero_shot_choice(pretrained)
    return dict(chosen) if chosen else dict(ZS_FALLBACK)


def zero_shot(pretrained: TextFusionRec, view: TrainView, **settings: Any) -> ZeroShotTextFusion:
    """A :class:`ZeroShotTextFusion` for ``view``'s items built from ``pretrained`` without training.

    Only ``view.item_text`` (and its catalog, for ids) is read. ``settings`` (``decay``, ``shrink``,
    ``w_seq``, ``w_text``) replace the ones chosen on the pretraining domains, e.g. ``w_text=0``
    for the sequence part alone.
    """
    return ZeroShotTextFusion(settings=settings).build(pretrained, view)


def _ndcg10(scores: torch.Tensor, hists: list[np.ndarray], t_rows: np.ndarray, t_items: np.ndarray) -> float:
    from textrec.metrics.ranking import metrics_from_ranks, target_ranks

    s = scores.clone()
    r_idx = np.repeat(np.arange(len(hists)), [len(h) for h in hists])
    if len(r_idx):
        s[torch.from_numpy(r_idx), torch.from_numpy(np.concatenate(hists).astype(np.int64))] = float("-inf")
    ranks = target_ranks(s, torch.from_numpy(t_rows), torch.from_numpy(t_items)).numpy()
    return float(metrics_from_ranks(ranks, t_rows, len(hists), [10])["ndcg@10"].mean())


def _zero_shot_table(model: TextFusionRec, views: Sequence[TrainView], max_rows: int, seed: int
                     ) -> tuple[dict[tuple, list[float]], list[dict[str, Any]]]:
    """Valid NDCG@10 of every zero-shot setting (decay, shrink, w_seq, w_text) of ``model`` on each
    of ``views``, each scored as a zero-shot target would be (its own catalog and whitening)."""
    table: dict[tuple, list[float]] = {}
    used = []
    for view in views:
        if len(view.valid) == 0:
            continue
        rows = np.arange(len(view.valid))
        if len(rows) > max_rows:
            rows = np.sort(np.random.default_rng(seed).choice(len(rows), max_rows, replace=False))
        hists = [view.valid.history(i) for i in rows]
        t_rows = np.repeat(np.arange(len(rows)), [len(view.valid.targets(i)) for i in rows])
        t_items = np.concatenate([view.valid.targets(i) for i in rows]).astype(np.int64)
        fusion = _transplant(model, view)
        cfg = fusion.trainer_config
        seq = score_histories(fusion.module, hists, cfg.max_len, cfg.eval_batch_size)
        raw = raw_text(fusion, view)
        for shrink in SHRINKS:
            term = TextTerm(1.0, shrink).fit(raw)
            for decay in DECAYS:
                term.decay = decay
                cos = term.scores(hists)
                for w_seq, w_text in ZS_WEIGHTS:
                    if w_text == 0 and (shrink, decay) != (SHRINKS[0], DECAYS[0]):
                        continue  # the sequence part alone does not depend on the text settings
                    s = seq * w_seq + cos * w_text if w_seq else cos
                    key = (decay, shrink, w_seq, w_text)
                    table.setdefault(key, []).append(_ndcg10(s, hists, t_rows, t_items))
        used.append({"name": view.dataset_name, "valid_rows_used": int(len(rows))})
    return table, used


def tune_zero_shot(pretrained: TextFusionRec, sources: Sequence[TrainView], max_rows: int = 2000,
                   seed: int = 0, probe: TextFusionRec | None = None,
                   probe_source: str | None = None) -> dict[str, Any]:
    """Choose the zero-shot settings on valid rows of domains other than the target.

    Without ``probe``: on the pretraining domains' own valid rows (``sources``). Each is scored as a
    zero-shot target would be (its own catalog and whitening), but the sequence part is then
    in-sample (it was trained on those users' sequences), so the choice leans towards it.

    With ``probe`` (leave-one-domain-out): ``probe`` is a model pretrained the same way *without*
    the domains of ``sources``, so on them its sequence part is out of sample, as on a real new
    domain; the settings chosen there are given to ``pretrained``. ``probe`` may not have seen any
    of ``sources``.

    The choice maximises the mean over domains of valid NDCG@10 (so the largest domain does not
    decide alone) over ``DECAYS x SHRINKS x ZS_WEIGHTS`` (:mod:`textrec.models.text_term`). It is kept in
    ``pretrained.pretraining["zero_shot"]`` (saved with the model) and returned with the table.
    """
    scorer = pretrained
    if probe is not None:
        seen = {d["name"] for d in (probe.pretraining or {}).get("domains", [])}
        clash = sorted(seen & {v.dataset_name for v in sources})
        if clash:
            raise ValueError(f"the leave-one-domain-out probe was pretrained on {clash}: it is not held out")
        scorer = probe
    table, used = _zero_shot_table(scorer, sources, max_rows, seed)
    if not table:
        return {}
    best = max(table, key=lambda k: float(np.mean(table[k])))
    chosen = dict(zip(("decay", "shrink", "w_seq", "w_text"), best))
    names = [u["name"] for u in used]
    on = ("the pretraining domains' valid rows (mean of per-domain NDCG@10)" if probe is None else
          f"leave-one-domain-out: a model pretrained on {sorted(seen)} (not on {names}), scored on "
          f"{names}' valid rows (mean of per-domain NDCG@10)")
    report = {"chosen": chosen, "on": on, "domains": used,
              "best_valid_ndcg@10": {n: round(v, 5) for n, v in zip(names, table[best])},
              "text_knn_valid_ndcg@10": {n: round(v, 5) for n, v in zip(names, table[(1.0, None, 0.0, 1.0)])},
              "seq_only_valid_ndcg@10": {n: round(v, 5) for n, v in zip(names, table[(1.0, None, 1.0, 0.0)])},
              "table": [{"decay": k[0], "shrink": k[1], "w_seq": k[2], "w_text": k[3],
                         "mean_valid_ndcg@10": round(float(np.mean(v)), 5)} for k, v in table.items()]}
    if probe is not None:
        report["probe"] = {"source": probe_source, "domains": sorted(seen)}
    pretrained.pretraining = {**(pretrained.pretraining or {}), "zero_shot": report}
    return report


def load_init(path: str, target: str | None = None):
    """The pretrained TextFusion at ``path``; refuses one that saw ``target`` or records no domains."""
    import textrec
    from textrec.models.fusion import TextFusionRec

    model = textrec.load(path)
    if not isinstance(model, TextFusionRec) or model.module is None:
        raise ValueError(f"{path}: --init needs a TextFusion model (got {type(model).__name__})")
    seen = [d["name"] for d in (model.pretraining or {}).get("domains", [])]
    if not seen:
        raise ValueError(f"{path}: this model records no pretraining domains (was it trained with --pretrain-on?)")
    if target is not None and target in seen:
        raise ValueError(f"{path} was pretrained on '{target}' ({', '.join(seen)}): its test rows are not unseen")
    return model



__all__ = ["load_init", "TEXT_DOMAINS", "parse_domains", "held_out_domains", "subset_split", "domain_view", "pretrain_textfusion", "pretrain_views",
           "zero_shot", "zero_shot_settings", "raw_text", "tune_zero_shot", "ZeroShotTextFusion"]
