"""The searchable catalog: one document per item (its full text) and a short title for prompts.

Documents are what the retrievers index (ML-100K: title, year, genres; Scientific: title,
categories, brand — whatever :func:`textrec.text.encoder.item_texts` yields). Titles are what a
user context shows and what the raw-history query concatenates: the ``title`` field when the
dataset has one, else the first sentence of the item text, capped at a few words.

``catalog.json`` uses the artifact contract's field names (``ids``, ``text``, ``titles``) plus
``name``; files in the older layout (``item_ids``, ``documents``) still load.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from textrec.io import atomic_write_text

if TYPE_CHECKING:  # pragma: no cover
    from textrec.data.dataset import RecDataset

CATALOG_FILE = "catalog.json"
_SENTENCE_END = re.compile(r"\.\s+")


def short_title(text: str, max_words: int = 12) -> str:
    """The first sentence of ``text`` (a period followed by a space ends it), at most ``max_words``."""
    text = " ".join(str(text).split())
    first = _SENTENCE_END.split(text, maxsplit=1)[0].rstrip(".")
    words = first.split()
    return " ".join(words[:max_words])


@dataclass
class Catalog:
    """Item documents (indexed) and short titles (shown in prompts), in item index order."""

    name: str
    documents: list[str]
    titles: list[str]
    item_ids: list[str]

    def __post_init__(self) -> None:
        if not (len(self.documents) == len(self.titles) == len(self.item_ids)):
            raise ValueError(f"catalog '{self.name}': documents ({len(self.documents)}), titles "
                             f"({len(self.titles)}) and item_ids ({len(self.item_ids)}) differ in length")

    def __len__(self) -> int:
        return len(self.documents)

    @classmethod
    def from_dataset(cls, ds: RecDataset, title_words: int = 10, verbose: bool = True) -> Catalog:
        """Documents from all item text fields; titles from ``title`` or the text's first sentence."""
        from textrec.text.encoder import item_texts

        docs = item_texts(ds, verbose=verbose).texts
        if "title" in ds.items.columns:
            raw = ds.items["title"].fillna("").astype(str).tolist()
            titles = [" ".join(t.split()[:title_words]) if t.strip() else short_title(d, title_words)
                      for t, d in zip(raw, docs)]
        else:
            titles = [short_title(d, title_words) for d in docs]
        return cls(name=ds.name, documents=docs, titles=titles, item_ids=[str(i) for i in ds.item_ids])

    @classmethod
    def from_texts(cls, documents: list[str], titles: list[str] | None = None, name: str = "toy") -> Catalog:
        """A catalog from plain lists (tests, ad-hoc corpora); item ids are the indexes."""
        titles = titles if titles is not None else [short_title(d) for d in documents]
        return cls(name=name, documents=list(documents), titles=list(titles),
                   item_ids=[str(i) for i in range(len(documents))])

    @classmethod
    def from_item_catalog(cls, catalog, name: str = "catalog") -> Catalog:
        """The search view of a :class:`textrec.catalog.Catalog` (it must have item text)."""
        if catalog.text is None:
            raise ValueError("the item catalog has no text: a query recommender searches item text")
        titles = catalog.titles if catalog.titles is not None else [short_title(t) for t in catalog.text]
        return cls(name=name, documents=list(catalog.text), titles=list(titles), item_ids=list(catalog.ids))

    def to_item_catalog(self):
        """The artifact-contract :class:`textrec.catalog.Catalog` of these items (ids, text, titles)."""
        from textrec.catalog import Catalog as ItemCatalog

        return ItemCatalog(self.item_ids, self.documents, self.titles)

    def sha256(self) -> str:
        """A hash of the content (ids, documents, titles): the key of any cache built from it."""
        h = hashlib.sha256()
        h.update(json.dumps([self.item_ids, self.documents, self.titles], ensure_ascii=False).encode("utf-8"))
        return h.hexdigest()

    def save(self, folder: str | os.PathLike, file_name: str = CATALOG_FILE) -> None:
        """Write ``catalog.json`` (or ``file_name``) into ``folder`` (atomically)."""
        atomic_write_text(Path(folder) / file_name, json.dumps(
            {"name": self.name, "ids": self.item_ids, "text": self.documents, "titles": self.titles},
            ensure_ascii=False))

    @classmethod
    def load(cls, folder: str | os.PathLike, file_name: str = CATALOG_FILE) -> Catalog:
        """Read a catalog saved by :meth:`save` (or in the older ``item_ids``/``documents`` layout)."""
        path = Path(folder) / file_name
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON: {e}") from None
        if not isinstance(d, dict):
            raise ValueError(f"{path}: expected a JSON object")
        ids = d.get("ids", d.get("item_ids"))
        docs = d.get("text", d.get("documents"))
        titles = d.get("titles")
        if titles is None and isinstance(docs, list):
            titles = [short_title(str(x)) for x in docs]
        for key, value in (("ids", ids), ("text", docs), ("titles", titles)):
            if not isinstance(value, list):
                raise ValueError(f"{path}: missing field '{key}' (a list)")
        return cls(name=str(d.get("name", "")), documents=[str(x) for x in docs],
                   titles=[str(x) for x in titles], item_ids=[str(x) for x in ids])
