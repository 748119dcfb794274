"""Model names -> classes, imported lazily.

``textrec.load(dir)`` opens any saved artifact through this map. The map holds ``"module:Class"`` strings, so importing this module imports no engine and
registering a model is one line here (no import side effects, no decorators to run first).
"""

from __future__ import annotations

import importlib

#: every model a user can build by name or load from a folder; kind says which job it does
MODELS: dict[str, str] = {
    # core recommenders
    "Popularity": "textrec.models.baselines:Popularity",
    "ItemKNN": "textrec.models.baselines:ItemKNN",
    "EASE": "textrec.models.baselines:EASE",
    "MarkovChain": "textrec.models.baselines:MarkovChain",
    "SASRec": "textrec.models.sasrec:SASRec",
    "TextKNN": "textrec.models.text_knn:TextKNN",
    "MultVAE": "textrec.models.vae:MultVAE",
    "MultDAE": "textrec.models.vae:MultDAE",
    "PersonaRec": "textrec.models.persona:PersonaRec",
    "GHRS": "textrec.models.ghrs:GHRS",
    # engines
    "VQRec": "textrec.vqrec.model:VQRec",
    "TextFusion": "textrec.models.fusion:TextFusionRec",
    "TextFusionZeroShot": "textrec.models.transfer:ZeroShotTextFusion",
    "P5": "textrec.p5.recommender:P5Recommender",
    "QueryRec": "textrec.query.recommender:QueryRecommender",
    # explanation models (ERRA engine) and the explainer that pairs one with its review data
    "PETER": "textrec.explain.peter:PeterModel",
    "ERRA": "textrec.explain.generator:ERRADecoder",
    "ERRA-T5": "textrec.explain.generator:ERRAGenerator",
    "ERRA-LM": "textrec.explain.lm:LMExplainer",
    "ERRA-Extract": "textrec.explain.extractive:ExtractiveExplainer",
    "Explainer": "textrec.explain.pipeline:Explainer",
}

#: names written by earlier versions -> current names
ALIASES: dict[str, str] = {"P5Recommender": "P5"}


def available() -> list[str]:
    """Every registered model name."""
    return sorted(MODELS)


def model_class(name: str) -> type:
    """The class registered under ``name`` (imported on first use)."""
    name = ALIASES.get(name, name)
    if name not in MODELS:
        raise ValueError(f"unknown model '{name}'; known: {available()}")
    module, _, attr = MODELS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def registered_name(cls: type) -> str:
    """The registry name of a class (what ``config.json`` records as ``model_type``)."""
    target = f"{cls.__module__}:{cls.__qualname__}"
    for name, where in MODELS.items():
        if where == target:
            return name
    raise ValueError(f"{cls.__module__}.{cls.__qualname__} is not registered in textrec.registry.MODELS; "
                     "add a line there to save it")
