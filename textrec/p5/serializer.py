"""Serializer: training events + item ids + prompt templates -> (source, target) text pairs.

Every example is built from the *training* part of a split only. A sequential example for
position ``t`` of a user's training sequence ``s`` has ``s[t]`` as target and (at most
``max_history`` of) ``s[:t]`` as history, so no target or later event can appear in its
source (tested). Evaluation sources use the evaluation set's history (train, or train + valid
for test), never its target.

Families (templates in ``prompts/p5/<family>.yaml``):

* ``sequential`` – next item from the history (with or without item titles);
* ``direct`` – yes/no on one item (positive = the true next item, negative = a sampled item
  the user never consumed in training) or choose the next item from ``n_candidates`` ids;
* ``rating`` – the star rating of a training event (needs a ``rating`` column); the items
  before it are available as ``history`` (compact prompts name the user by their history),
  and :class:`RatingPrior` gives ``user_mean`` (the user's earlier ratings) and ``item_mean``
  (the item's other training ratings), so a prompt can carry the user and item biases, written
  as one-decimal text or (``rating_prior_format="tokens"``) as one value token each
  (``<rv_46>`` = 4.6, see :data:`RATING_VALUE_TOKENS`);
* ``explanation`` / ``review`` – review text / summary of training-pair reviews (need reviews).

Families whose templates ``require`` a capability the data lacks are skipped and listed in
``skipped_families``; nothing is dropped silently. Output is deterministic for ``(seed, epoch)``.

Data text (titles, reviews, summaries) goes through :class:`textrec.text.sanitize.TextSanitizer`
first: control characters removed, special-token patterns such as ``<n_4>`` neutralised (a title
can never spell an item id), and each field capped in characters as well as words (a 1 MB
one-word title is cut). ``sanitize_stats`` counts what was changed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from textrec.indexing.base import ItemIndex
from textrec.prompts import Template, TemplateError, load_templates, select
from textrec.text.sanitize import SanitizeStats, TextSanitizer

logger = logging.getLogger("textrec.p5")
FAMILIES = ("sequential", "direct", "rating", "explanation", "review")
ITEM_SEP = ","  # default separator between item ids (digit ids need one to stay apart)
PROMPT_SETS = ("p5", "p5/compact")
RATING_PRIOR_FORMATS = ("text", "tokens")
# One vocabulary token per tenth of a star (1.0 .. 5.0): a mean rating read as one symbol, not as
# the digit pieces "4", ".", "6". The pattern <name_N> is one the sanitizer neutralises in data
# text, so review or title text can never spell one.
RATING_VALUE_TOKENS = tuple(f"<rv_{k}>" for k in range(10, 51))


def rating_value_token(value: float) -> str:
    """The :data:`RATING_VALUE_TOKENS` entry nearest to ``value`` (clipped to 1..5 stars)."""
    k = int(round(min(max(float(value), 1.0), 5.0) * 10))
    return f"<rv_{k}>"


def rating_value_of_token(token: str) -> float:
    """The star value a :data:`RATING_VALUE_TOKENS` entry stands for."""
    if token not in RATING_VALUE_TOKENS:
        raise ValueError(f"'{token}' is not a rating value token")
    return int(token[4:-1]) / 10


@dataclass
class SerializerConfig:
    """How many examples of which family to render per epoch, and how prompts are written.

    ``prompt_set`` picks the template folder: ``p5`` (P5's wordings, with user-id prose) or
    ``p5/compact`` (short wordings, no user id). ``item_sep`` goes between item ids (``""``
    writes them back to back, fine for ids with start tokens, see ``ItemIndex.start_tokens``).
    ``max_history_titles=None`` shows as many titled items as ``max_history`` (title templates
    then see the same history as id-only ones, in training and in evaluation alike).
    """

    families: list[str] = field(default_factory=lambda: ["sequential"])
    prompt_set: str = "p5"
    item_sep: str = ITEM_SEP
    max_history: int = 20
    max_history_titles: int | None = 5
    title_words: int = 8
    positions_per_user: int | None = None  # sequential: sampled target positions per user per epoch (None = all)
    epoch_shards: int = 1  # with positions_per_user=None: each epoch trains 1/epoch_shards of all prefixes (see _sequential)
    min_history: int = 1
    direct_per_user: int = 1
    n_candidates: int = 20
    rating_per_user: int = 2
    rating_prior_strength: float = 3.0  # pseudo-ratings at the global mean in user_mean / item_mean
    rating_prior_format: str = "text"  # user_mean / item_mean as "text" ("4.6") or "tokens" (<rv_46>)
    review_words: int = 60
    summary_words: int = 12
    # character caps on top of the word caps: one "word" can be megabytes long
    title_chars: int = 200
    review_chars: int = 1000
    summary_chars: int = 240
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rating_prior_format not in RATING_PRIOR_FORMATS:
            raise ValueError(f"unknown rating_prior_format '{self.rating_prior_format}'; "
                             f"choose from {RATING_PRIOR_FORMATS}")


def load_family_templates(families: Sequence[str], prompt_set: str = "p5") -> dict[str, list[Template]]:
    """Templates of each family from ``prompts/<prompt_set>/<family>.yaml``."""
    if prompt_set not in PROMPT_SETS:
        raise ValueError(f"unknown P5 prompt set '{prompt_set}'; choose from {PROMPT_SETS}")
    out = {}
    for fam in families:
        if fam not in FAMILIES:
            raise ValueError(f"unknown P5 task family '{fam}'; choose from {FAMILIES}")
        out[fam] = load_templates(f"{prompt_set}/{fam}")
    return out


@dataclass
class TrainData:
    """What the serializer reads: per-user ordered training items (+ ratings, reviews)."""

    sequences: list[np.ndarray]
    n_items: int
    ratings: list[np.ndarray] | None = None  # aligned with sequences
    reviews: pd.DataFrame | None = None  # user, item, text, summary, rating (training pairs only)

    @classmethod
    def from_frame(cls, train: pd.DataFrame, n_users: int, n_items: int,
                   reviews: pd.DataFrame | None = None) -> TrainData:
        """From a split's train frame (sorted by user, time, row); reviews kept for training pairs only."""
        train = train.sort_values(["user", "timestamp", "row"], kind="stable")
        users = train["user"].to_numpy()
        counts = np.bincount(users, minlength=n_users)
        bounds = np.concatenate([[0], np.cumsum(counts)])
        items = train["item"].to_numpy()
        seqs = [items[bounds[u]:bounds[u + 1]] for u in range(n_users)]
        ratings = None
        if "rating" in train.columns:
            r = train["rating"].to_numpy()
            ratings = [r[bounds[u]:bounds[u + 1]] for u in range(n_users)]
        if reviews is not None and len(reviews):
            pairs = pd.MultiIndex.from_arrays([train["user"], train["item"]])
            keep = pd.MultiIndex.from_arrays([reviews["user"], reviews["item"]]).isin(pairs)
            reviews = reviews[keep].reset_index(drop=True)
        return cls(seqs, n_items, ratings, reviews if reviews is not None and len(reviews) else None)

    def capabilities(self) -> set[str]:
        """Dataset capabilities templates may require (``ratings``, ``reviews``)."""
        caps = set()
        if self.ratings is not None:
            caps.add("ratings")
        if self.reviews is not None and "text" in self.reviews.columns:
            caps.add("reviews")
        return caps


def _words(text: str, n: int) -> str:
    parts = str(text).split()
    return " ".join(parts[:n]) + (" ..." if len(parts) > n else "")


@dataclass
class RatingPrior:
    """User and item mean ratings from training events, shrunk towards the global mean, as prompt fields.

    ``user_mean`` averages the ratings the user gave *before* the rated event (the caller passes
    them). ``item_mean`` averages the item's training ratings. In training, the rated event's own
    rating is left out of the item mean and of the global mean (``exclude``), so a training prompt
    never carries its own target; at evaluation time the rated event is no training event and
    everything is used. Both means add ``strength`` pseudo-ratings at the global mean, so one
    rating does not read as certainty.
    """

    rating_sum: float
    rating_n: int
    item_sum: np.ndarray
    item_n: np.ndarray
    strength: float = 3.0

    @classmethod
    def from_data(cls, data: TrainData, strength: float = 3.0) -> RatingPrior:
        """Fitted on a :class:`TrainData`'s ratings (training events only)."""
        if data.ratings is None:
            raise ValueError("RatingPrior needs training data with ratings")
        items = np.concatenate([np.asarray(s, dtype=np.int64) for s in data.sequences] or [np.zeros(0, np.int64)])
        r = np.concatenate([np.asarray(x, dtype=np.float64) for x in data.ratings] or [np.zeros(0)])
        if not len(r):
            raise ValueError("RatingPrior needs at least one training rating")
        return cls(float(r.sum()), len(r), np.bincount(items, weights=r, minlength=data.n_items),
                   np.bincount(items, minlength=data.n_items).astype(np.float64), float(strength))

    def global_mean(self, exclude: float | None = None) -> float:
        """Mean training rating, without one rating ``exclude`` if given."""
        if exclude is None or self.rating_n < 2:
            return self.rating_sum / self.rating_n
        return (self.rating_sum - float(exclude)) / (self.rating_n - 1)

    def _shrunk(self, total: float, n: float, exclude: float | None) -> float:
        return (total + self.strength * self.global_mean(exclude)) / (n + self.strength)

    def user_mean(self, past: Sequence[float], exclude: float | None = None) -> float:
        """Shrunk mean of the user's earlier ratings (``exclude`` only moves the global mean)."""
        p = np.asarray(past, dtype=np.float64)
        return self._shrunk(float(p.sum()), float(len(p)), exclude)

    def item_mean(self, item: int, exclude: float | None = None) -> float:
        """Shrunk mean of the item's training ratings, without one rating ``exclude`` if given."""
        total, n = float(self.item_sum[int(item)]), float(self.item_n[int(item)])
        if exclude is not None:
            if n < 1:
                raise ValueError(f"item {item} has no training rating to leave out")
            total, n = total - float(exclude), n - 1
        return self._shrunk(total, n, exclude)

    def fields(self, past: Sequence[float], item: int, exclude: float | None = None,
               fmt: str = "text") -> dict[str, str]:
        """``user_mean`` and ``item_mean`` for a rating prompt: one-decimal ``text`` or value ``tokens``."""
        u, i = self.user_mean(past, exclude), self.item_mean(item, exclude)
        if fmt == "tokens":
            return {"user_mean": rating_value_token(u), "item_mean": rating_value_token(i)}
        if fmt != "text":
            raise ValueError(f"unknown rating prior format '{fmt}'; choose from {RATING_PRIOR_FORMATS}")
        return {"user_mean": f"{u:.1f}", "item_mean": f"{i:.1f}"}


def _fmt_rating(r: float) -> str:
    return str(int(r)) if float(r).is_integer() else f"{r:.1f}"


class P5Serializer:
    """Render P5 examples from training data with the given item index and templates."""

    def __init__(self, index: ItemIndex, item_titles: Sequence[str] | None = None,
                 config: SerializerConfig | None = None,
                 templates: dict[str, list[Template]] | None = None):
        self.index = index
        self.config = config or SerializerConfig()
        self.sanitizer = TextSanitizer()
        self.item_titles = ([self.sanitizer(t, self.config.title_chars) for t in item_titles]
                            if item_titles is not None else None)
        if self.item_titles is not None and len(self.item_titles) != index.n_items:
            raise ValueError(f"{len(self.item_titles)} item titles for {index.n_items} indexed items")
        if self.sanitizer.stats:
            logger.warning("P5 item titles: %s", self.sanitizer.stats)
        self.templates = templates if templates is not None else load_family_templates(
            self.config.families, self.config.prompt_set)
        if not self.config.item_sep.strip() and index.start_tokens() is None:
            raise ValueError(f"'{index.scheme}' ids cannot be written back to back (item_sep={self.config.item_sep!r}): "
                             "their first tokens also occur inside ids; use a separator such as ','")
        self._id_text = [index.item_text(i) for i in range(index.n_items)]

    # ---- field rendering -----------------------------------------------------------------
    @property
    def sanitize_stats(self) -> SanitizeStats:
        """What sanitizing changed in the data text so far (titles at construction, reviews per epoch)."""
        return self.sanitizer.stats

    def clean(self, text: object, max_chars: int | None) -> str:
        """Data text made safe for a prompt (see the module docstring)."""
        return self.sanitizer(text, max_chars)

    def item(self, i: int) -> str:
        """An item's id text."""
        return self._id_text[int(i)]

    def title(self, i: int) -> str:
        """An item's title, truncated to ``title_words`` words.

        An item without a title (or a catalog without titles, e.g. Instruments) is named by its
        id instead: a constant such as "unknown" would leave title-only prompts (explanation,
        some rating templates) with nothing that tells the items apart.
        """
        title = _words(self.item_titles[int(i)], self.config.title_words) if self.item_titles is not None else ""
        return title or self.item(i)

    def history_fields(self, history: Sequence[int]) -> dict[str, str]:
        """``history`` (last ``max_history`` ids) and ``history_titles`` (last few, with titles)."""
        c = self.config
        h = list(history)[-c.max_history:] if c.max_history > 0 else []
        n_titles = self._n_titles()
        ht = list(history)[-n_titles:] if n_titles > 0 else []
        sep = c.item_sep
        return {"history": sep.join(self.item(i) for i in h),
                "history_titles": ("; " if not sep.strip() else sep).join(self._with_title(i) for i in ht)}

    def _n_titles(self) -> int:
        c = self.config
        return c.max_history if c.max_history_titles is None else c.max_history_titles

    def _with_title(self, i: int) -> str:
        title = self.title(i)
        return self.item(i) if title == self.item(i) else f"{self.item(i)} ({title})"

    def sequential_source(self, user: int, history: Sequence[int], template: Template) -> str:
        """The source text of one sequential prompt (inference: no target needed)."""
        return template.render_source(user=int(user), **self.history_fields(history))

    def template(self, family: str, template_id: str | None = None, unseen: bool = False) -> Template:
        """One template by id, or the family's first seen/unseen one."""
        ts = self.templates.get(family) or load_templates(f"{self.config.prompt_set}/{family}")
        if template_id is not None:
            for t in ts:
                if t.id == template_id:
                    return t
            raise TemplateError(f"family '{family}' has no template '{template_id}' "
                                f"(have {[t.id for t in ts]})")
        pick = select(ts, unseen=unseen)
        if not pick:
            raise TemplateError(f"family '{family}' has no {'unseen' if unseen else 'seen'} template")
        return pick[0]

    # ---- training examples ---------------------------------------------------------------
    def examples(self, data: TrainData, epoch: int = 0, unseen: bool = False) -> dict[str, list]:
        """All examples of the configured families for one epoch, as column lists."""
        c = self.config
        rng = np.random.default_rng([c.seed, epoch])
        self._epoch = epoch
        caps = data.capabilities()
        cols: dict[str, list] = {k: [] for k in ("source", "target", "task", "template_id", "user",
                                                 "target_item", "history")}
        self.skipped_families: dict[str, str] = {}
        for fam in c.families:
            usable = select(self.templates[fam], unseen=unseen, capabilities=caps)
            if not usable:
                need = sorted({r for t in self.templates[fam] for r in t.requires} - caps)
                self.skipped_families[fam] = f"no usable template (data lacks {need or 'nothing'})"
                continue
            before = self.sanitizer.stats.special_neutralized + self.sanitizer.stats.control_removed
            getattr(self, f"_{fam}")(data, usable, rng, cols)
            changed = self.sanitizer.stats.special_neutralized + self.sanitizer.stats.control_removed - before
            if changed and epoch == 0:
                logger.warning("P5 %s examples: review text cleaned %d times (%s)", fam, changed, self.sanitizer.stats)
        return cols

    def dataset(self, data: TrainData, epoch: int = 0, unseen: bool = False):
        """The examples as a ``datasets.Dataset`` (source, target, task, template_id, ...)."""
        import datasets

        return datasets.Dataset.from_dict(self.examples(data, epoch, unseen))

    @staticmethod
    def _add(cols, tpl: Template, values: dict, user: int, target_item: int, history) -> None:
        src, tgt = tpl.render(**values)
        cols["source"].append(src)
        cols["target"].append(tgt)
        cols["task"].append(tpl.family)
        cols["template_id"].append(tpl.id)
        cols["user"].append(int(user))
        cols["target_item"].append(int(target_item))
        cols["history"].append([int(i) for i in history])

    def shown_history(self, history: Sequence[int], template: Template) -> list[int]:
        """The history items a template's source actually shows (for leak checks and records)."""
        c = self.config
        n = max(c.max_history if "history" in template.fields else 0,
                self._n_titles() if "history_titles" in template.fields else 0)
        return [int(i) for i in history][-n:] if n > 0 else []

    @staticmethod
    def _pick(tpls: list[Template], rng: np.random.Generator) -> Template:
        """One template, drawn uniformly or by the templates' ``weight`` fields when any is set."""
        w = np.array([float(t.extra.get("weight", 1.0)) for t in tpls])
        if np.all(w == w[0]):
            return tpls[rng.integers(len(tpls))]
        return tpls[rng.choice(len(tpls), p=w / w.sum())]

    def _positions(self, n: int, rng: np.random.Generator, k: int | None) -> np.ndarray:
        pos = np.arange(max(self.config.min_history, 1), n)
        if k is not None and len(pos) > k:
            pos = np.sort(rng.choice(pos, size=k, replace=False))
        return pos

    def _shard_keep(self, data: TrainData, epoch: int) -> list[np.ndarray] | None:
        """Per user, which target positions this epoch trains, or None for all of them.

        Sampler for ``epoch_shards = K > 1`` (with every position on): the prefixes of all
        users are dealt into K shards by a permutation drawn once per K epochs, and epoch ``e``
        trains shard ``e mod K``; so each run of K consecutive epochs trains every prefix of
        every user exactly once, with valid checks K times as often as full passes allow.
        """
        c = self.config
        if c.epoch_shards <= 1 or c.positions_per_user is not None:
            return None
        lo = max(c.min_history, 1)
        counts = np.array([max(len(s) - lo, 0) for s in data.sequences])
        shard = np.random.default_rng([c.seed, epoch // c.epoch_shards, 7]).permutation(int(counts.sum()))
        keep = (shard % c.epoch_shards) == (epoch % c.epoch_shards)
        bounds = np.concatenate([[0], np.cumsum(counts)])
        return [np.arange(lo, lo + counts[u])[keep[bounds[u]:bounds[u + 1]]] for u in range(len(data.sequences))]

    def _sequential(self, data: TrainData, tpls, rng, cols) -> None:
        keep = self._shard_keep(data, self._epoch)
        for u, seq in enumerate(data.sequences):
            pos = self._positions(len(seq), rng, self.config.positions_per_user) if keep is None else keep[u]
            for t in pos:
                hist = seq[:t]
                tpl = self._pick(tpls, rng)
                shown = self.shown_history(hist, tpl)
                self._add(cols, tpl, {"user": u, "target": self.item(seq[t]), **self.history_fields(hist)},
                          u, seq[t], shown)

    def _negatives(self, consumed: set[int], n_items: int, k: int, rng) -> list[int]:
        out: list[int] = []
        if n_items - len(consumed) < k:
            raise ValueError(f"cannot sample {k} unconsumed items from {n_items} (user consumed {len(consumed)})")
        while len(out) < k:
            j = int(rng.integers(n_items))
            if j not in consumed and j not in out:
                out.append(j)
        return out

    def _direct(self, data: TrainData, tpls, rng, cols) -> None:
        c = self.config
        for u, seq in enumerate(data.sequences):
            consumed = {int(i) for i in seq}
            for t in self._positions(len(seq), rng, c.direct_per_user):
                hist = seq[:t]
                tpl = self._pick(tpls, rng)
                kind = tpl.extra.get("kind", "yes_no")
                vals = {"user": u, **self.history_fields(hist)}
                shown = self.shown_history(hist, tpl)
                if kind == "choose":
                    cands = [int(seq[t])] + self._negatives(consumed, data.n_items, c.n_candidates - 1, rng)
                    rng.shuffle(cands)
                    vals.update(candidates=c.item_sep.join(self.item(i) for i in cands), target=self.item(seq[t]))
                    self._add(cols, tpl, vals, u, seq[t], shown)
                else:
                    positive = bool(rng.random() < 0.5)
                    it = int(seq[t]) if positive else self._negatives(consumed, data.n_items, 1, rng)[0]
                    vals.update(item=self.item(it), item_title=self.title(it), answer="yes" if positive else "no")
                    self._add(cols, tpl, vals, u, it, shown)

    def rating_prior(self, data: TrainData) -> RatingPrior:
        """The :class:`RatingPrior` of this serializer's configuration, fitted on ``data``."""
        return RatingPrior.from_data(data, self.config.rating_prior_strength)

    def _rating(self, data: TrainData, tpls, rng, cols) -> None:
        assert data.ratings is not None
        prior = self.rating_prior(data)
        for u, seq in enumerate(data.sequences):
            if not len(seq):
                continue
            k = min(self.config.rating_per_user, len(seq))
            for j in rng.choice(len(seq), size=k, replace=False):
                it = int(seq[j])
                tpl = self._pick(tpls, rng)
                hist = seq[:j]
                r = data.ratings[u]
                self._add(cols, tpl, {"user": u, "item": self.item(it), "item_title": self.title(it),
                                      "rating": _fmt_rating(r[j]), **self.history_fields(hist),
                                      **prior.fields(r[:j], it, exclude=r[j], fmt=self.config.rating_prior_format)},
                          u, it, self.shown_history(hist, tpl))

    def rating_source(self, template: Template, prior: RatingPrior, user: int, history: Sequence[int],
                      item: int, past_ratings: Sequence[float]) -> str:
        """The source of one rating prompt at evaluation time (the rated event is no training event:
        nothing is left out of the means; ``past_ratings`` are the user's ratings before it)."""
        return template.render_source(user=int(user), item=self.item(item), item_title=self.title(item),
                                      **self.history_fields(history),
                                      **prior.fields(past_ratings, item, fmt=self.config.rating_prior_format))

    def _review_rows(self, data: TrainData):
        rev = data.reviews
        assert rev is not None
        return zip(rev["user"].to_numpy(), rev["item"].to_numpy(), rev["text"].astype(str).to_numpy(),
                   rev["summary"].astype(str).to_numpy() if "summary" in rev.columns else [""] * len(rev),
                   rev["rating"].to_numpy() if "rating" in rev.columns else [np.nan] * len(rev))

    def _explanation(self, data: TrainData, tpls, rng, cols) -> None:
        for u, it, text, _summary, rating in self._review_rows(data):
            if not text.strip():
                continue
            tpl = self._pick(tpls, rng)
            r = "unknown" if pd.isna(rating) else _fmt_rating(rating)
            review = _words(self.clean(text, self.config.review_chars), self.config.review_words)
            self._add(cols, tpl, {"user": int(u), "item": self.item(it), "item_title": self.title(it), "rating": r,
                                  "explanation": review}, u, it, [])

    def _review(self, data: TrainData, tpls, rng, cols) -> None:
        for u, it, text, summary, rating in self._review_rows(data):
            if not text.strip() or not summary.strip():
                continue
            tpl = self._pick(tpls, rng)
            r = "unknown" if pd.isna(rating) else _fmt_rating(rating)
            c = self.config
            self._add(cols, tpl, {"user": int(u), "review": _words(self.clean(text, c.review_chars), c.review_words),
                                  "summary": _words(self.clean(summary, c.summary_chars), c.summary_words),
                                  "rating": r}, u, it, [])
