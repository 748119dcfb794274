"""The recency-weighted text term: its settings chosen on valid, a part of TextFusion's mix that
valid may weigh 0, saved and loaded, extended by added items, transferred from a pretrained model."""

import numpy as np
import pytest
import torch
from test_fusion import SMALL, _model, _planted, bag_of_words

import textrec
from textrec.data.splits import leave_one_out
from textrec.models.base import TrainView
from textrec.models.text_term import DECAYS, SHRINKS, TextTerm, recency_text_scores
from textrec.text.whitening import whiten_text


@pytest.fixture(scope="module")
def fitted():
    torch.set_num_threads(1)
    split = leave_one_out(_planted(seed=5))
    view = TrainView.from_split(split, with_text=True)
    model = _model(text_term="valid", trainer={**SMALL["trainer"], "epochs": 2})
    model.fit(view, progress=False)
    return split, view, model


def test_term_whitens_like_the_zero_shot_scorer_and_adds_items_the_same_way():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(12, 8)).astype(np.float32) + 3.0
    term = TextTerm(0.5, 0.1).fit(emb[:10])
    assert np.allclose(term.vectors.numpy(), whiten_text(emb[:10], 0.1), atol=1e-6)
    term.add(emb[10:])
    whole = TextTerm(0.5, 0.1).fit(emb[:10])
    assert term.vectors.shape == (12, 8)
    assert np.allclose(term.vectors[10:].numpy(), (emb[10:] - whole.whitening[0]) @ whole.whitening[1]
                       / np.linalg.norm((emb[10:] - whole.whitening[0]) @ whole.whitening[1], axis=1, keepdims=True),
                       atol=1e-5)
    hist = [np.array([0, 3, 5])]
    assert torch.allclose(term.scores(hist), recency_text_scores(term.vectors, hist, 0.5))
    with pytest.raises(ValueError, match="decay"):
        TextTerm(0.0, None)


def test_settings_are_chosen_on_valid_and_the_term_is_a_mix_part(fitted):
    split, view, model = fitted
    assert model.term is not None and model.term.decay in DECAYS and model.term.shrink in SHRINKS
    table = model.term.report["table"]
    best = max(r["valid"] for r in table)
    assert [(r["decay"], r["shrink"]) for r in table if r["valid"] == best][0] == (model.term.decay, model.term.shrink)
    assert len(model.mix_report["grids"]["rho"]) > 1 and model.mix_report["grids"]["rho"][0] == 0.0
    h = split.test.histories()[:5]
    parts = model.components(h)
    assert torch.allclose(parts["recency"], model.term.scores(h))
    mix = {**model.mix, "rho": 0.0}
    gate, cold = model.gate(), model.counts == 0
    with_term = model.combine(parts, gate, cold, {**mix, "rho": 2.0})
    assert torch.allclose(with_term - model.combine(parts, gate, cold, mix), 2.0 * parts["recency"], atol=1e-5)


def test_the_term_saves_loads_and_extends_to_added_items(fitted, tmp_path):
    split, view, model = fitted
    model.save_pretrained(tmp_path / "m")
    back = textrec.load(tmp_path / "m")
    back.text_embedder = bag_of_words
    assert back.get_config()["text_term"] == model.term.settings
    h = split.test.histories()[:4]
    assert torch.allclose(back.score(np.zeros(4), h), model.score(np.zeros(4), h), atol=1e-5)
    n = back.n_items
    back.add_items(texts=["product number7 in series s2 next8"], ids=["brand-new"])
    assert back.term.vectors.shape[0] == n + 1 and back.score(np.zeros(1), h[:1]).shape == (1, n + 1)
    assert torch.allclose(back.term.vectors[7], back.term.vectors[n], atol=1e-5)  # same text, same vector


def test_fit_text_term_keeps_the_weights_and_rho_zero_is_the_model_without_it():
    torch.set_num_threads(1)
    split = leave_one_out(_planted(seed=6))
    view = TrainView.from_split(split, with_text=True)
    model = _model(trainer={**SMALL["trainer"], "epochs": 1})
    model.fit(view, progress=False)
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    h = split.test.histories()[:6]
    parts = model.components(h)
    model.fit_text_term(view, {"decay": 0.6, "shrink": 0.5})
    assert all(torch.equal(before[k], v) for k, v in model.module.state_dict().items())
    assert model.term.settings == {"decay": 0.6, "shrink": 0.5} and "rho" in model.mix_report["chosen"]
    zero = model.combine(model.components(h), model.gate(), model.counts == 0, {**model.mix, "rho": 0.0})
    assert torch.allclose(zero, model.combine(parts, model.gate(), model.counts == 0, {**model.mix, "rho": 0.0}))


def test_warm_start_takes_the_term_settings_the_pretrained_model_chose():
    from textrec.models.fusion import pretrained_text_term

    torch.set_num_threads(1)
    view = TrainView.from_split(leave_one_out(_planted(seed=7)), with_text=True)
    pre = _model(trainer={**SMALL["trainer"], "epochs": 1}).fit(view, progress=False)
    with pytest.raises(ValueError, match="no text-term settings"):
        pretrained_text_term(pre)
    pre.pretraining = {"zero_shot": {"chosen": {"decay": 0.4, "shrink": 2.0, "w_seq": 0.0, "w_text": 1.0}}}
    target = _model().warm_start(pre, text_term=True)
    assert target.text_term == {"decay": 0.4, "shrink": 2.0} == target.pretraining["init"]["text_term"]
    assert _model().warm_start(pre).text_term is None  # off unless asked
    with pytest.raises(ValueError, match="decay"):
        _model(text_term={"decay": 0.4, "shrink": 2.0, "w_seq": 1.0})
    with pytest.raises(ValueError, match="text_term"):
        _model(text_term="yes")


def test_new_items_can_be_ranked_by_the_term_and_old_models_load_three_weights(fitted, tmp_path):
    split, view, model = fitted
    table = model.calibration.report["affinity_table"]
    assert any(r["a_term"] == 1.0 for r in table) and len(model.affinity_weights) == 4
    h = split.test.histories()[:3]
    terms = model.affinity_parts(h, model.components(h))
    assert torch.allclose(model.affinity(terms, (0.0, 0.0, 0.0, 1.0)), model.term.scores(h))
    model.save_pretrained(tmp_path / "m")
    from safetensors.torch import load_file

    tensors = load_file(tmp_path / "m" / "model.safetensors")
    tensors["cold_calibration.affinity_weights"] = tensors["cold_calibration.affinity_weights"][:3].clone()
    back = _model(text_term=model.get_config()["text_term"])
    back.load_state_tensors(tensors)
    assert back.affinity_weights == (*model.affinity_weights[:3], 0.0)
