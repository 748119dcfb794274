"""Everything the explanation models read, built once per dataset and split.

``ExplainData.build(dataset)`` does, in order: the seeded 8:1:1 review split
(:mod:`textrec.explain.split`); the aspect vocabulary from *training* review texts; the
explanation target of each review; per-user/per-item aspect preferences from training reviews;
the FAISS sentence index over training reviews; and, for every example, its selected aspects and
retrieved sentences (never from its own review, never from valid/test reviews).

Target (as in PETER): the first sentence of the review with ``min_target_words`` to
``max_target_words`` words that mentions an aspect of the vocabulary; its first aspect is the
ground-truth feature used by FMR. A review without such a sentence has nothing to explain: in
train it still feeds retrieval and preferences; in valid/test it is removed (counted).
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from textrec.data.dataset import SkipReport
from textrec.explain.aspects import AspectConfig, AspectPreferences, AspectVocab, extract_aspects
from textrec.explain.sentences import Encoder, Retrieved, SentenceIndex, split_sentences, words
from textrec.explain.split import ReviewSplit, split_reviews
from textrec.text.sanitize import cap_chars, strip_control


@dataclass
class DataConfig:
    """Split, target and retrieval settings (``data`` section of ``training/erra.yaml``)."""

    seed: int = 0
    min_target_words: int = 4
    max_target_words: int = 25
    sentence_min_words: int = 3  # shorter sentences are not indexed
    sentence_max_words: int = 30  # nor longer ones (run-on text without punctuation: poor citations)
    k_sentences: int = 3  # retrieved sentences per (user, item)
    aspect_boost: float = 0.1  # retrieval bonus of sentences that mention a selected aspect
    on_error: str = "skip"  # empty text / missing rating: count and skip, or raise
    max_review_chars: int = 20_000  # longer review texts are cut (bounds memory and work per review)
    # False: the sentence index holds no MiniLM vectors (retrieval then ranks by sentence id), which
    # is all the extractive explainer without embedding features needs, and skips encoding every sentence
    sentence_embeddings: bool = True


class ZeroEncoder:
    """Stands in for the sentence encoder when the index needs no vectors (``sentence_embeddings: false``)."""

    dim = 384

    def encode(self, texts, progress: bool = True) -> np.ndarray:
        """Zero vectors, one per text."""
        return np.zeros((len(texts), self.dim), dtype=np.float32)


@dataclass
class Example:
    """One (user, item) review to explain, with its inputs precomputed."""

    row: int  # position in the reviews table
    user: int
    item: int
    rating: float
    time: float
    target: str  # the reference explanation, space-joined words
    feature: str  # ground-truth aspect of the target (for FMR)
    aspects: list[str] = field(default_factory=list)
    retrieved: list[Retrieved] = field(default_factory=list)


def target_sentence(text: str, vocab: AspectVocab, min_words: int = 4, max_words: int = 25
                    ) -> tuple[str, str] | None:
    """(space-joined words of the first aspect-bearing sentence in the length bounds, its first aspect)."""
    for s in split_sentences(text):
        toks = words(s)
        if min_words <= len(toks) <= max_words:
            found = vocab.find(toks)
            if found:
                return " ".join(toks), found[0]
    return None


def clean_reviews(reviews: pd.DataFrame, max_chars: int | None) -> tuple[pd.DataFrame, dict[str, int]]:
    """Review texts without control/format characters (line breaks kept) and cut to ``max_chars``.

    Returns a new frame (the dataset's own table is not changed) and how many texts changed.
    """
    counts = {"control_removed": 0, "truncated": 0}
    if "text" not in reviews.columns:
        return reviews, counts
    out = []
    for t in reviews["text"].tolist():
        if not isinstance(t, str):
            out.append(t)
            continue
        t, changed = strip_control(t, keep_newlines=True)
        t, cut = cap_chars(t, max_chars)
        counts["control_removed"] += changed
        counts["truncated"] += cut
        out.append(t)
    if counts["control_removed"] or counts["truncated"]:
        reviews = reviews.copy()
        reviews["text"] = out
    return reviews, counts


class ExplainData:
    """Split, aspects, sentence index and examples for one review dataset (see module docstring)."""

    def __init__(self, name: str, reviews: pd.DataFrame, split: ReviewSplit, vocab: AspectVocab,
                 prefs: AspectPreferences, index: SentenceIndex, config: DataConfig,
                 examples: dict[str, list[Example]], report: dict, user_ids=None, item_ids=None):
        self.name, self.reviews, self.split, self.vocab = name, reviews, split, vocab
        self.prefs, self.index, self.config, self.examples = prefs, index, config, examples
        self.report = report
        self.n_users = int(reviews["user"].max()) + 1 if user_ids is None else len(user_ids)
        self.n_items = int(reviews["item"].max()) + 1 if item_ids is None else len(item_ids)
        self.user_ids = np.asarray(user_ids if user_ids is not None else np.arange(self.n_users), dtype=object)
        self.item_ids = np.asarray(item_ids if item_ids is not None else np.arange(self.n_items), dtype=object)
        self._sent_aspects: list[set[str]] | None = None
        self.item_texts: list[str] | None = None  # item titles/descriptions, when the dataset has them
        # plain arrays: per-row pandas access dominated the build time
        self._users = reviews["user"].to_numpy()
        self._items = reviews["item"].to_numpy()
        self._times = reviews["timestamp"].to_numpy(dtype=np.float64) if "timestamp" in reviews.columns else None
        self._ratings = reviews["rating"].to_numpy(dtype=np.float64) if "rating" in reviews.columns else None

    # ---- construction --------------------------------------------------------------------
    @classmethod
    def build(cls, dataset, config: DataConfig | None = None, aspect_config: AspectConfig | None = None,
              encoder: Encoder | None = None, progress: bool = True, with_examples: bool = True) -> ExplainData:
        """Build from a ``RecDataset`` with reviews (or any object with ``.reviews``/``.name``).

        ``with_examples=False`` skips the per-example retrieval (enough to explain new pairs).
        """
        cfg, acfg = config or DataConfig(), aspect_config or AspectConfig()
        reviews = getattr(dataset, "reviews", None)
        if reviews is None:
            raise ValueError(f"dataset '{getattr(dataset, 'name', '?')}' has no reviews table: "
                             "explanations need review text")
        reviews, cleaned = clean_reviews(reviews.reset_index(drop=True), cfg.max_review_chars)
        if encoder is None:
            from textrec.text.encoder import TextEncoder

            encoder = TextEncoder()
        source = getattr(dataset, "source", "") or getattr(dataset, "name", "")
        split = split_reviews(reviews, seed=cfg.seed, on_error=cfg.on_error, source=source)
        texts = reviews["text"].fillna("").astype(str).tolist()
        vocab = extract_aspects([texts[r] for r in split.train], acfg, encoder=encoder, progress=progress)
        review_aspects = [vocab.find_text(t) if t else [] for t in texts]
        prefs = AspectPreferences(vocab, reviews["user"].to_numpy(), reviews["item"].to_numpy(),
                                  reviews["timestamp"].to_numpy() if "timestamp" in reviews.columns
                                  else np.zeros(len(reviews)), review_aspects, split.train, acfg)
        index = SentenceIndex(reviews, split.train, encoder if cfg.sentence_embeddings else ZeroEncoder(),
                              min_words=cfg.sentence_min_words,
                              max_words=cfg.sentence_max_words, progress=progress)
        report = {"split": split.describe(), "aspects": len(vocab), "indexed_sentences": len(index),
                  "sanitized": cleaned}
        data = cls(getattr(dataset, "name", "reviews"), reviews, split, vocab, prefs, index, cfg, {}, report,
                   getattr(dataset, "user_ids", None), getattr(dataset, "item_ids", None))
        if getattr(dataset, "text_fields", None) and hasattr(dataset, "item_text"):
            data.item_texts = list(dataset.item_text())
        no_target = SkipReport()
        for part in ("train", "valid", "test") if with_examples else ():
            exs = []
            for r in getattr(split, part):
                tgt = target_sentence(texts[r], vocab, cfg.min_target_words, cfg.max_target_words)
                if tgt is None:
                    no_target.add(f"{part}: no aspect sentence of {cfg.min_target_words}-{cfg.max_target_words} "
                                  "words", example=f"row {r}")
                    continue
                exs.append(data.make_example(int(r), tgt[0], tgt[1]))
            data.examples[part] = exs
        report["no_target"] = dict(no_target.counts)
        report["examples"] = {k: len(v) for k, v in data.examples.items()}
        if progress:
            print(f"textrec: explain data {data.name}: {report['examples']} examples; {split.skipped.summary()}; "
                  f"moved to train {split.moved_to_train}; no target {no_target.summary()}"
                  + (f"; review texts cleaned {cleaned}" if any(cleaned.values()) else ""), file=sys.stderr)
        return data

    def make_example(self, row: int, target: str = "", feature: str = "") -> Example:
        """An example for review ``row`` with its aspects and retrieved sentences (own review excluded)."""
        u, i = int(self._users[row]), int(self._items[row])
        t = float(self._times[row]) if self._times is not None else None
        rating = float(self._ratings[row]) if self._ratings is not None else float("nan")
        if self.config.sentence_embeddings:
            aspects, retrieved = self.context(u, i, exclude_review=row, at_time=t)
        else:  # no vectors to retrieve with: the aspects alone
            aspects, retrieved = self.prefs.select(u, i, at_time=t, exclude_review=row), []
        return Example(row, u, i, rating, t or 0.0, target, feature, aspects, retrieved)

    # ---- inputs for any pair -------------------------------------------------------------
    @property
    def sentence_aspects(self) -> list[set[str]]:
        """Aspects mentioned by each indexed sentence (computed once)."""
        if self._sent_aspects is None:
            self._sent_aspects = [set(self.vocab.find_text(s)) for s in self.index.texts]
        return self._sent_aspects

    def context(self, user: int, item: int, exclude_review: int | None = None, at_time: float | None = None
                ) -> tuple[list[str], list[Retrieved]]:
        """(selected aspects, retrieved sentences) for a pair; ``exclude_review`` never contributes."""
        aspects = self.prefs.select(user, item, at_time=at_time, exclude_review=exclude_review)
        boost = None
        if self.config.aspect_boost and aspects:
            want = set(aspects)
            sa = self.sentence_aspects
            boost = {s: self.config.aspect_boost for s in self.index.candidates(user, item, exclude_review)
                     if sa[s] & want}
        retrieved = self.index.retrieve(user, item, self.config.k_sentences, exclude_review, boost=boost)
        return aspects, retrieved

    def pair_example(self, user: int, item: int, retrieve: bool = True) -> Example:
        """An example for any (user, item) pair: its training review of that pair, if any, is excluded.

        ``retrieve=False``: aspects only, no retrieved sentences (for models that do not read them).
        """
        tr = self.split.train
        own = tr[(self._users[tr] == user) & (self._items[tr] == item)].tolist()
        ex = own[0] if own else None
        if retrieve:
            aspects, retrieved = self.context(user, item, exclude_review=ex)
        else:
            aspects, retrieved = self.prefs.select(user, item, exclude_review=ex), []
        return Example(-1 if ex is None else ex, user, item, float("nan"), 0.0, "", "", aspects, retrieved)

    def user_index(self, user_id: str) -> int:
        """Integer index of an original user id (clear error if unknown)."""
        hits = np.flatnonzero(self.user_ids.astype(str) == str(user_id))
        if not len(hits):
            raise ValueError(f"unknown user '{user_id}' in dataset '{self.name}'")
        return int(hits[0])

    def item_index(self, item_id: str) -> int:
        """Integer index of an original item id (clear error if unknown)."""
        hits = np.flatnonzero(self.item_ids.astype(str) == str(item_id))
        if not len(hits):
            raise ValueError(f"unknown item '{item_id}' in dataset '{self.name}'")
        return int(hits[0])

    def config_dict(self) -> dict:
        """The data config as a dict (saved with models and in benchmark JSON)."""
        return asdict(self.config)

    def train_texts(self) -> list[str]:
        """Texts of the training reviews (what the tokenizer learns its vocabulary from)."""
        return [str(self.reviews["text"].iat[r]) for r in self.split.train]
