"""The trusted explainer: quote the item's own reviews, choosing what this user cares about.

For a (user, item) pair the candidates are the sentences of the item's *training* reviews (the
review being explained excluded), so every word of an explanation occurs in a review of that item
and it cites exactly the sentence it quotes. A linear scorer ranks the candidates:

* what makes a sentence read like the explanation a reviewer would write (fitted on training
  pairs: least squares of each candidate's unigram + bigram F1 against the pair's reference
  sentence, centred per pair so only the ranking within an item counts): length, position in its
  review, whether it is the review's first aspect sentence, the source review's rating, share of
  function words, word frequency, and (``use_embeddings``) MiniLM similarity to the item's other
  sentences (consensus) and to the user's own sentences;
* personalisation: the share of the user's aspect mass a sentence names, whether it names one of
  the pair's selected aspects, plus a fixed bonus ``personal_weight`` (in standard deviations of
  the fitted score) for naming any aspect this user wrote about; the bonus is chosen on valid.

``compress`` optionally cuts a long quote to the clause that names the chosen aspect (a
contiguous part of the sentence, so it stays fully grounded).

An item with fewer than ``min_reviews`` training reviews gets no quote: the explanation is a
plain statement of why it was recommended — the items of the user's history that share the most
reviewers with it (:func:`history_statement`).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from textrec.explain.base import ExplainModel
from textrec.text.words import STOPWORDS, words

FEATURES = ("user_aspect_mass", "personal_any", "selected_aspect", "has_aspect", "cos_item", "cos_user",
            "length", "length_sq", "first_aspect_sentence", "position", "source_rating", "function_share",
            "log_frequency", "user_words", "user_bigrams", "user_trigrams")
_EMB_FEATURES = ("cos_item", "cos_user")
_WORD = re.compile(r"\w+|[^\w\s]+")
_CLAUSE_BREAK = frozenset({",", ";", ":", "-", "--", "(", ")", "but", "and", "although", "though", "because",
                           "so", "which", "while"})


@dataclass
class ExtractConfig:
    """Settings of the extractive explainer (``extract`` section of ``training/erra.yaml``)."""

    personal_weight: float = 1.0  # bonus (score std units) for a sentence naming an aspect the user wrote about
    use_embeddings: bool = True  # MiniLM similarity features (the data must carry sentence embeddings)
    compress: bool = False  # cut a quote longer than compress_over words to the clause naming its aspect
    compress_over: int = 18
    min_clause_words: int = 6
    min_reviews: int = 2  # fewer training reviews of the item: a plain statement instead of a quote
    ridge: float = 1.0
    word_features: int = 400  # the most frequent words of the item sentences, one presence feature each
    max_fit_pairs: int = 4000  # training pairs the scorer is fitted on (seeded sample)
    rating_shrink: float = 5.0  # pseudo-count of the user/item mean-rating offsets
    rating_min: float = 1.0
    rating_max: float = 5.0
    num_beams: int = 1  # unused; keeps the interface of the generators
    use_retrieval: bool = False  # it reads the item's own sentences, not the retrieved ones
    use_aspects: bool = True


class ExtractiveExplainer(ExplainModel):
    """Quote the best sentence of the item's training reviews for this user (see module docstring)."""

    kind = "erra_extract"
    config_class = ExtractConfig

    def __init__(self, config: ExtractConfig, tokenizer=None, rating_mean: float = 4.0):
        super().__init__(config, tokenizer, rating_mean)
        self.feature_words: list[str] = []  # set by fit (the corpus's most frequent words) or by loading
        self.weights = nn.Parameter(torch.zeros(len(FEATURES) + config.word_features), requires_grad=False)
        self.scale = nn.Parameter(torch.ones(1), requires_grad=False)  # std of the fitted score
        self.data = None

    # ---- artifact (no tokenizer: it writes no words of its own) -------------------------
    def fill_folder(self, folder) -> None:
        """Write config.json (settings + rating mean) and model.safetensors (feature weights, scale)."""
        from dataclasses import asdict

        from textrec.artifact import fill_model
        from textrec.registry import registered_name

        fill_model(folder, registered_name(type(self)), {"model": asdict(self.config), "features": list(FEATURES),
                                                         "feature_words": self.feature_words,
                                                         "rating_mean": self.rating_mean},
                   tensors={"weights": self.weights, "scale": self.scale})

    @classmethod
    def _build_from(cls, folder, meta: dict[str, Any], model_cfg: Any) -> ExtractiveExplainer:
        from textrec.artifact import ArtifactError, read_tensors
        from textrec.recipes import config_from_dict

        if list(meta.get("features", [])) != list(FEATURES):
            raise ArtifactError(f"{folder}/config.json: features {meta.get('features')} differ from this "
                                f"version's {list(FEATURES)}")
        model = cls(config_from_dict(ExtractConfig, model_cfg, "extract model"),
                    rating_mean=float(meta.get("rating_mean", 4.0)))
        model.feature_words = [str(w) for w in meta.get("feature_words", [])]
        t = read_tensors(folder)
        n = len(FEATURES) + len(model.feature_words)
        if set(t) != {"weights", "scale"} or tuple(t["weights"].shape) != (n,):
            raise ArtifactError(f"{folder}/model.safetensors: expected 'weights' ({n} = {len(FEATURES)} features + "
                                f"{len(model.feature_words)} words) and 'scale'")
        model.weights.data, model.scale.data = t["weights"].float(), t["scale"].float()
        model.eval()
        return model

    # ---- data ----------------------------------------------------------------------------
    def attach_data(self, data) -> None:
        """Precompute per-sentence features of ``data``'s sentence index (called by ``Explainer``)."""
        self.data = data
        idx = data.index
        n = len(idx)
        reviews = data.reviews
        ratings = reviews["rating"].to_numpy(dtype=np.float64) if "rating" in reviews.columns else np.full(len(reviews), 4.0)
        freq: Counter[str] = Counter()
        toks = [words(t) for t in idx.texts]
        for t in toks:
            freq.update(t)
        total = max(sum(freq.values()), 1)
        sa = data.sentence_aspects
        self._len = np.array([len(t) for t in toks], dtype=np.float64)
        self._rating = ratings[idx.review] if n else np.zeros(0)
        self._func = np.array([sum(w in STOPWORDS for w in t) / max(len(t), 1) for t in toks])
        self._logf = np.array([np.mean([math.log(freq[w] / total) for w in t if w.isalpha()] or [0.0]) for t in toks])
        self._pos = np.zeros(n)
        self._first = np.zeros(n)
        for sids in idx._by_review.values():
            seen = False
            for k, s in enumerate(sids):
                self._pos[s] = k
                if sa[s] and not seen:
                    self._first[s], seen = 1.0, True
        self._has_emb = bool(n) and float(np.abs(idx.emb[: min(n, 64)]).sum()) > 0
        self._tokens = toks
        self._freq = freq
        self._set_word_columns()
        # rating offsets of users and items (shrunk means of training reviews)
        tr = data.split.train
        users, items = reviews["user"].to_numpy()[tr], reviews["item"].to_numpy()[tr]
        y = ratings[tr]
        mu = float(y.mean()) if len(y) else self.rating_mean
        k = self.config.rating_shrink
        self._mu = mu
        self._bu = _shrunk_offsets(users, y - mu, k)
        self._bi = _shrunk_offsets(items, y - mu, k)
        self._item_reviews = Counter(items.tolist())

    def _set_word_columns(self) -> None:
        """Per sentence, the columns of the feature words it contains (a sparse presence matrix)."""
        col = {w: k for k, w in enumerate(self.feature_words)}
        self._word_col = col
        self._word_hits = [sorted({col[w] for w in t if w in col}) for t in self._tokens]

    def _need_data(self) -> None:
        if self.data is None:
            raise RuntimeError("the extractive explainer reads the item's reviews: call attach_data(data) "
                               "(Explainer does this) before predicting")

    # ---- candidates and features --------------------------------------------------------
    def candidates(self, ex) -> list[int]:
        """Sentence ids of the item's training reviews, without the review being explained."""
        idx = self.data.index
        own = set(idx.sentences_of(ex.row)) if ex.row is not None and ex.row >= 0 else set()
        return [s for s in idx.item_sentences(ex.item) if s not in own]

    def n_item_reviews(self, ex) -> int:
        """Training reviews of the example's item, without the one being explained."""
        n = self._item_reviews.get(int(ex.item), 0)
        if ex.row is not None and ex.row >= 0 and ex.row in set(self.data.split.train.tolist()):
            n -= 1
        return n

    def features(self, ex, sids: Sequence[int]) -> np.ndarray:
        """(len(sids), len(FEATURES)) feature matrix of candidate sentences for the example's pair."""
        d = self.data
        sids = np.asarray(sids, dtype=np.int64)
        own = ex.row if ex.row is not None and ex.row >= 0 else None
        pu = d.prefs.user_scores(ex.user, exclude_review=own)
        tot = sum(pu.values()) or 1.0
        sel = set(ex.aspects)
        sa = d.sentence_aspects
        style = self._user_style(ex.user, own)
        nf = len(FEATURES)
        X = np.zeros((len(sids), nf + len(self.feature_words)))
        for k, s in enumerate(sids.tolist()):
            if self.feature_words:
                X[k, [nf + c for c in self._word_hits[s]]] = 1.0
            asp = sa[s]
            X[k, 0] = sum(pu.get(a, 0.0) for a in asp) / tot
            X[k, 1] = float(any(a in pu for a in asp))
            X[k, 2] = float(bool(asp & sel))
            X[k, 3] = float(bool(asp))
            t = self._tokens[s]
            # phrasing this user uses in their other reviews (the reference is their review too)
            for j, n in enumerate((1, 2, 3)):
                grams = [tuple(t[a:a + n]) for a in range(len(t) - n + 1)]
                X[k, 13 + j] = sum(g in style[j] for g in grams) / len(grams) if grams else 0.0
        if self.config.use_embeddings and self._has_emb:
            idx = d.index
            ex_s = set(idx.sentences_of(own)) if own is not None else set()
            item_s = [s for s in idx.item_sentences(ex.item) if s not in ex_s]
            user_s = [s for s in idx._by_user.get(int(ex.user), []) if s not in ex_s]
            e = idx.emb[sids]
            if item_s:
                # consensus: similarity to the item's other sentences, without the sentence itself
                tot_v = idx.emb[np.asarray(item_s)].sum(0)
                X[:, 4] = (e @ tot_v - 1.0) / max(len(item_s) - 1, 1)
            if user_s:
                X[:, 5] = e @ idx.profile(user_s)
        L = self._len[sids]
        X[:, 6] = L / 25.0
        X[:, 7] = (L / 25.0) ** 2
        X[:, 8] = self._first[sids]
        X[:, 9] = np.minimum(self._pos[sids], 5) / 5.0
        X[:, 10] = self._rating[sids] - 4.0
        X[:, 11] = self._func[sids]
        X[:, 12] = self._logf[sids] / 10.0
        return X

    def _user_style(self, user: int, exclude_review: int | None) -> tuple[set, set, set]:
        """Word uni/bi/trigrams of the user's training reviews (the explained review left out)."""
        d = self.data
        texts = d.reviews["text"]
        grams: tuple[set, set, set] = (set(), set(), set())
        for r in d.prefs.by_user.get(int(user), []):
            if r == exclude_review:
                continue
            t = words(str(texts.iat[r]))
            for j, n in enumerate((1, 2, 3)):
                grams[j].update(tuple(t[a:a + n]) for a in range(len(t) - n + 1))
        return grams

    def scores(self, ex, sids: Sequence[int]) -> np.ndarray:
        """Fitted score (std units) + the personal bonus, per candidate sentence."""
        X = self.features(ex, sids)
        w = self.weights.detach().numpy().astype(np.float64)
        if not self.config.use_embeddings:
            w = w.copy()
            w[[FEATURES.index(f) for f in _EMB_FEATURES]] = 0.0
        s = X @ w / float(self.scale.item())
        return s + self.config.personal_weight * X[:, 1]

    # ---- fitting ---------------------------------------------------------------------------
    def fit(self, examples: Sequence, seed: int = 0) -> dict[str, Any]:
        """Least-squares fit of the feature weights on training pairs (see module docstring)."""
        self._need_data()
        # presence of the most frequent words: lets the scorer learn which words explanations use
        self.feature_words = [w for w, _ in self._freq.most_common(self.config.word_features)]
        self._set_word_columns()
        rng = np.random.default_rng(seed)
        pick = rng.permutation(len(examples))[: self.config.max_fit_pairs]
        Xs, ys = [], []
        for j in sorted(pick.tolist()):
            ex = examples[j]
            sids = self.candidates(ex)
            if len(sids) < 2:
                continue
            ref = ex.target.split()
            y = np.array([_f1(self._tokens[s], ref, 1) + _f1(self._tokens[s], ref, 2) for s in sids])
            X = self.features(ex, sids)
            Xs.append((X - X.mean(0)).astype(np.float32))  # float32: ~350k rows x ~420 features
            ys.append(y - y.mean())
        n_pairs = len(Xs)
        X, y = np.concatenate(Xs), np.concatenate(ys).astype(np.float32)
        del Xs
        if not self.config.use_embeddings:
            X[:, [FEATURES.index(f) for f in _EMB_FEATURES]] = 0.0
        A = (X.T @ X).astype(np.float64) + self.config.ridge * np.eye(X.shape[1])
        w = np.linalg.solve(A, (X.T @ y).astype(np.float64))
        pred = X.astype(np.float64) @ w
        self.weights.data = torch.tensor(w, dtype=torch.float32)
        self.scale.data = torch.tensor([max(float(pred.std()), 1e-9)], dtype=torch.float32)
        corr = float(np.corrcoef(pred, y)[0, 1]) if len(y) > 2 else float("nan")
        top = np.argsort(-w[len(FEATURES):])[:10]
        return {"pairs": n_pairs, "candidates": int(len(y)), "within_pair_corr": round(corr, 4),
                "weights": {f: round(float(v), 5) for f, v in zip(FEATURES, w)},
                "top_words": [self.feature_words[k] for k in top.tolist()]}

    # ---- explaining ------------------------------------------------------------------------
    def choose(self, ex) -> dict[str, Any]:
        """The explanation of one example: a quote (``kind`` "quote") or the plain statement ("history")."""
        self._need_data()
        sids = self.candidates(ex)
        if self.n_item_reviews(ex) < self.config.min_reviews or not sids:
            return {"kind": "history", "text": history_statement(self.data, ex.user, ex.item, ex.row), "sid": None,
                    "tokens": None}
        sc = self.scores(ex, sids)
        best = int(np.argmax(sc))
        sid = sids[best]
        text = self.data.index.texts[sid]
        span = self._compress(text, ex) if self.config.compress else None
        display = text if span is None else span
        return {"kind": "quote", "text": display, "sid": sid, "tokens": words(display), "score": float(sc[best])}

    def _compress(self, text: str, ex) -> str | None:
        """The clause of ``text`` naming the user's (else the selected, else any) aspect, when it is long."""
        spans = [(m.start(), m.end(), m.group().lower()) for m in _WORD.finditer(text)]
        if len(spans) <= self.config.compress_over:
            return None
        toks = [t for _, _, t in spans]
        cuts = [0] + [k for k, t in enumerate(toks) if t in _CLAUSE_BREAK] + [len(toks)]
        clauses = [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]
        d = self.data
        mine = set(d.prefs.user_scores(ex.user, exclude_review=ex.row if ex.row >= 0 else None))
        sel = set(ex.aspects)

        def rank(c):
            a = set(d.vocab.find(toks[c[0]:c[1]]))
            return (bool(a & mine), bool(a & sel), bool(a))

        k = max(range(len(clauses)), key=lambda j: (rank(clauses[j]), -j))
        a, b = clauses[k]
        while b - a < self.config.min_clause_words and (a > 0 or b < len(toks)):
            if b < len(toks):
                b += 1
            else:
                a -= 1
        while a < b and toks[a] in _CLAUSE_BREAK:  # no leading "but" / ","
            a += 1
        if b - a < 3:
            return None
        return text[spans[a][0]:spans[b - 1][1]]

    def rating(self, ex) -> float:
        """Mean training rating + shrunk user and item offsets, clipped to the scale."""
        r = self._mu + self._bu.get(int(ex.user), 0.0) + self._bi.get(int(ex.item), 0.0)
        return float(min(max(r, self.config.rating_min), self.config.rating_max))

    @torch.no_grad()
    def predict(self, examples: Sequence, batch_size: int = 128, num_beams: int | None = None,
                progress: bool = False) -> tuple[list[str], list[float]]:
        """Explanations (space-joined word tokens, as the metrics read them) and ratings."""
        texts, ratings, _ = self.predict_with_citations(examples)
        return texts, ratings

    def predict_with_citations(self, examples: Sequence) -> tuple[list[str], list[float], list[list]]:
        """Explanations, ratings and, per explanation, the sentence it quotes (a ``Retrieved``; none
        for the plain statement)."""
        from textrec.explain.sentences import Retrieved

        self._need_data()
        idx = self.data.index
        texts, ratings, cited = [], [], []
        for ex in examples:
            c = self.choose(ex)
            texts.append(" ".join(c["tokens"] if c["tokens"] is not None else words(c["text"])))
            ratings.append(self.rating(ex))
            cited.append([] if c["sid"] is None else
                         [Retrieved(c["sid"], idx.texts[c["sid"]], int(idx.review[c["sid"]]), c["score"])])
        return texts, ratings, cited


def _shrunk_offsets(keys: np.ndarray, resid: np.ndarray, k: float) -> dict[int, float]:
    s: dict[int, float] = {}
    n: Counter[int] = Counter()
    for key, r in zip(keys.tolist(), resid.tolist()):
        s[key] = s.get(key, 0.0) + r
        n[key] += 1
    return {key: v / (n[key] + k) for key, v in s.items()}


def _f1(hyp: Sequence[str], ref: Sequence[str], n: int) -> float:
    h = Counter(tuple(hyp[i:i + n]) for i in range(len(hyp) - n + 1))
    r = Counter(tuple(ref[i:i + n]) for i in range(len(ref) - n + 1))
    m = sum((h & r).values())
    if not m:
        return 0.0
    p, q = m / sum(h.values()), m / sum(r.values())
    return 2 * p * q / (p + q)


def history_statement(data, user: int, item: int, exclude_review: int | None = None, k: int = 2) -> str:
    """Why an item with too few reviews was recommended: the user's history items sharing the most
    reviewers with it (training reviews), said plainly, with how few reviews it has."""
    reviews = data.reviews
    tr = data.split.train
    users, items = reviews["user"].to_numpy()[tr], reviews["item"].to_numpy()[tr]
    rows = tr.tolist()
    history = {int(i) for u, i, r in zip(users, items, rows) if u == user and i != item and r != exclude_review}
    fans = {int(u) for u, i in zip(users, items) if i == item and u != user}
    shared: dict[int, set[int]] = {}
    for u, i in zip(users.tolist(), items.tolist()):
        if u in fans and i in history:
            shared.setdefault(i, set()).add(u)
    n_rev = int(sum(1 for i, r in zip(items.tolist(), rows) if i == item and r != exclude_review))

    def name(i: int) -> str:
        if getattr(data, "item_texts", None) is not None and data.item_texts[i]:
            return str(data.item_texts[i]).split(".")[0][:60]
        return str(data.item_ids[i])

    few = f"It has {n_rev} review{'s' if n_rev != 1 else ''}, too few to say what it is like."
    top = sorted(shared, key=lambda i: (-len(shared[i]), i))[:k]
    if not top:
        return f"Recommended from the overall pattern of what people with your history buy. {few}"
    names = " and ".join(name(i) for i in top)
    people = len(set().union(*(shared[i] for i in top)))
    return (f"Recommended because you reviewed {names}; {people} of the people who reviewed "
            f"{'it' if len(top) == 1 else 'them'} also reviewed this item. {few}")
