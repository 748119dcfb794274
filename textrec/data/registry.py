"""Load a dataset by name ("ml-100k", "scientific", "beauty", "instruments", "office", "games") or by path.

Named datasets other than ml-100k live under a data root: ``data_root=`` if given, else the
``TEXTREC_DATA`` environment variable, else ``../shared/data`` next to the project checkout
(looked up from the current directory and from this package's location). ml-100k is read from
the ``recbole`` wheel, falling back to ``<data root>/ml-100k``.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textrec.data.dataset import DataError, RecDataset
from textrec.data.loaders import (
    load_amazon_reviews,
    load_atomic,
    load_movielens_100k,
    load_p5_sequential,
    load_rechorus,
    load_table,
)
from textrec.data.loaders.movielens import recbole_ml100k_dir
from textrec.data.loaders.rechorus import is_rechorus_folder

ENV_VAR = "TEXTREC_DATA"
# textrec/data/registry.py -> the repository checkout holding the package.
_REPO_ROOT = Path(__file__).resolve().parents[2]

LoaderFn = Callable[..., RecDataset]
_REGISTRY: dict[str, LoaderFn] = {}


def data_root_candidates() -> list[Path]:
    """Where a missing ``data_root`` is looked for, in order."""
    cands = [Path.cwd().parent / "shared" / "data", _REPO_ROOT.parent / "shared" / "data"]
    out: list[Path] = []
    for c in cands:
        c = c.resolve()
        if c not in out:
            out.append(c)
    return out


def find_data_root(data_root: str | Path | None = None) -> Path:
    """The folder holding the named datasets; raises ``FileNotFoundError`` saying where it looked."""
    if data_root is not None:
        root = Path(data_root)
        if not root.is_dir():
            raise FileNotFoundError(f"data_root {root} is not a folder")
        return root
    env = os.environ.get(ENV_VAR)
    if env:
        root = Path(env)
        if not root.is_dir():
            raise FileNotFoundError(f"{ENV_VAR}={env} is not a folder")
        return root
    cands = data_root_candidates()
    for c in cands:
        if c.is_dir():
            return c
    raise FileNotFoundError("no data folder found; looked in " + ", ".join(map(str, cands))
                            + f" (set {ENV_VAR} or pass data_root=)")


def _subfolder(data_root: str | Path | None, name: str) -> Path:
    root = find_data_root(data_root)
    folder = root / name
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset '{name}' expects the folder {folder}, which does not exist")
    return folder


# ---- built-in datasets ---------------------------------------------------------------------
def _ml100k(data_root: str | Path | None = None, **kw: Any) -> RecDataset:
    if "path" in kw:
        return load_movielens_100k(**kw)
    try:
        return load_movielens_100k(recbole_ml100k_dir(), **kw)
    except FileNotFoundError as exc:
        try:
            folder = _subfolder(data_root, "ml-100k")
        except FileNotFoundError as exc2:
            raise FileNotFoundError(f"{exc}; and {exc2}") from exc
        return load_movielens_100k(folder, **kw)


def _scientific(data_root: str | Path | None = None, **kw: Any) -> RecDataset:
    return load_atomic(_subfolder(data_root, "scientific"), name="scientific", **kw)


def _beauty(data_root: str | Path | None = None, **kw: Any) -> RecDataset:
    return load_p5_sequential(_subfolder(data_root, "beauty"), name="beauty", **kw)


def _instruments(data_root: str | Path | None = None, **kw: Any) -> RecDataset:
    folder = _subfolder(data_root, "instruments")
    files = sorted(p for p in folder.iterdir() if p.name.endswith((".json.gz", ".json", ".jsonl")))
    if len(files) != 1:
        raise FileNotFoundError(f"dataset 'instruments' expects one review .json(.gz) file in {folder}, "
                                f"found {len(files)}")
    return load_amazon_reviews(files[0], name="instruments", **kw)


def _games(data_root: str | Path | None = None, **kw: Any) -> RecDataset:
    return load_atomic(_subfolder(data_root, "games"), name="games", **kw)


def _office(data_root: str | Path | None = None, **kw: Any) -> RecDataset:
    return load_rechorus(_subfolder(data_root, "office"), name="office", **kw)


def register_dataset(name: str, loader_fn: LoaderFn, overwrite: bool = False) -> None:
    """Make ``load_dataset(name, **kw)`` call ``loader_fn(**kw)``.

    ``loader_fn`` also receives ``data_root=`` when its signature accepts it.
    """
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"dataset '{name}' is already registered (pass overwrite=True to replace it)")
    _REGISTRY[name] = loader_fn


def available_datasets() -> list[str]:
    """The registered dataset names."""
    return sorted(_REGISTRY)


for _name, _fn in (("ml-100k", _ml100k), ("scientific", _scientific), ("beauty", _beauty),
                   ("instruments", _instruments), ("office", _office), ("games", _games)):
    register_dataset(_name, _fn)


# ---- paths ---------------------------------------------------------------------------------
def detect_format(path: str | Path) -> str:
    """The loader a path needs: "atomic", "p5", "grouplens", "rechorus", "amazon" or "tabular"."""
    path = Path(path)
    if path.is_dir():
        names = [p.name for p in path.iterdir() if p.is_file()]
        if "sequential_data.txt" in names:
            return "p5"
        if "u.data" in names:
            return "grouplens"
        if is_rechorus_folder(path):
            return "rechorus"
        if any(n.endswith((".inter", ".text")) for n in names):
            return "atomic"
        raise DataError("cannot tell the format of this folder (expected .inter/.text atomic files, ReChorus train/dev/test.csv, "
                        "train/valid/test.inter, sequential_data.txt or u.data)", path=str(path))
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (and is not a dataset name: "
                                f"{', '.join(available_datasets())})")
    low = path.name.lower()
    if low.endswith((".json", ".jsonl", ".json.gz", ".jsonl.gz")):
        return "amazon"
    if low.endswith((".csv", ".tsv", ".tab", ".parquet", ".csv.gz", ".tsv.gz")):
        return "tabular"
    if low.endswith(".inter") or low.endswith(".text"):
        return "atomic"
    if low == "u.data":
        return "grouplens"
    if low == "sequential_data.txt":
        return "p5"
    raise DataError("cannot tell the format from the file name (.json[l][.gz] reviews, .csv/.tsv/.parquet "
                    "tables, atomic .inter files)", path=str(path))


def load_dataset(name_or_path: str | Path, data_root: str | Path | None = None, **kw: Any) -> RecDataset:
    """Load a registered dataset by name, or any supported file/folder by path.

    Extra keyword arguments go to the loader (``on_error=``, ``duplicates=``, ``columns=`` for
    tables...).
    """
    if isinstance(name_or_path, str) and name_or_path in _REGISTRY:
        fn = _REGISTRY[name_or_path]
        params = inspect.signature(fn).parameters
        if "data_root" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
            kw["data_root"] = data_root
        return fn(**kw)
    path = Path(name_or_path)
    if not path.exists() and isinstance(name_or_path, str) and os.sep not in name_or_path:
        raise ValueError(f"unknown dataset '{name_or_path}': not a path, and not one of "
                         f"{', '.join(available_datasets())}")
    fmt = detect_format(path)
    if fmt == "p5":
        return load_p5_sequential(path, **kw)
    if fmt == "grouplens":
        return load_movielens_100k(path, **kw)
    if fmt == "rechorus":
        return load_rechorus(path, **kw)
    if fmt == "atomic":
        return load_atomic(path, **kw)
    if fmt == "amazon" and "columns" not in kw:  # with a column mapping a JSON-lines file is an event table
        return load_amazon_reviews(path, **kw)
    if "columns" not in kw:
        raise ValueError(f"{path.name} is a table: pass columns={{'user_id': ..., 'item_id': ..., "
                         "'timestamp': ..., 'rating': ...}} naming its columns")
    return load_table(path, **kw)
