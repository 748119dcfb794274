"""P5 rating path (value tokens, expected-stars MSE, valid-RMSE stopping) and family-constrained answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from p5_fixtures import tiny_review_split

from textrec.indexing import item_index
from textrec.p5.answers import FamilyConstraint, family_answers, is_bare_answer, rating_answers
from textrec.p5.model import P5Config, P5Model
from textrec.p5.rating import RatingRows, expected_stars, expected_stars_mse, rating_rmse, star_token_ids
from textrec.p5.recommender import tokenizer_corpus
from textrec.p5.serializer import (
    RATING_VALUE_TOKENS,
    P5Serializer,
    RatingPrior,
    SerializerConfig,
    TrainData,
    rating_value_of_token,
    rating_value_token,
)
from textrec.p5.trainer import P5TrainConfig, train_p5
from textrec.text.sanitize import TextSanitizer

torch.set_num_threads(1)
N_ITEMS = 10


def _item_rated_data(n_users: int = 40, seed: int = 0) -> TrainData:
    """Each user rates 5 items; an item's rating is fixed by the item (1 + item % 5), so the item's
    mean in the prompt (left out in training) predicts the target."""
    rng = np.random.default_rng(seed)
    seqs = [rng.choice(N_ITEMS, size=5, replace=False) for _ in range(n_users)]
    return TrainData(seqs, N_ITEMS, [np.array([1.0 + i % 5 for i in s]) for s in seqs])


def _serializer(fmt: str = "tokens") -> P5Serializer:
    cfg = SerializerConfig(families=["rating"], prompt_set="p5/compact", item_sep="", rating_per_user=10,
                           max_history=3, rating_prior_format=fmt, rating_prior_strength=1.0)
    return P5Serializer(item_index(N_ITEMS), None, cfg)


def _model(ser: P5Serializer, data: TrainData, value_tokens: bool = True) -> P5Model:
    return P5Model.build(P5Config(preset="tiny", vocab_size=300, dropout=0.0, rating_value_tokens=value_tokens),
                         ser.index, tokenizer_corpus(ser, data, None), seed=0)


def _rows(ser: P5Serializer, data: TrainData) -> RatingRows:
    """Held-out-style rows: each item rated by a new user with no history."""
    prior = ser.rating_prior(data)
    tpl = ser.template("rating")
    src = [ser.rating_source(tpl, prior, 0, [], it, []) for it in range(N_ITEMS)]
    return RatingRows(src, np.array([1.0 + it % 5 for it in range(N_ITEMS)]))


# ---- value tokens ---------------------------------------------------------------------------
def test_rating_value_tokens_round_clip_and_name_their_value():
    assert rating_value_token(4.64) == "<rv_46>" and rating_value_token(4.65) in ("<rv_46>", "<rv_47>")
    assert rating_value_token(0.2) == "<rv_10>" and rating_value_token(7) == "<rv_50>"
    assert len(RATING_VALUE_TOKENS) == 41 and rating_value_of_token("<rv_23>") == pytest.approx(2.3)
    with pytest.raises(ValueError, match="not a rating value token"):
        rating_value_of_token("<rv_9>")
    with pytest.raises(ValueError, match="rating_prior_format"):
        SerializerConfig(rating_prior_format="digits")


def test_value_token_prompts_carry_the_same_means_and_data_can_never_spell_them():
    data = _item_rated_data()
    prior = RatingPrior.from_data(data, 1.0)
    text, toks = prior.fields([5, 4], 3, exclude=4.0), prior.fields([5, 4], 3, exclude=4.0, fmt="tokens")
    assert toks == {k: rating_value_token(float(v)) for k, v in text.items()}
    src = _serializer("tokens").examples(data)["source"]
    assert all(s.count("<rv_") == 2 for s in src) and not any(" avg 4." in s for s in src)
    # a review or title that spells a value token is neutralised before it reaches a prompt
    assert "<rv_46>" not in TextSanitizer()("great <rv_46> guitar", 100)


def test_value_tokens_are_single_plain_tokens_on_a_line_and_survive_save_load(tmp_path):
    import textrec

    data = _item_rated_data()
    ser = _serializer("tokens")
    model = _model(ser, data)
    tok = model.tokenizer
    ids = tok("x <rv_46> y", add_special_tokens=False)["input_ids"]
    rv = tok.convert_tokens_to_ids("<rv_46>")
    assert tok.convert_ids_to_tokens(ids).count("<rv_46>") == 1 and rv in ids
    assert "<rv_46>" not in tok.all_special_tokens  # data symbols, not structure
    emb = model.t5.get_input_embeddings().weight.detach()
    row = {t: emb[tok.convert_tokens_to_ids(t)] for t in ("<rv_20>", "<rv_21>", "<rv_45>", "<rv_46>")}
    torch.testing.assert_close(row["<rv_46>"] - row["<rv_45>"], row["<rv_21>"] - row["<rv_20>"])
    path = model.save_pretrained(tmp_path / "p5")
    back = textrec.load(path).model
    assert back.config.rating_value_tokens and back.tokenizer.convert_tokens_to_ids("<rv_46>") == rv
    rows = _rows(ser, data)
    assert rating_rmse(back, rows) == pytest.approx(rating_rmse(model, rows))


# ---- expected-stars MSE and valid-RMSE stopping ----------------------------------------------
def test_expected_stars_mse_scores_only_rating_rows_and_has_a_gradient():
    logits = torch.zeros(3, 20, requires_grad=True)
    star_ids = [5, 6, 7, 8, 9]
    assert expected_stars(logits.detach(), star_ids).tolist() == pytest.approx([3.0, 3.0, 3.0])
    mse = expected_stars_mse(logits, ["5", "a review", "1"], ["rating", "explanation", "rating"], star_ids)
    assert mse.item() == pytest.approx((4 + 4) / 3)
    mse.backward()
    assert logits.grad[1].abs().sum() == 0 and logits.grad[0, 9] < 0 < logits.grad[0, 5]
    assert expected_stars_mse(logits, ["x"], ["explanation"], star_ids) is None
    with pytest.raises(ValueError, match="not a number"):
        expected_stars_mse(logits, ["five"], ["rating"], star_ids)


def test_mse_training_with_value_tokens_beats_the_mean_and_stops_on_valid_rmse():
    data = _item_rated_data()
    ser = _serializer("tokens")
    model = _model(ser, data)
    rows = _rows(ser, data)
    mean_rmse = float(np.sqrt(np.mean((rows.ratings - np.mean(np.concatenate(data.ratings))) ** 2)))
    cfg = P5TrainConfig(epochs=30, batch_size=32, lr=1e-2, warmup_steps=5, metric="rating_rmse", eval_every=5,
                        patience=10, rating_mse_weight=1.0)
    hist = train_p5(model, ser, data, None, cfg, progress=False, rating_valid=rows)
    assert hist["config"]["greater_is_better"] is False  # lower RMSE is better
    assert "rating_mse" in hist["epochs"][0] and "lm_loss" in hist["epochs"][0]
    best = hist["best_valid_rating_rmse"]
    assert best == pytest.approx(min(e["valid_rating_rmse"] for e in hist["epochs"] if "valid_rating_rmse" in e), abs=1e-5)
    assert best < 0.5 * mean_rmse, (best, mean_rmse)
    assert rating_rmse(model, rows)["rating_rmse"] == pytest.approx(best)  # best weights restored
    with pytest.raises(ValueError, match="rating_valid"):
        train_p5(model, ser, data, None, cfg, progress=False)


# ---- family-constrained answers --------------------------------------------------------------
def test_is_bare_answer():
    assert is_bare_answer("5") and is_bare_answer(" 4.5 ") and is_bare_answer("<i_3><i_4>") and is_bare_answer("")
    assert not is_bare_answer("5 stars, works") and not is_bare_answer("good")


def test_constraint_turns_a_rating_like_preference_into_text_and_text_into_a_star():
    data = _item_rated_data()
    ser = _serializer("tokens")
    model = _model(ser, data)
    tok = model.tokenizer
    vocab_n = model.t5.get_output_embeddings().weight.shape[0]
    five, eos = tok.convert_tokens_to_ids("5"), tok.eos_token_id
    word = tok.convert_tokens_to_ids("rate")
    scores = torch.zeros(1, vocab_n)
    scores[0, five], scores[0, eos], scores[0, word] = 9.0, 8.0, 1.0
    item_tok = tok.convert_tokens_to_ids(model.index.tokens[0][0])
    scores[0, item_tok] = 10.0
    expl = FamilyConstraint(model, "explanation", min_tokens=2)
    start = torch.zeros(1, 1, dtype=torch.long)
    out = expl(start, scores)
    assert out[0].argmax().item() == word  # not the digit, the item token, nor the end
    again = expl(torch.zeros(1, 2, dtype=torch.long), scores)
    assert again[0].argmax().item() == five and again[0, eos] < -1e30  # digits later are fine; no end yet
    rate = FamilyConstraint(model, "rating")
    scores[0, word] = 20.0
    assert rate(start, scores)[0].argmax().item() == five
    assert rate(torch.zeros(1, 2, dtype=torch.long), scores)[0].argmax().item() == eos
    with pytest.raises(ValueError, match="no answer constraint"):
        FamilyConstraint(model, "sequential")


def test_family_answers_are_always_in_family_even_from_an_untrained_model():
    data = _item_rated_data()
    ser = _serializer("tokens")
    model = _model(ser, data)
    src = _rows(ser, data).sources
    stars = rating_answers(model, src)
    assert set(stars) <= {1.0, 2.0, 3.0, 4.0, 5.0} and len(stars) == N_ITEMS
    star_ids = star_token_ids(model.tokenizer)
    assert len(star_ids) == 5
    for kw in ({}, {"top_p": 0.9, "temperature": 0.7}, {"repetition_penalty": 1.3, "no_repeat_ngram_size": 2},
               {"num_beams": 2}):
        texts = family_answers(model, src, "explanation", max_new_tokens=6, min_tokens=3, seed=1, **kw)
        assert len(texts) == N_ITEMS and not any(is_bare_answer(t) for t in texts)
        assert not any("<rv_" in t or model.index.find_items(t) for t in texts)


def test_bench_chooses_the_explanation_decoding_on_valid_and_constrains_families():
    from textrec.benchmarks.p5 import choose_decoding, secondary_tasks

    assert choose_decoding([{"bleu1": 20, "distinct_outputs": 0.1}, {"bleu1": 12, "distinct_outputs": 0.9},
                            {"bleu1": 15, "distinct_outputs": 0.6}], 0.5) == 2
    assert choose_decoding([{"bleu1": 20, "distinct_outputs": 0.1}, {"bleu1": 12, "distinct_outputs": 0.2}], 0.5) == 0
    ds, split = tiny_review_split(N_ITEMS)
    ser = P5Serializer(item_index(split.n_items), None,
                       SerializerConfig(families=["rating", "explanation"], prompt_set="p5/compact", item_sep="",
                                        review_words=5, rating_prior_format="tokens"))
    data = TrainData.from_frame(split.train, split.n_users, split.n_items, reviews=ds.reviews)
    model = P5Model.build(P5Config(preset="tiny", vocab_size=300, dropout=0.0, rating_value_tokens=True),
                          ser.index, tokenizer_corpus(ser, data, None), seed=0)
    train_p5(model, ser, data, None, P5TrainConfig(epochs=2, batch_size=32, lr=5e-3, warmup_steps=2,
                                                   rating_mse_weight=1.0), progress=False)
    grid = [{"top_p": 0.9, "temperature": 1.0}, {"repetition_penalty": 1.3}]
    out = secondary_tasks(model, ser, split, data, {"explanation_tokens": 6, "explanation_grid": grid,
                                                    "explanation_constrained": True, "rating_constrained": True,
                                                    "explanation_valid_rows": 10}, seed=0)
    for v in out["rating"]["per_template"].values():
        assert v["answered_with_a_rating"] == 1.0 and 0 <= v["unconstrained_answered_with_a_rating"] <= 1
        assert all(e[1] in {"1", "2", "3", "4", "5"} for e in v["examples"])
        assert "<rv_" in v["examples"][0][0]
    ex = out["explanation"]
    assert ex["constrained"] and ex["valid_grid"]["n_rows"] == 10 and len(ex["valid_grid"]["settings"]) == 2
    chosen = grid[ex["valid_grid"]["chosen"]]
    for v in ex["per_template"].values():
        assert v["bare_answers"] == 0 and v["chosen"]["bare_answers"] == 0 and "unconstrained_bare_answers" in v, v["chosen"]["examples"]
        assert all(v["chosen"].get(k) == chosen[k] for k in chosen) and 0 <= v["chosen"]["known_word_share"] <= 1
