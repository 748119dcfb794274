"""Rec-R1 as a recommender: a query is written from the user's recent items, and the item scores
are the retriever's scores for that query.

``QueryRecommender`` implements :class:`textrec.models.base.Recommender`, so the one evaluation
harness (:func:`textrec.evaluation.evaluate`) ranks it like any other model: full catalog,
history masked, ties by lower index. The query comes from

* a trained (or untrained) LLM query writer (``query="llm"``, :class:`QueryWriter`), or
* a heuristic without any LLM (``raw_history``, ``last_title``, ``last_two_titles``,
  ``all_titles``, ``keywords``; :mod:`textrec.query.heuristics`).

Items a BM25 query does not match at all score ``-inf`` (not retrieved): the same rule the GRPO
reward uses, so the harness's NDCG of this model is the reward's NDCG. Unretrieved items are
never recommended, so ``recommend`` may return fewer than ``k`` items for a narrow query.

Two views of the items: ``self.catalog`` is the artifact contract's
:class:`textrec.catalog.Catalog` (original ids, text, titles; what ``save_pretrained`` writes as
``catalog.json``), ``self.search_catalog`` the retrieval view (documents indexed, titles shown in
prompts; :class:`textrec.query.catalog.Catalog`), saved as ``query_catalog.json`` so prompts are
identical after loading. A saved folder also holds, for an LLM writer, ``writer/`` (LoRA adapter
or full weights as safetensors, plus ``querywriter.json``). The retriever is rebuilt from the
search catalog and its settings on load (the index is a cache, not state).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from textrec.models.base import Recommender, TrainView
from textrec.query.catalog import Catalog
from textrec.query.heuristics import (
    DEFAULT_MAX_WORDS,
    HEURISTICS,
    heuristic_query,
    term_weights,
)
from textrec.query.retrieval import RETRIEVER_KINDS
from textrec.query.tasks import ContextBuilder, QueryTask

QUERY_KINDS = (*HEURISTICS, "llm")
WRITER_DIR = "writer"
SEARCH_CATALOG_FILE = "query_catalog.json"


class QueryRecommender(Recommender):
    """Scores = retriever scores of a query written from the history (LLM or heuristic)."""

    name = "QueryRec"
    scores_new_items = True  # text retrieval reaches items without training events

    def __init__(self, query: str = "raw_history", retriever: str = "bm25", max_history: int = 8,
                 max_query_words: int = DEFAULT_MAX_WORDS, retriever_options: dict[str, Any] | None = None,
                 generation_batch_size: int = 32, writer_query_words: int | None = None, catalog: Any = None,
                 writer=None, query_cache: dict | None = None):
        if query not in QUERY_KINDS:
            raise ValueError(f"query must be one of {list(QUERY_KINDS)}, not {query!r}")
        if retriever not in RETRIEVER_KINDS:
            raise ValueError(f"retriever must be one of {list(RETRIEVER_KINDS)}, not {retriever!r}")
        if max_history < 1 or max_query_words < 1:
            raise ValueError("max_history and max_query_words must be >= 1")
        self.query, self.retriever_kind = query, retriever
        self.max_history, self.max_query_words = int(max_history), int(max_query_words)
        self.retriever_options = dict(retriever_options or {})
        self.generation_batch_size = int(generation_batch_size)
        # the query budget holds for every query, LLM or heuristic (an older name of the same cut)
        self.writer_query_words = int(writer_query_words or max_query_words)
        self.max_query_words = min(self.max_query_words, self.writer_query_words)
        self.writer = writer
        if writer is not None and query != "llm":
            raise ValueError(f"a writer was given but query is {query!r}; use query='llm'")
        if writer is not None and int(writer.max_history) != self.max_history:
            self.max_history = int(writer.max_history)  # the writer was trained on this many titles
        self.search_catalog: Catalog | None = None
        self.retriever = None
        # written queries by (user, shown history); share one dict between recommenders that use
        # the same writer (e.g. one per retriever) so the LLM writes each query once
        self._queries: dict[tuple, str] = {} if query_cache is None else query_cache
        if catalog is not None:
            self.set_catalog(catalog)

    @classmethod
    def from_writer(cls, writer, catalog: Any, retriever: str = "bm25", **kw) -> QueryRecommender:
        """A recommender around a :class:`QueryWriter` (e.g. after SFT or GRPO)."""
        return cls(query="llm", retriever=retriever, max_history=writer.max_history, catalog=catalog,
                   writer=writer, **kw)

    # ---- setup ----------------------------------------------------------------------------
    def set_catalog(self, catalog: Any, retriever=None, cache_dir=None) -> QueryRecommender:
        """Search ``catalog`` (a search catalog or an item catalog with text) with ``retriever`` (else one is
        built, or loaded from ``cache_dir``)."""
        from textrec.catalog import Catalog as ItemCatalog
        from textrec.query.retrieval import retriever_for_dataset

        if isinstance(catalog, ItemCatalog):
            catalog = Catalog.from_item_catalog(catalog)

        if retriever is not None:
            if retriever.kind != self.retriever_kind or retriever.catalog.sha256() != catalog.sha256():
                raise ValueError(f"the given {retriever.kind} retriever is not over this catalog "
                                 f"or not of kind {self.retriever_kind}")
        else:
            retriever = retriever_for_dataset(None, self.retriever_kind, cache_dir=cache_dir, progress=False,
                                              catalog=catalog, **self.retriever_options)
        if self.search_catalog is not catalog and self.search_catalog is not None:
            self._queries.clear()  # queries show titles: another catalog, other queries
        self.search_catalog, self.retriever = catalog, retriever
        self.catalog = catalog.to_item_catalog()
        self._context = ContextBuilder(catalog, None, max_history=self.max_history)
        return self

    def fit(self, data: TrainView, progress: bool = True) -> QueryRecommender:
        """Nothing to learn here (the writer is trained by SFT/GRPO); builds the search catalog if unset."""
        if self.search_catalog is None:
            if data.catalog is not None and data.catalog.text is not None:
                self.set_catalog(Catalog.from_item_catalog(data.catalog, name=data.dataset_name or "catalog"))
            elif data.item_text is not None:
                self.set_catalog(Catalog.from_texts(list(data.item_text), name=data.dataset_name or "catalog"))
            else:
                raise ValueError("QueryRecommender needs item text: fit it on a TrainView built with_text=True "
                                 "or pass a catalog")
        elif len(self.search_catalog) != data.n_items:
            raise ValueError(f"catalog has {len(self.search_catalog)} items, the data {data.n_items}")
        if self.query == "llm" and self.writer is None:
            raise ValueError("query='llm' needs a writer (QueryRecommender.from_writer)")
        return self

    # ---- queries and scores ---------------------------------------------------------------
    def _require_ready(self) -> None:
        if self.search_catalog is None or self.retriever is None:
            raise RuntimeError("QueryRecommender has no catalog yet: call fit() or set_catalog()")

    def queries(self, users: np.ndarray, histories: list[np.ndarray], progress: bool = False) -> list[str]:
        """The query written for each (user, history) row (memoised: the LLM writes each once)."""
        self._require_ready()
        for h in histories:
            if len(h) and (int(np.max(h)) >= len(self.search_catalog) or int(np.min(h)) < 0):
                raise ValueError(f"history item outside the catalog (0..{len(self.search_catalog) - 1})")
        keys = [(int(u), tuple(int(x) for x in np.asarray(h)[-self.max_history:])) for u, h in zip(users, histories)]
        todo = [i for i, k in enumerate(keys) if k not in self._queries]
        if todo:
            contexts = [self._context(keys[i][0], keys[i][1]) for i in todo]
            if self.query == "llm":
                tasks = [QueryTask(user=keys[i][0], history=np.asarray(keys[i][1], dtype=np.int64), target=-1,
                                   context=c) for i, c in zip(todo, contexts)]
                new = self.writer.write(tasks, max_words=self.max_query_words, batch_size=self.generation_batch_size,
                                        progress=progress)
            else:
                weights = term_weights(self.search_catalog) if self.query == "tfidf_keywords" else None
                new = [heuristic_query(self.query, c, self.max_query_words, weights) for c in contexts]
            for i, q in zip(todo, new):
                self._queries[keys[i]] = q
        return [self._queries[k] for k in keys]

    def score(self, users: np.ndarray, histories: list[np.ndarray]) -> torch.Tensor:
        """Retriever scores of each row's query; unretrieved items at ``-inf`` (never recommended)."""
        qs = self.queries(np.asarray(users), histories)
        out = torch.full((len(qs), len(self.search_catalog)), float("-inf"))
        rows = [i for i, q in enumerate(qs) if q.strip()]
        if rows:
            out[rows] = self.retriever.ranking_scores([qs[i] for i in rows])
        return out

    # ---- persistence ----------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        return {"query": self.query, "retriever": self.retriever_kind, "max_history": self.max_history,
                "max_query_words": self.max_query_words, "retriever_options": self.retriever_options,
                "generation_batch_size": self.generation_batch_size, "writer_query_words": self.writer_query_words}

    def save_extra(self, path: Path) -> None:
        self._require_ready()
        self.search_catalog.save(path, SEARCH_CATALOG_FILE)
        if self.writer is not None:
            self.writer.save_pretrained(Path(path) / WRITER_DIR)

    def load_extra(self, path: Path) -> None:
        path = Path(path)
        if self.query == "llm":
            from textrec.query.policy import QueryWriter

            if not (path / WRITER_DIR).is_dir():
                raise FileNotFoundError(f"{path / WRITER_DIR}: a query='llm' recommender needs its saved writer")
            self.writer = QueryWriter.from_pretrained(path / WRITER_DIR)
        self.set_catalog(Catalog.load(path, SEARCH_CATALOG_FILE))


__all__ = ["QueryRecommender", "QUERY_KINDS"]
