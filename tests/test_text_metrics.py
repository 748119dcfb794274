"""Text metrics: hand cases, and agreement with sacrebleu / rouge-score where installed."""

from __future__ import annotations

import math
import random

import pytest

from textrec.metrics.text import (
    bleu,
    explanation_metrics,
    feature_coverage_ratio,
    feature_diversity,
    feature_matching_ratio,
    grounding_score,
    rmse_mae,
    rouge,
    unique_sentence_ratio,
)


def test_bleu_hand_cases():
    ref = ["the cat sat on the mat".split()]
    assert bleu(ref, ref, 4) == pytest.approx(100.0)
    # unigram: 3 of 4 hypothesis words match; hyp shorter (4 < 6) -> BP = exp(1 - 6/4)
    hyp = ["the cat sat there".split()]
    assert bleu(ref, hyp, 1) == pytest.approx(100 * 0.75 * math.exp(1 - 6 / 4))
    # clipping: "the the the" matches "the" at most twice
    assert bleu(ref, [["the"] * 7], 1) == pytest.approx(100 * 2 / 7)
    assert bleu(ref, [["dog"]], 4) == 0.0  # no 4-gram at all -> 0 without smoothing
    assert bleu(ref, [["dog"]], 4, smooth=True) > 0.0
    with pytest.raises(ValueError):
        bleu(ref, [], 4)


def test_rouge_hand_cases():
    r = rouge(["the cat sat on the mat"], ["the cat on mat"])
    # rouge-1: overlap 4, P = 4/4, R = 4/6 -> F = 0.8
    assert r["rouge1"] == pytest.approx(80.0)
    # rouge-2: ref bigrams 5, hyp bigrams 3 (the cat, cat on, on mat); overlap 1 -> P 1/3, R 1/5
    assert r["rouge2"] == pytest.approx(100 * 2 * (1 / 3) * (1 / 5) / (1 / 3 + 1 / 5))
    # rouge-L: LCS "the cat on mat" = 4 -> same as rouge-1 here
    assert r["rougeL"] == pytest.approx(80.0)
    assert rouge(["a b"], ["c d"]) == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}


def _random_corpus(seed: int, n: int = 40):
    rng = random.Random(seed)
    vocab = "the a sound tone is great cheap strings cable works well not good price pedal".split()
    refs = [" ".join(rng.choice(vocab) for _ in range(rng.randint(3, 12))) for _ in range(n)]
    hyps = [" ".join(rng.choice(vocab) for _ in range(rng.randint(2, 12))) for _ in range(n)]
    return refs, hyps


def test_bleu_matches_sacrebleu():
    sacrebleu = pytest.importorskip("sacrebleu")
    from sacrebleu.metrics import BLEU

    for seed in range(3):
        refs, hyps = _random_corpus(seed)
        for order in (1, 4):
            ours = bleu([r.split() for r in refs], [h.split() for h in hyps], order)
            theirs = BLEU(max_ngram_order=order, tokenize="none", smooth_method="none").corpus_score(hyps, [refs])
            assert ours == pytest.approx(theirs.score, abs=1e-6), sacrebleu.__version__


def test_rouge_matches_rouge_score():
    pytest.importorskip("rouge_score")
    from rouge_score import rouge_scorer

    sc = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    for seed in range(3):
        refs, hyps = _random_corpus(seed)
        refs[0] += " , it's OK!"
        ours = rouge(refs, hyps)
        for k in ours:
            theirs = 100 * sum(sc.score(r, h)[k].fmeasure for r, h in zip(refs, hyps)) / len(refs)
            assert ours[k] == pytest.approx(theirs, abs=1e-9)


def test_usr_div_fcr_fmr_tiny_examples():
    hyps = ["great sound", "great sound", "nice strap", "the tuner works"]
    assert unique_sentence_ratio(hyps) == pytest.approx(3 / 4)
    assert unique_sentence_ratio([h.split() for h in hyps]) == pytest.approx(3 / 4)
    feats = [{"sound"}, {"sound"}, {"strap"}, {"tuner", "sound"}]
    # pairs (6): (0,1) share sound, (0,3) sound, (1,3) sound -> 3 shared features / 6 pairs
    assert feature_diversity(feats) == pytest.approx(3 / 6)
    assert feature_diversity([{"a"}, {"b"}]) == 0.0
    assert feature_coverage_ratio(feats, n_features=10) == pytest.approx(3 / 10)
    assert feature_matching_ratio(feats, ["sound", "tuner", "strap", "tuner"]) == pytest.approx(3 / 4)
    with pytest.raises(ValueError):
        feature_matching_ratio(feats, ["sound"])


def test_rmse_mae_and_grounding():
    m = rmse_mae([1, 2, 3, 4], [2, 2, 3, 2])
    assert m["rmse"] == pytest.approx(math.sqrt((1 + 0 + 0 + 4) / 4)) and m["mae"] == pytest.approx(3 / 4)
    # content words of "the tone is warm and the strings ring": tone, warm, strings, ring
    g = grounding_score("the tone is warm and the strings ring", ["Warm tone.", "Strings are new"])
    assert g == pytest.approx(3 / 4)
    assert math.isnan(grounding_score("it is the", ["anything"]))
    assert grounding_score("great tone", []) == 0.0


def test_explanation_metrics_bundle():
    refs = ["the sound is great", "the strap is long"]
    hyps = ["the sound is great", "the sound is great"]
    m = explanation_metrics(refs, hyps, [["sound"], ["sound"]], ["sound", "strap"], 4, [5, 3], [5, 4],
                            grounding=[1.0, float("nan")])
    assert m["usr"] == 0.5 and m["div"] == 1.0 and m["fcr"] == 0.25 and m["fmr"] == 0.5
    assert m["rmse"] == pytest.approx(math.sqrt(0.5)) and m["grounding"] == 1.0 and m["grounding_undefined"] == 1
    assert m["bleu1"] > 0 and m["n"] == 2
