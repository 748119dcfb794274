"""What one served artifact can do, behind one small interface the HTTP layer calls.

An artifact is a saved recommender folder (``textrec.load``): model, item catalog (original ids,
titles, text) and known users with their training histories. Two optional engines attach to it:
an ERRA explainer (its own artifact folder, ``--explainer``) and a Rec-R1 query writer (a saved
:class:`~textrec.query.policy.QueryWriter`, ``--query-writer``); without a writer, queries are
Rec-R1's raw-history baseline. Which endpoints an artifact offers follows from what it holds
(:attr:`ServedArtifact.capabilities`).

Adding an item goes through the model's own ``add_items`` (VQ-Rec codes, TextKNN embeddings)
and ``save_pretrained``, which writes the folder as a unit (temporary sibling + rename); if the
save fails, the model is reloaded from the untouched folder, so memory and disk never disagree.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from textrec.catalog import Catalog, UnknownIdError

#: catalogs at least this large are ranked through a FAISS index when the model exposes vectors
FAISS_MIN_ITEMS = 20_000


class CapabilityError(LookupError):
    """The artifact cannot do what was asked (no explainer, no text encoder for new items...)."""


class ConflictError(ValueError):
    """The request clashes with the artifact's state (e.g. an item id that already exists)."""


# ---- locking ------------------------------------------------------
class ReadWriteLock:
    """Many readers or one writer: recommendations run in parallel, an item addition runs alone."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writing:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            while self._writing or self._readers:
                self._cond.wait()
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


# ---- engines: queries and explanations -----------------------------------------------------
class QueryEngine:
    """Writes a search query for a history and retrieves catalog items with it (BM25).

    With a saved query writer or ``llm=True`` the Rec-R1 policy writes the query; otherwise the
    raw-history baseline of Rec-R1 is used: the recent titles, concatenated.
    """

    def __init__(self, catalog: Catalog, writer_dir: Path | None = None, llm: bool = False,
                 max_history: int = 8, name: str = "") -> None:
        self.catalog, self.max_history, self.name = catalog, int(max_history), name
        self._writer_dir, self._use_llm = writer_dir, bool(llm)
        self._writer = None
        self._retriever = None
        self._retriever_size = -1
        self._lock = threading.Lock()

    @property
    def method(self) -> str:
        """How queries are written: ``writer`` (trained), ``llm`` (untrained policy) or ``raw-history``."""
        if self._writer_dir is not None:
            return "writer"
        return "llm" if self._use_llm else "raw-history"

    def _retriever_now(self):
        from textrec.query.catalog import Catalog as SearchCatalog
        from textrec.query.retrieval import BM25Retriever

        if self._retriever is None or self._retriever_size != len(self.catalog):
            c = self.catalog
            cat = SearchCatalog(name=self.name, documents=list(c.text or c.ids),
                                titles=[c.title(i) for i in range(len(c))], item_ids=list(c.ids))
            self._retriever, self._retriever_size = BM25Retriever(cat), len(self.catalog)
        return self._retriever

    def _write(self, context: list[str], history: np.ndarray) -> str:
        if self.method == "raw-history":
            return " ".join(context)
        from textrec.query.parsing import parse_query
        from textrec.query.policy import QueryWriter
        from textrec.query.tasks import QueryTask

        if self._writer is None:
            self._writer = (QueryWriter.from_pretrained(self._writer_dir) if self._writer_dir is not None
                            else QueryWriter.from_base(max_history=self.max_history, dataset_name=self.name))
        task = QueryTask(user=-1, history=history, target=-1, context=context)
        completion = self._writer.generate([task], progress=False)[0]
        parsed = parse_query(completion)
        return parsed.query or " ".join(context)

    def query(self, history: np.ndarray, k: int) -> tuple[str, list[str], list[tuple[int, float]]]:
        """(query, the context titles it was written from, [(item index, score)] retrieved)."""
        context = [self.catalog.title(int(i)) for i in history[-self.max_history:]]
        with self._lock:  # the LLM and the lazily rebuilt index are not shared between threads
            q = self._write(context, history)
            r = self._retriever_now()
            items, scores = r.search([q], k=k, exclude=[history])
        rows = [(int(i), float(s)) for i, s in zip(items[0], scores[0]) if i >= 0 and s > 0]
        return q, context, rows


class ExplainerAdapter:
    """An ERRA explainer answering for original (user, item) ids, citing sentences by id."""

    def __init__(self, folder: Path | None = None, data_root: str | None = None, explainer=None) -> None:
        self.folder = folder
        if explainer is None:
            from textrec.explain.pipeline import Explainer

            explainer = Explainer.load(folder, data_root=data_root, progress=False)
        self.explainer = explainer
        if hasattr(explainer, "warm"):
            explainer.warm()  # trust-measure support built before the first request, not during it
        self._lock = threading.Lock()

    def explain(self, user_id: str, item_id: str) -> dict[str, Any]:
        """Explanation, predicted rating, aspects, cited review sentences (with ids) and trust measures.

        The explainer caches its answer per pair; the default (extractive) one scores a few dozen
        sentences of the item's own reviews, with no decoder.
        """
        d = self.explainer.data
        try:
            d.user_index(user_id)
        except ValueError:
            raise UnknownIdError("user", user_id) from None
        try:
            d.item_index(item_id)
        except ValueError:
            raise UnknownIdError("item", item_id) from None
        with self._lock:
            out = self.explainer.explain(user_id, item_id)
        return {"explanation": out["explanation"], "rating": out["rating"], "kind": out["kind"],
                "aspects": [str(a) for a in out["aspects"]],
                "cited": [{"sentence_id": c["id"], "text": c["text"], "review_user": c["review_user"],
                           "review_item": c["review_item"], "score": c["score"]} for c in out["cited"]],
                "retrieved": [{"sentence_id": r["id"], "text": r["text"]} for r in out.get("retrieved", [])],
                "grounding": out["grounding"], "trust": out["trust"]}


# ---- vectors for FAISS ranking ---------------------------------------------------------------
def model_vectors(model) -> tuple[Any, Any] | None:
    """``(item_vectors(), user_vector(history))`` callables when the model ranks by inner product
    of a user vector and item vectors (TextKNN; SASRec / dot-product VQ-Rec without offsets)."""
    import torch

    emb = getattr(model, "item_emb", None)
    if emb is not None and type(model).__name__ == "TextKNN":
        def items() -> np.ndarray:
            return model.item_emb.numpy().astype(np.float32)

        def user(history: np.ndarray) -> np.ndarray:
            h = np.asarray(history, dtype=np.int64)
            if model.last_n:
                h = h[-model.last_n:]
            v = model.item_emb[torch.from_numpy(h)].mean(0) if len(h) else torch.zeros(model.item_emb.shape[1])
            return torch.nn.functional.normalize(v, dim=0).numpy().astype(np.float32)

        return items, user
    module = getattr(model, "module", None)
    if module is None or getattr(module, "similarity", "dot") != "dot" or getattr(model, "cold_start_offset", 0):
        return None
    from textrec.models.seq_trainer import last_hidden, pad_left

    max_len = model.trainer_config.max_len

    def seq_items() -> np.ndarray:
        with torch.no_grad():
            return module.item_representations().float().cpu().numpy()

    def seq_user(history: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            reps = module.item_representations()
            ids, mask = pad_left([history], max_len, reps.device)
            return last_hidden(module.encode(ids, mask, reps))[0].float().cpu().numpy()

    return seq_items, seq_user


# ---- one served artifact -------------------------------------------------------------------
@dataclass
class Recommendation:
    """One recommended item: its index, score and (1-based) rank."""

    index: int
    score: float
    rank: int


class ServedArtifact:
    """A saved recommender with its catalog, known users and optional explainer / query engine."""

    def __init__(self, name: str, folder: Path | None, model, explainer: ExplainerAdapter | None = None,
                 query: QueryEngine | None = None, faiss_min_items: int = FAISS_MIN_ITEMS) -> None:
        if getattr(model, "catalog", None) is None:
            raise ValueError(f"{folder or name}: the model has no item catalog (save it with this textrec "
                             "version: the catalog maps scores to original ids)")
        self.name, self.folder, self.model = name, folder, model
        self.explainer, self.query_engine = explainer, query
        self.model_type = type(model).__name__
        self.lock = ReadWriteLock()
        self._faiss_min_items = int(faiss_min_items)
        self._index = None
        self._user_vector = None
        self._build_vector_index()

    @property
    def catalog(self) -> Catalog:
        """The model's item catalog (it grows when items are added)."""
        return self.model.catalog

    @property
    def users(self):
        """Known users and their training histories (None when the artifact has none)."""
        return getattr(self.model, "users", None)

    def _build_vector_index(self) -> None:
        self._index = None
        if len(self.catalog) < self._faiss_min_items:
            return
        vecs = model_vectors(self.model)
        if vecs is None:
            return
        from textrec.serve.vector_index import VectorIndex

        items, self._user_vector = vecs
        self._index = VectorIndex(items())

    @property
    def ranking(self) -> str:
        """``full`` (score every item) or the FAISS index kind."""
        return "full" if self._index is None else f"faiss-{self._index.kind}"

    @property
    def can_add_items(self) -> bool:
        """Whether new items can be added from text (the model scores items from their text)."""
        if getattr(self.model, "add_items", None) is None or not getattr(self.model, "scores_new_items", False):
            return False
        return getattr(self.model, "quantizer", True) is not None

    @property
    def capabilities(self) -> dict[str, bool]:
        """Which endpoints this artifact serves."""
        return {"recommend": True, "users": self.users is not None, "add_items": self.can_add_items,
                "explain": self.explainer is not None, "query": self.query_engine is not None}

    def describe(self) -> dict[str, Any]:
        """Name, model type, sizes, capabilities and a few example ids (for the page)."""
        out = {"name": self.name, "model_type": self.model_type, "n_items": len(self.catalog),
               "n_users": len(self.users) if self.users is not None else 0,
               "capabilities": self.capabilities, "ranking": self.ranking,
               "example_users": self.users.ids[:5] if self.users is not None else [],
               "example_items": self.catalog.ids[:5]}
        if self.query_engine is not None:
            out["query_method"] = self.query_engine.method
        return out

    # ---- ids ---------------------------------------------------------------------------
    def history_of(self, user_id: str) -> tuple[int, np.ndarray]:
        """(user index, training history) of a known user."""
        if self.users is None:
            raise UnknownIdError("user", user_id)
        u = self.users.index(user_id)
        return u, self.users.histories[u]

    def has_item(self, item_id: str) -> bool:
        """Whether the catalog holds an original item id."""
        try:
            self.catalog.index(item_id)
        except UnknownIdError:
            return False
        return True

    def item_indexes(self, ids: Sequence[str]) -> np.ndarray:
        """Item indexes of original ids; the first unknown one raises :class:`UnknownIdError`."""
        return self.catalog.indices(list(ids))

    # ---- recommend ---------------------------------------------------------------------
    def recommend(self, history: np.ndarray, k: int, user: int = -1,
                  exclude_history: bool = True) -> list[Recommendation]:
        """Top-k items for a history (item indexes, oldest first)."""
        with self.lock.read():
            if self._index is not None:
                vec = self._user_vector(history)
                idx, val = self._index.search(vec, k, exclude=history if exclude_history else None)
            else:
                idx, val = self.model.recommend(history, k=k, user=user, exclude_history=exclude_history)
        return [Recommendation(int(i), float(s), r) for r, (i, s) in enumerate(zip(idx, val), 1)]

    def rank_of(self, history: np.ndarray, item: int, user: int = -1, exclude_history: bool = True) -> int:
        """1-based rank of one item for a history among all items (history masked; ties by index)."""
        import torch

        with self.lock.read():
            s = torch.as_tensor(self.model.score(np.array([user]), [history]), dtype=torch.float32)[0].clone()
        if exclude_history and len(history):
            s[torch.from_numpy(history)] = float("-inf")
        v = s[item]
        return int((s > v).sum()) + int((s[:item] == v).sum()) + 1

    # ---- add items ---------------------------------------------------------------------
    def add_item(self, item_id: str, title: str, text: str) -> int:
        """Add one item from its text: scored at once, and saved into the artifact folder as a unit."""
        if not self.can_add_items:
            raise CapabilityError(f"'{self.name}' ({self.model_type}) cannot add items from text; "
                                  "serve a VQ-Rec or TextKNN artifact for that")
        with self.lock.write():
            if self.has_item(item_id):
                raise ConflictError(f"item id '{item_id}' is already in the catalog of '{self.name}'")
            idx = int(self.model.add_items(texts=[text], ids=[item_id])[0])
            if self.catalog.titles is not None:
                self.catalog.titles[idx] = title  # the given title, not the text's first sentence
            if self.folder is not None:
                try:
                    self.model.save_pretrained(self.folder)
                except BaseException:
                    # the folder is untouched by a failed save: go back to it
                    self.model = _load_model(self.folder)
                    self._build_vector_index()
                    raise
            if self._index is not None or len(self.catalog) >= self._faiss_min_items:
                self._build_vector_index()
        return idx

    # ---- explain / query ---------------------------------------------------------------
    def explain(self, user_id: str, item_id: str) -> dict[str, Any]:
        """The explainer's answer for (user, item), or :class:`CapabilityError`."""
        if self.explainer is None:
            raise CapabilityError(f"'{self.name}' has no explainer (explanations need review text; "
                                  "serve it with --explainer)")
        return self.explainer.explain(user_id, item_id)

    def query(self, history: np.ndarray, k: int) -> tuple[str, list[str], list[tuple[int, float]]]:
        """A written query and what it retrieves, or :class:`CapabilityError`."""
        if self.query_engine is None:
            raise CapabilityError(f"'{self.name}' has no query engine (its catalog has no item text)")
        with self.lock.read():
            return self.query_engine.query(history, k)

    # ---- loading -----------------------------------------------------------------------
    @classmethod
    def load(cls, folder: str | os.PathLike, name: str | None = None, explainer: str | os.PathLike | None = None,
             query_writer: str | os.PathLike | None = None, data_root: str | None = None,
             query_llm: bool = False, faiss_min_items: int = FAISS_MIN_ITEMS) -> ServedArtifact:
        """Open a saved recommender folder, with an explainer folder and a query writer if given."""
        folder = Path(folder)
        model = _load_model(folder)
        name = name or folder.resolve().name
        exp = ExplainerAdapter(Path(explainer), data_root=data_root) if explainer is not None else None
        cat = getattr(model, "catalog", None)
        has_text = cat is not None and cat.text is not None and any(t.strip() for t in cat.text)
        query = None
        if has_text or query_writer is not None:
            query = QueryEngine(cat, Path(query_writer) if query_writer else None, llm=query_llm, name=name)
        return cls(name, folder, model, exp, query, faiss_min_items=faiss_min_items)


def _load_model(folder: Path):
    import textrec
    from textrec.models.base import Recommender

    model = textrec.load(folder)
    if not isinstance(model, Recommender):
        raise ValueError(f"{folder}: a {type(model).__name__}, not a recommender (pass explainers with --explainer)")
    return model
