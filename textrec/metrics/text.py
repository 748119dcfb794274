"""Text and explanation metrics: BLEU, ROUGE, USR, DIV, FCR, FMR, RMSE/MAE and grounding.

* BLEU-n: corpus BLEU with uniform weights over orders 1..n and the brevity penalty (Papineni et
  al.; the computation PETER uses), on pre-tokenised word lists, x100. Equal to sacrebleu's
  ``BLEU(max_ngram_order=n, tokenize="none", smooth_method="none")`` on space-joined tokens.
* ROUGE-1/2/L: per-pair F1 averaged over the corpus, x100, with rouge-score's default
  tokenisation (lower case, ``[a-z0-9]+`` tokens, no stemming).
* USR (unique sentence ratio, PETER): distinct generated sentences / generated sentences.
* DIV (feature diversity, PETER): mean over pairs of generated explanations of the number of
  features they share; lower = more diverse.
* FCR (feature coverage ratio): distinct features generated / size of the feature vocabulary.
* FMR (feature matching ratio): share of explanations that contain their ground-truth feature.
* grounding: share of an explanation's content words found in the sentences it cites.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

_ROUGE_TOKEN = re.compile(r"[a-z0-9]+")


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def bleu(references: Sequence[Sequence[str]], hypotheses: Sequence[Sequence[str]], max_order: int = 4,
         smooth: bool = False) -> float:
    """Corpus BLEU (x100) of token lists, orders 1..``max_order``, one reference per hypothesis."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references vs {len(hypotheses)} hypotheses")
    matches = [0] * max_order
    possible = [0] * max_order
    ref_len = hyp_len = 0
    for ref, hyp in zip(references, hypotheses):
        ref_len += len(ref)
        hyp_len += len(hyp)
        for n in range(1, max_order + 1):
            r, h = _ngrams(ref, n), _ngrams(hyp, n)
            matches[n - 1] += sum(min(c, r[g]) for g, c in h.items())
            possible[n - 1] += max(len(hyp) - n + 1, 0)
    if smooth:
        prec = [(m + 1.0) / (p + 1.0) for m, p in zip(matches, possible)]
    else:
        prec = [m / p if p else 0.0 for m, p in zip(matches, possible)]
    if min(prec) <= 0 or hyp_len == 0:
        return 0.0
    geo = math.exp(sum(math.log(p) for p in prec) / max_order)
    bp = 1.0 if hyp_len > ref_len else math.exp(1.0 - ref_len / hyp_len)
    return 100.0 * geo * bp


def rouge_tokens(text: str) -> list[str]:
    """rouge-score's default tokenisation: lower case, runs of ``[a-z0-9]``."""
    return _ROUGE_TOKEN.findall(str(text).lower())


def _f1(overlap: int, n_hyp: int, n_ref: int) -> float:
    p = overlap / n_hyp if n_hyp else 0.0
    r = overlap / n_ref if n_ref else 0.0
    return 2 * p * r / (p + r) if p + r else 0.0


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge(references: Sequence[str], hypotheses: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F1 (x100) over (reference, hypothesis) text pairs."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references vs {len(hypotheses)} hypotheses")
    tot = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for ref, hyp in zip(references, hypotheses):
        r, h = rouge_tokens(ref), rouge_tokens(hyp)
        for n in (1, 2):
            rn, hn = _ngrams(r, n), _ngrams(h, n)
            tot[f"rouge{n}"] += _f1(sum((rn & hn).values()), sum(hn.values()), sum(rn.values()))
        tot["rougeL"] += _f1(_lcs(r, h), len(h), len(r))
    n = max(len(references), 1)
    return {k: 100.0 * v / n for k, v in tot.items()}


def unique_sentence_ratio(hypotheses: Sequence[Sequence[str] | str]) -> float:
    """USR: distinct generated sentences / number of sentences (token lists or strings)."""
    if not len(hypotheses):
        return 0.0
    return len({h if isinstance(h, str) else tuple(h) for h in hypotheses}) / len(hypotheses)


def feature_diversity(features: Sequence[Iterable[str]]) -> float:
    """DIV: mean, over pairs of explanations, of the number of features both mention (lower = better)."""
    n = len(features)
    if n < 2:
        return 0.0
    counts = Counter(f for fs in features for f in set(fs))
    # sum over pairs i<j of |F_i & F_j| == sum over features of C(count, 2)
    shared = sum(c * (c - 1) / 2 for c in counts.values())
    return shared / (n * (n - 1) / 2)


def feature_coverage_ratio(features: Sequence[Iterable[str]], n_features: int) -> float:
    """FCR: distinct features generated / size of the feature vocabulary."""
    if n_features <= 0:
        raise ValueError("n_features must be positive")
    return len({f for fs in features for f in fs}) / n_features


def feature_matching_ratio(features: Sequence[Iterable[str]], gt_features: Sequence[str]) -> float:
    """FMR: share of explanations whose features include their ground-truth feature."""
    if len(features) != len(gt_features):
        raise ValueError(f"{len(features)} explanations vs {len(gt_features)} ground-truth features")
    if not len(features):
        return 0.0
    return sum(g in set(fs) for fs, g in zip(features, gt_features)) / len(features)


def rmse_mae(true: Sequence[float], pred: Sequence[float]) -> dict[str, float]:
    """RMSE and MAE of rating predictions."""
    t, p = np.asarray(true, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    if t.shape != p.shape:
        raise ValueError(f"{t.shape} true ratings vs {p.shape} predictions")
    if not len(t):
        return {"rmse": float("nan"), "mae": float("nan")}
    d = t - p
    return {"rmse": float(np.sqrt(np.mean(d * d))), "mae": float(np.mean(np.abs(d)))}


def grounding_score(explanation: Sequence[str] | str, cited: Sequence[str]) -> float:
    """Share of the explanation's content words found in the cited sentences (nan if it has none)."""
    from textrec.text.words import content_words, words

    toks = words(explanation) if isinstance(explanation, str) else list(explanation)
    cw = content_words(toks)
    if not cw:
        return float("nan")
    support: set[str] = set()
    for s in cited:
        support |= content_words(words(s))
    return len(cw & support) / len(cw)


def explanation_metrics(references: Sequence[str], hypotheses: Sequence[str],
                        hyp_features: Sequence[Iterable[str]], gt_features: Sequence[str], n_features: int,
                        true_ratings: Sequence[float] | None = None, pred_ratings: Sequence[float] | None = None,
                        grounding: Sequence[float] | None = None) -> dict[str, float]:
    """All explanation metrics at once; texts are space-joined word tokens (the model vocabulary)."""
    refs = [r.split() for r in references]
    hyps = [h.split() for h in hypotheses]
    hyp_features = [list(f) for f in hyp_features]
    out = {"bleu1": bleu(refs, hyps, 1), "bleu4": bleu(refs, hyps, 4), **rouge(references, hypotheses),
           "usr": unique_sentence_ratio(hyps), "div": feature_diversity(hyp_features),
           "fcr": feature_coverage_ratio(hyp_features, n_features),
           "fmr": feature_matching_ratio(hyp_features, gt_features), "n": len(hyps)}
    if true_ratings is not None and pred_ratings is not None:
        out.update(rmse_mae(true_ratings, pred_ratings))
    if grounding is not None:
        g = np.asarray(grounding, dtype=np.float64)
        ok = ~np.isnan(g)
        out["grounding"] = float(g[ok].mean()) if ok.any() else float("nan")
        out["grounding_undefined"] = int((~ok).sum())
    return out
