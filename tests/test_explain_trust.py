"""Trust measures (unsupported content, personal aspects) and the extractive explainer that quotes
the item's own reviews: support, personalisation, the plain statement, save/load, CLI, serving."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import requires_shared_data
from test_explain import RECIPE, HashEncoder, make_dataset, synthetic_reviews

from textrec.explain.aspects import AspectVocab
from textrec.explain.base import ExplainModel
from textrec.explain.extractive import ExtractiveExplainer, history_statement
from textrec.explain.pipeline import (
    Explainer,
    build_data,
    copy_baseline,
    evaluate_predictions,
    fit_extractive,
)
from textrec.explain.trust import GENERIC_SENTIMENT, TrustSupport, claim_words, fold, trust_report, word_lists
from textrec.text.words import words

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data():
    return build_data(make_dataset(), RECIPE, encoder=HashEncoder(), progress=False)


def _support(item_text: str, user_text: str = "") -> TrustSupport:
    vocab = AspectVocab(["pop filter", "filter", "laptop", "strings"],
                        {"pop filter": "pop filter", "filter": "filter", "laptop": "laptop", "strings": "strings",
                         "string": "strings"})
    return TrustSupport({0: {fold(w) for w in words(item_text) if w.isalpha()}},
                        {0: set(vocab.find(words(item_text)))}, {7: [(3, set(vocab.find(words(user_text))))]},
                        vocab)


# ---- trust measures ---------------------------------------------------------------------------------
def test_unsupported_counts_claim_words_the_item_reviews_never_say():
    s = _support("No more pops when I record my vocals. Good windscreen, the filter clamps well.")
    c = s.check("i use this filter for my laptop and it works great .", user=7, item=0)
    # "use", "works", "great" are generic; "filter" is in the reviews; "laptop" is not
    assert c.unsupported == ["laptop"] and c.n_units == 2 and c.unsupported_share == 0.5
    assert s.check("the filter works great", user=7, item=0).unsupported == []


def test_plural_folding_and_multiword_aspects_are_claims_of_their_own():
    s = _support("The pop in my mic is gone. A great filter and new string set.")
    c = s.check("the pop filter and the strings", user=7, item=0)
    assert "strings" not in c.unsupported  # "string" in the reviews supports "strings"
    assert "pop filter" in c.unsupported  # "pop" and "filter" apart do not back the compound
    assert fold("batteries") == "battery" and fold("glass") == "glass"


def test_personal_counts_only_the_users_training_aspects_and_excludes_the_explained_review():
    s = _support("the strings and the laptop", user_text="my laptop stand")
    assert s.check("great strings for the laptop", user=7, item=0).personal == ["laptop"]
    assert s.check("great strings for the laptop", user=7, item=0, exclude_review=3).personal == []
    assert s.check("great strings", user=99, item=0).personal == []


def test_word_lists_are_written_down_and_generic_words_are_not_claims():
    lists = word_lists()
    assert "great" in lists["generic_sentiment"] and "the" in lists["stopwords"]
    assert claim_words(words("It works great and sounds amazing")) == {"sound"}
    assert not (GENERIC_SENTIMENT & set(lists["stopwords"]))


def test_every_benchmark_row_carries_the_trust_measures(data):
    test = data.examples["test"]
    texts, ratings = copy_baseline(test, data.reviews)
    m = evaluate_predictions(data, test, texts, ratings)
    for k in ("unsupported_content", "unsupported_any", "personal_hit_rate", "personal_precision", "grounding"):
        assert k in m and 0.0 <= m[k] <= 1.0
    bogus = ["zebra xylophone quantum" for _ in test]
    assert evaluate_predictions(data, test, bogus, ratings)["unsupported_content"] == 1.0


# ---- the extractive explainer ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def extract(data):
    return fit_extractive(data, {"extract": {"max_fit_pairs": 500}}, seed=0)


def test_quotes_come_from_the_items_own_training_reviews_never_the_explained_one(data, extract):
    idx = data.index
    for ex in data.examples["test"] + data.examples["valid"]:
        c = extract.choose(ex)
        assert c["kind"] == "quote"
        rev = int(idx.review[c["sid"]])
        assert rev in set(data.split.train.tolist()) and rev != ex.row
        assert int(data.reviews["item"].iat[rev]) == ex.item


def test_extractive_is_fully_supported_and_grounded(data, extract):
    test = data.examples["test"]
    texts, ratings = extract.predict(test)
    m = evaluate_predictions(data, test, texts, ratings, conditioned=False)
    assert m["unsupported_content"] == 0.0
    exp = Explainer(data, extract)
    out = exp.explain_example(test[0])
    assert out["kind"] == "quote" and out["grounding"] == 1.0 and len(out["cited"]) == 1
    assert out["trust"]["unsupported"] == [] and out["cited"][0]["text"] == out["explanation"]


def test_personal_bonus_raises_the_personal_hit_rate(data, extract):
    test = data.examples["test"] + data.examples["valid"]
    support_rates = []
    for pw in (0.0, 50.0):
        extract.config.personal_weight = pw
        texts, ratings = extract.predict(test)
        support_rates.append(trust_report(data._trust_support if hasattr(data, "_trust_support")
                                          else TrustSupport.from_data(data), texts, test).summary()["personal_hit_rate"])
    extract.config.personal_weight = 1.0
    assert support_rates[1] >= support_rates[0] and support_rates[1] > 0.5


def test_compression_keeps_a_contiguous_part_of_the_quote(data, extract):
    extract.config.compress, extract.config.compress_over = True, 5
    try:
        for ex in data.examples["test"][:10]:
            c = extract.choose(ex)
            assert c["text"] in data.index.texts[c["sid"]]
    finally:
        extract.config.compress, extract.config.compress_over = False, 18


def test_item_with_too_few_reviews_gets_the_plain_statement(data, extract):
    ex = data.examples["test"][0]
    extract.config.min_reviews = 10_000
    try:
        c = extract.choose(ex)
        out = Explainer(data, extract).explain_example(ex)
    finally:
        extract.config.min_reviews = 2
    assert c["kind"] == "history" and c["sid"] is None and "too few" in c["text"]
    assert out["kind"] == "history" and out["cited"] == [] and out["trust"] is None
    text = history_statement(data, ex.user, ex.item, ex.row)
    assert text.startswith("Recommended because you reviewed") and "also reviewed this item" in text


def test_extractive_round_trips_through_the_one_loader(data, extract, tmp_path):
    Explainer(data, extract).save(tmp_path / "exp")
    back = ExplainModel.from_pretrained(tmp_path / "exp" / "model")
    assert isinstance(back, ExtractiveExplainer)
    back.attach_data(data)
    assert back.predict(data.examples["test"]) == extract.predict(data.examples["test"])
    exp = Explainer.load(tmp_path / "exp", dataset=make_dataset(), encoder=HashEncoder(), progress=False)
    u, i = str(data.user_ids[0]), str(data.item_ids[data.examples["train"][0].item])
    out = exp.explain(u, i)
    assert out["kind"] in ("quote", "history") and exp.explain(u, i) is out  # cached per pair


def test_damaged_weights_are_refused(data, extract, tmp_path):
    from textrec.artifact import ArtifactError

    extract.save_pretrained(tmp_path / "m")
    cfg = tmp_path / "m" / "config.json"
    body = json.loads(cfg.read_text())
    body["config"]["features"] = ["something", "else"]
    cfg.write_text(json.dumps(body))
    with pytest.raises(ArtifactError):
        ExplainModel.from_pretrained(tmp_path / "m")


def test_predict_without_data_fails_clearly(extract):
    bare = ExtractiveExplainer(extract.config)
    with pytest.raises(RuntimeError, match="attach_data"):
        bare.choose(object())


def test_cli_builds_the_trusted_default_and_explains_recommendations(tmp_path, capsys, monkeypatch):
    import textrec.text.encoder as enc_mod
    from textrec.cli import main

    rv = synthetic_reviews()
    path = tmp_path / "reviews.json"
    path.write_text("".join(json.dumps({"reviewerID": r.user_id, "asin": r.item_id, "overall": r.rating,
                                        "reviewText": r.text, "summary": r.summary,
                                        "unixReviewTime": int(r.timestamp)}) + "\n" for r in rv.itertuples()))
    monkeypatch.setattr(enc_mod, "TextEncoder", HashEncoder)
    monkeypatch.setenv("TEXTREC_CACHE", str(tmp_path / "cache"))
    assert main(["explain", "--dataset", str(path), "--user", "U1", "--item", "I3", "--quiet"]) == 0
    out = capsys.readouterr()
    assert "fitting the default" in out.err and "explanation:" in out.out and "unsupported by" in out.out
    assert main(["explain", "--dataset", str(path), "--user", "U1", "--recommend", "2", "--json", "--quiet"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["engine"] == "EASE" and len(got["explanations"]) == 2
    assert all(e["user"] == "U1" and e["kind"] in ("quote", "history") for e in got["explanations"])


def test_served_explain_uses_the_explainer_and_reports_trust(data, extract):
    from textrec.serve.backends import ExplainerAdapter, UnknownIdError

    ad = ExplainerAdapter(explainer=Explainer(data, extract))
    ex = data.examples["test"][0]
    out = ad.explain(str(data.user_ids[ex.user]), str(data.item_ids[ex.item]))
    assert out["kind"] == "quote" and out["cited"][0]["sentence_id"] >= 0 and "trust" in out
    with pytest.raises(UnknownIdError):
        ad.explain("nobody", str(data.item_ids[ex.item]))


@requires_shared_data
def test_real_instruments_quotes_are_supported():
    from textrec.data.registry import load_dataset
    from textrec.recipes import load_recipe

    recipe = load_recipe("erra")
    recipe["data"] = {**recipe["data"], "sentence_embeddings": False}
    recipe["extract"] = {**recipe["extract"], "use_embeddings": False, "max_fit_pairs": 300}
    d = build_data(load_dataset("instruments"), recipe, progress=False)
    model = fit_extractive(d, recipe)
    test = d.examples["test"][:100]
    texts, ratings = model.predict(test)
    m = evaluate_predictions(d, test, texts, ratings, conditioned=False)
    assert m["unsupported_content"] == 0.0 and np.isfinite(m["bleu4"])


def test_trust_benchmark_end_to_end_on_a_tiny_dataset(tmp_path, monkeypatch):
    import yaml

    import textrec.text.encoder as enc_mod
    from textrec.cli import main
    from textrec.explain.pipeline import train_variant

    rv = synthetic_reviews()
    path = tmp_path / "reviews.json"
    path.write_text("".join(json.dumps({"reviewerID": r.user_id, "asin": r.item_id, "overall": r.rating,
                                        "reviewText": r.text, "summary": r.summary,
                                        "unixReviewTime": int(r.timestamp)}) + "\n" for r in rv.itertuples()))
    monkeypatch.setattr(enc_mod, "TextEncoder", HashEncoder)
    recipe = tmp_path / "erra.yaml"
    recipe.write_text(yaml.safe_dump({**RECIPE, "extract": {"max_fit_pairs": 200}}))
    from textrec.data.loaders import load_amazon_reviews

    d = build_data(load_amazon_reviews(path), RECIPE, encoder=HashEncoder(), progress=False)
    for v in ("peter", "erra"):
        model, _ = train_variant(d, v, RECIPE, progress=False, trainer_overrides={"epochs": 1})
        Explainer(d, model).save(tmp_path / v)
    out = tmp_path / "res"
    assert main(["bench", "erra_trust", "--dataset", str(path), "--recipe", str(recipe), "--peter",
                 str(tmp_path / "peter"), "--erra", str(tmp_path / "erra"), "--lm-sample", "4", "--valid-sample", "6",
                 "--samples", "3", "--rec-users", "3", "--rec-k", "2", "--personal-weights", "0", "1",
                 "--save-explainer", str(tmp_path / "trusted"), "--reference", "", "--out", str(out),
                 "--quiet", "--threads", "1"]) == 0
    res = json.loads((out / "erra_trust_reviews.json").read_text())
    for key in ("copy", "peter", "erra", "erra_rerank", "erra_extract", "item_pool_retrieved"):
        row = res["models"][key]
        assert {"unsupported_content", "personal_hit_rate", "grounding", "bleu4", "rougeL"} <= set(row["test"])
    assert res["models"]["erra_extract"]["test"]["unsupported_content"] == 0.0
    assert res["models"]["erra_extract"]["test"]["grounding"] == 1.0
    assert {t["target"].split(" ")[0] for t in res["targets"]} >= {"unsupported", "grounding", "bleu4", "rougeL"}
    assert len(res["samples"]) == 3 and "generic_sentiment" in res["word_lists"]
    assert res["recommended"]["summary"]["explanations"] > 0
    assert (out / "erra_trust_reviews_samples.md").is_file()
    assert (tmp_path / "trusted" / "config.json").is_file()
