"""Training recipes (YAML files in ``training/``) and their lookup, source tree or installed wheel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def recipe_dirs() -> list[Path]:
    """Where recipes are looked up: the repo's ``training/`` then the copy shipped in the wheel."""
    here = Path(__file__).resolve().parent
    return [here.parent / "training", here / "_recipes"]


def load_recipe(name: str) -> dict[str, Any]:
    """Load ``<name>.yaml`` (or a path to a YAML file) as a dict."""
    p = Path(name)
    candidates = [p] if p.suffix in (".yaml", ".yml") else [d / f"{name}.yaml" for d in recipe_dirs()]
    for c in candidates:
        if c.is_file():
            data = yaml.safe_load(c.read_text(encoding="utf-8")) or {}
            if not isinstance(data, dict):
                raise ValueError(f"{c}: a recipe must be a YAML mapping")
            return data
    raise FileNotFoundError(f"recipe '{name}' not found in {[str(c) for c in candidates]}")
