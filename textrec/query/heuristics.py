"""Queries written without an LLM, from the titles a prompt would show (oldest first), under a
word budget (a person types 2-8 words into a search box; :data:`DEFAULT_MAX_WORDS`).

They are the no-LLM rows of the benchmark, the SFT teacher's candidates, and the queries of a
:class:`textrec.query.recommender.QueryRecommender` without a writer. Every kind returns at most
``max_words`` words:

* ``raw_history``: the shown titles concatenated oldest first (the Rec-R1 baseline), cut to its
  *newest* ``max_words`` words (a cut from the front would keep only the oldest items);
* ``last_title`` / ``last_two_titles``: the newest one or two titles (newest first);
* ``all_titles``: every title, newest first, cut to ``max_words``;
* ``keywords``: distinct content words (the BM25 analyzer's terms), newest item first;
* ``tfidf_keywords``: the history's most distinctive terms: term frequency over the shown
  titles times the term's inverse document frequency in the catalog (:class:`TermWeights`),
  highest first, ties to the newer term.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

HEURISTICS = ("raw_history", "last_title", "last_two_titles", "all_titles", "keywords", "tfidf_keywords")
#: the candidates the SFT teacher chooses from, per user, under the reward retriever
SFT_CANDIDATES = HEURISTICS
#: the query budget in words (the benchmark also reports 4 and 16)
DEFAULT_MAX_WORDS = 8
BUDGETS = (4, 8, 16)


class TermWeights:
    """Inverse document frequency of each BM25 term over a catalog's documents.

    ``idf(t) = log(N / df(t))``; a term no document holds weighs 0 (it can retrieve nothing).
    """

    def __init__(self, documents: Sequence[str]):
        from textrec.query.retrieval import tokenize

        df: Counter[str] = Counter()
        for d in documents:
            df.update(set(tokenize(d)))
        n = max(1, len(documents))
        self.idf = {t: math.log(n / c) for t, c in df.items()}

    def __call__(self, term: str) -> float:
        return self.idf.get(term, 0.0)


_WEIGHTS: dict[str, TermWeights] = {}


def term_weights(catalog) -> TermWeights:
    """The :class:`TermWeights` of a :class:`textrec.query.catalog.Catalog` (memoised by content hash)."""
    key = catalog.sha256()
    if key not in _WEIGHTS:
        if len(_WEIGHTS) > 8:
            _WEIGHTS.clear()
        _WEIGHTS[key] = TermWeights(catalog.documents)
    return _WEIGHTS[key]


def _cut(text: str, max_words: int) -> str:
    return " ".join(text.split()[:max_words])


def budget_words(text: str, max_words: int | None = DEFAULT_MAX_WORDS) -> str:
    """``text`` cut to its first ``max_words`` words (whitespace collapsed; ``None``: no cut)."""
    words = str(text).split()
    return " ".join(words if max_words is None else words[:max_words])


def _tfidf(ctx: Sequence[str], max_words: int, weights: TermWeights) -> str:
    from textrec.query.retrieval import tokenize

    tf: Counter[str] = Counter()
    newest: dict[str, int] = {}
    for age, line in enumerate(reversed(ctx)):
        for w in tokenize(line):
            tf[w] += 1
            newest.setdefault(w, age)
    ranked = sorted(tf, key=lambda w: (-tf[w] * weights(w), newest[w]))
    return " ".join(ranked[:max_words])


def heuristic_query(kind: str, context: Sequence[str], max_words: int = DEFAULT_MAX_WORDS,
                    weights: TermWeights | None = None) -> str:
    """The ``kind`` query for a context (titles oldest first), at most ``max_words`` words; '' when
    the context is empty. ``tfidf_keywords`` needs the catalog's ``weights`` (:func:`term_weights`)."""
    from textrec.query.retrieval import tokenize

    if max_words < 1:
        raise ValueError(f"max_words must be >= 1, got {max_words}")
    ctx = [c for c in context if str(c).strip()]
    if kind == "raw_history":
        words = " ".join(ctx).split()
        return " ".join(words[-max_words:])
    if kind == "last_title":
        return _cut(ctx[-1], max_words) if ctx else ""
    if kind == "last_two_titles":
        return _cut(" ".join(reversed(ctx[-2:])), max_words)
    if kind == "all_titles":
        return _cut(" ".join(reversed(ctx)), max_words)
    if kind == "keywords":
        seen: dict[str, None] = {}
        for c in reversed(ctx):
            for w in tokenize(c):
                seen.setdefault(w, None)
        return " ".join(list(seen)[:max_words])
    if kind == "tfidf_keywords":
        if weights is None:
            raise ValueError("the tfidf_keywords query needs the catalog's term weights (heuristics.term_weights)")
        return _tfidf(ctx, max_words, weights)
    raise ValueError(f"unknown heuristic query '{kind}'; choose from {list(HEURISTICS)}")


def heuristic_queries(context: Sequence[str], max_words: int = DEFAULT_MAX_WORDS,
                      kinds: Sequence[str] = SFT_CANDIDATES, weights: TermWeights | None = None) -> dict[str, str]:
    """Several heuristic queries for one context, by kind."""
    return {k: heuristic_query(k, context, max_words, weights) for k in kinds}
