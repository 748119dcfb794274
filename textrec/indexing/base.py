"""``ItemIndex``: the token sequence that names each item for a generative recommender.

An index maps every item index ``0..n_items-1`` to a short sequence of *item tokens* such as
``<a_17><b_203>`` (semantic), ``<c0_3><c1_12><c2_5>`` (collaborative) or ``<n1><n2><n7>``
(random / sequential numbers written digit by digit). The tokens are added to the P5
tokenizer as special tokens, so an item is always the same token-id sequence whatever text
surrounds it. No two items share a sequence (checked on construction), which is what lets a
prefix trie over the sequences decode any generated path back to exactly one item.

Files: ``save(path)`` writes one JSON file (scheme, leaky flag, the per-item token lists and
the scheme's build report); ``ItemIndex.load`` reads it back and re-checks uniqueness.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textrec.io import atomic_write_text

FORMAT_VERSION = 1
TOKEN_RE = re.compile(r"<[A-Za-z]+\d*_?\d+>")
RUN_RE = re.compile(r"(?:<[A-Za-z]+\d*_?\d+>)+")


@dataclass
class ItemIndex:
    """Per-item token sequences of one indexing scheme.

    ``leaky`` marks schemes whose ids encode the answer (sequential numbering: the next item
    is often "largest id seen + 1"); their numbers must be reported apart.
    """

    scheme: str
    tokens: list[list[str]]
    leaky: bool = False
    report: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        seen: dict[tuple[str, ...], int] = {}
        for i, toks in enumerate(self.tokens):
            if not toks:
                raise ValueError(f"{self.scheme} index: item {i} has an empty token sequence")
            for t in toks:
                if not TOKEN_RE.fullmatch(t):
                    raise ValueError(f"{self.scheme} index: item {i} token {t!r} is not of the form <name_123>")
            key = tuple(toks)
            if key in seen:
                raise ValueError(f"{self.scheme} index: items {seen[key]} and {i} share the id {''.join(toks)}")
            seen[key] = i
        self._lookup = seen

    @property
    def n_items(self) -> int:
        return len(self.tokens)

    def item_text(self, item: int) -> str:
        """The item's id as it appears in a prompt, e.g. ``<a_17><b_203>``."""
        return "".join(self.tokens[int(item)])

    def vocab(self) -> list[str]:
        """Every distinct item token, sorted (what the tokenizer must add)."""
        return sorted({t for toks in self.tokens for t in toks})

    def start_tokens(self) -> set[str] | None:
        """Tokens that begin an id and occur at no other position, or None if some first token does.

        With such tokens, ids written back to back (no separator) still split unambiguously:
        a new id starts at every start token (per-item, collaborative, semantic and hybrid
        ids). Digit ids (``<n_1><n_2>``) have no such tokens and need a separator.
        """
        first = {t[0] for t in self.tokens}
        later = {x for t in self.tokens for x in t[1:]}
        return None if first & later else first

    def parse(self, text: str) -> int | None:
        """The item whose id is exactly ``text`` (whitespace ignored), or None."""
        return self._lookup.get(tuple(TOKEN_RE.findall(text)))

    def find_items(self, text: str) -> list[int]:
        """Every item id appearing in ``text`` in order.

        Runs of adjacent item tokens are split greedily (longest id first); any other
        character (e.g. the ``,`` between history items) ends an id, which matters for digit
        ids where ``<n_1><n_2>`` and ``<n_1>`` are both items.
        """
        out: list[int] = []
        max_len = max(len(t) for t in self.tokens)
        for run in RUN_RE.finditer(text):
            toks = TOKEN_RE.findall(run.group())
            i = 0
            while i < len(toks):
                for n in range(min(max_len, len(toks) - i), 0, -1):
                    hit = self._lookup.get(tuple(toks[i:i + n]))
                    if hit is not None:
                        out.append(hit)
                        i += n
                        break
                else:
                    i += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready content."""
        return {"format_version": FORMAT_VERSION, "scheme": self.scheme, "leaky": self.leaky,
                "n_items": self.n_items, "report": self.report, "tokens": self.tokens}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the index as one JSON file (atomically)."""
        path = Path(path)
        atomic_write_text(path, json.dumps(self.to_dict(), separators=(",", ":")))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> ItemIndex:
        """Read a file written by :meth:`save`."""
        path = Path(path)
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path}: unsupported item index format {data.get('format_version')}")
        for key in ("scheme", "tokens"):
            if key not in data:
                raise ValueError(f"{path}: item index file lacks '{key}'")
        return cls(scheme=data["scheme"], tokens=[list(t) for t in data["tokens"]],
                   leaky=bool(data.get("leaky", False)), report=data.get("report", {}))

    def __repr__(self) -> str:
        lens = [len(t) for t in self.tokens]
        return (f"ItemIndex({self.scheme!r}, {self.n_items} items, {len(self.vocab())} tokens, "
                f"length {min(lens)}-{max(lens)}{', LEAKY' if self.leaky else ''})")


def digits(n: int) -> list[str]:
    """A number as digit tokens ``<n1><n2>...`` (shared across positions, like P5's word pieces)."""
    return [f"<n_{c}>" for c in str(int(n))]
