"""Queries written without an LLM, from the titles a prompt would show (oldest first).

They are the no-LLM rows of the benchmark, the SFT teacher's candidates, and the queries of a
:class:`textrec.query.recommender.QueryRecommender` without a writer:

* ``raw_history``: every shown title concatenated, oldest first (the Rec-R1 baseline);
* ``last_title`` / ``last_two_titles``: the newest one or two titles (newest first);
* ``all_titles``: every title, *newest first*, cut to ``max_words`` (cutting oldest-first kept
  only the oldest items; the same held for the last two titles);
* ``keywords``: distinct content words (the BM25 analyzer's tokens), newest item first.
"""

from __future__ import annotations

from collections.abc import Sequence

HEURISTICS = ("raw_history", "last_title", "last_two_titles", "all_titles", "keywords")
#: the candidates the SFT teacher chooses from (raw history is the baseline, not a target)
SFT_CANDIDATES = ("last_title", "last_two_titles", "all_titles", "keywords")


def _cut(text: str, max_words: int) -> str:
    return " ".join(text.split()[:max_words])


def heuristic_query(kind: str, context: Sequence[str], max_words: int = 16) -> str:
    """The ``kind`` query for a context (titles oldest first); '' when the context is empty."""
    from textrec.query.retrieval import tokenize

    ctx = [c for c in context if str(c).strip()]
    if kind == "raw_history":
        return " ".join(ctx)
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
    raise ValueError(f"unknown heuristic query '{kind}'; choose from {list(HEURISTICS)}")


def heuristic_queries(context: Sequence[str], max_words: int = 16,
                      kinds: Sequence[str] = SFT_CANDIDATES) -> dict[str, str]:
    """Several heuristic queries for one context, by kind."""
    return {k: heuristic_query(k, context, max_words) for k in kinds}
