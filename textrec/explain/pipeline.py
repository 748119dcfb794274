"""From data to numbers and back: build/train the models, evaluate them, cite sentences, explain pairs.

* ``train_variant(data, name, recipe)``: ``erra`` | ``erra_no_retrieval`` | ``erra_no_aspects`` |
  ``peter`` | ``erra_t5`` | ``erra_t5_no_retrieval`` — one tokenizer (trained on training reviews),
  one trainer.
* ``copy_baseline(examples)``: the most similar retrieved sentence, verbatim (no generation).
* ``evaluate_predictions``: every metric of :mod:`textrec.metrics.text` on one split.
* ``Explainer``: a trained model + its data, answering ``explain(user, item)`` with the explanation,
  the aspects used and the sentences it cites.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from textrec.explain.aspects import AspectConfig
from textrec.explain.base import ExplainModel
from textrec.explain.data import DataConfig, Example, ExplainData
from textrec.explain.faithfulness import check, cite, grounding, unsupported_aspects
from textrec.explain.generator import ERRAConfig, ERRADecoder, ERRAGenerator, GeneratorConfig
from textrec.explain.peter import PeterConfig, PeterModel
from textrec.explain.sentences import Retrieved, words
from textrec.explain.tokenizer import WordTokenizer
from textrec.explain.trainer import TrainConfig, train_model
from textrec.explain.trust import support_of, trust_report
from textrec.metrics.text import explanation_metrics
from textrec.recipes import config_from_dict

# variant name -> (model kind, overrides of that kind's recipe section)
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "erra": ("erra", {}),
    "erra_no_retrieval": ("erra", {"use_retrieval": False}),
    "erra_no_aspects": ("erra", {"use_aspects": False}),
    # + a pointer head copying words of the top retrieved sentence (which replaces the keyword tokens)
    "erra_copy": ("erra", {"copy_words": 24, "n_keywords": 0}),
    "erra_t5": ("erra_t5", {}),
    "erra_t5_no_retrieval": ("erra_t5", {"use_retrieval": False}),
    "peter": ("peter", {}),
    # option: a pretrained causal LM with LoRA and continuous user/item prompts (PEPLER-style)
    "erra_lm": ("erra_lm", {}),
    "erra_lm_no_retrieval": ("erra_lm", {"use_retrieval": False}),
    "pepler": ("erra_lm", {"use_retrieval": False, "use_aspects": False, "id_prompts": True}),
    # the trusted default: quote the item's own review sentences, chosen for this user (no decoder)
    "erra_extract": ("erra_extract", {}),
}


def default_model_dir(dataset: str) -> Path:
    """Where the CLI looks for the trained ERRA model of a dataset (``$TEXTREC_CACHE/erra/<dataset>``)."""
    root = os.environ.get("TEXTREC_CACHE")
    base = Path(root).expanduser() if root else Path("~/.cache/textrec").expanduser()
    name = str(dataset)
    if "/" in name or "\\" in name:  # a dataset given as a path: its file or folder name
        name = Path(name).name.split(".")[0] or "dataset"
    return base / "erra" / name


def build_data(dataset, recipe: dict | None = None, encoder=None, progress: bool = True,
               with_examples: bool = True) -> ExplainData:
    """``ExplainData.build`` with the recipe's ``data`` and ``aspects`` sections."""
    recipe = recipe or {}
    return ExplainData.build(dataset, config_from_dict(DataConfig, recipe.get("data"), "data"),
                             config_from_dict(AspectConfig, recipe.get("aspects"), "aspects"),
                             encoder=encoder, progress=progress, with_examples=with_examples)


def train_tokenizer(data: ExplainData, recipe: dict | None = None) -> WordTokenizer:
    """The word tokenizer of the training reviews (``tokenizer`` recipe section)."""
    tcfg = dict((recipe or {}).get("tokenizer") or {})
    return WordTokenizer.train(data.train_texts(), data.n_users, data.n_items,
                               vocab_size=int(tcfg.get("vocab_size", 8000)),
                               min_frequency=int(tcfg.get("min_frequency", 2)))


def make_model(variant: str, tokenizer: WordTokenizer, recipe: dict | None = None,
               rating_mean: float = 4.0) -> ExplainModel:
    """A fresh model for a variant name (see ``VARIANTS``)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; known: {sorted(VARIANTS)}")
    recipe = recipe or {}
    kind, over = VARIANTS[variant]
    if kind == "peter":
        return PeterModel(config_from_dict(PeterConfig, recipe.get("peter"), "peter"), tokenizer, rating_mean)
    if kind == "erra":
        cfg = {**(recipe.get("erra") or {}), **over}
        return ERRADecoder(config_from_dict(ERRAConfig, cfg, "erra"), tokenizer, rating_mean)
    if kind == "erra_lm":
        from textrec.explain.lm import LMExplainer, LMExplainerConfig

        cfg = {**(recipe.get("lm") or {}), **over}
        return LMExplainer(config_from_dict(LMExplainerConfig, cfg, "lm"), tokenizer, rating_mean)
    cfg = {**(recipe.get("t5") or {}), **over}
    return ERRAGenerator(config_from_dict(GeneratorConfig, cfg, "t5"), tokenizer, rating_mean)


def train_variant(data: ExplainData, variant: str, recipe: dict | None = None,
                  tokenizer: WordTokenizer | None = None, progress: bool = True,
                  trainer_overrides: dict | None = None, valid: Sequence[Example] | None = None,
                  on_step_end=None) -> tuple[ExplainModel, dict]:
    """Train one variant on ``data.examples['train']`` with early stopping on valid; (model, history).

    ``valid``: the examples early stopping watches (default: all of ``data.examples['valid']``);
    ``on_step_end(trainer)``: called after every batch (learning curves).
    """
    import torch

    recipe = recipe or {}
    if VARIANTS.get(variant, ("",))[0] == "erra_extract":
        model = fit_extractive(data, recipe, seed=int((trainer_overrides or {}).get("seed", 0)))
        return model, model.fit_report
    # the LM variants may override the optimiser settings (``lm_trainer``: LoRA wants its own lr)
    lm = VARIANTS.get(variant, ("",))[0] == "erra_lm"
    tcfg = config_from_dict(TrainConfig, {**(recipe.get("trainer") or {}), **((recipe.get("lm_trainer") or {}) if lm else {}),
                                          **(trainer_overrides or {})}, "trainer")
    torch.manual_seed(tcfg.seed)
    tok = tokenizer or train_tokenizer(data, recipe)
    train = data.examples["train"]
    mean = float(np.mean([e.rating for e in train])) if train else 4.0
    model = make_model(variant, tok, recipe, rating_mean=mean)
    attach_item_texts(model, data)
    valid = data.examples.get("valid", []) if valid is None else valid
    history = train_model(model, train, valid, tcfg, progress=progress, name=variant, on_step_end=on_step_end)
    return model, history


def fit_extractive(data: ExplainData, recipe: dict | None = None, seed: int = 0, **overrides):
    """The extractive explainer (``extract`` recipe section + ``overrides``) fitted on the training pairs.

    A closed-form least-squares fit of a few feature weights, not a training loop: seconds on one core.
    """
    import time

    from textrec.explain.extractive import ExtractConfig, ExtractiveExplainer

    cfg = config_from_dict(ExtractConfig, {**((recipe or {}).get("extract") or {}), **overrides}, "extract")
    train = data.examples.get("train") or []
    if not train:
        raise ValueError(f"explain data '{data.name}' has no training examples: build it with with_examples=True")
    model = ExtractiveExplainer(cfg, rating_mean=float(np.mean([e.rating for e in train])))
    model.attach_data(data)
    t0 = time.process_time()
    model.fit_report = {**model.fit(train, seed=seed), "cpu_seconds": round(time.process_time() - t0, 2)}
    return model


def attach_item_texts(model: ExplainModel, data: ExplainData) -> None:
    """Give a model that reads item names (the LM option) the dataset's item texts, when there are any."""
    if hasattr(model, "item_texts") and getattr(data, "item_texts", None) is not None:
        model.item_texts = data.item_texts


def copy_baseline(examples: Sequence[Example], reviews=None) -> tuple[list[str], list[float]]:
    """The top retrieved sentence as the explanation; rating = mean rating of the retrieved reviews."""
    texts, ratings = [], []
    for e in examples:
        texts.append(" ".join(words(e.retrieved[0].text)) if e.retrieved else "")
        if reviews is not None and e.retrieved:
            ratings.append(float(np.mean([reviews["rating"].iat[r.review] for r in e.retrieved])))
        else:
            ratings.append(float("nan"))
    return texts, ratings


def evaluate_predictions(data: ExplainData, examples: Sequence[Example], texts: Sequence[str],
                         ratings: Sequence[float], conditioned: bool = True,
                         faith: dict | None = None, citations: Sequence | None = None) -> dict[str, float]:
    """BLEU, ROUGE, USR, DIV, FCR, FMR, RMSE/MAE, the faithfulness checks and the trust measures
    (:mod:`textrec.explain.trust`: unsupported content, personal aspect hit rate) of predictions.
    ``citations``: per explanation, the sentences it cites when the model states them (extractive).

    ``conditioned``: the model read the retrieved sentences (it then always cites one; see
    :mod:`textrec.explain.faithfulness`). ``faith``: filled with the per-explanation checks if given.
    """
    feats = [data.vocab.find(t.split()) for t in texts]
    f = check(texts, examples, data.vocab, getattr(data, "item_texts", None), conditioned=conditioned,
              citations=citations)
    ok = [i for i, r in enumerate(ratings) if not math.isnan(r)]
    m = explanation_metrics([e.target for e in examples], list(texts), feats, [e.feature for e in examples],
                            len(data.vocab), grounding=f.grounding)
    m.update({k: v for k, v in f.summary().items() if k not in m})
    trust = trust_report(support_of(data), texts, examples)
    m.update(trust.summary())
    if ok:
        m.update(_rmse_mae([examples[i].rating for i in ok], [ratings[i] for i in ok]))
    if faith is not None:
        faith["checks"] = f
        faith["trust"] = trust
    return m


def _rmse_mae(t, p):
    from textrec.metrics.text import rmse_mae

    return rmse_mae(t, p)


class Explainer:
    """A trained explanation model with the data it retrieves from (or quotes, for the extractive one)."""

    def __init__(self, data: ExplainData, model: ExplainModel):
        self.data, self.model = data, model
        attach_item_texts(model, data)
        if hasattr(model, "attach_data"):
            model.attach_data(data)
        self._cache: dict[tuple[int, int], dict[str, Any]] = {}

    @property
    def extractive(self) -> bool:
        """Whether the model quotes the item's reviews (:mod:`textrec.explain.extractive`)."""
        return hasattr(self.model, "choose")

    def warm(self) -> Explainer:
        """Build the trust-measure support sets now (a server calls this before its first request)."""
        support_of(self.data)
        return self

    def explain_example(self, ex: Example, num_beams: int | None = None) -> dict[str, Any]:
        """Explanation, predicted rating, aspects, cited sentences and trust measures for an example.

        ``kind``: "quote" (a sentence of the item's reviews), "history" (an item with too few reviews:
        a plain statement of why it was recommended) or "generated".
        """
        d = self.data
        item = d.item_texts[ex.item] if d.item_texts is not None else ""
        if self.extractive:
            c = self.model.choose(ex)
            text, kind, rating = c["text"], c["kind"], self.model.rating(ex)
            cited = [] if c["sid"] is None else [Retrieved(c["sid"], d.index.texts[c["sid"]],
                                                           int(d.index.review[c["sid"]]), float(c["score"]))]
            aspects = d.vocab.find(words(text)) if kind == "quote" else []
        else:
            texts, ratings = self.model.predict([ex], num_beams=num_beams)
            text, kind, rating = texts[0], "generated", ratings[0]
            uses_ctx = getattr(self.model.config, "use_retrieval", False)
            cited = cite(text, ex.retrieved, at_least_one=True) if uses_ctx else []
            aspects = list(ex.aspects) if getattr(self.model.config, "use_aspects", False) else []
        sources = [r.text for r in cited] + ([item] if item else [])
        trust = support_of(d).check(text, ex.user, ex.item, exclude_review=ex.row if ex.row >= 0 else None)
        return {"user": str(d.user_ids[ex.user]), "item": str(d.item_ids[ex.item]), "kind": kind,
                "explanation": text, "rating": round(float(rating), 3),
                "aspects": aspects,
                "cited": [{"id": int(r.sid), "text": r.text,
                           "review_user": str(d.user_ids[d.reviews['user'].iat[r.review]]),
                           "review_item": str(d.item_ids[d.reviews['item'].iat[r.review]]),
                           "score": round(r.score, 4)} for r in cited],
                "grounding": grounding(text, sources) if sources and kind != "history" else None,
                "unsupported_aspects": unsupported_aspects(text, d.vocab, [r.text for r in ex.retrieved]
                                                           + sources, ex.aspects) if kind != "history" else [],
                "trust": trust.to_dict() if kind != "history" else None,
                "retrieved": [{"id": int(r.sid), "text": r.text} for r in ex.retrieved]}

    def explain(self, user_id: str, item_id: str, num_beams: int | None = None) -> dict[str, Any]:
        """Explain an (original user id, original item id) pair (answers are cached per pair)."""
        u, i = self.data.user_index(user_id), self.data.item_index(item_id)
        key = (u, i)
        if num_beams is None and key in self._cache:
            return self._cache[key]
        # the extractive model reads the item's own sentences: the retrieval step is not needed
        ex = self.data.pair_example(u, i, retrieve=not self.extractive)
        out = self.explain_example(ex, num_beams)
        if num_beams is None:
            if len(self._cache) >= 4096:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = out
        return out

    def save(self, folder: str | Path, recipe: dict | None = None) -> Path:
        """One artifact: how to rebuild the data (dataset name, data/aspect configs), the item catalog,
        and the trained model in ``model/`` (itself a verified artifact)."""
        from textrec.artifact import fill_model, write_folder, write_manifest
        from textrec.catalog import Catalog

        d = self.data
        catalog = Catalog(list(map(str, d.item_ids)))
        config = {"dataset": d.name, "data": asdict(d.config), "aspects": asdict(d.prefs.cfg), "recipe": recipe or {}}

        def fill(tmp: Path) -> None:
            fill_model(tmp, "Explainer", config, tensors={}, catalog=catalog)
            (tmp / "model").mkdir()
            self.model.fill_folder(tmp / "model")
            write_manifest(tmp / "model")

        return write_folder(folder, fill, n_items=len(catalog), catalog_sha256=catalog.sha256())

    save_pretrained = save

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> Explainer:
        """``load`` with the dataset the explainer was trained on (found under the default data root)."""
        return cls.load(folder, progress=False)

    @classmethod
    def load(cls, folder: str | Path, dataset=None, data_root: str | None = None, encoder=None,
             progress: bool = True) -> Explainer:
        """Load a saved explainer; the data is rebuilt (deterministically) from its dataset.

        ``dataset``: a ``RecDataset``, a dataset name or path, or None for the one it was trained on.
        """
        from textrec.artifact import ArtifactError, detect_format, read_config

        folder = Path(folder)
        if not folder.is_dir() or not (folder / "config.json").is_file():
            raise FileNotFoundError(f"no trained explainer in {folder}; train one with `textrec train erra`")
        if detect_format(folder) == "current":
            body = read_config(folder)
            if body["model_type"] != "Explainer":
                raise ArtifactError(f"{folder}: a {body['model_type']} artifact, not an explainer")
            meta, model_dir = body["config"], folder / "model"
        elif (folder / "explain_data.json").is_file():  # textrec 0.1: model files beside explain_data.json
            meta, model_dir = json.loads((folder / "explain_data.json").read_text(encoding="utf-8")), folder
        else:
            raise ArtifactError(f"{folder}: not an explainer artifact")
        if dataset is None or isinstance(dataset, (str, Path)):
            from textrec.data.registry import load_dataset

            dataset = load_dataset(str(dataset or meta["dataset"]), data_root=data_root)
        data = build_data(dataset, {"data": meta["data"], "aspects": meta["aspects"]}, encoder=encoder,
                          progress=progress, with_examples=False)
        return cls(data, ExplainModel.from_pretrained(model_dir))
