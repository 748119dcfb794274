"""The one save format: a folder that is written as a unit and checks itself on load.

Layout (every engine)::

    config.json        {"model_type", "textrec_version", "format_version", "config"}
    model.safetensors  learned tensors (possibly none)
    catalog.json       original item ids, item text, titles (see textrec.catalog)
    users.json/.safetensors   optional: original user ids and their training histories
    ...                engine files (tokenizer, t5/, quantizer/, adapter/ ...)
    manifest.json      written last: sha256 and size of every file, item count, catalog hash

A folder is written into a temporary sibling and renamed into place, so a reader sees the
old artifact or the new one, never half of one. Loading verifies the manifest first and
names the file and what differs. Folders from textrec 0.1 (no manifest, older layouts) are
recognised and either loaded with a warning or refused with an error that says which
format they are.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MANIFEST_FILE = "manifest.json"


class ArtifactError(ValueError):
    """A model folder that is missing, damaged or of an unknown format (the message names the file)."""


class LegacyArtifactWarning(UserWarning):
    """A folder written by an older textrec without a manifest: loaded, but not verified."""


def _version() -> str:
    from textrec._version import __version__

    return __version__


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST_FILE)


def _fsync_tree(folder: Path) -> None:
    for p in [*folder.rglob("*"), folder]:
        try:
            fd = os.open(p, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)


def write_manifest(folder: str | Path, n_items: int | None = None, catalog_sha256: str | None = None) -> dict:
    """Hash every file in ``folder`` and write ``manifest.json`` (call it last)."""
    from textrec.io import write_json

    folder = Path(folder)
    manifest = {"textrec_version": _version(), "format_version": FORMAT_VERSION,
                "n_items": n_items, "catalog_sha256": catalog_sha256,
                "files": {p.relative_to(folder).as_posix(): {"sha256": file_sha256(p), "bytes": p.stat().st_size}
                          for p in _files(folder)}}
    write_json(folder / MANIFEST_FILE, manifest)
    return manifest


def verify(folder: str | Path) -> dict:
    """Check every file against ``manifest.json``; raise :class:`ArtifactError` naming what differs."""
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ArtifactError(f"{path}: unreadable manifest ({type(e).__name__}: {e})") from None
    for rel, meta in files.items():
        p = folder / rel
        if not p.is_file():
            raise ArtifactError(f"{p}: listed in the manifest but missing (incomplete copy or interrupted write?)")
        if p.stat().st_size != meta.get("bytes"):
            raise ArtifactError(f"{p}: size {p.stat().st_size} bytes, the manifest says {meta.get('bytes')} "
                                "(truncated or modified)")
        if file_sha256(p) != meta.get("sha256"):
            raise ArtifactError(f"{p}: content differs from the manifest's sha256 (corrupted or modified)")
    extra = [p.relative_to(folder).as_posix() for p in _files(folder)
             if p.relative_to(folder).as_posix() not in files]
    if extra:
        raise ArtifactError(f"{folder}: files not in the manifest: {extra[:5]} (written after the save?)")
    return manifest


def write_folder(path: str | os.PathLike, fill: Callable[[Path], None], n_items: int | None = None,
                 catalog_sha256: str | None = None) -> Path:
    """Build an artifact in a temporary sibling folder with ``fill(tmp)``, add the manifest, swap it in.

    On failure the temporary folder is removed and an existing artifact at ``path`` is untouched.
    """
    from textrec.io import current_umask

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    old: Path | None = None
    try:
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700 folders
        fill(tmp)
        write_manifest(tmp, n_items, catalog_sha256)
        _fsync_tree(tmp)
        if path.exists():
            if not path.is_dir():
                raise ArtifactError(f"{path}: exists and is not a folder")
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            old.rmdir()
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not path.exists():
            os.replace(old, path)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return path


def fill_model(folder: Path, model_type: str, config: dict[str, Any],
               tensors: dict[str, torch.Tensor] | None = None, catalog=None, users=None,
               extra: Callable[[Path], None] | None = None) -> None:
    """Write an artifact's files into an existing folder (no manifest; see :func:`save_model`).

    ``tensors=None`` means ``extra`` writes ``model.safetensors`` itself (e.g. tied weights).
    """
    from safetensors.torch import save_file

    from textrec.io import json_default

    folder = Path(folder)
    body = {"model_type": model_type, "textrec_version": _version(), "format_version": FORMAT_VERSION,
            "config": config}
    (folder / CONFIG_FILE).write_text(json.dumps(body, indent=2, default=json_default), encoding="utf-8")
    if tensors is not None:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(folder / WEIGHTS_FILE))
    if catalog is not None:
        catalog.save(folder)
    if users is not None:
        users.save(folder)
    if extra is not None:
        extra(folder)


def save_model(path: str | os.PathLike, model_type: str, config: dict[str, Any],
               tensors: dict[str, torch.Tensor] | None = None, catalog=None, users=None,
               extra: Callable[[Path], None] | None = None) -> Path:
    """Write one artifact as a unit: config, weights, catalog, users, engine files, then the manifest."""
    n_items = len(catalog) if catalog is not None else None
    return write_folder(path, lambda tmp: fill_model(tmp, model_type, config, tensors, catalog, users, extra),
                        n_items, catalog.sha256() if catalog is not None else None)


def read_config(folder: str | os.PathLike) -> dict[str, Any]:
    """``config.json`` of a current-format artifact, after verifying the manifest."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ArtifactError(f"{folder}: no such model folder")
    fmt = detect_format(folder)
    if fmt != "current":
        raise ArtifactError(f"{folder}: {fmt}; re-save it with this textrec version")
    verify(folder)
    body = _read_json(folder / CONFIG_FILE)
    if not isinstance(body.get("config"), dict):
        raise ArtifactError(f"{folder / CONFIG_FILE}: field 'config' must be an object")
    if int(body.get("format_version", 0)) > FORMAT_VERSION:
        raise ArtifactError(f"{folder / CONFIG_FILE}: format_version {body['format_version']} is newer than this "
                            f"textrec ({_version()}, format {FORMAT_VERSION}) reads; upgrade textrec")
    return body


def read_tensors(folder: str | os.PathLike) -> dict[str, torch.Tensor]:
    """``model.safetensors`` as tensors; a damaged file raises :class:`ArtifactError` naming it."""
    from safetensors.torch import load_file

    path = Path(folder) / WEIGHTS_FILE
    try:
        return load_file(str(path))
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        raise ArtifactError(f"{path}: cannot read weights ({type(e).__name__}: {e})") from None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{path}: cannot read ({type(e).__name__}: {e})") from None
    if not isinstance(d, dict):
        raise ArtifactError(f"{path}: expected a JSON object")
    return d


def detect_format(folder: str | os.PathLike) -> str:
    """``"current"`` or a sentence naming the legacy format of a folder."""
    folder = Path(folder)
    if (folder / CONFIG_FILE).is_file():
        d = _read_json(folder / CONFIG_FILE)
        if "format_version" in d and "model_type" in d:
            if not (folder / MANIFEST_FILE).is_file():
                raise ArtifactError(f"{folder}: {MANIFEST_FILE} is missing (the save was interrupted or the "
                                    "folder was copied incompletely)")
            return "current"
        if "kind" in d:
            return "a textrec 0.1 explanation model (config.json with 'kind')"
        if "model_type" in d:
            return "a textrec 0.1 core model (config.json with a flat 'model_type')"
    if (folder / "p5_config.json").is_file():
        return "a textrec 0.1 P5 model (p5_config.json)"
    if (folder / "querywriter.json").is_file():
        return "a textrec 0.1 Rec-R1 query writer (querywriter.json)"
    raise ArtifactError(f"{folder}: not a textrec model folder (no {CONFIG_FILE})")


def load_artifact(path: str | os.PathLike) -> Any:
    """Open any saved artifact: the class named in ``config.json`` rebuilds itself from the folder."""
    from textrec.registry import model_class

    folder = Path(path)
    if not folder.is_dir():
        raise ArtifactError(f"{folder}: no such model folder")
    fmt = detect_format(folder)
    if fmt == "current":
        body = _read_json(folder / CONFIG_FILE)
        return model_class(str(body["model_type"])).from_pretrained(folder)
    legacy = {"a textrec 0.1 core model": None, "a textrec 0.1 P5 model": "P5",
              "a textrec 0.1 explanation model": None}
    for prefix, name in legacy.items():
        if fmt.startswith(prefix):
            warnings.warn(f"{folder}: {fmt}, loaded without verification; re-save it to add a manifest",
                          LegacyArtifactWarning, stacklevel=2)
            if name is None and (folder / "explain_data.json").is_file():
                name = "Explainer"
            elif name is None and "explanation" in prefix:
                kind = str(_read_json(folder / CONFIG_FILE).get("kind"))
                name = {"peter": "PETER", "erra": "ERRA", "erra_t5": "ERRA-T5", "erra_lm": "ERRA-LM"}.get(kind, kind)
            elif name is None:
                name = str(_read_json(folder / CONFIG_FILE)["model_type"])
            return model_class(name).from_pretrained(folder)
    raise ArtifactError(f"{folder}: {fmt}; this textrec reads format {FORMAT_VERSION}: retrain or re-save "
                        "it with textrec 0.1 and convert")


__all__ = ["ArtifactError", "LegacyArtifactWarning", "FORMAT_VERSION", "save_model", "read_config", "read_tensors",
           "verify", "write_manifest", "write_folder", "fill_model", "detect_format", "load_artifact", "file_sha256"]
