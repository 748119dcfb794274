"""What one served artifact can do, behind one small interface the HTTP layer calls.

This is the only module of ``textrec.serve`` that knows how an artifact folder is laid out. It
reads today's formats:

* the recommender: ``Recommender.from_pretrained(folder)`` (``config.json`` + ``model.safetensors``);
* the catalog: ``catalog.json`` as the contract writes it (``{"ids", "text", "titles"}``), as
  ``textrec vqrec train`` writes it (``{"item_ids"}``) or as the Rec-R1 catalog writes it
  (``{"item_ids", "documents", "titles"}``);
* known users: ``users.json`` (``{"ids": [...], "histories": [[item index, ...], ...]}``);
* optional engines in sub-folders: ``explainer/`` (an ERRA model saved by
  :meth:`textrec.explain.pipeline.Explainer.save`) and ``query/`` (a saved
  :class:`~textrec.query.policy.QueryWriter`).

Which endpoints an artifact offers follows from what it holds (:attr:`ServedArtifact.capabilities`).
Adding an item rewrites the whole folder next to it and swaps it in, so a crash leaves either the
old or the new artifact, never a mix (:func:`swap_folder`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CATALOG_FILE = "catalog.json"
USERS_FILE = "users.json"
EXPLAINER_DIR = "explainer"
QUERY_DIR = "query"
#: catalogs at least this large are ranked through a FAISS index when the model exposes vectors
FAISS_MIN_ITEMS = 20_000


class UnknownIdError(KeyError):
    """An original user or item id that the artifact does not know; the message names it."""

    def __init__(self, kind: str, id_: str, where: str = ""):
        self.kind, self.id = kind, str(id_)
        msg = f"unknown {kind} id '{id_}'" + (f" (not in {where})" if where else "")
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class CapabilityError(LookupError):
    """The artifact cannot do what was asked (no explainer, no text encoder for new items...)."""


class ConflictError(ValueError):
    """The request clashes with the artifact's state (e.g. an item id that already exists)."""


# ---- catalog and users ---------------------------------------------------------------------
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass
class ServeCatalog:
    """Original item ids, titles and text in item-index order, with an id -> index map."""

    ids: list[str]
    titles: list[str]
    text: list[str]
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not (len(self.ids) == len(self.titles) == len(self.text)):
            raise ValueError(f"catalog: {len(self.ids)} ids, {len(self.titles)} titles, {len(self.text)} texts")
        self._index = {i: n for n, i in enumerate(self.ids)}
        if len(self._index) != len(self.ids):
            raise ValueError("catalog: item ids are not unique")
        self._lower = [t.lower() for t in self.titles]

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._index

    def index(self, item_id: str) -> int:
        """Item index of an original id; :class:`UnknownIdError` names the id when it is unknown."""
        try:
            return self._index[item_id]
        except KeyError:
            raise UnknownIdError("item", item_id, "the catalog") from None

    def add(self, item_id: str, title: str, text: str) -> int:
        """Append one item; returns its index."""
        if item_id in self._index:
            raise ConflictError(f"item id '{item_id}' is already in the catalog")
        self.ids.append(item_id)
        self.titles.append(title)
        self.text.append(text)
        self._lower.append(title.lower())
        self._index[item_id] = len(self.ids) - 1
        return len(self.ids) - 1

    def search(self, q: str, k: int = 10) -> list[int]:
        """Items whose title contains every word of ``q`` (case-insensitive); title-prefix hits first."""
        words = [w.lower() for w in _WORD.findall(q)]
        if not words:
            return []
        hits = [n for n, t in enumerate(self._lower) if all(w in t for w in words)]
        ql = q.strip().lower()
        hits.sort(key=lambda n: (not self._lower[n].startswith(ql), n))
        return hits[:k]

    def to_json(self) -> dict[str, Any]:
        """The contract's catalog fields (plus ``item_ids``, which ``textrec vqrec`` reads)."""
        return {"ids": self.ids, "titles": self.titles, "text": self.text, "item_ids": self.ids}

    @classmethod
    def read(cls, folder: Path) -> ServeCatalog:
        """Read ``catalog.json`` in any of the formats listed in the module docstring."""
        path = folder / CATALOG_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing (an artifact to serve needs its item catalog)")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from None
        ids = d.get("ids") or d.get("item_ids")
        if not isinstance(ids, list) or not ids:
            raise ValueError(f"{path}: field 'ids' (or 'item_ids') must be a non-empty list")
        ids = [str(i) for i in ids]
        text = d.get("text") or d.get("documents") or [""] * len(ids)
        titles = d.get("titles") or [_short(t) or f"item {i}" for t, i in zip(text, ids)]
        return cls(ids=ids, titles=[str(t) for t in titles], text=[str(t) for t in text])


def _short(text: str, words: int = 12) -> str:
    return " ".join(str(text).split()[:words])


@dataclass
class UserHistories:
    """Known users: original ids and each one's item-index history, oldest first."""

    ids: list[str]
    histories: list[np.ndarray]

    def __post_init__(self) -> None:
        self._index = {u: n for n, u in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def index(self, user_id: str) -> int:
        """User index of an original id; :class:`UnknownIdError` names the id when it is unknown."""
        try:
            return self._index[user_id]
        except KeyError:
            raise UnknownIdError("user", user_id, "this artifact's users") from None

    def to_json(self) -> dict[str, Any]:
        return {"ids": self.ids, "histories": [h.tolist() for h in self.histories]}

    @classmethod
    def read(cls, folder: Path, n_items: int) -> UserHistories | None:
        """Read ``users.json`` (None when the artifact has no known users)."""
        path = folder / USERS_FILE
        if not path.is_file():
            return None
        d = json.loads(path.read_text(encoding="utf-8"))
        ids = [str(u) for u in d.get("ids", [])]
        hists = [np.asarray(h, dtype=np.int64) for h in d.get("histories", [])]
        if len(ids) != len(hists):
            raise ValueError(f"{path}: {len(ids)} user ids but {len(hists)} histories")
        for u, h in zip(ids, hists):
            if len(h) and (h.min() < 0 or h.max() >= n_items):
                raise ValueError(f"{path}: user '{u}' has an item index outside the catalog (0..{n_items - 1})")
        return cls(ids, hists)


def write_serving_files(folder: str | os.PathLike, dataset, users: bool = True) -> None:
    """Write ``catalog.json`` (ids, titles, text) and ``users.json`` (all interactions, time order)
    for a :class:`~textrec.data.dataset.RecDataset` into a saved model's folder."""
    from textrec.io import atomic_write_text
    from textrec.query.catalog import Catalog

    folder = Path(folder)
    cat = Catalog.from_dataset(dataset, verbose=False)
    sc = ServeCatalog(ids=list(cat.item_ids), titles=list(cat.titles), text=list(cat.documents))
    atomic_write_text(folder / CATALOG_FILE, json.dumps(sc.to_json(), ensure_ascii=False))
    if users:
        inter = dataset.interactions.sort_values(["user", "timestamp", "row"], kind="stable")
        u = inter["user"].to_numpy()
        it = inter["item"].to_numpy()
        bounds = np.concatenate([[0], np.cumsum(np.bincount(u, minlength=dataset.n_users))])
        hists = [it[bounds[n]:bounds[n + 1]] for n in range(dataset.n_users)]
        uh = UserHistories([str(x) for x in dataset.user_ids], hists)
        atomic_write_text(folder / USERS_FILE, json.dumps(uh.to_json()))


# ---- locking and atomic folder writes ------------------------------------------------------
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


def _old_path(folder: Path) -> Path:
    return folder.with_name(f".{folder.name}.old")


def recover_folder(folder: str | os.PathLike) -> None:
    """Finish a swap that a crash interrupted: if only the old copy exists, put it back."""
    folder = Path(folder)
    old = _old_path(folder)
    if not folder.exists() and old.is_dir():
        os.replace(old, folder)
    elif old.exists() and folder.is_dir():
        shutil.rmtree(old, ignore_errors=True)


def swap_folder(folder: Path, write: Any) -> None:
    """Rebuild ``folder`` atomically: ``write(tmp)`` fills a sibling temp folder, files it did not
    write are hard-linked (or copied) from the current folder, then the two are swapped by renames."""
    folder = Path(folder)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.new-", dir=folder.parent))
    try:
        write(tmp)
        for src in folder.rglob("*"):
            rel = src.relative_to(folder)
            dst = tmp / rel
            if src.is_dir() or dst.exists() or any((tmp / p).is_file() for p in rel.parents if str(p) != "."):
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
        os.chmod(tmp, 0o755)
        old = _old_path(folder)
        if old.exists():
            shutil.rmtree(old)
        os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        recover_folder(folder)
        raise


# ---- engines: queries and explanations -----------------------------------------------------
class QueryEngine:
    """Writes a search query for a history and retrieves catalog items with it (BM25).

    With a saved query writer (``query/``) or ``llm=True`` the Rec-R1 policy writes the query;
    otherwise the raw-history baseline of Rec-R1 is used: the recent titles, concatenated.
    """

    def __init__(self, catalog: ServeCatalog, writer_dir: Path | None = None, llm: bool = False,
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
        from textrec.query.catalog import Catalog
        from textrec.query.retrieval import BM25Retriever

        if self._retriever is None or self._retriever_size != len(self.catalog):
            cat = Catalog(name=self.name, documents=list(self.catalog.text), titles=list(self.catalog.titles),
                          item_ids=list(self.catalog.ids))
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
        context = [self.catalog.titles[int(i)] for i in history[-self.max_history:]]
        with self._lock:  # the LLM and the lazily rebuilt index are not shared between threads
            q = self._write(context, history)
            r = self._retriever_now()
            items, scores = r.search([q], k=k, exclude=[history])
        rows = [(int(i), float(s)) for i, s in zip(items[0], scores[0]) if i >= 0 and s > 0]
        return q, context, rows


class ExplainerAdapter:
    """An ERRA explainer answering for original (user, item) ids, citing sentences by id."""

    def __init__(self, folder: Path, data_root: str | None = None, explainer=None) -> None:
        self.folder = folder
        if explainer is None:
            from textrec.explain.pipeline import Explainer

            explainer = Explainer.load(folder, data_root=data_root, progress=False)
        self.explainer = explainer
        self._lock = threading.Lock()

    def explain(self, user_id: str, item_id: str) -> dict[str, Any]:
        """Explanation, predicted rating, aspects used and cited review sentences (with ids)."""
        from textrec.explain.pipeline import cite

        d = self.explainer.data
        try:
            u = d.user_index(user_id)
        except ValueError:
            raise UnknownIdError("user", user_id, "the explainer's reviews") from None
        try:
            i = d.item_index(item_id)
        except ValueError:
            raise UnknownIdError("item", item_id, "the explainer's reviews") from None
        with self._lock:
            ex = d.pair_example(u, i)
            texts, ratings = self.explainer.model.predict([ex])
        model = self.explainer.model
        uses_ctx = getattr(model.config, "use_retrieval", False)
        uses_asp = getattr(model.config, "use_aspects", False)
        cited = cite(texts[0], ex.retrieved) if uses_ctx else []
        reviews = d.reviews
        return {"explanation": texts[0], "rating": round(float(ratings[0]), 3),
                "aspects": [str(a) for a in ex.aspects] if uses_asp else [],
                "cited": [{"sentence_id": int(r.sid), "text": r.text,
                           "review_user": str(d.user_ids[reviews["user"].iat[r.review]]),
                           "review_item": str(d.item_ids[reviews["item"].iat[r.review]]),
                           "score": round(float(r.score), 4)} for r in cited],
                "retrieved": [{"sentence_id": int(r.sid), "text": r.text} for r in ex.retrieved]}


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


def _model_items(model) -> int | None:
    n = getattr(model, "n_items", None)
    if n is not None:
        return int(n)
    emb = getattr(model, "item_emb", None)
    return None if emb is None else int(emb.shape[0])


def _check_sizes(model, catalog: ServeCatalog, folder) -> None:
    n_model = _model_items(model)
    if n_model is not None and n_model != len(catalog):
        raise ValueError(f"{folder}: the model scores {n_model} items but catalog.json lists {len(catalog)}")


def _drop_last_item(model) -> None:
    """Remove the most recently added item from a VQ-Rec or TextKNN model (failed addition)."""
    if getattr(model, "item_emb", None) is not None and type(model).__name__ == "TextKNN":
        model.item_emb = model.item_emb[:-1]
        return
    module = getattr(model, "module", None)
    if module is not None and hasattr(module, "codes"):
        module.codes = module.codes[:-1].clone()
        model.codes = module.codes.cpu().numpy()
        model.n_items = int(module.codes.shape[0])
        if getattr(model, "cold_items", None) is not None:
            model.cold_items = model.cold_items[:-1]


# ---- one served artifact -------------------------------------------------------------------
@dataclass
class Recommendation:
    """One recommended item: its index, score and (1-based) rank."""

    index: int
    score: float
    rank: int


class ServedArtifact:
    """A saved recommender with its catalog, known users and optional explainer / query engine."""

    def __init__(self, name: str, folder: Path | None, model, catalog: ServeCatalog,
                 users: UserHistories | None = None, explainer: ExplainerAdapter | None = None,
                 query: QueryEngine | None = None, faiss_min_items: int = FAISS_MIN_ITEMS,
                 model_type: str | None = None) -> None:
        self.name, self.folder, self.model = name, folder, model
        self.catalog, self.users, self.explainer, self.query_engine = catalog, users, explainer, query
        self.model_type = model_type or type(model).__name__
        self.lock = ReadWriteLock()
        self._faiss_min_items = int(faiss_min_items)
        self._index = None
        self._user_vector = None
        _check_sizes(model, catalog, folder)
        self._build_vector_index()

    def _model_items(self) -> int | None:
        return _model_items(self.model)

    def _build_vector_index(self) -> None:
        if len(self.catalog) < self._faiss_min_items:
            self._index = None
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
        add = getattr(self.model, "add_items", None)
        if add is None or not getattr(self.model, "scores_new_items", False):
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
        """(user index, stored history) of a known user."""
        if self.users is None:
            raise UnknownIdError("user", user_id, f"'{self.name}' (it has no known users; send a history)")
        u = self.users.index(user_id)
        return u, self.users.histories[u]

    def item_indexes(self, ids: Sequence[str]) -> np.ndarray:
        """Item indexes of original ids; the first unknown one raises :class:`UnknownIdError`."""
        return np.array([self.catalog.index(i) for i in ids], dtype=np.int64)

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
        """1-based rank of one item for a history, among all items (history masked)."""
        import torch

        with self.lock.read():
            s = torch.as_tensor(self.model.score(np.array([user]), [history]), dtype=torch.float32)[0].clone()
        if exclude_history and len(history):
            s[torch.from_numpy(history)] = float("-inf")
        v = s[item]
        return int((s > v).sum()) + int((s[:item] == v).sum()) + 1

    # ---- add items ---------------------------------------------------------------------
    def add_item(self, item_id: str, title: str, text: str) -> int:
        """Add one item from its text: scored at once, and written atomically into the artifact."""
        if not self.can_add_items:
            raise CapabilityError(f"'{self.name}' ({self.model_type}) cannot add items from text; "
                                  "serve a VQ-Rec or TextKNN artifact for that")
        with self.lock.write():
            if item_id in self.catalog:
                raise ConflictError(f"item id '{item_id}' is already in the catalog of '{self.name}'")
            new = self.model.add_items(texts=[text])
            try:
                idx = self.catalog.add(item_id, title, text)
                if int(new[0]) != idx:
                    raise RuntimeError(f"model gave index {int(new[0])} to a new item, catalog {idx}")
                if self.folder is not None:
                    self._persist()
            except BaseException:
                self._rollback_last()
                raise
            if self._index is not None:
                self._build_vector_index()
        return idx

    def _rollback_last(self) -> None:
        """Undo a half-done addition so the model and catalog stay the same size."""
        n_cat = len(self.catalog)
        _drop_last_item(self.model)
        n_model = self._model_items()
        if n_model is not None and n_cat > n_model:
            item_id = self.catalog.ids.pop()
            self.catalog.titles.pop()
            self.catalog.text.pop()
            self.catalog._lower.pop()
            self.catalog._index.pop(item_id, None)

    def _persist(self) -> None:
        from textrec.io import atomic_write_text

        def write(tmp: Path) -> None:
            self.model.save_pretrained(tmp)
            atomic_write_text(tmp / CATALOG_FILE, json.dumps(self.catalog.to_json(), ensure_ascii=False))

        swap_folder(self.folder, write)

    # ---- explain / query ---------------------------------------------------------------
    def explain(self, user_id: str, item_id: str) -> dict[str, Any]:
        """The explainer's answer for (user, item), or :class:`CapabilityError`."""
        if self.explainer is None:
            raise CapabilityError(f"'{self.name}' has no explainer (explanations need review text; "
                                  "this artifact was trained without one)")
        return self.explainer.explain(user_id, item_id)

    def query(self, history: np.ndarray, k: int) -> tuple[str, list[str], list[tuple[int, float]]]:
        """A written query and what it retrieves, or :class:`CapabilityError`."""
        if self.query_engine is None:
            raise CapabilityError(f"'{self.name}' has no query engine (it needs item text)")
        with self.lock.read():
            return self.query_engine.query(history, k)

    # ---- loading -----------------------------------------------------------------------
    @classmethod
    def load(cls, folder: str | os.PathLike, name: str | None = None, data_root: str | None = None,
             query_llm: bool = False, faiss_min_items: int = FAISS_MIN_ITEMS) -> ServedArtifact:
        """Open an artifact folder (see the module docstring for what it may hold)."""
        from textrec.models.base import Recommender

        folder = Path(folder)
        recover_folder(folder)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"{folder}: no config.json (not a saved textrec model)")
        model = Recommender.from_pretrained(folder)
        catalog = ServeCatalog.read(folder)
        _check_sizes(model, catalog, folder)
        users = UserHistories.read(folder, len(catalog))
        explainer = None
        if (folder / EXPLAINER_DIR / "explain_data.json").is_file():
            explainer = ExplainerAdapter(folder / EXPLAINER_DIR, data_root=data_root)
        has_text = any(t.strip() for t in catalog.text)
        writer = folder / QUERY_DIR if (folder / QUERY_DIR / "querywriter.json").is_file() else None
        query = QueryEngine(catalog, writer, llm=query_llm, name=name or folder.name) if has_text else None
        return cls(name or folder.name, folder, model, catalog, users, explainer, query,
                   faiss_min_items=faiss_min_items,
                   model_type=json.loads((folder / "config.json").read_text()).get("model_type"))
