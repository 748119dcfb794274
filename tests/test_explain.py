"""ERRA engine: leakage, aspects, split, tiny end-to-end training, save/load, bad rows, CLI."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tiny_llama

from textrec.data.dataset import DataError, RecDataset
from textrec.explain.aspects import AspectConfig, AspectPreferences, extract_aspects
from textrec.explain.base import ExplainModel
from textrec.explain.data import ExplainData, target_sentence
from textrec.explain.pipeline import Explainer, copy_baseline, evaluate_predictions, train_variant
from textrec.explain.sentences import split_sentences, words
from textrec.explain.split import split_reviews

torch.set_num_threads(1)

ASPECTS = ["sound", "strings", "tuner", "cable", "pedal", "strap", "price", "tone"]
OPINIONS = ["is great", "feels solid", "works well", "was cheap", "is too loud", "broke quickly"]


class HashEncoder:
    """Deterministic bag-of-words hashing encoder: a fast stand-in for MiniLM in tests."""

    def __init__(self, dim: int = 64):
        self.dim = dim
        self.calls = 0

    def encode(self, texts, progress: bool = True) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for k, t in enumerate(texts):
            for w in words(t):
                h = int(hashlib.md5(w.encode()).hexdigest(), 16)
                out[k, h % self.dim] += 1.0 if (h >> 8) % 2 else -1.0
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)
        return out


def synthetic_reviews(n_users: int = 14, n_items: int = 9, per_user: int = 6, seed: int = 0) -> pd.DataFrame:
    """Reviews whose sentences mention aspects after determiners ("the sound is great.")."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        items = rng.choice(n_items, size=per_user, replace=False)
        for j, i in enumerate(items):
            fav = ASPECTS[(u + i) % len(ASPECTS)]
            other = ASPECTS[(3 * i + 1) % len(ASPECTS)]
            op = OPINIONS[(u * 7 + i) % len(OPINIONS)]
            text = (f"I bought this for my band. The {fav} {op}. My {other} {OPINIONS[i % 6]} "
                    f"for user{u} item{i}. Overall the {ASPECTS[i % 8]} of item {i} is fine.")
            rows.append({"user_id": f"U{u}", "item_id": f"I{i}", "rating": float(1 + (u + i) % 5),
                         "text": text, "summary": f"about {fav}", "timestamp": float(1e9 + 86400 * (j + u))})
    return pd.DataFrame(rows)


def make_dataset(reviews: pd.DataFrame | None = None) -> RecDataset:
    rv = synthetic_reviews() if reviews is None else reviews
    inter = rv[["user_id", "item_id", "timestamp", "rating"]]
    return RecDataset.from_frames("synthetic", inter, reviews=rv, source="synthetic.json")


RECIPE = {"data": {"k_sentences": 2}, "aspects": {"min_df": 2},
          "tokenizer": {"vocab_size": 300, "min_frequency": 1},
          "t5": {"d_model": 32, "d_ff": 64, "num_layers": 1, "num_decoder_layers": 1, "num_heads": 2,
                 "max_words": 12},
          "erra": {"d_model": 32, "d_ff": 64, "num_layers": 1, "num_heads": 2, "max_words": 12, "k_sentences": 2,
                   "sentence_dim": 64, "n_keywords": 6},
          "peter": {"d_model": 32, "d_ff": 64, "num_layers": 1, "num_heads": 2, "max_words": 12},
          "trainer": {"epochs": 2, "batch_size": 16, "lr": 3e-3, "warmup_steps": 1}}


@pytest.fixture(scope="module")
def data() -> ExplainData:
    from textrec.explain.pipeline import build_data

    return build_data(make_dataset(), RECIPE, encoder=HashEncoder(), progress=False)


# ---- sentences / retrieval ---------------------------------------------------------------------
def test_sentence_split_handles_glued_and_newlines():
    s = split_sentences("Great pedal.It works!  Really\nNew line here? yes")
    assert s == ["Great pedal.", "It works!", "Really", "New line here?", "yes"]
    assert words("It's LOUD, ok.") == ["it", "'", "s", "loud", ",", "ok", "."]


def test_retrieval_never_leaks_own_or_heldout_reviews(data: ExplainData):
    heldout = set(data.split.valid.tolist()) | set(data.split.test.tolist())
    assert heldout, "fixture must have valid/test reviews"
    indexed = set(data.index.review.tolist())
    assert not indexed & heldout  # valid/test sentences are not in the index at all
    assert indexed <= set(data.split.train.tolist())
    n_checked = 0
    for part in ("train", "valid", "test"):
        for ex in data.examples[part]:
            assert ex.retrieved, "every example should retrieve something in this fixture"
            for r in ex.retrieved:
                assert r.review != ex.row
                assert r.review not in heldout
                # the retrieved sentence belongs to the user's or the item's *other* reviews
                assert (data.reviews["user"].iat[r.review] == ex.user or data.reviews["item"].iat[r.review] == ex.item)
                n_checked += 1
    assert n_checked > 50
    # asking for every candidate of a train pair still never returns its own review's sentences
    ex = data.examples["train"][0]
    own = set(data.index.sentences_of(ex.row))
    assert own
    allr = data.index.retrieve(ex.user, ex.item, k=10_000, exclude_review=ex.row)
    assert not {r.sid for r in allr} & own
    assert {r.sid for r in data.index.retrieve(ex.user, ex.item, k=10_000)} & own  # without exclusion it would


def test_retrieval_deterministic_and_sorted(data: ExplainData):
    ex = data.examples["test"][0]
    a = data.index.retrieve(ex.user, ex.item, k=5, exclude_review=ex.row)
    b = data.index.retrieve(ex.user, ex.item, k=5, exclude_review=ex.row)
    assert [r.sid for r in a] == [r.sid for r in b]
    assert all(x.score >= y.score for x, y in zip(a, a[1:]))


# ---- aspects -------------------------------------------------------------------------------------
def test_aspects_extracted_merged_and_deterministic():
    texts = synthetic_reviews()["text"].tolist() + ["The strings were old.", "These string sets are fine."]
    cfg = AspectConfig(min_df=2)
    v1 = extract_aspects(texts, cfg, encoder=HashEncoder())
    v2 = extract_aspects(list(texts), cfg, encoder=HashEncoder())
    assert v1.to_dict() == v2.to_dict()
    for a in ("sound", "strings", "tuner", "pedal"):
        assert a in v1.aspects
    assert "great" not in v1.alias and "band" in v1.alias  # opinions are not aspects
    assert v1.alias.get("string", "strings") == "strings"  # plural/singular merged into the frequent form
    assert v1.find(words("The strings and the sound")) == ["strings", "sound"]


def test_embedding_merge_of_near_duplicates():
    class Same:  # "guitar" and "guitars"-like synonyms: same vector for two strings
        def encode(self, texts, progress=True):
            v = np.eye(len(texts), 8, dtype=np.float32)
            v[texts.index("amp")] = v[texts.index("amplifier")]
            return v

    texts = ["the amp is fine"] * 5 + ["the amplifier is loud"] * 3 + ["the cable is long"] * 4
    v = extract_aspects(texts, AspectConfig(min_df=2), encoder=Same())
    assert v.alias["amplifier"] == "amp" and "amplifier" not in v.aspects
    assert v.find(words("that amplifier")) == ["amp"]


def test_user_preferences_recency_and_top2(data: ExplainData):
    prefs = data.prefs
    u = data.examples["train"][0].user
    s_all = prefs.user_scores(u)
    assert s_all and all(v > 0 for v in s_all.values())
    sel = prefs.select(u, data.examples["train"][0].item)
    assert len(sel) == 2 and sel == prefs.select(u, data.examples["train"][0].item)
    # recency: a review far in the past weighs less than one at the query time
    rows = prefs.by_user[u]
    t = prefs.times[rows[-1]]
    w = prefs.user_scores(u, at_time=t + 86400 * 365 * 10)
    assert sum(w.values()) < sum(s_all.values())


def test_preferences_exclude_the_explained_review():
    from textrec.explain.aspects import AspectVocab

    vocab = AspectVocab(["sound", "tuner"], {"sound": "sound", "tuner": "tuner"})
    prefs = AspectPreferences(vocab, np.array([0, 0]), np.array([0, 1]), np.array([0.0, 0.0]),
                              [["tuner"], ["sound"]], [0, 1], AspectConfig(top_n=1, item_weight=0.0))
    assert prefs.select(0, 1) == ["sound"] or prefs.select(0, 1) == ["tuner"]
    assert prefs.select(0, 1, exclude_review=1) == ["tuner"]  # only the other review speaks
    assert prefs.select(0, 1, exclude_review=0) == ["sound"]


def test_idf_weighting_prefers_the_aspect_this_item_is_about():
    from textrec.explain.aspects import AspectVocab

    vocab = AspectVocab(["guitar", "capo"], {"guitar": "guitar", "capo": "capo"})
    # "guitar" is in every review; item 1's reviews mention the capo once, the guitar twice
    aspects = [["guitar"], ["guitar"], ["guitar"], ["guitar", "capo"], ["guitar"]]
    users, items = np.array([0, 1, 2, 3, 4]), np.array([0, 0, 1, 1, 2])
    times = np.zeros(5)
    flat = AspectPreferences(vocab, users, items, times, aspects, range(5), AspectConfig(top_n=1, idf_power=0.0))
    idf = AspectPreferences(vocab, users, items, times, aspects, range(5), AspectConfig(top_n=1, idf_power=0.5))
    assert flat.select(9, 1) == ["guitar"]
    assert idf.select(9, 1) == ["capo"]
    assert idf.idf["guitar"] > 0  # floored, never zero or negative


# ---- split / bad rows ----------------------------------------------------------------------------
def test_split_8_1_1_seen_users_items_and_counts():
    rv = make_dataset().reviews
    s = split_reviews(rv, seed=3)
    assert len(s.train) + len(s.valid) + len(s.test) == len(rv)
    assert not set(s.train) & set(s.valid) and not set(s.valid) & set(s.test)
    tu, ti = set(rv["user"].iloc[s.train]), set(rv["item"].iloc[s.train])
    for part in (s.valid, s.test):
        assert set(rv["user"].iloc[part]) <= tu and set(rv["item"].iloc[part]) <= ti
    assert abs(len(s.train) / len(rv) - 0.8) < 0.1
    assert s.describe()["moved_to_train"] == s.moved_to_train
    s2 = split_reviews(rv, seed=3)
    assert np.array_equal(s.test, s2.test)
    # a user with one review can only be in train (moved and counted if drawn for valid/test)
    rv2 = pd.concat([rv, rv.iloc[[0]].assign(user=rv["user"].max() + 1)], ignore_index=True)
    moved = 0
    for seed in range(30):
        sp = split_reviews(rv2, seed=seed)
        assert len(rv2) - 1 in set(sp.train.tolist())
        moved += sum(sp.moved_to_train.values())
    assert moved > 0


def test_bad_rows_counted_or_raised(tmp_path):
    rv = synthetic_reviews()
    rv.loc[2, "text"] = "   "
    rv.loc[5, "rating"] = float("nan")
    ds = make_dataset(rv)
    s = split_reviews(ds.reviews, on_error="skip")
    assert s.skipped.counts == {"empty review text": 1, "missing rating": 1}
    assert 2 not in set(np.concatenate([s.train, s.valid, s.test]).tolist())
    with pytest.raises(DataError, match=r"synthetic.json.*field 'text'"):
        split_reviews(ds.reviews, on_error="raise", source="synthetic.json")
    # through the core Amazon loader: an empty text is kept (noted), a missing rating is the loader's call
    from textrec.data.loaders import load_amazon_reviews

    lines = [{"reviewerID": f"U{u}", "asin": f"I{i}", "overall": 5.0, "reviewText": f"The sound of {i} is great.",
              "summary": "ok", "unixReviewTime": 1000 + u} for u in range(3) for i in range(3)]
    lines[1]["reviewText"] = ""
    del lines[4]["overall"]
    path = tmp_path / "reviews.json"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    with pytest.raises(DataError, match=r"line 5.*overall"):
        load_amazon_reviews(path)
    ds2 = load_amazon_reviews(path, on_error="skip")
    assert ds2.skipped.total == 1 and len(ds2.reviews) == 8
    s2 = split_reviews(ds2.reviews)
    assert s2.skipped.counts == {"empty review text": 1}


def test_target_sentence_needs_an_aspect(data: ExplainData):
    tgt = target_sentence("Nice. I love it so much. The sound is warm and clear.", data.vocab)
    assert tgt == ("the sound is warm and clear .", "sound")
    assert target_sentence("Nice. I love it so much.", data.vocab) is None
    for ex in data.examples["test"]:
        assert ex.feature in data.vocab.find(ex.target.split())


# ---- models --------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["erra", "erra_no_retrieval", "erra_no_aspects", "peter", "erra_t5"])
def test_tiny_end_to_end_train_predict_save_load(data: ExplainData, variant, tmp_path):
    model, hist = train_variant(data, variant, RECIPE, progress=False)
    assert len(hist["epochs"]) == 2 and hist["epochs"][1]["train"]["loss"] < hist["epochs"][0]["train"]["loss"]
    test = data.examples["test"]
    texts, ratings = model.predict(test, num_beams=1)
    assert len(texts) == len(test) and all(1.0 <= r <= 5.0 for r in ratings)
    assert all(len(t.split()) <= 12 for t in texts)
    beam, _ = model.predict(test[:3], num_beams=3)
    assert len(beam) == 3
    m = evaluate_predictions(data, test, texts, ratings)
    for k in ("bleu1", "bleu4", "rouge1", "rouge2", "rougeL", "usr", "div", "fcr", "fmr", "rmse", "mae"):
        assert k in m and not math.isnan(m[k])
    model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").is_file() and (tmp_path / "m" / "tokenizer.json").is_file()
    back = ExplainModel.from_pretrained(tmp_path / "m")
    t2, r2 = back.predict(test, num_beams=1)
    assert t2 == texts and np.allclose(r2, ratings, atol=1e-5)


def test_copy_baseline_is_top_retrieved(data: ExplainData):
    test = data.examples["test"]
    texts, ratings = copy_baseline(test, data.reviews)
    assert texts[0] == " ".join(words(test[0].retrieved[0].text))
    m = evaluate_predictions(data, test, texts, ratings)
    assert m["grounding"] == pytest.approx(1.0)


def test_explainer_cli_round_trip(data: ExplainData, tmp_path, capsys):
    model, _ = train_variant(data, "erra", RECIPE, progress=False, trainer_overrides={"epochs": 1})
    Explainer(data, model).save(tmp_path / "exp")
    exp = Explainer.load(tmp_path / "exp", dataset=make_dataset(), encoder=HashEncoder(), progress=False)
    out = exp.explain("U0", data.item_ids[data.examples["train"][0].item])
    assert set(out) >= {"explanation", "aspects", "cited", "rating"} and len(out["aspects"]) == 2
    with pytest.raises(ValueError, match="unknown user"):
        exp.explain("nobody", "I0")


def test_cli_single_and_batch(data: ExplainData, tmp_path, capsys, monkeypatch):
    import textrec.text.encoder as enc_mod
    from textrec.cli import main

    rv = synthetic_reviews()
    path = tmp_path / "reviews.json"
    path.write_text("".join(json.dumps({"reviewerID": r.user_id, "asin": r.item_id, "overall": r.rating,
                                        "reviewText": r.text, "summary": r.summary,
                                        "unixReviewTime": int(r.timestamp)}) + "\n" for r in rv.itertuples()))
    monkeypatch.setattr(enc_mod, "TextEncoder", HashEncoder)  # no MiniLM load in a unit test
    from textrec.data.loaders import load_amazon_reviews
    from textrec.explain.pipeline import build_data

    d = build_data(load_amazon_reviews(path), RECIPE, encoder=HashEncoder(), progress=False, with_examples=False)
    d.examples = {"train": data.examples["train"], "valid": data.examples["valid"]}
    model, _ = train_variant(d, "erra", RECIPE, progress=False, trainer_overrides={"epochs": 1})
    Explainer(d, model).save(tmp_path / "m")
    assert main(["explain", "--dataset", str(path), "--model", str(tmp_path / "m"), "--user", "U1",
                 "--item", "I3", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "explanation:" in out and "aspects used:" in out and "cited sentences" in out
    batch = tmp_path / "pairs.txt"
    batch.write_text('U1 I3\n{"user": "U2", "item": "I0"}\nghost I0\n')
    assert main(["explain", "--dataset", str(path), "--model", str(tmp_path / "m"), "--batch", str(batch),
                 "--out", str(tmp_path / "o.jsonl"), "--quiet"]) == 0
    rows = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and "explanation" in rows[0] and "unknown user" in rows[2]["error"]
    batch.write_text('{"user": "U2"}\n')
    assert main(["explain", "--dataset", str(path), "--model", str(tmp_path / "m"), "--batch", str(batch),
                 "--quiet"]) == 2
    assert "line 1" in capsys.readouterr().err


# ---- causal-LM option (PEPLER-style) -------------------------------------------------------------
def _tiny_lm(folder):
    """A 2-layer random Llama with a word-level tokenizer over the fixture's words and the prompt words."""
    return tiny_llama(folder, {w for t in synthetic_reviews()["text"] for w in words(t)}
                      | set(words("Aspects: none, x. Others said: | Explanation:")))


@pytest.mark.parametrize("variant", ["erra_lm", "pepler"])
def test_causal_lm_option_trains_generates_and_round_trips(data: ExplainData, variant, tmp_path):
    recipe = {**RECIPE, "lm": {"model": _tiny_lm(tmp_path / "lm"), "max_words": 12, "lora_top_layers": 1,
                               "k_sentences": 2},
              "lm_trainer": {"epochs": 3, "batch_size": 8, "lr": 1e-2}}
    model, hist = train_variant(data, variant, recipe, progress=False)
    assert hist["epochs"][-1]["train"]["text"] < hist["epochs"][0]["train"]["text"]
    # only the adapters of the top layer, the ID vectors and the rating head learn
    trained = {k for k, v in model.named_parameters() if v.requires_grad}
    assert any("lora" in k and "layers.1." in k for k in trained)
    assert not any("lora" in k and "layers.0." in k for k in trained)
    assert {"user_emb.weight", "item_emb.weight"} <= trained
    prompt = model.prompt_text(data.examples["test"][0])
    assert ("Others said" in prompt) == (variant == "erra_lm") and ("Aspects" in prompt) == (variant == "erra_lm")
    test = data.examples["test"][:6]
    texts, ratings = model.predict(test, batch_size=4)
    assert len(texts) == 6 and all(len(t.split()) <= 12 for t in texts) and all(1 <= r <= 5 for r in ratings)
    # left padding must not change a row's output: batched == one at a time
    solo = [model.predict([e])[0][0] for e in test]
    assert solo == texts
    model.save_pretrained(tmp_path / "m")
    from safetensors.torch import load_file

    assert set(load_file(str(tmp_path / "m" / "model.safetensors"))) == trained  # no frozen LM weights
    back = ExplainModel.from_pretrained(tmp_path / "m")
    t2, r2 = back.predict(test, batch_size=4)
    assert t2 == texts and np.allclose(r2, ratings, atol=1e-5)


def test_capped_lm_option_stops_backprop_at_the_adapted_layers(data: ExplainData, tmp_path):
    """The CPU-sized LM option: no ID vectors, bf16 base, adapters on every projection of the top layer."""
    recipe = {**RECIPE, "lm": {"model": _tiny_lm(tmp_path / "lm"), "max_words": 12, "lora_top_layers": 1,
                               "k_sentences": 1, "max_sentence_words": 6, "id_prompts": False, "item_words": 4,
                               "base_dtype": "bfloat16", "no_repeat_ngram": 2,
                               "lora_targets": ["q_proj", "v_proj", "up_proj", "down_proj"]},
              "lm_trainer": {"epochs": 3, "batch_size": 8, "lr": 1e-2}}
    seen = []
    model, hist = train_variant(data, "erra_lm", recipe, progress=False,
                                on_step_end=lambda tr: seen.append(tr.state.global_step))
    assert seen == sorted(seen) and len(seen) >= 3  # the step callback reaches the caller
    assert hist["epochs"][-1]["train"]["text"] < hist["epochs"][0]["train"]["text"]
    trained = {k: v for k, v in model.named_parameters() if v.requires_grad}
    assert not any("user_emb" in k or "item_emb" in k for k in trained)
    assert any("lora" in k and "up_proj" in k for k in trained) and all(v.dtype == torch.float32 for v in trained.values())
    assert next(p for n, p in model.named_parameters() if "embed_tokens" in n).dtype == torch.bfloat16
    # only the adapted top layer (and the rating head) receive gradients: backprop stops there
    batch = model.collate(data.examples["train"][:4])
    model(batch)["loss"].backward()
    assert all(v.grad is not None for v in trained.values())
    prompt = model.prompt_text(data.examples["test"][0])
    assert prompt.count("|") == 0 and "Others said" in prompt  # one retrieved sentence only
    model.item_texts = ["a red guitar case with extra pockets"] * data.n_items
    assert model.prompt_text(data.examples["test"][0]).startswith("Item: a red guitar case. Aspects")
    model.item_texts = None
    test = data.examples["test"][:5]
    texts, ratings = model.predict(test, batch_size=3)
    assert len(texts) == 5 and all(1 <= r <= 5 for r in ratings)
    assert [model.predict([e])[0][0] for e in test] == texts  # left padding changes nothing
    model.save_pretrained(tmp_path / "m")
    back = ExplainModel.from_pretrained(tmp_path / "m")
    assert back.predict(test, batch_size=3)[0] == texts
