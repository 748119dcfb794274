"""Package structure: no import circles (not even through function-level imports), lower layers
never import an engine, and every module imports on its own in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "textrec"
ENGINES = ("textrec.p5", "textrec.query", "textrec.explain", "textrec.vqrec", "textrec.serve")
#: layers below the engines: they may be imported by engines, never the other way round
CORE = ("textrec.data", "textrec.metrics", "textrec.text", "textrec.indexing", "textrec.catalog",
        "textrec.artifact", "textrec.io", "textrec.registry", "textrec.models.base", "textrec.evaluation",
        "textrec.recipes", "textrec.training", "textrec._version", "textrec.llm")


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        name = ".".join(p.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = p
    return out


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every textrec module this file imports, at any depth (function bodies included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []  # typing-only imports never run
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m in modules and m != "textrec"}


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(p, mods) for m, p in mods.items()}


def _in(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_no_import_circles():
    graph = _graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append(path[path.index(n):] + [n])
            elif n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_lower_layers_never_import_an_engine():
    bad = [f"{m} imports {n}" for m, deps in _graph().items() if _in(m, CORE)
           for n in deps if _in(n, ENGINES)]
    assert not bad, "\n".join(bad)


def test_every_module_imports():
    """Every module imports in a fresh interpreter, dependents first (so a module that only works
    after something else happened to be imported fails here)."""
    graph = _graph()
    order = sorted((m for m in graph if not m.endswith("__main__")), key=lambda m: (-len(graph[m]), m))
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    res = subprocess.run([sys.executable, "-c", code, *order], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
