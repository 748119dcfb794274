"""ERRA copy head, decoding options, faithfulness checks and the copy benchmark's helpers."""

from __future__ import annotations

import math

import pytest
import torch
from test_explain import RECIPE, HashEncoder, make_dataset

from textrec.explain.base import ExplainModel
from textrec.explain.bench import samples_markdown, select_decoding
from textrec.explain.faithfulness import check, cite, grounding, plot_grounding, unsupported_aspects
from textrec.explain.peter import block_repeats
from textrec.explain.pipeline import Explainer, build_data, evaluate_predictions, train_variant
from textrec.explain.sentences import Retrieved

torch.set_num_threads(1)

COPY = {**RECIPE, "erra": {**RECIPE["erra"], "copy_words": 10, "n_keywords": 0}}


@pytest.fixture(scope="module")
def data():
    return build_data(make_dataset(), COPY, encoder=HashEncoder(), progress=False)


@pytest.fixture(scope="module")
def copy_model(data):
    model, _ = train_variant(data, "erra", COPY, progress=False)
    return model


def test_copy_head_gives_a_distribution_and_mass_on_source_words(data, copy_model):
    m = copy_model
    assert m.copies
    batch = m.collate(data.examples["test"][:3])
    m.eval()
    with torch.no_grad():
        h, n_pre = m._hidden(batch, batch["text"][:, :-1])
        logp = m.word_log_probs(h[:, n_pre:], h, n_pre, batch)
        vocab = torch.log_softmax(m.lm_head(h[:, n_pre:]), -1)
    total = logp.exp().sum(-1)
    assert torch.allclose(total, torch.ones_like(total), atol=1e-4)
    # a word of the copy source gains probability over the vocabulary head alone
    src = batch["src"][0]
    w = int(src[src > 3][0])
    assert float(logp[0, 0, w]) > float(vocab[0, 0, w]) - 1e-6


def test_copy_source_is_the_top_sentence_words_truncated(data, copy_model):
    ex = data.examples["test"][0]
    ids = copy_model.copy_source([r.text for r in ex.retrieved])
    assert 0 < len(ids) <= 10
    assert ids == copy_model.word_ids(ex.retrieved[0].text)[:10]


def test_copy_model_round_trips(tmp_path, data, copy_model):
    exs = data.examples["test"][:4]
    before = copy_model.predict(exs)
    copy_model.save_pretrained(tmp_path / "m")
    again = ExplainModel.from_pretrained(tmp_path / "m")
    assert again.copies and again.predict(exs) == before


def test_default_recipe_has_no_pointer_and_the_copy_variant_has_one(data):
    one = {**RECIPE, "trainer": {**RECIPE["trainer"], "epochs": 1}}
    model, _ = train_variant(data, "erra", one, progress=False)
    assert not model.copies and not hasattr(model, "copy_gate")
    model, _ = train_variant(data, "erra_copy", one, progress=False)
    assert model.copies and model.config.copy_words == 24


def test_block_repeats_forbids_only_the_repeating_word():
    logp = torch.zeros(1, 10)
    seq = torch.tensor([[5, 6, 7, 5]])  # next 6 would repeat the bigram "5 6"
    block_repeats(logp, seq, 2)
    assert math.isinf(float(logp[0, 6])) and int(torch.isinf(logp).sum()) == 1


def test_beam_with_blocking_never_repeats_a_trigram(data, copy_model):
    copy_model.config.num_beams, copy_model.config.no_repeat_ngram = 3, 3
    try:
        texts, _ = copy_model.predict(data.examples["test"][:6])
    finally:
        copy_model.config.num_beams, copy_model.config.no_repeat_ngram = 1, 0
    for t in texts:
        w = t.split()
        tri = [tuple(w[k:k + 3]) for k in range(len(w) - 2)]
        assert len(tri) == len(set(tri)), t


def _r(sid, text):
    return Retrieved(sid, text, 0, 1.0)


def test_cite_grounding_and_fallback():
    ret = [_r(7, "The strings sound bright."), _r(9, "Great tuner, holds pitch.")]
    assert [r.sid for r in cite("the tuner holds pitch", ret)] == [9]
    assert cite("nothing shared here", ret) == []
    assert [r.sid for r in cite("nothing shared here", ret, at_least_one=True)] == [7]
    assert grounding("tuner holds well", ["Great tuner, holds pitch."]) == pytest.approx(2 / 3)
    assert math.isnan(grounding("the and of", ["x"]))


def test_unsupported_aspects_are_those_in_no_source(data):
    vocab = data.vocab
    a, b = vocab.aspects[0], vocab.aspects[1]
    assert unsupported_aspects(f"the {a} and the {b} are fine", vocab, [f"my {a} broke"]) == [b]
    assert unsupported_aspects(f"the {a} and the {b} are fine", vocab, [f"my {a} broke"], given=[b]) == []


def test_check_and_evaluation_report_faithfulness(data, copy_model, tmp_path):
    exs = data.examples["test"]
    texts, ratings = copy_model.predict(exs)
    f = check(texts, exs, data.vocab)
    assert all(f.cited), "a retrieval-conditioned model cites at least one sentence"
    s = f.summary()
    assert s["cites_at_least_one"] == 1.0 and 0.0 <= s["grounding"] <= 1.0
    assert sum(f.histogram()["counts"]) == sum(not math.isnan(g) for g in f.grounding)
    m = evaluate_predictions(data, exs, texts, ratings)
    assert m["cites_at_least_one"] == 1.0 and "unsupported_aspect_rate" in m
    png = plot_grounding({"a": f, "b": f}, tmp_path / "g.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_explainer_output_cites_ids(data, copy_model):
    out = Explainer(data, copy_model).explain_example(data.examples["test"][0])
    assert out["cited"] and all(isinstance(c["id"], int) for c in out["cited"])
    assert {c["id"] for c in out["cited"]} <= {r.sid for r in data.examples["test"][0].retrieved}
    assert "unsupported_aspects" in out


def test_select_decoding_prefers_quality_among_varied_settings():
    rows = {"greedy": {"bleu4": 3.0, "rougeL": 20.0, "usr": 0.3},
            "beam": {"bleu4": 1.5, "rougeL": 16.0, "usr": 0.8},
            "block": {"bleu4": 1.0, "rougeL": 15.0, "usr": 0.9}}
    assert select_decoding(rows) == "beam"
    assert select_decoding(rows, min_usr=0.95) == "greedy"


def test_samples_markdown_shows_reference_and_each_model():
    result = {"dataset": "d", "samples": [{"user": "u", "item": "i", "aspects": ["tone"], "reference": "ref text",
                                           "models": {"copy": {"text": "c", "cited": [1], "grounding": 1.0},
                                                      "peter": {"text": "p"}},
                                           "retrieved": [{"id": 1, "text": "c"}]}]}
    md = samples_markdown(result)
    assert "ref text" in md and "**copy**: c" in md and "**peter**: p" in md and "[1]" in md


def test_rerank_keeps_a_retrieved_sentence_only_when_the_model_prefers_it(data, copy_model):
    from textrec.explain.bench import rerank_with_retrieved, sequence_log_probs
    from textrec.explain.sentences import words

    exs = data.examples["test"][:5]
    texts, _ = copy_model.predict(exs)
    lp = sequence_log_probs(copy_model, exs, texts)
    assert all(v <= 0 for v in lp)
    assert rerank_with_retrieved(copy_model, exs, texts, bias=-1e9) == texts
    top = [" ".join(words(e.retrieved[0].text)) for e in exs]
    always = rerank_with_retrieved(copy_model, exs, texts, bias=1e9, k=1)
    assert always == top


def test_top_p_sampling_stays_in_the_nucleus():
    from textrec.explain.peter import sample_top_p

    torch.manual_seed(0)
    logp = torch.log(torch.tensor([[0.6, 0.3, 0.05, 0.05]])).repeat(200, 1)
    picks = sample_top_p(logp, 0.5)
    assert set(picks.tolist()) == {0}  # 0.6 alone holds half the mass
    picks = sample_top_p(logp, 0.8)
    assert set(picks.tolist()) == {0, 1}


def test_rerank_bias_is_picked_by_targets_met_against_copy():
    from textrec.explain.bench import pick_with_bias, select_rerank_bias, targets_met_vs

    scored = [[("own words", -2.0), ("retrieved one", -2.5), ("retrieved two", -2.2)],
              [("mine", -1.0), ("theirs", -3.0)]]
    assert pick_with_bias(scored, 0.0) == ["own words", "mine"]
    assert pick_with_bias(scored, 0.4) == ["retrieved two", "mine"]  # the best biased candidate wins
    assert pick_with_bias(scored, 5.0) == ["retrieved two", "theirs"]
    copy = {"bleu4": 1.4, "rougeL": 12.0, "fcr": 0.5, "usr": 0.7, "grounding": 1.0}
    rows = {"none": {"bleu4": 0.8, "rougeL": 14.0, "fcr": 0.1, "usr": 0.8, "grounding": 0.3},
            "bias1": {"bleu4": 1.5, "rougeL": 13.0, "fcr": 0.2, "usr": 0.8, "grounding": 0.6},
            "bias9": {"bleu4": 1.4, "rougeL": 12.0, "fcr": 0.5, "usr": 0.7, "grounding": 1.0}}
    assert [targets_met_vs(rows[k], copy) for k in ("none", "bias1", "bias9")] == [2, 4, 2]
    assert select_rerank_bias(rows, copy) == "bias1"


def test_same_split_ignores_only_a_zero_sanitized_count():
    from textrec.explain.bench import same_split

    old = {"split": {"train": 8203}, "aspects": 361}
    assert same_split(old, {**old, "sanitized": {"control_removed": 0, "truncated": 0}})
    assert not same_split(old, {**old, "sanitized": {"control_removed": 2, "truncated": 0}})
    assert not same_split(old, {**old, "aspects": 360}) and not same_split(None, old)
