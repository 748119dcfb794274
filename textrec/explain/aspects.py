"""Aspects (product features) without network tools, and which ones a user cares about.

Extraction (no POS tagger, no Sentires): a word is noun-like when it often follows a definite
determiner or possessive ("the strings", "my tuner"); candidates are such words and two-word
compounds of them ("pop filter", "sound quality"), ranked by how many training reviews mention
them. Plural/singular pairs and near-duplicates (cosine of the MiniLM embeddings of the aspect
strings >= ``merge_threshold``) are merged into one canonical aspect, the most frequent form.

Preferences follow ERRA: a user's aspects are counted over their other training reviews,
weighted by recency; an item's over its other training reviews; the top ``n`` of their
(normalised) sum are the aspects an explanation for that (user, item) should talk about.
Everything is deterministic: ties break on the vocabulary order (document frequency, then
alphabetical).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from textrec.explain.sentences import STOPWORDS, Encoder, words

DETERMINERS = frozenset("the this these those my your its our their his her".split())
# Frequent words that follow determiners but are not product aspects (generic nouns, adjectives).
NOT_ASPECTS = frozenset("""
best same other only first right last whole next rest way thing things lot bit time times ones
something anything everything nothing kind sort part reason fact day days year years star stars
review reviews amazon product products item items problem problems issue issues price's end top
bottom side back front money purchase buy order point place case use need needs job work works
market world guy guys people person folks while most least few many more less new old good great
nice little big small cheap easy hard better worse well sure fine ok okay perfect excellent
second third two three four five half least previous original other's own extra entire whole
same way's quite pretty lots plenty couple number amount type types version model brand
low lower higher smaller larger bigger regular favorite included helps others past son friend friends
opinion idea experience life stuff name difference purpose results result black white red blue
""".split())


@dataclass
class AspectConfig:
    """Aspect extraction and selection settings (``aspects`` section of ``training/erra.yaml``)."""

    max_aspects: int = 400
    min_df: int = 5  # reviews that must mention a candidate
    min_det_ratio: float = 0.2  # share of a word's uses right after a determiner/possessive
    min_compound_ratio: float = 0.05  # bigram count / count of its rarer word
    merge_threshold: float = 0.85  # cosine above which two aspect strings are one aspect
    top_n: int = 2  # aspects selected per (user, item), as in ERRA
    half_life_days: float = 365.0  # recency weight of a user's older reviews
    item_weight: float = 4.0  # weight of the item's aspect distribution vs the user's
    # Scores are multiplied by idf(aspect) ** idf_power (idf over training reviews), so that an
    # aspect every review mentions ("guitar") does not crowd out the ones this item is about.
    # 4.0 / 0.5 were chosen on valid by how often the target's feature is among the top 2
    # (0.42 vs 0.37 at 1.0 / 0.0) — a choice that needs no generator.
    idf_power: float = 0.5


@dataclass
class AspectVocab:
    """Canonical aspects (vocabulary order) and the surface forms (1–2 words) that map to them."""

    aspects: list[str]
    alias: dict[str, str]  # surface form -> canonical aspect (canonical forms map to themselves)
    df: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rank = {a: i for i, a in enumerate(self.aspects)}
        self._bigrams = {tuple(s.split()): a for s, a in self.alias.items() if " " in s}
        self._unigrams = {s: a for s, a in self.alias.items() if " " not in s}

    def __len__(self) -> int:
        return len(self.aspects)

    def find(self, tokens: Sequence[str]) -> list[str]:
        """Canonical aspects mentioned in a token list, in order of first mention (longest match)."""
        out: list[str] = []
        i, n = 0, len(tokens)
        while i < n:
            a = self._bigrams.get((tokens[i], tokens[i + 1])) if i + 1 < n else None
            step = 2 if a is not None else 1
            if a is None:
                a = self._unigrams.get(tokens[i])
            if a is not None and a not in out:
                out.append(a)
            i += step
        return out

    def find_text(self, text: str) -> list[str]:
        """``find`` on the words of a raw text."""
        return self.find(words(text))

    def to_dict(self) -> dict:
        """JSON-able form."""
        return {"aspects": self.aspects, "alias": self.alias, "df": self.df}

    @classmethod
    def from_dict(cls, d: dict) -> AspectVocab:
        """Inverse of :meth:`to_dict`."""
        return cls(list(d["aspects"]), dict(d["alias"]), dict(d.get("df", {})))

    def save(self, path: str | Path) -> None:
        """Write the vocabulary as JSON (atomically)."""
        from textrec.io import write_json

        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> AspectVocab:
        """Read a vocabulary written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def _noun_like(tok: str) -> bool:
    return tok.isalpha() and len(tok) > 2 and tok not in STOPWORDS and tok not in NOT_ASPECTS \
        and not tok.endswith("ly")


def extract_aspects(texts: Iterable[str], config: AspectConfig | None = None,
                    encoder: Encoder | None = None, progress: bool = False) -> AspectVocab:
    """Build the aspect vocabulary from (training) review texts; see the module docstring.

    ``encoder=None`` skips the embedding merge (plural merge still applies).
    """
    cfg = config or AspectConfig()
    count: Counter[str] = Counter()
    after_det: Counter[str] = Counter()
    big: Counter[tuple[str, str]] = Counter()
    df: Counter[str] = Counter()
    for text in texts:
        toks = words(text)
        seen: set[str] = set()
        for j, t in enumerate(toks):
            count[t] += 1
            if j and toks[j - 1] in DETERMINERS:
                after_det[t] += 1
            if j + 1 < len(toks) and _noun_like(t) and _noun_like(toks[j + 1]):
                big[(t, toks[j + 1])] += 1
                seen.add(f"{t} {toks[j + 1]}")
            seen.add(t)
        df.update(seen)
    nouns = {t for t, c in count.items() if _noun_like(t) and df[t] >= cfg.min_df
             and after_det[t] / c >= cfg.min_det_ratio}
    cands = set(nouns)
    for (a, b), c in big.items():
        s = f"{a} {b}"
        if a in nouns and b in nouns and df[s] >= cfg.min_df \
                and c / min(count[a], count[b]) >= cfg.min_compound_ratio:
            cands.add(s)
    ranked = sorted(cands, key=lambda s: (-df[s], s))[: cfg.max_aspects]
    alias = _merge(ranked, cfg.merge_threshold, encoder, progress)
    canon = [s for s in ranked if alias[s] == s]
    cdf = {a: 0 for a in canon}
    for s in ranked:
        cdf[alias[s]] += df[s]
    canon.sort(key=lambda a: (-cdf[a], a))
    return AspectVocab(canon, alias, cdf)


def _merge(ranked: list[str], threshold: float, encoder: Encoder | None, progress: bool) -> dict[str, str]:
    """Surface -> canonical: plural forms first, then embedding near-duplicates (greedy by rank)."""
    alias: dict[str, str] = {}
    pos = {s: i for i, s in enumerate(ranked)}
    for s in ranked:  # "strings" and "string": the more frequent form is canonical
        forms = ([s[:-1]] if s.endswith("s") else []) + ([s[:-2]] if s.endswith("es") else [])
        for other in forms:
            if other in pos and other not in alias:
                hi, lo = (s, other) if pos[s] < pos[other] else (other, s)
                alias[lo] = alias.get(hi, hi)
    emb = None
    if encoder is not None and threshold < 1.0 and ranked:
        emb = np.asarray(encoder.encode(ranked, progress=progress), dtype=np.float32)
        emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    canon: list[int] = []
    for i, s in enumerate(ranked):
        if s in alias:
            continue
        if emb is not None and canon:
            sims = emb[canon] @ emb[i]
            j = int(np.argmax(sims))
            if sims[j] >= threshold:
                alias[s] = ranked[canon[j]]
                continue
        alias[s] = s
        canon.append(i)
    return {s: alias[alias[s]] if alias[s] in alias else alias[s] for s in ranked}


class AspectPreferences:
    """Per-user (recency-weighted) and per-item aspect counts over training reviews.

    ``review_aspects[r]``: the canonical aspects of review row ``r`` (set semantics per review);
    ``train_rows``: the rows that may contribute.
    """

    def __init__(self, vocab: AspectVocab, users: np.ndarray, items: np.ndarray, times: np.ndarray,
                 review_aspects: Sequence[Sequence[str]], train_rows: Sequence[int],
                 config: AspectConfig | None = None):
        self.vocab, self.cfg = vocab, config or AspectConfig()
        self.users, self.items, self.times = users, items, np.asarray(times, dtype=np.float64)
        self.review_aspects = [list(a) for a in review_aspects]
        self.by_user: dict[int, list[int]] = {}
        self.by_item: dict[int, list[int]] = {}
        df: Counter[str] = Counter()
        rows = sorted(int(x) for x in train_rows)
        for r in rows:
            self.by_user.setdefault(int(users[r]), []).append(r)
            self.by_item.setdefault(int(items[r]), []).append(r)
            df.update(set(self.review_aspects[r]))
        n = max(len(rows), 1)
        # the floor keeps a weight > 0 for an aspect that every training review mentions
        self.idf = {a: max(math.log(n / c), 1e-3) for a, c in df.items()}
        self._idf_default = math.log(max(n, 2))

    def user_scores(self, user: int, at_time: float | None = None, exclude_review: int | None = None) -> Counter:
        """Recency-weighted count of each aspect over the user's other training reviews."""
        out: Counter[str] = Counter()
        for r in self.by_user.get(int(user), []):
            if r == exclude_review:
                continue
            w = 1.0
            if at_time is not None and self.cfg.half_life_days > 0:
                w = 0.5 ** (abs(at_time - self.times[r]) / 86400.0 / self.cfg.half_life_days)
            for a in self.review_aspects[r]:
                out[a] += w
        return out

    def item_scores(self, item: int, exclude_review: int | None = None) -> Counter:
        """How many of the item's other training reviews mention each aspect."""
        out: Counter[str] = Counter()
        for r in self.by_item.get(int(item), []):
            if r != exclude_review:
                out.update(self.review_aspects[r])
        return out

    def select(self, user: int, item: int, at_time: float | None = None, exclude_review: int | None = None,
               n: int | None = None) -> list[str]:
        """Top-``n`` aspects for (user, item): (user preference + item_weight x item profile) x idf^idf_power."""
        n = self.cfg.top_n if n is None else n
        pu = self.user_scores(user, at_time, exclude_review)
        pi = self.item_scores(item, exclude_review)
        su, si = sum(pu.values()) or 1.0, sum(pi.values()) or 1.0
        g = self.cfg.idf_power
        score = {a: (pu.get(a, 0.0) / su + self.cfg.item_weight * pi.get(a, 0.0) / si)
                 * (self.idf.get(a, self._idf_default) ** g if g else 1.0) for a in set(pu) | set(pi)}
        rank = self.vocab.rank
        chosen = sorted(score, key=lambda a: (-score[a], rank.get(a, 1 << 30), a))[:n]
        for a in self.vocab.aspects:  # cold pair: pad with the most frequent aspects
            if len(chosen) >= n:
                break
            if a not in chosen:
                chosen.append(a)
        return chosen
