"""The item catalog every artifact carries: original ids <-> indices, item text and titles.

Inside textrec items are integers ``0..n_items-1``; original ids appear only at the edges
(loaders, CLI, API output). A saved model holds its ``Catalog`` in ``catalog.json``, so a
folder maps its scores back to the ids a user knows without the dataset it came from.
Users get the same treatment (:class:`UserTable`): original ids and the training history
the model saw, so a known user can be served by id.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from textrec.data.dataset import RecDataset

CATALOG_FILE = "catalog.json"
USERS_FILE = "users.json"
USERS_TENSORS = "users.safetensors"


class UnknownIdError(KeyError):
    """An original user or item id that the artifact does not know."""

    def __init__(self, kind: str, value: Any):
        super().__init__(f"unknown {kind} id {value!r}")
        self.kind, self.value = kind, value

    def __str__(self) -> str:  # KeyError quotes its argument; say it plainly instead
        return f"unknown {self.kind} id {self.value!r}"


def _short_title(text: str, max_words: int = 12) -> str:
    """The text's first sentence, at most ``max_words`` words (for items without a title field).

    A period ends the sentence only after a word of 4+ characters without inner periods, so
    abbreviations stay whole ("Mr. Holland's Opus", "E.T. the Extra-Terrestrial", "Boys of St. Vincent").
    """
    words = " ".join(str(text).split()).split(" ")
    first: list[str] = []
    for w in words:
        first.append(w)
        stem = w[:-1]
        if w.endswith(".") and len(stem) >= 4 and "." not in stem:
            break
    return " ".join(first[:max_words]).rstrip(".")


class Catalog:
    """Original item ids in index order, with optional item text and short titles."""

    def __init__(self, ids: Sequence[Any], text: Sequence[str] | None = None,
                 titles: Sequence[str] | None = None):
        self.ids: list[str] = [str(i) for i in ids]
        self.text: list[str] | None = [str(t) for t in text] if text is not None else None
        self.titles: list[str] | None = [str(t) for t in titles] if titles is not None else None
        for name, col in (("text", self.text), ("titles", self.titles)):
            if col is not None and len(col) != len(self.ids):
                raise ValueError(f"catalog {name} has {len(col)} entries for {len(self.ids)} ids")
        self._index = {i: n for n, i in enumerate(self.ids)}
        if len(self._index) != len(self.ids):
            dup = next(i for n, i in enumerate(self.ids) if self._index[i] != n)
            raise ValueError(f"catalog ids are not unique (first repeat: {dup!r})")

    def __len__(self) -> int:
        return len(self.ids)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Catalog) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Catalog({len(self)} items, text={'yes' if self.text else 'no'})"

    @classmethod
    def from_dataset(cls, ds: RecDataset, title_words: int = 12) -> Catalog:
        """Ids, text (every text field) and titles (the ``title`` field, else the text's start)."""
        has_text = any(c not in ("item", "item_id") for c in ds.items.columns)
        text = ds.item_text() if has_text else None
        titles = None
        if "title" in ds.items.columns:
            raw = ds.items["title"].fillna("").astype(str).tolist()
            titles = [" ".join(t.split()[:title_words]) if t.strip() else (_short_title(x) if text else iid)
                      for t, x, iid in zip(raw, text or [""] * len(raw), [str(i) for i in ds.item_ids])]
        elif text is not None:
            titles = [_short_title(t, title_words) for t in text]
        return cls(ds.item_ids, text, titles)

    def index(self, item_id: Any) -> int:
        """Index of an original item id; :class:`UnknownIdError` when absent."""
        try:
            return self._index[str(item_id)]
        except KeyError:
            raise UnknownIdError("item", item_id) from None

    def indices(self, item_ids: Sequence[Any]) -> np.ndarray:
        """Indices of several original ids (the first unknown one raises)."""
        return np.array([self.index(i) for i in item_ids], dtype=np.int64)

    def id(self, index: int) -> str:
        """Original id of an item index."""
        if not 0 <= int(index) < len(self.ids):
            raise IndexError(f"item index {index} outside the catalog's {len(self.ids)} items")
        return self.ids[int(index)]

    def title(self, index: int) -> str:
        """A short display name: the title, else the id."""
        return self.titles[int(index)] if self.titles else self.id(index)

    def add(self, ids: Sequence[Any], text: Sequence[str] | None = None,
            titles: Sequence[str] | None = None) -> np.ndarray:
        """Append new items; returns their indices. Ids must be new."""
        ids = [str(i) for i in ids]
        clash = [i for i in ids if i in self._index]
        if clash or len(set(ids)) != len(ids):
            raise ValueError(f"item id(s) already in the catalog or repeated: {clash[:5] or ids[:5]}")
        if text is not None and len(text) != len(ids):
            raise ValueError(f"{len(text)} texts for {len(ids)} new items")
        start = len(self.ids)
        self.ids += ids
        if self.text is not None:  # items added from codes alone have no text
            self.text += [str(t) for t in text] if text is not None else [""] * len(ids)
        if self.titles is not None:
            self.titles += [str(t) for t in titles] if titles is not None else [
                _short_title(t) for t in (text or ids)]
        self._index.update({i: start + n for n, i in enumerate(ids)})
        return np.arange(start, len(self.ids))

    def search(self, query: str, k: int = 10) -> list[int]:
        """Items whose title (else text, else id) contains every query word, best match first."""
        words = [w for w in str(query).lower().split() if w]
        if not words:
            return []
        names = self.titles or self.text or self.ids
        hits = []
        for n, name in enumerate(names):
            low = name.lower()
            if all(w in low for w in words):
                hits.append((0 if low.startswith(words[0]) else 1, len(low), n))
        return [n for _, _, n in sorted(hits)[:k]]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written to ``catalog.json``."""
        return {"ids": self.ids, "text": self.text, "titles": self.titles}

    def sha256(self) -> str:
        """Content hash (ids, text, titles): what caches and manifests key on."""
        blob = json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return hashlib.sha256(blob).hexdigest()

    def save(self, folder: str | Path) -> Path:
        """Write ``catalog.json`` into ``folder`` (atomically)."""
        from textrec.io import atomic_write_text

        path = Path(folder) / CATALOG_FILE
        atomic_write_text(path, json.dumps(self.to_dict(), ensure_ascii=False))
        return path

    @classmethod
    def load(cls, folder: str | Path) -> Catalog:
        """Read ``catalog.json``; a clear error names the file when it is malformed."""
        from textrec.artifact import ArtifactError

        path = Path(folder) / CATALOG_FILE
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ArtifactError(f"{path}: cannot read the item catalog ({e})") from None
        if isinstance(d, dict) and "item_ids" in d and "ids" not in d:  # format of textrec <= 0.1 (VQ-Rec CLI)
            d = {"ids": d["item_ids"]}
        if not isinstance(d, dict) or not isinstance(d.get("ids"), list):
            raise ArtifactError(f"{path}: field 'ids' must be a list of item ids")
        for key in ("text", "titles"):
            if d.get(key) is not None and not isinstance(d[key], list):
                raise ArtifactError(f"{path}: field '{key}' must be a list or null")
        try:
            return cls(d["ids"], d.get("text"), d.get("titles"))
        except ValueError as e:
            raise ArtifactError(f"{path}: {e}") from None


class UserTable:
    """Original user ids in index order and the training history (item indices) of each."""

    def __init__(self, ids: Sequence[Any], histories: Sequence[np.ndarray]):
        self.ids = [str(u) for u in ids]
        if len(histories) != len(self.ids):
            raise ValueError(f"{len(histories)} histories for {len(self.ids)} users")
        self.histories = [np.asarray(h, dtype=np.int64) for h in histories]
        self._index = {u: n for n, u in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_dataset(cls, ds: RecDataset) -> UserTable:
        """Every user of ``ds`` with every event it holds, in time order: what an artifact trained
        on ``ds`` knows of its users (``textrec recommend --dataset`` reads the same events)."""
        inter = ds.sorted_interactions()
        users = inter["user"].to_numpy()
        items = inter["item"].to_numpy(dtype=np.int64)
        order = np.argsort(users, kind="stable")  # time order kept within a user
        bounds = np.concatenate([[0], np.cumsum(np.bincount(users, minlength=ds.n_users))])
        items = items[order]
        return cls(ds.user_ids, [items[bounds[u]:bounds[u + 1]] for u in range(ds.n_users)])

    def index(self, user_id: Any) -> int:
        """Index of an original user id; :class:`UnknownIdError` when absent."""
        try:
            return self._index[str(user_id)]
        except KeyError:
            raise UnknownIdError("user", user_id) from None

    def history(self, user_id: Any) -> np.ndarray:
        """The training history of an original user id."""
        return self.histories[self.index(user_id)]

    def save(self, folder: str | Path) -> None:
        """``users.json`` (ids) + ``users.safetensors`` (flattened histories and offsets)."""
        from safetensors.numpy import save_file

        from textrec.io import atomic_file, atomic_write_text

        folder = Path(folder)
        atomic_write_text(folder / USERS_FILE, json.dumps({"ids": self.ids}, ensure_ascii=False))
        lens = np.array([len(h) for h in self.histories], dtype=np.int64)
        flat = np.concatenate(self.histories) if self.histories else np.zeros(0, np.int64)
        with atomic_file(folder / USERS_TENSORS) as tmp:
            save_file({"items": flat.astype(np.int64), "offsets": np.concatenate([[0], np.cumsum(lens)])}, str(tmp))

    @classmethod
    def load(cls, folder: str | Path) -> UserTable | None:
        """Read the user table, or None when the artifact has none."""
        from safetensors.numpy import load_file

        from textrec.artifact import ArtifactError

        folder = Path(folder)
        if not (folder / USERS_FILE).is_file():
            return None
        try:
            ids = json.loads((folder / USERS_FILE).read_text(encoding="utf-8"))["ids"]
            t = load_file(str(folder / USERS_TENSORS))
        except Exception as e:  # noqa: BLE001 - any failure here is a damaged artifact
            raise ArtifactError(f"{folder}: cannot read the user table ({type(e).__name__}: {e})") from None
        off = t["offsets"]
        if len(off) != len(ids) + 1 or off[-1] != len(t["items"]):
            raise ArtifactError(f"{folder / USERS_TENSORS}: offsets do not match {len(ids)} users")
        return cls(ids, [t["items"][off[i]:off[i + 1]] for i in range(len(ids))])


__all__ = ["Catalog", "UserTable", "UnknownIdError", "CATALOG_FILE"]
