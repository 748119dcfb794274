"""Training recipes (YAML files in ``training/``) and their lookup, source tree or installed wheel."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

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


C = TypeVar("C")


def config_from_dict(cls: type[C], d: dict[str, Any] | C | None, what: str) -> C:
    """Build a config dataclass from a dict (or pass an instance through); unknown keys raise."""
    if isinstance(d, cls):
        return d
    d = dict(d or {})
    known = {f.name for f in fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"unknown {what} option(s) {sorted(unknown)}; known: {sorted(known)}")
    return cls(**d)
