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

import copy
import json
import logging
import os
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from textrec.catalog import Catalog, UnknownIdError

#: catalogs at least this large are ranked through a vector index when the model exposes vectors
FAISS_MIN_ITEMS = 20_000
#: how many items are kept per user in the precomputed top lists (the API's largest k)
TOP_N = 100
#: per-user top lists are precomputed (at start-up and after each write) up to users x items cells
PRECOMPUTE_MAX_CELLS = 50_000_000
#: the served state beside the model in the artifact folder: ids deleted through the API
SERVED_STATE_FILE = "served.json"
#: explanations kept per explainer (an explanation is deterministic for a given user and item)
EXPLAIN_CACHE_SIZE = 20_000

log = logging.getLogger("textrec.serve")


class CapabilityError(LookupError):
    """The artifact cannot do what was asked (no explainer, no text encoder for new items...)."""


class ConflictError(ValueError):
    """The request clashes with the artifact's state (e.g. an item id that already exists)."""


class UnsupportedOptionError(ValueError):
    """A request option the engine behind it does not take (e.g. a word budget for a query writer)."""


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
        self._retriever_catalog: Catalog | None = None
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

        c = self.catalog
        # a write swaps in a new catalog object (copy-on-write): rebuild for it
        if self._retriever is None or self._retriever_size != len(c) or self._retriever_catalog is not c:
            cat = SearchCatalog(name=self.name, documents=list(c.text or c.ids),
                                titles=[c.title(i) for i in range(len(c))], item_ids=list(c.ids))
            self._retriever, self._retriever_size, self._retriever_catalog = BM25Retriever(cat), len(c), c
        return self._retriever

    def _write(self, context: list[str], history: np.ndarray, max_words: int) -> str:
        from textrec.query.heuristics import heuristic_query

        raw = heuristic_query("raw_history", context, max_words)  # the newest max_words words of the titles
        if self.method == "raw-history":
            return raw
        from textrec.query.policy import QueryWriter
        from textrec.query.tasks import QueryTask

        if self._writer is None:
            self._writer = (QueryWriter.from_pretrained(self._writer_dir) if self._writer_dir is not None
                            else QueryWriter.from_base(max_history=self.max_history, dataset_name=self.name))
        task = QueryTask(user=-1, history=history, target=-1, context=context)
        return self._writer.write([task], max_words=max_words, progress=False)[0] or raw

    def query(self, history: np.ndarray, k: int, max_words: int | None = None
              ) -> tuple[str, list[str], list[tuple[int, float]]]:
        """(query, the context titles it was written from, [(item index, score)] retrieved).

        The query holds at most ``max_words`` words (default 8, :data:`textrec.query.heuristics.DEFAULT_MAX_WORDS`).
        """
        from textrec.query.heuristics import DEFAULT_MAX_WORDS

        budget = int(max_words or DEFAULT_MAX_WORDS)
        if budget < 1:
            raise ValueError(f"max_words must be >= 1, got {max_words}")
        context = [self.catalog.title(int(i)) for i in history[-self.max_history:]]
        with self._lock:  # the LLM and the lazily rebuilt index are not shared between threads
            q = self._write(context, history, budget)
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
        self._cache: dict[tuple[str, str], dict[str, Any]] = {}

    def explain(self, user_id: str, item_id: str) -> dict[str, Any]:
        """Explanation, predicted rating, aspects, cited review sentences (with ids) and trust measures.

        Answers are cached per (user, item): a repeated pair gets the same answer without running
        the explainer again (the default, extractive one scores a few dozen sentences of the item's
        own reviews, with no decoder).
        """
        hit = self._cache.get((user_id, item_id))
        if hit is not None:
            return hit
        out = self._explain(user_id, item_id)
        if len(self._cache) >= EXPLAIN_CACHE_SIZE:
            self._cache.clear()
        self._cache[(user_id, item_id)] = out
        return out

    def _explain(self, user_id: str, item_id: str) -> dict[str, Any]:
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


# ---- vectors for index ranking ---------------------------------------------------------------
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
    if type(model).__name__ not in ("SASRec", "VQRec"):  # other modules mix in more than h . rep
        return None
    if getattr(model, "calibration", None) is not None:  # items without events are placed by the calibration
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


# ---- one text encoder per process ----------------------------------------------------------
_ENCODERS: dict[str | None, Any] = {}
_ENCODERS_LOCK = threading.Lock()


def shared_encoder(name: str | None):
    """The process's one :class:`~textrec.text.encoder.TextEncoder` for ``name`` (loaded once)."""
    with _ENCODERS_LOCK:
        enc = _ENCODERS.get(name)
        if enc is None:
            from textrec.text.encoder import TextEncoder

            enc = _ENCODERS[name] = TextEncoder(name)
        return enc


class _SharedEmbedder:
    """``texts -> vectors`` through the shared encoder; copies of a model share it (no reload)."""

    def __init__(self, name: str | None) -> None:
        self.name = name

    def __call__(self, texts: list[str]) -> np.ndarray:
        return shared_encoder(self.name).encode(list(texts), progress=False)

    def encoder(self):
        return shared_encoder(self.name)

    def __deepcopy__(self, memo: dict) -> _SharedEmbedder:
        return self


def share_text_encoder(model) -> Callable[[], None] | None:
    """Point an add-capable model at the process's shared encoder; returns a warm-up callable.

    Models build a fresh encoder per call to ``add_items`` (seconds to load); a server loads it
    once, in the background at start-up, so the first added item does not pay for it.
    """
    name = getattr(model, "encoder_name", None)
    if type(model).__name__ == "TextFusionRec" and getattr(model, "text_embedder", "absent") is None:
        model.text_embedder = _SharedEmbedder(name)
    elif callable(getattr(model, "_text_encoder", None)) and type(model).__name__ == "VQRec":
        model._text_encoder = _SharedEmbedder(name).encoder
    else:
        return None

    def warm() -> None:
        enc = shared_encoder(name)
        enc.model.encode(["warm-up"], show_progress_bar=False)  # the weights and the first forward
        enc.encode(["warm-up"], progress=False)  # the embedding cache's index

    return warm


# ---- orphans of interrupted writes ---------------------------------------------------------
def clean_orphans(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary siblings an interrupted save left (``.<name>.tmp-*``, ``.<name>.old-*``).

    A save builds the new folder as ``.<name>.tmp-*`` and parks the previous one as
    ``.<name>.old-*`` for the instant of the swap; if the process died inside that instant the
    folder itself is missing and the parked copy is the artifact, so it is moved back first.
    Returns the paths removed.
    """
    folder = Path(folder)
    parent = folder.parent
    if not parent.is_dir():
        return []
    olds = sorted(parent.glob(f".{folder.name}.old-*"), key=lambda p: p.stat().st_mtime)
    if not folder.exists() and olds:
        back = olds.pop()
        os.replace(back, folder)
        log.warning("restored %s from %s (a save was interrupted during its swap)", folder, back.name)
    removed = []
    for p in [*parent.glob(f".{folder.name}.tmp-*"), *olds]:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
            log.warning("removed %s, left by an interrupted save", p)
    return removed


# ---- one served artifact -------------------------------------------------------------------
@dataclass
class Recommendation:
    """One recommended item: its index, score and (1-based) rank."""

    index: int
    score: float
    rank: int


@dataclass
class ServedState:
    """What readers see: a model, its deletions and ranking aids. Never changed once published:
    a write builds a new state beside it and swaps the reference (copy-on-write)."""

    model: Any
    version: int
    deleted: frozenset = frozenset()
    deleted_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    index: Any = None
    user_vector: Callable[[np.ndarray], np.ndarray] | None = None
    #: (user index, exclude_history) -> top TOP_N (indexes, scores); filled at warm-up and on demand
    tops: dict = field(default_factory=dict)


class ServedArtifact:
    """A saved recommender with its catalog, known users and optional explainer / query engine.

    Reads take the current :class:`ServedState` and never wait; writes (add, delete) are
    serialised among themselves, build the next state on a copy of the model (text encoded,
    folder saved, top lists precomputed) and only then publish it.
    """

    def __init__(self, name: str, folder: Path | None, model, explainer: ExplainerAdapter | None = None,
                 query: QueryEngine | None = None, faiss_min_items: int = FAISS_MIN_ITEMS,
                 deleted: Sequence[str] = ()) -> None:
        if getattr(model, "catalog", None) is None:
            raise ValueError(f"{folder or name}: the model has no item catalog (save it with this textrec "
                             "version: the catalog maps scores to original ids)")
        self.name, self.folder = name, folder
        self.explainer, self.query_engine = explainer, query
        self.model_type = type(model).__name__
        self._faiss_min_items = int(faiss_min_items)
        self._write_lock = threading.Lock()
        #: keep per-user top lists (off: every request is computed, to measure what the cache buys)
        self.cache_tops = True
        #: set once :meth:`warm` has loaded the encoder and precomputed the top lists
        self.warmed = False
        self._warm_encoder = share_text_encoder(model)
        self.state = self._new_state(model, frozenset(deleted), version=0)

    # ---- state -------------------------------------------------------------------------
    @property
    def model(self):
        """The model readers use now."""
        return self.state.model

    @property
    def catalog(self) -> Catalog:
        """The model's item catalog (a new object after every write)."""
        return self.state.model.catalog

    @property
    def users(self):
        """Known users and their training histories (None when the artifact has none)."""
        return getattr(self.state.model, "users", None)

    @property
    def version(self) -> int:
        """Bumped by every write; what response caches key on."""
        return self.state.version

    def _new_state(self, model, deleted: frozenset, version: int) -> ServedState:
        cat = model.catalog
        idx = np.array(sorted(cat.index(i) for i in deleted), dtype=np.int64)
        st = ServedState(model=model, version=version, deleted=deleted, deleted_idx=idx)
        if len(cat) >= self._faiss_min_items:
            vecs = model_vectors(model)
            if vecs is not None:
                from textrec.serve.vector_index import VectorIndex

                items, st.user_vector = vecs
                st.index = VectorIndex(items())
        return st

    def _publish(self, model, deleted: frozenset) -> None:
        st = self._new_state(model, deleted, version=self.state.version + 1)
        self._precompute(st)
        if self.query_engine is not None:
            self.query_engine.catalog = model.catalog
        self.state = st  # one reference assignment: readers see the old state or the new one

    @property
    def ranking(self) -> str:
        """``full`` (score every item) or the vector index kind."""
        return "full" if self.state.index is None else f"index-{self.state.index.kind}"

    @property
    def can_add_items(self) -> bool:
        """Whether new items can be added from text (the model scores items from their text)."""
        model = self.state.model
        if getattr(model, "add_items", None) is None or not getattr(model, "scores_new_items", False):
            return False
        return getattr(model, "quantizer", True) is not None

    @property
    def capabilities(self) -> dict[str, bool]:
        """Which endpoints this artifact serves."""
        return {"recommend": True, "users": self.users is not None, "add_items": self.can_add_items,
                "delete_items": True, "explain": self.explainer is not None,
                "query": self.query_engine is not None}

    def n_live_items(self) -> int:
        """Items that can be recommended (the catalog minus deleted ones)."""
        st = self.state
        return len(st.model.catalog) - len(st.deleted)

    def describe(self) -> dict[str, Any]:
        """Name, model type, sizes, capabilities and a few example ids (for the page)."""
        st = self.state
        users = getattr(st.model, "users", None)
        out = {"name": self.name, "model_type": self.model_type, "n_items": self.n_live_items(),
               "n_users": len(users) if users is not None else 0,
               "capabilities": self.capabilities, "ranking": self.ranking, "warm": self.warmed,
               "example_users": users.ids[:5] if users is not None else [],
               "example_items": [i for i in st.model.catalog.ids[:10] if i not in st.deleted][:5]}
        if self.query_engine is not None:
            out["query_method"] = self.query_engine.method
        return out

    # ---- warm-up -----------------------------------------------------------------------
    def warm(self) -> None:
        """Load the text encoder (for adds) and precompute every known user's top list."""
        if self._warm_encoder is not None and self.can_add_items:
            with self._write_lock:
                self._warm_encoder()
        self._precompute(self.state)
        self.warmed = True

    def _precompute(self, st: ServedState, batch: int = 256) -> None:
        users = getattr(st.model, "users", None)
        if not self.cache_tops or users is None or not len(users) or len(users) * len(st.model.catalog) > PRECOMPUTE_MAX_CELLS:
            return
        todo = [u for u in range(len(users)) if (u, True) not in st.tops]
        for s in range(0, len(todo), batch):
            us = todo[s:s + batch]
            rows = self._rank(st, us, [users.histories[u] for u in us], [True] * len(us), TOP_N)
            for u, r in zip(us, rows):
                st.tops[(u, True)] = r

    # ---- ids ---------------------------------------------------------------------------
    def history_of(self, user_id: str) -> tuple[int, np.ndarray]:
        """(user index, training history) of a known user."""
        users = self.users
        if users is None:
            raise UnknownIdError("user", user_id)
        u = users.index(user_id)
        return u, users.histories[u]

    def has_item(self, item_id: str) -> bool:
        """Whether the catalog holds an original item id (deleted ones do not count)."""
        st = self.state
        try:
            st.model.catalog.index(item_id)
        except UnknownIdError:
            return False
        return item_id not in st.deleted

    def item_index(self, item_id: str) -> int:
        """Index of a live item id; :class:`UnknownIdError` for unknown and deleted ids."""
        st = self.state
        if item_id in st.deleted:
            raise UnknownIdError("item", item_id)
        return st.model.catalog.index(item_id)

    def item_indexes(self, ids: Sequence[str]) -> np.ndarray:
        """Item indexes of original ids; the first unknown (or deleted) one raises :class:`UnknownIdError`."""
        return np.array([self.item_index(i) for i in ids], dtype=np.int64)

    # ---- recommend ---------------------------------------------------------------------
    def _rank(self, st: ServedState, users: Sequence[int], histories: Sequence[np.ndarray],
              excludes: Sequence[bool], n: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Top-n (indexes, scores) for a batch of requests against one state."""
        import torch

        from textrec.metrics.ranking import topk_items

        hists = [np.asarray(h, dtype=np.int64) for h in histories]
        if st.index is not None:
            vecs = np.stack([st.user_vector(h) for h in hists])
            ex = [np.concatenate([h, st.deleted_idx]) if e else st.deleted_idx for h, e in zip(hists, excludes)]
            return st.index.search_batch(vecs, n, ex)
        with torch.no_grad():
            s = torch.as_tensor(st.model.score(np.asarray(users, dtype=np.int64), hists),
                                dtype=torch.float32).clone()
        for r, (h, e) in enumerate(zip(hists, excludes)):
            if e and len(h):
                s[r, torch.from_numpy(h)] = float("-inf")
        if len(st.deleted_idx):
            s[:, torch.from_numpy(st.deleted_idx)] = float("-inf")
        idx, val = topk_items(s, n)
        out = []
        for i, v in zip(idx, val):
            keep = torch.isfinite(v)  # masked items are never recommended, even when n is large
            out.append((i[keep].numpy(), v[keep].numpy()))
        return out

    def top(self, history: np.ndarray, user: int = -1, exclude_history: bool = True,
            st: ServedState | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top :data:`TOP_N` (indexes, scores) for one request, from the state's cache when it has it."""
        st = st or self.state
        key = (user, bool(exclude_history))
        keep = user >= 0 and self.cache_tops
        if keep:
            hit = st.tops.get(key)
            if hit is not None:
                return hit
        out = self._rank(st, [user], [history], [exclude_history], TOP_N)[0]
        if keep:
            st.tops[key] = out
        return out

    def top_batch(self, requests: Sequence[tuple[int, np.ndarray, bool]], st: ServedState | None = None
                  ) -> list[tuple[np.ndarray, np.ndarray]]:
        """:meth:`top` for many ``(user, history, exclude_history)`` at once (one model call)."""
        st = st or self.state
        out: list[Any] = [None] * len(requests)
        todo = []
        for n, (u, _h, e) in enumerate(requests):
            hit = st.tops.get((u, bool(e))) if u >= 0 and self.cache_tops else None
            if hit is None:
                todo.append(n)
            else:
                out[n] = hit
        if todo:
            rows = self._rank(st, [requests[n][0] for n in todo], [requests[n][1] for n in todo],
                              [requests[n][2] for n in todo], TOP_N)
            for n, r in zip(todo, rows):
                out[n] = r
                u, _, e = requests[n]
                if u >= 0 and self.cache_tops:
                    st.tops[(u, bool(e))] = r
        return out

    def recommend(self, history: np.ndarray, k: int, user: int = -1,
                  exclude_history: bool = True) -> list[Recommendation]:
        """Top-k items for a history (item indexes, oldest first)."""
        if not 1 <= k <= TOP_N:
            raise ValueError(f"k must be in 1..{TOP_N}, got {k}")
        idx, val = self.top(np.asarray(history, dtype=np.int64), user, exclude_history)
        return [Recommendation(int(i), float(s), r) for r, (i, s) in enumerate(zip(idx[:k], val[:k]), 1)]

    def rank_of(self, history: np.ndarray, item: int, user: int = -1, exclude_history: bool = True) -> int:
        """1-based rank of one item for a history among all live items (history masked; ties by index)."""
        import torch

        st = self.state
        with torch.no_grad():
            s = torch.as_tensor(st.model.score(np.array([user]), [history]), dtype=torch.float32)[0].clone()
        if exclude_history and len(history):
            s[torch.from_numpy(np.asarray(history, dtype=np.int64))] = float("-inf")
        if len(st.deleted_idx):
            s[torch.from_numpy(st.deleted_idx)] = float("-inf")
        v = s[item]
        return int((s > v).sum()) + int((s[:item] == v).sum()) + 1

    # ---- writes ------------------------------------------------------------------------
    def put_item(self, item_id: str, title: str, text: str) -> tuple[int, bool]:
        """Add one item from its text, idempotently: ``(index, created)``.

        The same id with the same title and text again returns the existing item
        (``created=False``); the same id with other text, or a deleted id, is a
        :class:`ConflictError`. The new item is scored at once and saved into the artifact folder
        as a unit before readers see it.
        """
        if not self.can_add_items:
            raise CapabilityError(f"'{self.name}' ({self.model_type}) cannot add items from text; "
                                  "serve a TextFusion, VQ-Rec or TextKNN artifact for that")
        with self._write_lock:
            st = self.state
            cat = st.model.catalog
            if item_id in st.deleted:
                raise ConflictError(f"item id '{item_id}' was deleted from '{self.name}'; ids are not reused")
            try:
                old = cat.index(item_id)
            except UnknownIdError:
                old = None
            if old is not None:
                same_text = cat.text is None or cat.text[old] == text
                if cat.title(old) == title and same_text:
                    return old, False
                raise ConflictError(f"item id '{item_id}' is already in the catalog of '{self.name}' "
                                    "with another title or description")
            model = copy.deepcopy(st.model)
            idx = int(model.add_items(texts=[text], ids=[item_id])[0])
            if model.catalog.titles is not None:
                model.catalog.titles[idx] = title  # the given title, not the text's first sentence
            if self.folder is not None:
                save_served(model, self.folder, st.deleted)  # raises with the folder untouched
            self._publish(model, st.deleted)
        return idx, True

    def add_item(self, item_id: str, title: str, text: str) -> int:
        """:meth:`put_item`, returning the item's index only."""
        return self.put_item(item_id, title, text)[0]

    def delete_item(self, item_id: str) -> None:
        """Stop recommending an item and forget its id for requests; persisted with the artifact.

        The model keeps its row (indexes of other items never move, histories stay valid); the
        id is recorded in ``served.json`` in the artifact folder and is not reused.
        """
        with self._write_lock:
            st = self.state
            if item_id in st.deleted:
                raise UnknownIdError("item", item_id)
            st.model.catalog.index(item_id)  # unknown: UnknownIdError
            deleted = st.deleted | {item_id}
            if self.folder is not None:
                save_served(st.model, self.folder, deleted)
            self._publish(st.model, deleted)

    # ---- explain / query ---------------------------------------------------------------
    def explain(self, user_id: str, item_id: str) -> dict[str, Any]:
        """The explainer's answer for (user, item), or :class:`CapabilityError`."""
        if self.explainer is None:
            raise CapabilityError(f"'{self.name}' has no explainer loaded (start the server with "
                                  f"--explainer {self.name}=DIR; explanations need review text)")
        return self.explainer.explain(user_id, item_id)

    def query(self, history: np.ndarray, k: int, max_words: int | None = None
              ) -> tuple[str, list[str], list[tuple[int, float]]]:
        """A written query and what it retrieves (deleted items left out), or :class:`CapabilityError`."""
        if self.query_engine is None:
            raise CapabilityError(f"'{self.name}' has no query engine (its catalog has no item text)")
        st = self.state
        q, context, rows = self.query_engine.query(history, k + len(st.deleted_idx), max_words=max_words)
        if len(st.deleted_idx):
            gone = set(st.deleted_idx.tolist())
            rows = [r for r in rows if r[0] not in gone]
        return q, context, rows[:k]

    # ---- loading -----------------------------------------------------------------------
    @classmethod
    def load(cls, folder: str | os.PathLike, name: str | None = None, explainer: str | os.PathLike | None = None,
             query_writer: str | os.PathLike | None = None, data_root: str | None = None,
             query_llm: bool = False, faiss_min_items: int = FAISS_MIN_ITEMS) -> ServedArtifact:
        """Open a saved recommender folder, with an explainer folder and a query writer if given.

        Temporary folders an interrupted save left beside it are removed first.
        """
        folder = Path(folder)
        clean_orphans(folder)
        model = _load_model(folder)
        name = name or folder.resolve().name
        exp = ExplainerAdapter(Path(explainer), data_root=data_root) if explainer is not None else None
        cat = getattr(model, "catalog", None)
        has_text = cat is not None and cat.text is not None and any(t.strip() for t in cat.text)
        query = None
        if has_text or query_writer is not None:
            query = QueryEngine(cat, Path(query_writer) if query_writer else None, llm=query_llm, name=name)
        return cls(name, folder, model, exp, query, faiss_min_items=faiss_min_items,
                   deleted=read_deleted(folder, cat))


def read_deleted(folder: Path, catalog: Catalog | None) -> list[str]:
    """Ids deleted through the API (``served.json`` in the folder; none when absent)."""
    from textrec.artifact import ArtifactError

    path = Path(folder) / SERVED_STATE_FILE
    if not path.is_file():
        return []
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{path}: cannot read the served state ({e})") from None
    ids = d.get("deleted") if isinstance(d, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ArtifactError(f"{path}: field 'deleted' must be a list of item ids")
    if catalog is not None:
        unknown = [i for i in ids if i not in set(catalog.ids)]
        if unknown:
            raise ArtifactError(f"{path}: field 'deleted' names ids not in the catalog: {unknown[:5]}")
    return ids


def save_served(model, folder: Path, deleted: frozenset) -> Path:
    """``model.save_pretrained(folder)`` plus ``served.json`` (deleted ids), in the same unit."""
    from textrec.artifact import save_model
    from textrec.registry import registered_name

    n = model.n_scored_items()
    if n is not None and len(model.catalog) != n:
        raise RuntimeError(f"catalog has {len(model.catalog)} items but the model scores {n}")

    def extra(path: Path) -> None:
        model.save_extra(path)
        if deleted:
            (path / SERVED_STATE_FILE).write_text(json.dumps({"deleted": sorted(deleted)}), encoding="utf-8")

    return save_model(folder, registered_name(type(model)), model.get_config(), model.state_tensors(),
                      catalog=model.catalog, users=model.users, extra=extra)


def _load_model(folder: Path):
    import textrec
    from textrec.models.base import Recommender

    model = textrec.load(folder)
    if not isinstance(model, Recommender):
        raise ValueError(f"{folder}: a {type(model).__name__}, not a recommender (pass explainers with --explainer)")
    return model
