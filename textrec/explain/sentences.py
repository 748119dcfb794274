"""Review sentences: splitting, word tokens, and the retrieval index over training reviews.

The index holds the sentences of *training* reviews only, embedded with the bundled MiniLM
(:class:`textrec.text.encoder.TextEncoder`, cached on disk) in a FAISS inner-product index.
Retrieval for a (user, item) pair searches only the sentences of the item's and the user's
*other* training reviews: the review being explained is always excluded, and valid/test reviews
are never in the index at all, so a generated explanation cannot copy its own reference.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from textrec.text.words import STOPWORDS, content_words, words  # noqa: F401  (re-exported)

_GLUED = re.compile(r"([a-z0-9\)][.!?]+)(?=[A-Z])")  # "affordable.I did" -> two sentences
# Splitting is linear: whitespace runs become one " " (no line break in the run) or one "\n"
# in two left-to-right passes, then the text splits on "\n" and on " " after .!?. (The former
# one-regex split, ``\s*\n+\s*``, rescanned every whitespace run from each start: quadratic.)
_INLINE_SPACE = re.compile(r"[^\S\n]+")
_BREAK_RUN = re.compile(r" ?\n\s*")
_BOUNDARY = re.compile(r"(?<=[.!?]) |\n")


def split_sentences(text: str, min_words: int = 1) -> list[str]:
    """Split review text into sentences on ``.!?`` and line breaks (also ``word.Next`` glued ones)."""
    text = _GLUED.sub(r"\1 ", str(text).strip())
    text = _BREAK_RUN.sub("\n", _INLINE_SPACE.sub(" ", text))
    out = []
    for part in _BOUNDARY.split(text):
        part = part.strip()
        # a non-empty part has at least one word token, so count words only when asked for more
        if part and (min_words <= 1 or len(words(part)) >= min_words):
            out.append(part)
    return out


class Encoder(Protocol):
    """Anything with ``encode(texts, progress=...) -> float32 (n, d)`` (TextEncoder or a test fake)."""

    def encode(self, texts: Sequence[str], progress: bool = True) -> np.ndarray: ...


@dataclass
class Retrieved:
    """One retrieved sentence: its index id, text, source review row, similarity score, embedding."""

    sid: int
    text: str
    review: int
    score: float
    emb: np.ndarray | None = field(default=None, repr=False, compare=False)


class SentenceIndex:
    """Sentences of the training reviews, their embeddings and a FAISS inner-product index.

    ``reviews``: the reviews table (``user``, ``item``, ``text``, ``timestamp``); ``train_rows``:
    the row positions allowed into the index (the training reviews). Sentences shorter than
    ``min_words`` or longer than ``max_words`` words are not indexed (poor citations).
    """

    def __init__(self, reviews, train_rows: Sequence[int], encoder: Encoder, min_words: int = 3,
                 max_words: int | None = None, progress: bool = True):
        import faiss

        self.min_words = min_words
        texts, owner = [], []
        for r in sorted(int(x) for x in train_rows):
            for s in split_sentences(reviews["text"].iat[r], min_words=min_words):
                if max_words is not None and len(words(s)) > max_words:
                    continue
                texts.append(s)
                owner.append(r)
        self.texts: list[str] = texts
        self.review = np.asarray(owner, dtype=np.int64)  # sentence id -> review row
        self.train_rows = np.asarray(sorted(int(x) for x in train_rows), dtype=np.int64)
        users = reviews["user"].to_numpy()
        items = reviews["item"].to_numpy()
        self._by_user: dict[int, list[int]] = {}
        self._by_item: dict[int, list[int]] = {}
        self._by_review: dict[int, list[int]] = {}
        for sid, r in enumerate(owner):
            self._by_review.setdefault(r, []).append(sid)
        for r in self.train_rows.tolist():
            sids = self._by_review.get(r, [])
            self._by_user.setdefault(int(users[r]), []).extend(sids)
            self._by_item.setdefault(int(items[r]), []).extend(sids)
        emb = encoder.encode(texts, progress=progress) if texts else np.zeros((0, 8), np.float32)
        emb = np.ascontiguousarray(emb, dtype=np.float32)
        emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)  # cosine via inner product
        self.emb = emb
        self.index = faiss.IndexFlatIP(emb.shape[1])
        if len(emb):
            self.index.add(emb)

    def __len__(self) -> int:
        return len(self.texts)

    def sentences_of(self, review: int) -> list[int]:
        """Sentence ids of one training review (empty for reviews not in the index)."""
        return list(self._by_review.get(int(review), []))

    def item_sentences(self, item: int) -> list[int]:
        """Sentence ids of the item's training reviews (what its own reviewers said)."""
        return list(self._by_item.get(int(item), []))

    def candidates(self, user: int, item: int, exclude_review: int | None = None) -> list[int]:
        """Sentence ids of the item's and the user's training reviews, minus ``exclude_review``."""
        cand = set(self._by_item.get(int(item), [])) | set(self._by_user.get(int(user), []))
        if exclude_review is not None:
            cand.difference_update(self._by_review.get(int(exclude_review), []))
        return sorted(cand)

    def profile(self, sids: Sequence[int]) -> np.ndarray:
        """Unit-norm mean embedding of some sentences (zeros when there are none)."""
        if not len(sids):
            return np.zeros(self.emb.shape[1], dtype=np.float32)
        v = self.emb[np.asarray(sids)].mean(0)
        return v / max(float(np.linalg.norm(v)), 1e-12)

    def query(self, user: int, item: int, exclude_review: int | None = None) -> np.ndarray:
        """The pair's query: user profile + item profile, each from their *other* training reviews."""
        ex = set(self._by_review.get(int(exclude_review), [])) if exclude_review is not None else set()
        u = [s for s in self._by_user.get(int(user), []) if s not in ex]
        i = [s for s in self._by_item.get(int(item), []) if s not in ex]
        q = self.profile(u) + self.profile(i)
        return (q / max(float(np.linalg.norm(q)), 1e-12)).astype(np.float32)

    def retrieve(self, user: int, item: int, k: int = 3, exclude_review: int | None = None,
                 boost: dict[int, float] | None = None) -> list[Retrieved]:
        """Top-``k`` sentences for (user, item) from their other training reviews (FAISS search).

        ``boost`` adds a bonus to some sentence ids' scores (e.g. those mentioning the selected
        aspects). Ties break on the sentence id, so retrieval is deterministic.
        """
        import faiss

        cand = self.candidates(user, item, exclude_review)
        if not cand or k <= 0:
            return []
        q = self.query(user, item, exclude_review)[None]
        sel = faiss.IDSelectorBatch(np.asarray(cand, dtype=np.int64))
        n = len(cand)
        scores, ids = self.index.search(q, n, params=faiss.SearchParameters(sel=sel))
        pairs = [(float(s) + (boost or {}).get(int(i), 0.0), int(i)) for s, i in zip(scores[0], ids[0]) if i >= 0]
        pairs.sort(key=lambda p: (-p[0], p[1]))
        return [Retrieved(i, self.texts[i], int(self.review[i]), s, self.emb[i]) for s, i in pairs[:k]]
