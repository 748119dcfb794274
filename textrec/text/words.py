"""The one word tokenizer and stop-word list, shared by explanations, search queries and text metrics.

Two views of the same text:

* :func:`words` — lower-cased word and punctuation tokens, the split of the ``tokenizers``
  Whitespace pre-tokenizer, so metrics, aspects and the explanation vocabulary all see identical
  word boundaries; :func:`content_words` keeps the alphabetic non-stopwords (what grounding
  and aspect matching compare).
* :func:`search_terms` — lower-cased alphanumeric terms without English stopwords: the BM25
  analyzer of the query engine (stop words from ``bm25s``, the retrieval library's own list,
  so an index built here matches what ``bm25s`` users expect).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

_WORD = re.compile(r"\w+|[^\w\s]+")
_TERM = re.compile(r"[a-z0-9]+")

STOPWORDS = frozenset("""
a about above after again against all also am an and any are aren as at be because been before being
below between both but by can cannot could couldn did didn do does doesn doing don down during each
even ever few for from further get gets got had hadn has hasn have haven having he her here hers herself
him himself his how however i if in into is isn it its itself just let ll me more most much must mustn my
myself no nor not now of off on once one only or other our ours ourselves out over own re really s same
shan she should shouldn so some still such t than that the their theirs them themselves then there these
they this those through to too under until up upon us ve very was wasn we were weren what when where
which while who whom why will with won would wouldn y you your yours yourself yourselves d m o ain isn
""".split())


def words(text: str) -> list[str]:
    """Lower-cased word and punctuation tokens (the Whitespace pre-tokenizer's split)."""
    return _WORD.findall(str(text).lower())


def content_words(tokens: Iterable[str]) -> set[str]:
    """Alphabetic non-stopword tokens of length >= 2: the words grounding is measured on."""
    return {t for t in tokens if t.isalpha() and len(t) > 1 and t not in STOPWORDS}


@lru_cache(maxsize=1)
def search_stopwords() -> frozenset[str]:
    """English stop words of the BM25 analyzer (``bm25s``'s list)."""
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


def search_terms(text: str, stopwords: frozenset[str] | None = None) -> list[str]:
    """Lower-cased alphanumeric terms without stop words (the BM25 analyzer)."""
    sw = search_stopwords() if stopwords is None else stopwords
    return [t for t in _TERM.findall(str(text).lower()) if t not in sw]


__all__ = ["words", "content_words", "STOPWORDS", "search_terms", "search_stopwords"]
