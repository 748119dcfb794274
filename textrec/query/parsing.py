"""Tolerant extraction of a search query from an LLM completion. Never raises.

Accepted shapes, tried in this order:

1. JSON ``{"query": "..."}`` anywhere in the text (the last such object wins, so a short
   reasoning part may come first, as in Rec-R1); a broken JSON string is recovered by a regex;
2. a ``<answer>...</answer>`` or ``<query>...</query>`` tag;
3. a line labelled ``Query:`` / ``Search query:`` (the last label wins);
4. plain text: the first non-empty line (an intro line ending in ``:`` is skipped when a
   line follows; list numbering is stripped).

Quotes, markdown emphasis and bullet marks around the query are stripped and whitespace is
collapsed. The result says whether the completion was *well formed* (a query was found with
a recognised shape and it is within the word bounds) and why not otherwise; the format reward
turns that into a penalty.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_JSON_OBJ = re.compile(r"\{[^{}]*\}", re.S)
_JSON_QUERY = re.compile(r'"query"\s*:\s*"((?:[^"\\]|\\.)*)"?', re.S)
_TAG = re.compile(r"<(answer|query)>(.*?)(?:</\1>|$)", re.S | re.I)
_LABEL = re.compile(r"^\s*(?:[-*#>\s]*)(?:search\s+)?query\s*[:=]\s*(.*)$", re.I | re.M)
_PREFIX = re.compile(r"^(?:search\s+)?query\s*[:=]\s*", re.I)
_ENUM = re.compile(r"^\d{1,2}[.)]\s+")
_ALNUM = re.compile(r"[^\W_]")
_STRIP = " \t\r\n\"'`*_#>-•"


@dataclass(frozen=True)
class ParsedQuery:
    """A parsed completion: the query text, its shape, and whether it is well formed."""

    query: str
    shape: str  # json | tag | label | plain | empty
    well_formed: bool
    problem: str = ""  # why it is not well formed ("" when it is)

    @property
    def n_words(self) -> int:
        return len(self.query.split())


def completion_text(completion: Any) -> str:
    """The text of a completion: a string, or TRL's conversational ``[{"role", "content"}]``."""
    try:
        if completion is None:
            return ""
        if isinstance(completion, str):
            return completion
        if isinstance(completion, dict):
            return str(completion.get("content", ""))
        if isinstance(completion, (list, tuple)):
            parts = [completion_text(m) for m in completion
                     if not isinstance(m, dict) or m.get("role", "assistant") == "assistant"]
            return "\n".join(p for p in parts if p)
        return str(completion)
    except Exception:  # noqa: BLE001 - parsing must never raise on odd objects
        return ""


def _clean(text: str) -> str:
    text = " ".join(text.split())
    return text.strip(_STRIP).strip()


def _from_json(text: str) -> str | None:
    found = None
    for m in _JSON_OBJ.finditer(text):
        try:
            obj = json.loads(m.group(0))
        except (json.JSONDecodeError, ValueError):
            continue
        if isinstance(obj, dict) and isinstance(obj.get("query"), str):
            found = obj["query"]
    if found is not None:
        return found
    # Truncated or sloppy JSON (a completion cut at the token limit): recover the string.
    hits = _JSON_QUERY.findall(text)
    if hits:
        raw = hits[-1]
        try:
            return json.loads(f'"{raw}"')
        except (json.JSONDecodeError, ValueError):
            return raw.replace('\\"', '"')
    return None


def parse_query(completion: Any, min_words: int = 1, max_words: int = 32) -> ParsedQuery:
    """Extract the query from a completion (see the module docstring). Never raises."""
    try:
        text = completion_text(completion)
        if not text.strip():
            return ParsedQuery("", "empty", False, "empty completion")
        q = _from_json(text) if "query" in text.lower() and "{" in text else None
        shape = "json"
        if q is None:
            tags = _TAG.findall(text)
            if tags:
                q, shape = tags[-1][1], "tag"
        if q is None:
            labels = _LABEL.findall(text)
            labels = [x for x in labels if x.strip()]
            if labels:
                q, shape = labels[-1], "label"
        if q is None:
            lines = [_ENUM.sub("", ln) for ln in (_clean(x) for x in text.splitlines()) if ln]
            lines = [ln for ln in lines if ln]
            # Small chat models often open with "Here's a search query:" and put the query on
            # the next line: skip such intro lines when something follows them.
            while len(lines) > 1 and lines[0].endswith(":"):
                lines = lines[1:]
            q, shape = (_PREFIX.sub("", lines[0]) if lines else ""), "plain"
        q = _clean(str(q))
        if not q:
            return ParsedQuery("", "empty", False, f"no query text found ({shape} shape)")
        if shape == "plain" and q.endswith(":"):
            return ParsedQuery(q, shape, False, "only an intro line, no query after it")
        if not _ALNUM.search(q):
            return ParsedQuery(q, shape, False, "no letters or digits")
        n = len(q.split())
        if n < min_words:
            return ParsedQuery(q, shape, False, f"too short ({n} < {min_words} words)")
        if n > max_words:
            return ParsedQuery(q, shape, False, f"too long ({n} > {max_words} words)")
        return ParsedQuery(q, shape, True)
    except Exception as e:  # noqa: BLE001 - a reward function must never crash training
        return ParsedQuery("", "empty", False, f"parse error: {type(e).__name__}")
