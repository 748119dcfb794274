"""Prompt templates: YAML files in ``prompts/`` (shipped in the wheel as ``textrec/_prompts``).

A template file holds one task family::

    family: sequential
    templates:
      - id: seq-1
        source: "User {user} has bought {history}. What is next?"
        target: "{target}"
        unseen: false          # true = held out, used only for zero-shot evaluation
        requires: [reviews]    # optional dataset capabilities this template needs

Fields use ``str.format`` syntax. Rendering with a missing field raises a
:class:`TemplateError` that names the file, the template id and the field.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class TemplateError(ValueError):
    """A template file or a rendering problem, naming the file and the template id."""


def prompt_dirs() -> list[Path]:
    """Where template files are looked up: the repo's ``prompts/`` then the wheel's copy."""
    here = Path(__file__).resolve().parent
    return [here.parent / "prompts", here / "_prompts"]


def _fields(text: str, where: str) -> list[str]:
    try:
        names = [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
    except ValueError as e:
        raise TemplateError(f"{where}: bad format string: {e}") from None
    out: list[str] = []
    for n in names:
        if n == "" or not n.replace("_", "a").isalnum():
            raise TemplateError(f"{where}: field '{{{n}}}' must be a plain name")
        if n not in out:
            out.append(n)
    return out


@dataclass(frozen=True)
class Template:
    """One prompt template: a source and a target format string."""

    id: str
    family: str
    source: str
    target: str
    unseen: bool = False
    requires: tuple[str, ...] = ()
    path: str = "<memory>"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def fields(self) -> list[str]:
        """Every field name the source and target use."""
        where = f"{self.path}: template '{self.id}'"
        return list(dict.fromkeys(_fields(self.source, where) + _fields(self.target, where)))

    def _fill(self, text: str, values: dict[str, Any]) -> str:
        where = f"{self.path}: template '{self.id}'"
        for name in _fields(text, where):
            if name not in values or values[name] is None:
                raise TemplateError(f"{where} needs field '{name}', which was not given "
                                    f"(given: {sorted(k for k, v in values.items() if v is not None)})")
        return text.format(**values)

    def render(self, **values: Any) -> tuple[str, str]:
        """Fill source and target; a missing field raises :class:`TemplateError`."""
        return self._fill(self.source, values), self._fill(self.target, values)

    def render_source(self, **values: Any) -> str:
        """Fill only the source (inference, where the target is unknown)."""
        return self._fill(self.source, values)


def _parse_file(path: Path) -> list[Template]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise TemplateError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict) or "templates" not in data:
        raise TemplateError(f"{path}: expected a mapping with 'family' and 'templates'")
    family = data.get("family") or path.stem
    out: list[Template] = []
    seen: set[str] = set()
    for i, t in enumerate(data["templates"] or []):
        if not isinstance(t, dict):
            raise TemplateError(f"{path}: templates[{i}] must be a mapping")
        for key in ("id", "source", "target"):
            if key not in t or not isinstance(t[key], str):
                raise TemplateError(f"{path}: templates[{i}] lacks the string field '{key}'")
        if t["id"] in seen:
            raise TemplateError(f"{path}: template id '{t['id']}' appears twice")
        seen.add(t["id"])
        known = {"id", "source", "target", "unseen", "requires"}
        tpl = Template(id=t["id"], family=family, source=t["source"], target=t["target"],
                       unseen=bool(t.get("unseen", False)), requires=tuple(t.get("requires") or ()),
                       path=str(path), extra={k: v for k, v in t.items() if k not in known})
        tpl.fields  # noqa: B018 - validates the format strings now, not at first render
        out.append(tpl)
    return out


def load_templates(name: str | Path) -> list[Template]:
    """Load a template family by name (``prompts/<name>.yaml``, subfolders allowed) or path."""
    p = Path(name)
    candidates = [p] if p.suffix in (".yaml", ".yml") else [d / f"{name}.yaml" for d in prompt_dirs()]
    for c in candidates:
        if c.is_file():
            return _parse_file(c)
    raise FileNotFoundError(f"template family '{name}' not found in {[str(c) for c in candidates]}")


def select(templates: list[Template], *, unseen: bool | None = None,
           capabilities: set[str] | None = None) -> list[Template]:
    """Filter templates by seen/unseen and by the capabilities a dataset has (e.g. ``{"reviews"}``)."""
    out = []
    for t in templates:
        if unseen is not None and t.unseen != unseen:
            continue
        if capabilities is not None and not set(t.requires) <= capabilities:
            continue
        out.append(t)
    return out
