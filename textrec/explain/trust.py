"""Measures of trust: is what an explanation says backed by the item's reviews, and about this user?

Three measures on every explanation (the benchmark reports them beside BLEU/ROUGE/USR/DIV/FCR):

* **unsupported content**: the explanation's *claim units* are its content words (words of
  :func:`textrec.text.words.words` that are alphabetic, not in ``STOPWORDS`` and not in
  :data:`GENERIC_SENTIMENT`) plus the multi-word aspects it names. A unit is *supported* when it
  occurs in one of the item's training reviews (full text, not only the indexed sentences) or in
  the item's catalog text; words are compared after folding a plural ``s`` (``strings`` =
  ``string``). The row value ``unsupported_content`` is the pooled share over all explanations
  (unsupported units / units); ``unsupported_mean`` averages the per-explanation shares, and
  ``unsupported_any`` is the share of explanations with at least one unsupported unit.
* **personal**: the aspects the explanation names (``AspectVocab.find``) against the aspects this
  user wrote about in their training reviews (the review being explained never counts).
  ``personal_hit_rate``: share of explanations naming at least one of them (an explanation that
  names no aspect is a miss); ``personal_precision``: share of named aspects that are the user's,
  over explanations naming any.
* **grounding**: unchanged (:mod:`textrec.explain.faithfulness`): share of content words found in
  the sentences the explanation cites.

The lists are written down here, in the code, and copied into every benchmark JSON
(:func:`word_lists`) so a reader can check what was set aside.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from textrec.text.words import STOPWORDS, words

#: Evaluative and filler words any review of any product can say; not claims about *this* item,
#: so they are neither counted as supported nor as unsupported content.
GENERIC_SENTIMENT = frozenset("""
good great nice excellent awesome amazing fantastic wonderful perfect perfectly fine ok okay decent solid
bad poor terrible awful horrible worst worse better best well love loves loved loving like likes liked
happy pleased satisfied glad disappointed recommend recommended recommending highly definitely totally
absolutely pretty quite fairly simply exactly truly actually basically certainly probably maybe
works work worked working job use used uses using buy bought buying purchase purchased product item
thing things stuff price money worth value deal cheap expensive quality real little bit lot lots
much many every always never sure enough exactly want wanted need needed needs make makes made
get gets got getting go goes going went come comes came give gives gave take takes took put
say said think thought know knew feel feels felt look looks looked seem seems seemed
would could should also even still yet just really very thing one ones two first
""".split()) - STOPWORDS


def fold(word: str) -> str:
    """The form words are compared in: lower case, a plural ``s`` / ``es`` / ``ies`` folded."""
    w = word.lower()
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        return w[:-1]
    return w


def claim_words(tokens: Sequence[str]) -> set[str]:
    """Folded content words that make a claim: alphabetic, length >= 2, not stop words, not generic."""
    return {fold(t) for t in tokens if t.isalpha() and len(t) > 1 and t not in STOPWORDS
            and t not in GENERIC_SENTIMENT}


def word_lists() -> dict[str, list[str]]:
    """The stop-word and generic-sentiment lists the measures set aside (for result JSON)."""
    return {"stopwords": sorted(STOPWORDS), "generic_sentiment": sorted(GENERIC_SENTIMENT)}


@dataclass
class TrustSupport:
    """What each item's training reviews (and catalog text) say, and what each user wrote about.

    Built once per dataset split from :class:`textrec.explain.data.ExplainData` (:meth:`from_data`).
    """

    item_words: dict[int, set[str]]
    item_aspects: dict[int, set[str]]
    user_review_aspects: dict[int, list[tuple[int, set[str]]]]  # user -> [(review row, aspects)]
    vocab: object  # AspectVocab

    @classmethod
    def from_data(cls, data) -> TrustSupport:
        """Support sets from the training reviews of ``data`` (plus its item texts, when present)."""
        reviews = data.reviews
        texts = reviews["text"].fillna("").astype(str).tolist()
        summaries = reviews["summary"].fillna("").astype(str).tolist() if "summary" in reviews.columns else None
        users, items = reviews["user"].to_numpy(), reviews["item"].to_numpy()
        iw: dict[int, set[str]] = {}
        ia: dict[int, set[str]] = {}
        ua: dict[int, list[tuple[int, set[str]]]] = {}
        for r in data.split.train.tolist():
            toks = words(texts[r] + (" . " + summaries[r] if summaries is not None else ""))
            i, u = int(items[r]), int(users[r])
            iw.setdefault(i, set()).update(fold(t) for t in toks if t.isalpha())
            found = set(data.vocab.find(toks))
            ia.setdefault(i, set()).update(found)
            ua.setdefault(u, []).append((int(r), set(data.vocab.find(words(texts[r])))))
        if getattr(data, "item_texts", None) is not None:
            for i, t in enumerate(data.item_texts):
                if t:
                    toks = words(t)
                    iw.setdefault(i, set()).update(fold(x) for x in toks if x.isalpha())
                    ia.setdefault(i, set()).update(data.vocab.find(toks))
        return cls(iw, ia, ua, data.vocab)

    def user_aspects(self, user: int, exclude_review: int | None = None) -> set[str]:
        """Aspects of the user's training reviews, without ``exclude_review``."""
        out: set[str] = set()
        for r, a in self.user_review_aspects.get(int(user), []):
            if r != exclude_review:
                out |= a
        return out

    def check(self, explanation: str, user: int, item: int, exclude_review: int | None = None) -> TrustCheck:
        """The trust measures of one explanation of ``item`` for ``user``."""
        toks = words(explanation)
        named = self.vocab.find(toks)
        units = claim_words(toks)
        iw = self.item_words.get(int(item), set())
        bad = sorted(w for w in units if w not in iw)
        # a multi-word aspect is its own claim: "pop filter" is not backed by "pop" and "filter" apart
        multi = [a for a in named if " " in a]
        ia = self.item_aspects.get(int(item), set())
        bad += [a for a in multi if a not in ia]
        n_units = len(units) + len(multi)
        mine = self.user_aspects(user, exclude_review)
        return TrustCheck(n_units=n_units, unsupported=bad, aspects=list(named),
                          personal=[a for a in named if a in mine])


@dataclass
class TrustCheck:
    """Trust measures of one explanation."""

    n_units: int
    unsupported: list[str]
    aspects: list[str]
    personal: list[str]

    @property
    def unsupported_share(self) -> float:
        """Unsupported claim units / claim units (0 when it claims nothing)."""
        return len(self.unsupported) / self.n_units if self.n_units else 0.0

    def to_dict(self) -> dict:
        """JSON-able form (for served answers and sample files)."""
        return {"unsupported_share": round(self.unsupported_share, 4), "unsupported": self.unsupported,
                "claim_units": self.n_units, "aspects": self.aspects, "personal_aspects": self.personal}


@dataclass
class TrustReport:
    """Per-explanation trust checks of one model on one split."""

    checks: list[TrustCheck] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        """Row values: unsupported content (pooled, mean, any), personal hit rate and precision."""
        c = self.checks
        n = max(len(c), 1)
        units = sum(x.n_units for x in c)
        named = [x for x in c if x.aspects]
        return {"unsupported_content": sum(len(x.unsupported) for x in c) / units if units else 0.0,
                "unsupported_mean": float(np.mean([x.unsupported_share for x in c])) if c else 0.0,
                "unsupported_any": sum(bool(x.unsupported) for x in c) / n,
                "personal_hit_rate": sum(bool(x.personal) for x in c) / n,
                "personal_precision": (float(np.mean([len(x.personal) / len(x.aspects) for x in named]))
                                       if named else 0.0),
                "names_aspect": len(named) / n,
                "claim_units_per_explanation": units / n}


def trust_report(support: TrustSupport, texts: Sequence[str], examples: Sequence) -> TrustReport:
    """Trust checks of explanations of examples (``user``, ``item``, ``row`` = the review explained)."""
    out = TrustReport()
    for t, e in zip(texts, examples):
        row = getattr(e, "row", None)
        out.checks.append(support.check(t, e.user, e.item, exclude_review=row if row is not None and row >= 0
                                        else None))
    return out


def support_of(data) -> TrustSupport:
    """The data's :class:`TrustSupport`, built on first use and kept on the data object."""
    s = getattr(data, "_trust_support", None)
    if s is None:
        s = TrustSupport.from_data(data)
        data._trust_support = s
    return s
