"""The query writer as a chooser: the policy names which heuristic query to send, per user.

At an 8-word budget no single heuristic wins for every user (the per-user oracle of the
heuristics is 1.3x the best single one on Scientific), so *which* query to send is a real
choice. In ``choose`` mode the writer's completion is one word naming a heuristic
(:data:`CHOICES`); the query is that heuristic applied to the user's recent titles, cut to the
budget. The query is therefore always text a person could type (titles or their words, never
digit strings the model made up), and the policy's whole freedom is the per-user choice that
SFT imitates and GRPO optimises.

``tfidf_keywords`` is not offered: it needs the catalog's term statistics at writing time and is
the weakest heuristic in every benchmark block.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from textrec.query.heuristics import DEFAULT_MAX_WORDS, heuristic_query
from textrec.query.parsing import completion_text

#: the word the policy writes -> the heuristic it selects (single tokens for SmolLM2's tokenizer)
CHOICES: dict[str, str] = {
    "raw": "raw_history",
    "title": "last_title",
    "two": "last_two_titles",
    "all": "all_titles",
    "words": "keywords",
}
#: the heuristic -> the word that selects it
CHOICE_WORD = {kind: word for word, kind in CHOICES.items()}
WRITER_MODES = ("write", "choose")


def parse_choice(completion: Any) -> str | None:
    """The heuristic a completion names (its first word, case and punctuation ignored); ``None`` if none."""
    words = completion_text(completion).split()
    if not words:
        return None
    return CHOICES.get(words[0].strip(" \t\"'`*.,:;()[]").lower())


def choice_query(completion: Any, context: Sequence[str], max_words: int = DEFAULT_MAX_WORDS) -> str:
    """The query a choice completion selects for ``context`` (titles oldest first); '' for no valid choice."""
    kind = parse_choice(completion)
    return heuristic_query(kind, context, max_words) if kind is not None else ""


def check_mode(mode: str) -> str:
    """``mode`` if it is a writer mode (``write``: the completion is the query; ``choose``: it names one)."""
    if mode not in WRITER_MODES:
        raise ValueError(f"writer mode must be one of {list(WRITER_MODES)}, not {mode!r}")
    return mode
