"""Retrieval environment: BM25 (bm25s) and dense (MiniLM + FAISS) over a :class:`Catalog`.

All retrievers (and the hybrid of the two, :class:`HybridRetriever`) share one interface:

* ``search(queries, k, exclude=None) -> (items, scores)``: ``(n_queries, k)`` arrays, best
  first, ties broken by lower item index (the project's tie rule), batched;
* ``target_ranks(queries, targets, exclude=None)``: the 0-based rank of each target in the
  full catalog ranking, computed as *the number of items scoring higher* (plus tied items of
  lower index) — a linear count, no sort of the catalog;
* ``ranking_scores(queries, exclude)``: the score rows a recommender hands to the evaluation
  harness. Top-k and ranks come from :mod:`textrec.metrics.ranking`, the project's one
  implementation;
* ``save(folder)`` / ``load_retriever(folder)``: arrays as ``.npy``/``.npz``/FAISS files and
  JSON, never pickle.

``exclude`` lists item indexes per query (the user's history) that can never be returned or
counted: the full-ranking protocol masks the history.

A BM25 target the query does not match at all (score 0) counts as *not retrieved*: otherwise
an empty query would rank the lowest item indexes first and earn reward for nothing. Such a
target (and a masked one) scores ``-inf`` and gets rank ``MISS`` (2**62, the core's
"unreachable" rank), beyond any k. Dense ranks are exact inner products even when ``search`` uses HNSW.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from textrec.io import atomic_write_text
from textrec.metrics.ranking import target_ranks, topk_items
from textrec.query.catalog import Catalog
from textrec.text.words import search_stopwords, search_terms

RETRIEVER_FILE = "retriever.json"
BM25_TOKENIZER = "textrec.text.words.search_terms (lowercase [a-z0-9]+ minus bm25s English stopwords)"


tokenize = search_terms  # the BM25 analyzer (textrec.text.words)


def _as_excludes(exclude, n: int) -> list[np.ndarray]:
    if exclude is None:
        return [np.zeros(0, dtype=np.int64)] * n
    if len(exclude) != n:
        raise ValueError(f"exclude has {len(exclude)} rows for {n} queries")
    return [np.asarray(e, dtype=np.int64).reshape(-1) for e in exclude]


class Retriever:
    """Common logic: subclasses provide ``score_matrix(queries)`` and persistence.

    Ranking goes through :mod:`textrec.metrics.ranking` (the project's one top-k and rank
    implementation): a row is masked to ``-inf`` where an item is excluded or not retrieved at
    all, and ``-inf`` is what the ranking code treats as unreachable.
    """

    kind = "base"
    catalog: Catalog

    @property
    def n_items(self) -> int:
        return len(self.catalog)

    def settings(self) -> dict:
        """The options that change the index or the scores (part of the cache key)."""
        return {}

    def score_matrix(self, queries: Sequence[str]) -> np.ndarray:
        """Full score rows ``(len(queries), n_items)`` (float32)."""
        raise NotImplementedError

    def _not_retrieved(self, scores: np.ndarray) -> np.ndarray:
        """Boolean mask of items a query did not retrieve at all (none for dense retrieval)."""
        return np.isnan(scores)

    def ranking_scores(self, queries: Sequence[str], exclude=None) -> torch.Tensor:
        """Score rows as a tensor with excluded and unretrieved items at ``-inf``."""
        if isinstance(queries, str):
            raise TypeError("pass a list of queries, not one string")
        ex = _as_excludes(exclude, len(queries))
        s = np.array(self.score_matrix(list(queries)), dtype=np.float32, copy=True)
        s[self._not_retrieved(s)] = -np.inf
        for i, e in enumerate(ex):
            if len(e):
                s[i, e] = -np.inf
        return torch.from_numpy(s)

    def search(self, queries: Sequence[str], k: int = 10, exclude=None, chunk: int = 256
               ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item indexes and scores per query (best first; ties by lower index).

        Slots beyond the retrieved items (everything else excluded or unmatched) hold -1 / -inf.
        """
        k = min(int(k), self.n_items)
        items = np.full((len(queries), k), -1, dtype=np.int64)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ex_all = _as_excludes(exclude, len(queries))
        for start in range(0, len(queries), chunk):
            s = self.ranking_scores(list(queries[start:start + chunk]), ex_all[start:start + chunk])
            idx, val = topk_items(s, k)
            idx, val = idx.numpy(), val.numpy()
            found = np.isfinite(val)
            items[start:start + len(s)] = np.where(found, idx, -1)
            scores[start:start + len(s)] = np.where(found, val, -np.inf)
        return items, scores

    def target_ranks(self, queries: Sequence[str], targets: Sequence[int], exclude=None, chunk: int = 256
                     ) -> np.ndarray:
        """0-based full-catalog rank of each query's target (``MISS`` = not retrieved)."""
        if len(targets) != len(queries):
            raise ValueError(f"{len(queries)} queries but {len(targets)} targets")
        tg = np.asarray(targets, dtype=np.int64).reshape(-1)
        bad = (tg < 0) | (tg >= self.n_items)
        if bad.any():
            raise ValueError(f"target item {int(tg[bad][0])} outside the catalog (0..{self.n_items - 1})")
        out = np.zeros(len(queries), dtype=np.int64)
        ex_all = _as_excludes(exclude, len(queries))
        for start in range(0, len(queries), chunk):
            s = self.ranking_scores(list(queries[start:start + chunk]), ex_all[start:start + chunk])
            rows = torch.arange(len(s))
            out[start:start + len(s)] = target_ranks(s, rows, torch.from_numpy(tg[start:start + len(s)])).numpy()
        return out

    def target_rank(self, query: str, target: int, exclude: Sequence[int] | None = None) -> int:
        """The rank of one target for one query (see :meth:`target_ranks`)."""
        return int(self.target_ranks([query], [target], None if exclude is None else [exclude])[0])

    def save(self, folder: str | os.PathLike) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class BM25Retriever(Retriever):
    """Okapi BM25 (Lucene variant, bm25s) over the catalog documents."""

    kind = "bm25"

    def __init__(self, catalog: Catalog, k1: float = 1.2, b: float = 0.75, _index=None):
        import bm25s

        self.catalog = catalog
        self.k1, self.b = float(k1), float(b)
        self._sw = search_stopwords()
        if _index is None:
            corpus = [tokenize(d, self._sw) for d in catalog.documents]
            # An item with no token would break bm25s; a placeholder token keeps indexes aligned.
            corpus = [c if c else ["__empty__"] for c in corpus]
            _index = bm25s.BM25(k1=self.k1, b=self.b, method="lucene")
            _index.index(corpus, show_progress=False)
        self.index = _index

    def score_matrix(self, queries: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(queries), self.n_items), dtype=np.float32)
        for i, q in enumerate(queries):
            ids = self.index.get_tokens_ids(tokenize(q, self._sw))
            if ids:
                out[i] = self.index.get_scores_from_ids(ids)
        return out

    def _not_retrieved(self, scores: np.ndarray) -> np.ndarray:
        # Score 0 means no query term occurs in the item: not retrieved at all.
        return ~(scores > 0.0)

    def settings(self) -> dict:
        return {"k1": self.k1, "b": self.b, "method": "lucene", "tokenizer": BM25_TOKENIZER}

    def save(self, folder: str | os.PathLike) -> None:
        """Write the index (bm25s ``.npy`` + JSON, no pickle), the catalog and ``retriever.json``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-bm25-", dir=folder))
        try:
            self.index.save(str(tmp), allow_pickle=False, show_progress=False)
            dest = folder / "bm25"
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.catalog.save(folder)
        _write_config(self, folder)

    @classmethod
    def load(cls, folder: str | os.PathLike) -> BM25Retriever:
        """Read what :meth:`save` wrote."""
        import bm25s

        folder = Path(folder)
        cfg, catalog = _read_config(folder)
        index = bm25s.BM25.load(str(folder / "bm25"), allow_pickle=False, show_progress=False)
        r = cls(catalog, k1=cfg["k1"], b=cfg["b"], _index=index)
        if int(r.index.scores["num_docs"]) != len(catalog):
            raise ValueError(f"{folder}: the BM25 index holds {r.index.scores['num_docs']} documents, "
                             f"the catalog {len(catalog)}")
        return r


def encoder_identity(encoder) -> str:
    """What names an encoder in a cache key: its ``identity`` (model + file fingerprint) or its class."""
    ident = getattr(encoder, "identity", None)
    if callable(ident):
        ident = ident()
    return str(ident) if ident else f"custom:{type(encoder).__qualname__}"


class DenseRetriever(Retriever):
    """Sentence embeddings (default: bundled all-MiniLM-L6-v2) + a FAISS inner-product index.

    ``index_type``: ``flat`` (exact) or ``hnsw`` (approximate search; ``target_ranks`` stays
    exact because it scores the stored embeddings directly).
    """

    kind = "dense"

    def __init__(self, catalog: Catalog, model: str | None = None, index_type: str = "flat",
                 hnsw_m: int = 32, ef_search: int = 128, batch_size: int = 64, progress: bool = True,
                 encoder=None, _embeddings: np.ndarray | None = None, _faiss_index=None):
        from textrec.text.encoder import TextEncoder

        if index_type not in ("flat", "hnsw"):
            raise ValueError(f"index_type must be 'flat' or 'hnsw', not {index_type!r}")
        self.catalog = catalog
        self.model = model
        self.index_type = index_type
        self.hnsw_m, self.ef_search = int(hnsw_m), int(ef_search)
        self.encoder_name = None
        if encoder is not None:  # any object with encode(texts, progress=...) -> unit vectors
            self._doc_encoder = self._query_encoder = encoder
            self.encoder_name = encoder_identity(encoder)
        else:
            # Documents go through the on-disk cache; queries do not (GRPO writes thousands of
            # one-off queries, which would only churn cache shards).
            self._doc_encoder = TextEncoder(model, batch_size=batch_size)
            self._query_encoder = TextEncoder(model, batch_size=batch_size, cache_dir=False)
            self.encoder_name = encoder_identity(self._doc_encoder)
        if _embeddings is None:
            _embeddings = self._doc_encoder.encode(catalog.documents, progress=progress)
        self.embeddings = np.ascontiguousarray(_embeddings, dtype=np.float32)
        self.faiss_index = _faiss_index if _faiss_index is not None else self._build_index()

    def _build_index(self):
        import faiss

        d = self.embeddings.shape[1]
        if self.index_type == "flat":
            idx = faiss.IndexFlatIP(d)
        else:
            idx = faiss.IndexHNSWFlat(d, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            idx.hnsw.efSearch = self.ef_search
        idx.add(self.embeddings)
        return idx

    def settings(self) -> dict:
        return {"model": self.model, "encoder": self.encoder_name, "index_type": self.index_type,
                "hnsw_m": self.hnsw_m, "ef_search": self.ef_search}

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        """Query vectors (normalized like the documents), memoised: a benchmark runs one query
        through the dense and the hybrid retriever, GRPO groups repeat queries."""
        qs = [str(q) for q in queries]
        memo = self.__dict__.setdefault("_query_memo", {})
        todo = list(dict.fromkeys(q for q in qs if q not in memo))
        if todo:
            if len(memo) + len(todo) > 100_000:
                memo.clear()  # a plain bound: the memo only saves time
            for q, v in zip(todo, self._query_encoder.encode(todo, progress=False)):
                memo[q] = np.asarray(v, dtype=np.float32)
        if not qs:
            return np.zeros((0, self.embeddings.shape[1]), dtype=np.float32)
        return np.stack([memo[q] for q in qs])

    def score_matrix(self, queries: Sequence[str]) -> np.ndarray:
        if not len(queries):
            return np.zeros((0, self.n_items), dtype=np.float32)
        return self.encode_queries(queries) @ self.embeddings.T

    def search(self, queries: Sequence[str], k: int = 10, exclude=None, chunk: int = 256
               ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k per query: exact for ``flat``; through the HNSW graph for ``hnsw``.

        The HNSW path over-fetches by the excluded count, then ranks the fetched candidates with
        the shared top-k (ties by lower index).
        """
        if self.index_type == "flat":
            return super().search(queries, k, exclude, chunk)
        if isinstance(queries, str):
            raise TypeError("pass a list of queries, not one string")
        k = min(int(k), self.n_items)
        ex = _as_excludes(exclude, len(queries))
        items = np.full((len(queries), k), -1, dtype=np.int64)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        if not len(queries):
            return items, scores
        fetch = min(self.n_items, k + max((len(e) for e in ex), default=0))
        for start in range(0, len(queries), chunk):
            q = self.encode_queries(list(queries[start:start + chunk]))
            d, i = self.faiss_index.search(q, fetch)
            for j in range(len(q)):
                row = torch.full((self.n_items,), float("-inf"))
                keep = i[j] >= 0
                row[torch.from_numpy(i[j][keep])] = torch.from_numpy(d[j][keep].astype(np.float32))
                if len(ex[start + j]):
                    row[torch.from_numpy(ex[start + j])] = float("-inf")
                idx, val = topk_items(row[None], k)
                found = torch.isfinite(val[0]).numpy()
                items[start + j] = np.where(found, idx[0].numpy(), -1)
                scores[start + j] = np.where(found, val[0].numpy(), -np.inf)
        return items, scores

    def save(self, folder: str | os.PathLike) -> None:
        """Write embeddings (``.npz``), the FAISS index, the catalog and ``retriever.json``."""
        import faiss

        from textrec.text.encoder import _atomic_write_npz

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        _atomic_write_npz(folder / "embeddings.npz", embeddings=self.embeddings)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".faiss", dir=folder)
        os.close(fd)
        faiss.write_index(self.faiss_index, tmp)
        os.replace(tmp, folder / "index.faiss")
        self.catalog.save(folder)
        _write_config(self, folder, dim=int(self.embeddings.shape[1]))

    @classmethod
    def load(cls, folder: str | os.PathLike, encoder=None) -> DenseRetriever:
        """Read what :meth:`save` wrote (``encoder``: the same custom encoder, if one was used)."""
        import faiss

        folder = Path(folder)
        cfg, catalog = _read_config(folder)
        with np.load(folder / "embeddings.npz", allow_pickle=False) as z:
            emb = z["embeddings"]
        if emb.shape[0] != len(catalog):
            raise ValueError(f"{folder}: {emb.shape[0]} embeddings for {len(catalog)} catalog items")
        index = faiss.read_index(str(folder / "index.faiss"))
        if cfg.get("index_type") == "hnsw":
            faiss.downcast_index(index).hnsw.efSearch = int(cfg.get("ef_search", 128))
        return cls(catalog, model=cfg.get("model"), index_type=cfg.get("index_type", "flat"),
                   hnsw_m=cfg.get("hnsw_m", 32), ef_search=cfg.get("ef_search", 128),
                   encoder=encoder, _embeddings=emb, _faiss_index=index)


class HybridRetriever(Retriever):
    """Dense + BM25: ``dense_weight * cosine + (1 - dense_weight) * bm25 / max_bm25(query)``.

    BM25 scores are unbounded and differ in scale from query to query, so each row is divided by
    its own maximum (a matched item then scores in (0, 1], an unmatched one 0), the range the
    cosine lives in. Every item is retrieved (the dense part scores all of them), so a query that
    matches no word still ranks by meaning. Both parts are the saved single retrievers; the hybrid
    has no index of its own.
    """

    kind = "hybrid"

    def __init__(self, dense: DenseRetriever, bm25: BM25Retriever, dense_weight: float = 0.5):
        if dense.catalog.sha256() != bm25.catalog.sha256():
            raise ValueError("the dense and BM25 parts of a hybrid retriever index different catalogs")
        if not 0.0 <= dense_weight <= 1.0:
            raise ValueError(f"dense_weight must be in [0, 1], got {dense_weight}")
        self.dense, self.bm25, self.dense_weight = dense, bm25, float(dense_weight)
        self.catalog = dense.catalog

    def settings(self) -> dict:
        return {"dense_weight": self.dense_weight, "dense": self.dense.settings(), "bm25": self.bm25.settings()}

    def score_matrix(self, queries: Sequence[str]) -> np.ndarray:
        d = self.dense.score_matrix(queries)
        b = self.bm25.score_matrix(queries)
        top = b.max(axis=1, keepdims=True)
        b = np.divide(b, top, out=np.zeros_like(b), where=top > 0)
        return (self.dense_weight * d + (1.0 - self.dense_weight) * b).astype(np.float32)

    def save(self, folder: str | os.PathLike) -> None:
        """Nothing of its own: save the dense and BM25 parts (see :func:`retriever_for_dataset`)."""
        raise NotImplementedError("a hybrid retriever is rebuilt from its saved dense and BM25 parts")


RETRIEVERS = {"bm25": BM25Retriever, "dense": DenseRetriever}
#: every kind a query can be run against (the hybrid is built from the two saved ones)
RETRIEVER_KINDS = ("bm25", "dense", "hybrid")


def _write_config(r: Retriever, folder: Path, **extra) -> None:
    """``retriever.json``: kind, settings and the hash of the catalog the index was built from."""
    atomic_write_text(folder / RETRIEVER_FILE, json.dumps(
        {"kind": r.kind, **r.settings(), "catalog_sha256": r.catalog.sha256(), **extra}, indent=1))


def _read_config(folder: Path) -> tuple[dict, Catalog]:
    """``retriever.json`` and the catalog beside it, checked against each other."""
    path = folder / RETRIEVER_FILE
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from None
    catalog = Catalog.load(folder)
    want = cfg.get("catalog_sha256")
    if want is None:
        raise ValueError(f"{path}: no catalog hash (written by an older version); rebuild the index")
    if want != catalog.sha256():
        raise ValueError(f"{path}: the index was built for another catalog (catalog.json hash differs)")
    return cfg, catalog


def build_retriever(kind: str, catalog: Catalog, **kw) -> Retriever:
    """``bm25`` or ``dense`` over ``catalog`` (keyword options go to the class)."""
    if kind == "hybrid":
        w = kw.pop("dense_weight", 0.5)
        return HybridRetriever(DenseRetriever(catalog, **kw), BM25Retriever(catalog), dense_weight=w)
    if kind not in RETRIEVERS:
        raise ValueError(f"unknown retriever '{kind}'; choose from {list(RETRIEVER_KINDS)}")
    return RETRIEVERS[kind](catalog, **kw)


def load_retriever(folder: str | os.PathLike, **kw) -> Retriever:
    """Load any retriever saved with ``save`` (its kind is read from ``retriever.json``)."""
    path = Path(folder) / RETRIEVER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no saved retriever here")
    try:
        kind = json.loads(path.read_text(encoding="utf-8"))["kind"]
    except (json.JSONDecodeError, KeyError) as e:
        raise ValueError(f"{path}: unreadable retriever config ({e})") from None
    if kind not in RETRIEVERS:
        raise ValueError(f"{path}: unknown retriever kind '{kind}'")
    return RETRIEVERS[kind].load(folder, **kw)


def cache_key(kind: str, catalog: Catalog, settings: dict) -> str:
    """A content key for a retriever: catalog hash + kind + settings (encoder included)."""
    blob = json.dumps({"kind": kind, "catalog": catalog.sha256(), "settings": settings}, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:20]


def _matches(r: Retriever, kind: str, catalog: Catalog, settings: dict) -> str | None:
    """Why a loaded retriever does not fit the request (``None`` when it does)."""
    if r.kind != kind:
        return f"kind {r.kind} != {kind}"
    if r.catalog.sha256() != catalog.sha256():
        return "catalog content differs"
    got = r.settings()
    diff = sorted(k for k in settings if got.get(k) != settings[k])
    return f"settings differ: {diff}" if diff else None


def retriever_for_dataset(ds, kind: str, cache_dir: str | os.PathLike | None = None, progress: bool = True,
                          catalog: Catalog | None = None, **kw) -> Retriever:
    """A retriever over a dataset's catalog, reusing a cached index only when its content matches.

    The cache folder is named by the dataset, the kind and a key over the catalog's content
    hash and the retriever settings (the encoder's identity for dense); a loaded index is
    checked against the catalog and settings again, so two datasets with one name never share
    an index.
    """
    if kind == "hybrid":
        w = kw.pop("dense_weight", 0.5)
        catalog = catalog if catalog is not None else Catalog.from_dataset(ds, verbose=progress)
        parts = {k: retriever_for_dataset(ds, k, cache_dir, progress, catalog, **(kw if k == "dense" else {}))
                 for k in ("dense", "bm25")}
        return HybridRetriever(parts["dense"], parts["bm25"], dense_weight=w)
    if kind not in RETRIEVERS:
        raise ValueError(f"unknown retriever '{kind}'; choose from {list(RETRIEVER_KINDS)}")
    catalog = catalog if catalog is not None else Catalog.from_dataset(ds, verbose=progress)
    if kind == "dense":
        kw.setdefault("progress", progress)
    if cache_dir is None:
        return build_retriever(kind, catalog, **kw)
    settings = _requested_settings(kind, kw)
    slug = re.sub(r"[^A-Za-z0-9_.-]", "_", str(getattr(ds, "name", "") or catalog.name))[:40] or "catalog"
    folder = Path(cache_dir) / f"{slug}-{kind}-{cache_key(kind, catalog, settings)}"
    if (folder / RETRIEVER_FILE).is_file():
        try:
            loaded = load_retriever(folder, **({"encoder": kw["encoder"]} if "encoder" in kw else {}))
            why = _matches(loaded, kind, catalog, settings)
            if why is None:
                return loaded
            print(f"textrec: rebuilding retriever in {folder}: {why}", file=sys.stderr)
        except (OSError, ValueError, KeyError) as e:
            print(f"textrec: rebuilding retriever in {folder}: {e}", file=sys.stderr)
    r = build_retriever(kind, catalog, **kw)
    r.save(folder)
    return r


def _requested_settings(kind: str, kw: dict) -> dict:
    """The settings a retriever built with ``kw`` will report (without building it)."""
    if kind == "bm25":
        return {"k1": float(kw.get("k1", 1.2)), "b": float(kw.get("b", 0.75)), "method": "lucene",
                "tokenizer": BM25_TOKENIZER}
    from textrec.text.encoder import TextEncoder

    enc = kw.get("encoder")
    name = encoder_identity(enc if enc is not None else TextEncoder(kw.get("model")))
    return {"model": kw.get("model"), "encoder": name, "index_type": kw.get("index_type", "flat"),
            "hnsw_m": int(kw.get("hnsw_m", 32)), "ef_search": int(kw.get("ef_search", 128))}
