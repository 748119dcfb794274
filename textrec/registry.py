"""Model names -> classes, imported lazily; ``load(dir)`` opens any saved artifact.

The map holds ``"module:Class"`` strings, so importing this module imports no engine and
registering a model is one line here (no import side effects, no decorators to run first).
"""

from __future__ import annotations

import importlib
from typing import Any

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
    "VQRec": "textrec.models.vqrec:VQRec",
    "P5": "textrec.p5.recommender:P5Recommender",
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


def load(path: Any) -> Any:
    """Open any artifact folder written by a textrec model's ``save_pretrained``."""
    from textrec.artifact import load_artifact

    return load_artifact(path)
