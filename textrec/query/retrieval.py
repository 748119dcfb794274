"""Retrieval environment: BM25 (bm25s) and dense (MiniLM + FAISS) over a :class:`Catalog`.

Both retrievers share one interface:

* ``search(queries, k, exclude=None) -> (items, scores)``: ``(n_queries, k)`` arrays, best
  first, ties broken by lower item index (the project's tie rule), batched;
* ``target_ranks(queries, targets, exclude=None)``: the 0-based rank of each target in the
  full catalog ranking, computed as *the number of items scoring higher* (plus tied items of
  lower index) — a linear count, no sort of the catalog;
* ``save(folder)`` / ``load_retriever(folder)``: arrays as ``.npy``/``.npz``/FAISS files and
  JSON, never pickle.

``exclude`` lists item indexes per query (the user's history) that can never be returned or
counted: the full-ranking protocol masks the history.

A BM25 target the query does not match at all (score 0) counts as *not retrieved*: otherwise
an empty query would rank the lowest item indexes first and earn reward for nothing. Such a
target (and a masked one) gets rank ``MISS`` (2**62, the core's "unreachable" rank), beyond
any k. Dense ranks are exact inner products even when ``search`` uses HNSW.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from textrec.io import atomic_write_text
from textrec.metrics.ranking import MISS
from textrec.query.catalog import Catalog
from textrec.text.words import search_stopwords, search_terms

RETRIEVER_FILE = "retriever.json"


tokenize = search_terms  # the BM25 analyzer (textrec.text.words)


def _as_excludes(exclude, n: int) -> list[np.ndarray]:
    if exclude is None:
        return [np.zeros(0, dtype=np.int64)] * n
    if len(exclude) != n:
        raise ValueError(f"exclude has {len(exclude)} rows for {n} queries")
    return [np.asarray(e, dtype=np.int64).reshape(-1) for e in exclude]


def topk_row(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of one score row (``-inf`` = excluded), ties by lower index, without a full sort."""
    n = len(scores)
    k = min(k, n)
    if k <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    kth = np.partition(scores, n - k)[n - k]  # the k-th largest value
    above = np.flatnonzero(scores > kth)
    tied = np.flatnonzero(scores == kth)[: k - len(above)]
    cand = np.concatenate([above, tied])
    order = np.lexsort((cand, -scores[cand]))
    idx = cand[order]
    idx = idx[~np.isneginf(scores[idx])]  # excluded items never come back, even to fill k
    return idx.astype(np.int64), scores[idx].astype(np.float32)


def rank_in_row(scores: np.ndarray, target: int) -> int:
    """0-based rank of ``target`` under the tie rule: items scoring higher + tied items of lower index."""
    s = scores[target]
    if np.isneginf(s) or np.isnan(s):
        return MISS
    return int(np.count_nonzero(scores > s) + np.count_nonzero(scores[:target] == s))


class Retriever:
    """Common logic: subclasses provide ``score_matrix(queries)`` and persistence."""

    kind = "base"
    catalog: Catalog

    @property
    def n_items(self) -> int:
        return len(self.catalog)

    def score_matrix(self, queries: Sequence[str]) -> np.ndarray:
        """Full score rows ``(len(queries), n_items)`` (float32)."""
        raise NotImplementedError

    def _masked(self, queries: Sequence[str], exclude) -> tuple[np.ndarray, list[np.ndarray]]:
        if isinstance(queries, str):
            raise TypeError("pass a list of queries, not one string")
        ex = _as_excludes(exclude, len(queries))
        s = self.score_matrix(list(queries)).astype(np.float32, copy=True)
        for i, e in enumerate(ex):
            if len(e):
                s[i, e] = -np.inf
        return s, ex

    def search(self, queries: Sequence[str], k: int = 10, exclude=None, chunk: int = 256
               ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item indexes and scores per query (best first; ties by lower index)."""
        k = min(int(k), self.n_items)
        items = np.zeros((len(queries), k), dtype=np.int64)
        scores = np.zeros((len(queries), k), dtype=np.float32)
        ex_all = _as_excludes(exclude, len(queries))
        for start in range(0, len(queries), chunk):
            q = list(queries[start:start + chunk])
            s, _ = self._masked(q, ex_all[start:start + chunk])
            for j in range(len(q)):
                idx, val = topk_row(s[j], k)
                items[start + j, :len(idx)] = idx
                scores[start + j, :len(idx)] = val
                if len(idx) < k:  # everything else excluded: pad with -1
                    items[start + j, len(idx):] = -1
                    scores[start + j, len(idx):] = -np.inf
        return items, scores

    def _is_miss(self, score: float) -> bool:
        return bool(np.isneginf(score) or np.isnan(score))

    def target_ranks(self, queries: Sequence[str], targets: Sequence[int], exclude=None, chunk: int = 256
                     ) -> np.ndarray:
        """0-based full-catalog rank of each query's target (``MISS`` = not retrieved)."""
        if len(targets) != len(queries):
            raise ValueError(f"{len(queries)} queries but {len(targets)} targets")
        out = np.zeros(len(queries), dtype=np.int64)
        ex_all = _as_excludes(exclude, len(queries))
        for start in range(0, len(queries), chunk):
            q = list(queries[start:start + chunk])
            s, _ = self._masked(q, ex_all[start:start + chunk])
            for j in range(len(q)):
                t = int(targets[start + j])
                if not 0 <= t < self.n_items:
                    raise ValueError(f"target item {t} outside the catalog (0..{self.n_items - 1})")
                out[start + j] = MISS if self._is_miss(s[j, t]) else rank_in_row(s[j], t)
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

    def _is_miss(self, score: float) -> bool:
        # Score 0 means no query term occurs in the item: not retrieved at all.
        return bool(np.isneginf(score) or np.isnan(score) or score <= 0.0)

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
        atomic_write_text(folder / RETRIEVER_FILE, json.dumps(
            {"kind": self.kind, "k1": self.k1, "b": self.b, "tokenizer": "lowercase [a-z0-9]+ minus bm25s English stopwords"},
            indent=1))

    @classmethod
    def load(cls, folder: str | os.PathLike) -> BM25Retriever:
        """Read what :meth:`save` wrote."""
        import bm25s

        folder = Path(folder)
        cfg = json.loads((folder / RETRIEVER_FILE).read_text(encoding="utf-8"))
        index = bm25s.BM25.load(str(folder / "bm25"), allow_pickle=False, show_progress=False)
        return cls(Catalog.load(folder), k1=cfg["k1"], b=cfg["b"], _index=index)


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
        if encoder is not None:  # any object with encode(texts, progress=...) -> unit vectors
            self._doc_encoder = self._query_encoder = encoder
        else:
            # Documents go through the on-disk cache; queries do not (GRPO writes thousands of
            # one-off queries, which would only churn cache shards).
            self._doc_encoder = TextEncoder(model, batch_size=batch_size)
            self._query_encoder = TextEncoder(model, batch_size=batch_size, cache_dir=False)
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

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        """Query vectors (normalized like the documents)."""
        return self._query_encoder.encode([str(q) for q in queries], progress=False)

    def score_matrix(self, queries: Sequence[str]) -> np.ndarray:
        if not len(queries):
            return np.zeros((0, self.n_items), dtype=np.float32)
        return self.encode_queries(queries) @ self.embeddings.T

    def search(self, queries: Sequence[str], k: int = 10, exclude=None, chunk: int = 256
               ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k through FAISS (over-fetching by the excluded count), ties by lower index."""
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
                keep = i[j] >= 0
                ids, vals = i[j][keep], d[j][keep]
                if len(ex[start + j]):
                    m = ~np.isin(ids, ex[start + j])
                    ids, vals = ids[m], vals[m]
                order = np.lexsort((ids, -vals))[:k]
                items[start + j, :len(order)] = ids[order]
                scores[start + j, :len(order)] = vals[order]
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
        atomic_write_text(folder / RETRIEVER_FILE, json.dumps(
            {"kind": self.kind, "model": self.model, "index_type": self.index_type, "hnsw_m": self.hnsw_m,
             "ef_search": self.ef_search, "dim": int(self.embeddings.shape[1])}, indent=1))

    @classmethod
    def load(cls, folder: str | os.PathLike, encoder=None) -> DenseRetriever:
        """Read what :meth:`save` wrote (``encoder``: the same custom encoder, if one was used)."""
        import faiss

        folder = Path(folder)
        cfg = json.loads((folder / RETRIEVER_FILE).read_text(encoding="utf-8"))
        with np.load(folder / "embeddings.npz", allow_pickle=False) as z:
            emb = z["embeddings"]
        index = faiss.read_index(str(folder / "index.faiss"))
        if cfg.get("index_type") == "hnsw":
            faiss.downcast_index(index).hnsw.efSearch = int(cfg.get("ef_search", 128))
        return cls(Catalog.load(folder), model=cfg.get("model"), index_type=cfg.get("index_type", "flat"),
                   hnsw_m=cfg.get("hnsw_m", 32), ef_search=cfg.get("ef_search", 128),
                   encoder=encoder, _embeddings=emb, _faiss_index=index)


RETRIEVERS = {"bm25": BM25Retriever, "dense": DenseRetriever}


def build_retriever(kind: str, catalog: Catalog, **kw) -> Retriever:
    """``bm25`` or ``dense`` over ``catalog`` (keyword options go to the class)."""
    if kind not in RETRIEVERS:
        raise ValueError(f"unknown retriever '{kind}'; choose from {sorted(RETRIEVERS)}")
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


def retriever_for_dataset(ds, kind: str, cache_dir: str | os.PathLike | None = None, progress: bool = True,
                          **kw) -> Retriever:
    """A retriever over a dataset's catalog, reusing a saved index in ``cache_dir`` when present."""
    if cache_dir is not None:
        folder = Path(cache_dir) / f"{ds.name}-{kind}"
        if (folder / RETRIEVER_FILE).is_file():
            try:
                return load_retriever(folder)
            except (OSError, ValueError, KeyError) as e:
                print(f"textrec: rebuilding retriever in {folder}: {e}", file=sys.stderr)
    catalog = Catalog.from_dataset(ds, verbose=progress)
    if kind == "dense":
        kw.setdefault("progress", progress)
    r = build_retriever(kind, catalog, **kw)
    if cache_dir is not None:
        r.save(Path(cache_dir) / f"{ds.name}-{kind}")
    return r
