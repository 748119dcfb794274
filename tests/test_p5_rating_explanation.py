"""P5 secondary families: bias-aware rating prompts (no target leak), valid calibration, explanation decodings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from p5_fixtures import tiny_review_split

from textrec.benchmarks.p5 import fit_calibration
from textrec.indexing import item_index, random_index
from textrec.p5.serializer import P5Serializer, RatingPrior, SerializerConfig, TrainData

torch.set_num_threads(1)


def _data(ratings: list[list[float]]) -> TrainData:
    seqs = [np.array([0, 1, 2]), np.array([1, 2, 3]), np.array([2, 0])]
    return TrainData(seqs, 4, [np.array(r, dtype=float) for r in ratings])


def test_rating_prior_shrinks_towards_the_global_mean_and_leaves_one_out():
    data = _data([[5, 4, 3], [1, 2, 3], [4, 2]])
    prior = RatingPrior.from_data(data, strength=2.0)
    g = 24 / 8
    assert prior.global_mean() == pytest.approx(g) and prior.global_mean(exclude=3) == pytest.approx(21 / 7)
    assert prior.user_mean([]) == pytest.approx(g)
    assert prior.user_mean([5, 5]) == pytest.approx((10 + 2 * g) / 4)
    # item 2 was rated 3, 2, 4 in training
    assert prior.item_mean(2) == pytest.approx((9 + 2 * g) / 5)
    assert prior.item_mean(2, exclude=4) == pytest.approx((5 + 2 * 20 / 7) / 4)
    assert prior.fields([5, 5], 2) == {"user_mean": f"{(10 + 2 * g) / 4:.1f}", "item_mean": f"{(9 + 2 * g) / 5:.1f}"}
    with pytest.raises(ValueError, match="no training rating"):
        RatingPrior(24.0, 8, np.zeros(1), np.zeros(1)).item_mean(0, exclude=5)
    with pytest.raises(ValueError, match="ratings"):
        RatingPrior.from_data(TrainData([np.array([0])], 1))


def test_compact_rating_prompts_never_carry_their_own_target():
    """Changing one training rating changes that example's target but not its source."""
    cfg = SerializerConfig(families=["rating"], prompt_set="p5/compact", item_sep="", rating_per_user=3)
    ser = P5Serializer(random_index(4, seed=0), None, cfg)
    a = ser.examples(_data([[5, 4, 3], [1, 2, 3], [4, 2]]))
    b = ser.examples(_data([[5, 4, 3], [1, 2, 3], [4, 5]]))  # user 2's rating of item 0: 2 -> 5
    assert a["template_id"] == b["template_id"] and len(a["source"]) == 8
    changed = [j for j in range(8) if a["target"][j] != b["target"][j]]
    assert len(changed) == 1 and a["user"][changed[0]] == 2 and a["target_item"][changed[0]] == 0
    assert a["source"][changed[0]] == b["source"][changed[0]]
    assert all("avg" in s or "user" in s for s in a["source"])
    # the user's earlier ratings do show: user 0's prompt for its third item carries mean of 5 and 4
    prior = RatingPrior.from_data(_data([[5, 4, 3], [1, 2, 3], [4, 2]]), cfg.rating_prior_strength)
    third = [j for j in range(8) if a["user"][j] == 0 and a["target_item"][j] == 2][0]
    assert f"user {prior.user_mean([5, 4], exclude=3):.1f}" in a["source"][third].replace("avg ", "")


def test_fit_calibration_recovers_a_line_and_handles_a_constant():
    x = np.linspace(3, 5, 50)
    a, b = fit_calibration(x, 1.0 + 0.5 * x)
    assert a == pytest.approx(1.0) and b == pytest.approx(0.5)
    assert fit_calibration(np.full(4, 4.2), np.array([5., 4, 5, 2])) == (4.0, 0.0)
    # a nearly constant prediction cannot be stretched by a slope fitted to noise, nor reversed
    noise = np.array([4.500, 4.501, 4.502, 4.503])
    a, b = fit_calibration(noise, np.array([1., 5, 2, 5]))
    assert b == 2.0 and a == pytest.approx(3.25 - 2.0 * noise.mean())
    assert fit_calibration(x, 9.0 - x)[1] == 0.0


def test_bench_rating_is_calibrated_on_valid_and_explanations_are_also_sampled():
    """The benchmark reports the prior-only reference, calibrated expected stars and a sampled decoding."""
    from textrec.benchmarks.p5 import secondary_tasks
    from textrec.p5.model import P5Config, P5Model
    from textrec.p5.recommender import tokenizer_corpus
    from textrec.p5.trainer import P5TrainConfig, train_p5

    n_items = 12
    ds, split = tiny_review_split(n_items)
    index = item_index(split.n_items)
    ser = P5Serializer(index, None, SerializerConfig(families=["sequential", "rating", "explanation"],
                                                     prompt_set="p5/compact", item_sep="", review_words=5))
    data = TrainData.from_frame(split.train, split.n_users, split.n_items, reviews=ds.reviews)
    torch.manual_seed(0)
    model = P5Model.build(P5Config(preset="tiny", vocab_size=300, dropout=0.0), index, tokenizer_corpus(ser, data, None))
    train_p5(model, ser, data, None, P5TrainConfig(epochs=2, batch_size=32, lr=5e-3, warmup_steps=2), progress=False)
    out = secondary_tasks(model, ser, split, data, {"explanation_tokens": 6, "explanation_top_p": 0.9}, seed=0)
    rt = out["rating"]
    assert rt["n_rows"] == 24 and rt["valid_rows_for_calibration"] == 24
    assert 0 <= rt["prior_baseline"]["mae"] <= rt["prior_baseline"]["rmse"] <= 4
    for v in rt["per_template"].values():
        cal = v["expected_stars_valid_calibrated"]
        assert 0 <= cal["mae"] <= cal["rmse"] <= 4 and {"a", "b"} <= set(cal)
        assert "user avg" in v["examples"][0][0] or "user" in v["examples"][0][0]
    for v in out["explanation"]["per_template"].values():
        assert 1 <= v["n_distinct"] <= out["explanation"]["n_rows"]
        s = v["sampled"]
        assert s["top_p"] == 0.9 and 1 <= s["n_distinct"] <= out["explanation"]["n_rows"]
        assert 0 <= s["bleu4"] <= s["bleu1"] <= 100
