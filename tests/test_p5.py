"""P5 engine: templates, serializer (no leaks), tokenizer, tiny-model training, generation, save/load."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from textrec.indexing import build_index, random_index
from textrec.p5.generation import generate_items, parse_rating, predict_ratings, rank_candidates
from textrec.p5.model import P5Config, P5Model
from textrec.p5.recommender import P5Recommender, tokenizer_corpus
from textrec.p5.serializer import FAMILIES, P5Serializer, SerializerConfig, TrainData, load_family_templates
from textrec.p5.trainer import P5TrainConfig, train_p5
from textrec.prompts import Template, TemplateError, load_templates, select

torch.set_num_threads(1)
N_ITEMS = 12
SHORT = {"sequential": [Template(id="t-short", family="sequential", source="user {user} : {history}",
                                 target="{target}")]}


def planted_sequences(n_users: int = 36, length: int = 6, seed: int = 0) -> list[np.ndarray]:
    """Every user walks the catalog in order: the next item is always (last + 1) mod N."""
    rng = np.random.default_rng(seed)
    return [np.array([(s + j) % N_ITEMS for j in range(length)]) for s in rng.integers(N_ITEMS, size=n_users)]


def tiny_model(index, serializer, data) -> P5Model:
    torch.manual_seed(0)
    return P5Model.build(P5Config(preset="tiny", vocab_size=300, dropout=0.0), index,
                         tokenizer_corpus(serializer, data, None))


@pytest.fixture(scope="module")
def trained():
    """A tiny P5 trained on the planted pattern (shared by the generation tests)."""
    seqs = planted_sequences()
    index = build_index("collaborative", seqs, N_ITEMS, n_clusters=3, leaf_size=4)
    ser = P5Serializer(index, None, SerializerConfig(max_history=3), templates=SHORT)
    data = TrainData(seqs, N_ITEMS)
    model = tiny_model(index, ser, data)
    hist = train_p5(model, ser, data, None, P5TrainConfig(epochs=12, batch_size=32, lr=5e-3, warmup_steps=5),
                    progress=False)
    return model, ser, hist


# ---- templates --------------------------------------------------------------------------
def test_every_family_has_seen_and_unseen_templates():
    for fam in FAMILIES:
        ts = load_templates(f"p5/{fam}")
        assert select(ts, unseen=False) and select(ts, unseen=True), fam
        assert all(t.family == fam for t in ts)
        if fam in ("explanation", "review"):
            assert all("reviews" in t.requires for t in ts)
            assert select(ts, capabilities=set()) == []
    seq = load_templates("p5/sequential")
    with_titles = [t for t in seq if "history_titles" in t.fields]
    assert with_titles and len(seq) - len(with_titles) >= 3


def test_templates_render_with_serializer_fields():
    index = random_index(30)
    ser = P5Serializer(index, [f"title {i}" for i in range(30)])
    tpl = ser.template("sequential", "seq-title-1")
    src = ser.sequential_source(7, [3, 4, 5], tpl)
    assert "user_7" in src.lower() and index.item_text(5) in src and "(title 5)" in src
    assert ser.template("sequential", unseen=True).unseen


def test_bad_template_names_the_template(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("family: sequential\ntemplates:\n  - id: seq-bad\n    source: 'user {user} likes {favourite_colour}'\n"
                   "    target: '{target}'\n")
    tpls = {"sequential": load_templates(bad)}
    ser = P5Serializer(random_index(10), None, templates=tpls)
    with pytest.raises(TemplateError, match=r"broken\.yaml.*seq-bad.*favourite_colour"):
        ser.examples(TrainData([np.array([0, 1, 2])], 10))


# ---- serializer ---------------------------------------------------------------------------
def test_serializer_never_leaks_target_or_future_events():
    rng = np.random.default_rng(0)
    n_items = 200
    seqs = [rng.choice(n_items, size=int(rng.integers(2, 30)), replace=False) for _ in range(25)]
    index = random_index(n_items, seed=1)
    ser = P5Serializer(index, [f"t{i}" for i in range(n_items)],
                       SerializerConfig(families=["sequential", "direct"], max_history=8, n_candidates=5))
    cols = ser.examples(TrainData(seqs, n_items))
    assert set(cols["task"]) == {"sequential", "direct"}
    for src, tgt, task, u, it, hist in zip(cols["source"], cols["target"], cols["task"], cols["user"],
                                           cols["target_item"], cols["history"]):
        seq = list(seqs[u])
        if task == "sequential":
            t = seq.index(it)
            assert index.parse(tgt) == it
            found = index.find_items(src)
            assert found == hist == seq[t - len(hist):t]  # exactly the truncated past, in order
            assert len(hist) in (min(t, 8), min(t, 5))  # ids-only or with-titles templates
            assert not set(found) & set(seq[t:])  # neither the target nor any later event
        else:
            # the history part of a direct prompt holds only past events
            if it in seq:
                t = seq.index(it)
                assert hist == seq[t - len(hist):t] and len(hist) in (0, min(t, 8))


def test_serializer_is_deterministic_and_samples_positions():
    seqs = [np.arange(i, i + 20) % 50 for i in range(10)]
    cfg = SerializerConfig(families=["sequential", "direct"], positions_per_user=4, n_candidates=6, seed=3)
    ser = P5Serializer(random_index(50), None, cfg)
    data = TrainData(seqs, 50)
    a, b = ser.examples(data, epoch=0), ser.examples(data, epoch=0)
    assert a == b
    assert ser.examples(data, epoch=1)["source"] != a["source"]
    assert sum(t == "sequential" for t in a["task"]) == 10 * 4
    ds = ser.dataset(data)
    assert {"source", "target", "task", "template_id"} <= set(ds.column_names) and len(ds) == len(a["source"])


def test_direct_candidates_hold_target_and_unconsumed_negatives():
    seqs = [np.arange(0, 10), np.arange(10, 20)]
    ix = random_index(40)
    tpl = [t for t in load_templates("p5/direct") if t.extra.get("kind") == "choose" and not t.unseen]
    ser = P5Serializer(ix, None, SerializerConfig(families=["direct"], n_candidates=8), templates={"direct": tpl})
    cols = ser.examples(TrainData(seqs, 40))
    for src, tgt, u in zip(cols["source"], cols["target"], cols["user"]):
        cands = ix.find_items(src.split("andidates")[-1].split(":", 1)[-1])
        cands = cands[-8:]
        target = ix.parse(tgt)
        assert target in cands and len(set(cands)) == 8
        assert not (set(cands) - {target}) & set(seqs[u].tolist())


def test_review_families_enabled_only_with_reviews():
    train = pd.DataFrame({"user": [0, 0, 0, 1, 1], "item": [0, 1, 2, 1, 3], "timestamp": [1., 2, 3, 1, 2],
                          "row": range(5), "rating": [5., 4, 3, 2, 1]})
    reviews = pd.DataFrame({"user": [0, 1, 1], "item": [0, 3, 4], "rating": [5., 1, 2],
                            "text": ["great fun movie", "boring", "held-out review"], "summary": ["fun", "meh", "x"]})
    ser = P5Serializer(random_index(5), [f"t{i}" for i in range(5)],
                       SerializerConfig(families=list(FAMILIES), rating_per_user=1))
    with_rev = ser.examples(TrainData.from_frame(train, 2, 5, reviews=reviews))
    assert {"sequential", "direct", "rating", "explanation", "review"} == set(with_rev["task"])
    assert not any("held-out" in s for s in with_rev["source"] + with_rev["target"])  # (1, 4) is no training pair
    without = ser.examples(TrainData.from_frame(train, 2, 5))
    assert "explanation" not in without["task"] and "explanation" in ser.skipped_families


# ---- model, training, generation --------------------------------------------------------
def test_whole_word_ids_tie_the_pieces_of_each_item():
    index = random_index(120, seed=0)
    ser = P5Serializer(index, None, templates=SHORT)
    data = TrainData([np.array([0, 1, 2])], 120)
    model = tiny_model(index, ser, data)
    enc = model.tokenize_sources([ser.sequential_source(0, [101, 7, 55], SHORT["sequential"][0])])
    ids, ww = enc["input_ids"][0], model.whole_word_ids(enc["input_ids"])[0]
    toks = model.tokenizer.convert_ids_to_tokens(ids.tolist())
    spans = {}
    for t, w in zip(toks, ww.tolist()):
        assert (w > 0) == t.startswith("<n_")
        if w:
            spans.setdefault(w, []).append(t)
    assert ["".join(spans[k]) for k in sorted(spans)] == [index.item_text(i) for i in (101, 7, 55)]


def test_item_embeddings_map_each_id_span_to_its_item(tmp_path):
    index = random_index(120, seed=0)
    ser = P5Serializer(index, None, templates=SHORT)
    data = TrainData([np.array([0, 1, 2])], 120)
    torch.manual_seed(0)
    model = P5Model.build(P5Config(preset="tiny", vocab_size=300, dropout=0.0, item_embeddings=True), index,
                          tokenizer_corpus(ser, data, None))
    enc = model.tokenize_sources([ser.sequential_source(0, [101, 7, 55], SHORT["sequential"][0])])
    items = model.span_items(enc["input_ids"])[0].tolist()
    ww = model.whole_word_ids(enc["input_ids"])[0].tolist()
    by_span = {w: it for w, it in zip(ww, items) if w}
    assert [by_span[k] for k in sorted(by_span)] == [101, 7, 55]
    assert all(it == 120 for w, it in zip(ww, items) if not w)  # text tokens get the "no item" row
    # a trained item row changes the encoding of prompts that name the item, and survives save/load
    with torch.no_grad():
        model.item_embedding.weight[7] = 1.0
    model.eval()
    before = model.encode(enc["input_ids"], enc["attention_mask"]).last_hidden_state
    model.save_pretrained(tmp_path / "p5")
    loaded = P5Model.from_pretrained(tmp_path / "p5")
    assert loaded.item_embedding is not None and loaded.item_embedding.weight[7].eq(1.0).all()
    torch.testing.assert_close(loaded.encode(enc["input_ids"], enc["attention_mask"]).last_hidden_state, before)
    loaded.item_embedding = None
    assert not torch.allclose(loaded.encode(enc["input_ids"], enc["attention_mask"]).last_hidden_state, before)


def test_tiny_model_learns_planted_next_item(trained):
    model, ser, hist = trained
    assert hist["epochs"][-1]["loss"] < hist["epochs"][0]["loss"]
    histories = [np.array([(s + j) % N_ITEMS for j in range(3)]) for s in range(N_ITEMS)]
    src = [ser.sequential_source(0, h, SHORT["sequential"][0]) for h in histories]
    items, scores = generate_items(model, src, consumed=histories, k=3)
    expected = np.array([(h[-1] + 1) % N_ITEMS for h in histories])
    assert (items[:, 0] == expected).mean() >= 0.9
    for h, row, sc in zip(histories, items, scores):
        assert not set(row.tolist()) & set(h.tolist())  # consumed items never come out
        assert len(set(row.tolist())) == 3 and np.all(np.diff(sc) <= 0)


def test_cpu_cap_stops_p5_training_and_is_recorded():
    """max_cpu_minutes stops P5 mid-schedule; the history names that cap and counts CPU seconds per epoch."""
    seqs = planted_sequences()
    index = random_index(N_ITEMS)
    ser = P5Serializer(index, None, SerializerConfig(max_history=3), templates=SHORT)
    data = TrainData(seqs, N_ITEMS)
    hist = train_p5(tiny_model(index, ser, data), ser, data, None,
                    P5TrainConfig(epochs=500, batch_size=32, max_cpu_minutes=0.01), progress=False)
    assert hist["stopped"] == "max_cpu_minutes=0.01 reached" and len(hist["epochs"]) < 500
    assert hist["train_cpu_seconds"] >= 0.6
    cpu = [e["cpu_seconds_so_far"] for e in hist["epochs"]]
    assert cpu == sorted(cpu) and cpu[-1] <= hist["train_cpu_seconds"]


def test_recommender_scores_are_minus_inf_outside_beams(trained):
    from textrec.data.splits import EvalSet
    from textrec.evaluation import evaluate

    model, ser, _ = trained
    rec = P5Recommender(model=model, serializer=ser, template_id="t-short", k=3)
    histories = [np.array([0, 1, 2]), np.array([5, 6, 7])]
    s = rec.score(np.array([0, 1]), histories)
    assert s.shape == (2, N_ITEMS) and (torch.isfinite(s).sum(1) == 3).all()
    assert torch.isneginf(s[0, [0, 1, 2]]).all()
    ev = EvalSet.from_lists([0, 1], histories, [np.array([3]), np.array([8])])
    res = evaluate(rec, ev, N_ITEMS, ks=(1, 3))
    assert res.metrics["hr@1"] == 1.0


def test_save_load_round_trip_gives_identical_generations(trained, tmp_path):
    model, ser, _ = trained
    rec = P5Recommender(model=model, serializer=ser, template_id="t-short", k=4)
    histories = [np.array([3, 4, 5]), np.array([9, 10])]
    src = rec.sources(np.array([0, 1]), histories)
    before = generate_items(model, src, consumed=histories, k=4)
    rec.save_pretrained(tmp_path / "p5")
    loaded = P5Model.from_pretrained(tmp_path / "p5")
    after = generate_items(loaded, src, consumed=histories, k=4)
    assert np.array_equal(before[0], after[0])
    np.testing.assert_allclose(before[1], after[1], rtol=1e-5)
    assert loaded.index.tokens == model.index.tokens
    back = P5Recommender.from_pretrained(tmp_path / "p5")
    assert back.k == 4 and back.indexing == "collaborative"


def test_candidate_ranking_and_free_text(trained):
    model, ser, _ = trained
    src = ser.sequential_source(0, [2, 3, 4], SHORT["sequential"][0])
    order, lp = rank_candidates(model, src, [9, 5, 0, 7])
    assert order[0] == 5 and sorted(order.tolist()) == [0, 5, 7, 9] and np.all(np.diff(lp) <= 0)
    preds = predict_ratings(model, [src, src], fallback=3.5)
    assert len(preds.ratings) == 2 and all(1 <= r <= 5 for r in preds.ratings)
    assert preds.n_fallback == sum(parse_rating(t) is None for t in preds.texts)


def test_parse_rating():
    assert parse_rating("4") == 4.0 and parse_rating("about 3.5 stars") == 3.5
    assert parse_rating("9") == 5.0 and parse_rating("great") is None


def test_lora_option_trains_and_merges(tmp_path):
    index = random_index(20)
    ser = P5Serializer(index, None, templates=SHORT)
    data = TrainData(planted_sequences()[:6], 20)
    torch.manual_seed(0)
    model = P5Model.build(P5Config(preset="tiny", vocab_size=300, lora=True, lora_r=4), index,
                          tokenizer_corpus(ser, data, None))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("lora" in n for n in trainable)
    train_p5(model, ser, data, None, P5TrainConfig(epochs=1, batch_size=16), progress=False)
    model.save_pretrained(tmp_path / "m")  # merges the adapters into plain T5 weights
    assert not any("lora" in n for n, _ in model.named_parameters())
    P5Model.from_pretrained(tmp_path / "m")


def test_cli_registers_p5_commands():
    from textrec.cli import build_parser

    args = build_parser().parse_args(["p5", "train", "--out", "x", "--indexing", "semantic"])
    assert args.indexing == "semantic" and args.func.__name__ == "cmd_train"
    args = build_parser().parse_args(["p5", "recommend", "--model", "m", "--history", "1", "2"])
    assert args.func.__name__ == "cmd_recommend"


def test_family_templates_load():
    t = load_family_templates(["rating"])
    assert t["rating"][0].render(user=1, item="<n_1>", item_title="x", rating="4")[1] == "4"
    with pytest.raises(ValueError, match="unknown P5 task family"):
        load_family_templates(["nope"])


def test_cli_train_and_recommend_end_to_end(tmp_path, capsys):
    """``textrec p5 train`` then ``p5 recommend`` on a small P5-format dataset (tiny recipe, 1 epoch)."""
    import json

    from textrec.cli import main

    data = tmp_path / "seq"
    data.mkdir()
    lines = [" ".join(str(x) for x in [u] + [(u + j) % 12 + 1 for j in range(6)]) for u in range(1, 31)]
    (data / "sequential_data.txt").write_text("\n".join(lines) + "\n")
    (data / "datamaps.json").write_text(json.dumps({
        "user2id": {f"U{i}": str(i) for i in range(1, 31)}, "item2id": {f"I{i}": str(i) for i in range(1, 13)},
        "id2user": {str(i): f"U{i}" for i in range(1, 31)}, "id2item": {str(i): f"I{i}" for i in range(1, 13)}}))
    out = tmp_path / "model"
    assert main(["p5", "train", "--dataset", str(data), "--recipe", "p5_tiny", "--out", str(out), "--epochs", "1",
                 "--no-progress", "--threads", "1"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["model"] == "P5-collaborative" and 0 <= res["test"]["ndcg@5"] <= 1
    assert main(["p5", "recommend", "--model", str(out), "--history", "I3", "I4", "--k", "3", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 3 and not {"I3", "I4"} & {r["item_id"] for r in rows}
    assert main(["p5", "recommend", "--model", str(out), "--history", "NOPE"]) == 2  # clear error, no traceback


def test_fine_tune_saved_model_on_a_new_domain(trained, tmp_path):
    """A saved P5 model as checkpoint with another item index: new tokens added, old weights kept."""
    model, ser, _ = trained
    model.save_pretrained(tmp_path / "src")
    new_index = random_index(15, seed=2)
    new = P5Model.build(P5Config(preset="tiny", checkpoint=str(tmp_path / "src")), new_index)
    assert new.index is new_index and {"<n_1>", "<c0_0>"} <= set(new.tokenizer.get_vocab())
    old_id = model.tokenizer.convert_tokens_to_ids("<c0_0>")
    assert torch.equal(new.t5.get_input_embeddings().weight[old_id], model.t5.get_input_embeddings().weight[old_id])
    seqs = [np.arange(i, i + 5) % 15 for i in range(8)]
    new_ser = P5Serializer(new_index, None, SerializerConfig(max_history=3), templates=SHORT)
    train_p5(new, new_ser, TrainData(seqs, 15), None, P5TrainConfig(epochs=1, batch_size=16), progress=False)
    items, _ = generate_items(new, [new_ser.sequential_source(0, [1, 2], SHORT["sequential"][0])], consumed=[[1, 2]], k=3)
    assert set(items[0].tolist()) <= set(range(15)) - {1, 2}


def test_bench_secondary_tasks_score_rating_and_explanation():
    """The P5 benchmark's rating and explanation evaluation on a tiny multitask model."""
    from textrec.benchmarks.p5 import secondary_tasks
    from textrec.data.dataset import RecDataset
    from textrec.data.splits import make_split

    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"i{(u + j) % N_ITEMS}", float(j), float(1 + (u + j) % 5)) for u in range(20) for j in range(5)]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "rating"])
    reviews = inter.assign(text=[f"solid item number {i} works" for i in range(len(inter))], summary="ok")
    reviews = reviews.drop(index=rng.choice(len(reviews), size=10, replace=False))  # some events lack a review
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(N_ITEMS)], "title": [f"thing {i}" for i in range(N_ITEMS)]})
    ds = RecDataset.from_frames("tiny", inter, items, reviews, text_fields=["title"])
    split = make_split(ds, "leave_one_out")
    index = build_index("collaborative", split.train_sequences(), split.n_items, n_clusters=3, leaf_size=4)
    ser = P5Serializer(index, list(ds.items["title"]),
                       SerializerConfig(families=["sequential", "rating", "explanation"], review_words=5))
    data = TrainData.from_frame(split.train, split.n_users, split.n_items, reviews=ds.reviews)
    model = tiny_model(index, ser, data)
    train_p5(model, ser, data, None, P5TrainConfig(epochs=2, batch_size=32, lr=5e-3, warmup_steps=2), progress=False)
    out = secondary_tasks(model, ser, split, data, {"explanation_tokens": 6}, seed=0)
    rt, ex = out["rating"], out["explanation"]
    assert rt["n_rows"] == 20 and set(rt["per_template"]) == {t.id for t in ser.templates["rating"]}
    for v in rt["per_template"].values():
        assert 0 <= v["mae"] <= v["rmse"] <= 4 and 0 <= v["n_fallback"] <= 20
    test_has_review = sum(
        ((ds.reviews["user"] == u) & (ds.reviews["item"] == split.test.targets(i)[0])).any()
        for i, u in enumerate(split.test.users))
    assert ex["n_rows"] == test_has_review and ex["rows_without_review"] == 20 - test_has_review
    for v in ex["per_template"].values():
        assert 0 <= v["bleu4"] <= v["bleu1"] <= 100 and len(v["examples"]) == 3


def test_items_without_titles_are_named_by_their_id():
    index = random_index(4, seed=0)
    ser = P5Serializer(index, ["red guitar strings", "", "amp", "capo"], SerializerConfig(max_history_titles=2))
    assert ser.title(0) == "red guitar strings" and ser.title(1) == index.item_text(1)
    assert ser.history_fields([0, 1])["history_titles"] == f"{index.item_text(0)} (red guitar strings),{index.item_text(1)}"
    no_titles = P5Serializer(index, None)
    assert no_titles.title(3) == index.item_text(3)


def test_build_is_seeded():
    index = random_index(20, seed=0)
    ser = P5Serializer(index, None, templates=SHORT)
    corpus = tokenizer_corpus(ser, TrainData([np.arange(5)], 20), None)
    a, b, c = (P5Model.build(P5Config(preset="tiny", vocab_size=300), index, corpus, seed=s) for s in (1, 1, 2))
    wa, wb, wc = (m.t5.get_input_embeddings().weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


# ---- compact serialization, one token per item, item initialisation (issue 14) ------------
def compact_serializer(index, titles=None, **kw) -> P5Serializer:
    cfg = SerializerConfig(prompt_set="p5/compact", item_sep="", max_history=4, max_history_titles=None, **kw)
    return P5Serializer(index, titles, cfg)


def test_compact_prompts_have_no_user_id_and_align_title_history():
    from textrec.indexing import item_index

    index = item_index(20)
    ser = compact_serializer(index, [f"movie {i}" for i in range(20)])
    for fam in FAMILIES:
        ts = ser.templates.get(fam) or load_templates(f"p5/compact/{fam}")
        assert select(ts, unseen=False) and select(ts, unseen=True), fam
        assert all("user" not in t.fields for t in ts), fam
    hist = [3, 4, 5, 6, 7, 8]
    ids = ser.sequential_source(0, hist, ser.template("sequential", "seq-c1"))
    titled = ser.sequential_source(0, hist, ser.template("sequential", "seq-title-c1"))
    assert "".join(index.item_text(i) for i in hist[-4:]) in ids  # back to back, last max_history items
    assert index.find_items(ids) == hist[-4:] == index.find_items(titled)  # titles show the same items
    assert "movie 8" in titled and "user" not in ids.lower()
    with pytest.raises(ValueError, match="back to back"):
        compact_serializer(random_index(20))


def test_template_weights_set_how_often_a_template_is_drawn():
    from textrec.indexing import item_index

    tpls = {"sequential": [Template(id="a", family="sequential", source="a {history}", target="{target}"),
                           Template(id="b", family="sequential", source="b {history}", target="{target}",
                                    extra={"weight": 0.1})]}
    ser = P5Serializer(item_index(30), None, SerializerConfig(item_sep=""), templates=tpls)
    seqs = [np.arange(30) for _ in range(20)]
    counts = pd.Series(ser.examples(TrainData(seqs, 30))["template_id"]).value_counts()
    assert counts["a"] > 5 * counts["b"] > 0


def test_every_position_is_a_training_example_once_per_epoch():
    from textrec.indexing import item_index

    seqs = [np.array([0, 1, 2, 3, 4]), np.array([5, 6]), np.array([7])]
    ser = compact_serializer(item_index(8), positions_per_user=None)
    cols = ser.examples(TrainData(seqs, 8))
    got = sorted(zip(cols["user"], cols["target_item"]))
    assert got == [(0, 1), (0, 2), (0, 3), (0, 4), (1, 6)]


def test_back_to_back_item_tokens_get_one_whole_word_span_each():
    from textrec.indexing import build_index

    seqs = planted_sequences()
    for scheme in ("item", "collaborative+item"):
        index = build_index(scheme, seqs, N_ITEMS, n_clusters=3, leaf_size=4) if "+" in scheme else \
            build_index(scheme, seqs, N_ITEMS)
        ser = compact_serializer(index)
        model = tiny_model(index, ser, TrainData(seqs, N_ITEMS))
        enc = model.tokenize_sources([ser.sequential_source(0, [4, 9, 2], ser.template("sequential", "seq-c1"))])
        ww = model.whole_word_ids(enc["input_ids"])[0].tolist()
        toks = model.tokenizer.convert_ids_to_tokens(enc["input_ids"][0].tolist())
        spans: dict[int, list[str]] = {}
        for t, w in zip(toks, ww):
            if w:
                spans.setdefault(w, []).append(t)
        assert ["".join(spans[k]) for k in sorted(spans)] == [index.item_text(i) for i in (4, 9, 2)], scheme


def test_svd_item_vectors_put_co_consumed_items_together():
    from textrec.p5.item_init import svd_item_vectors

    # two disjoint groups of items, each consumed by its own users
    seqs = [np.array([0, 1, 2, 3]) for _ in range(10)] + [np.array([4, 5, 6, 7]) for _ in range(10)]
    seqs += [np.array([0, 2]), np.array([5, 7])]
    v = svd_item_vectors(seqs, 9, dim=2)
    assert v.shape == (9, 2) and np.allclose(v[8], 0)  # item 8 has no training event
    u = v[:8] / np.linalg.norm(v[:8], axis=1, keepdims=True)
    sim = u @ u.T
    assert sim[0, 1] > 0.9 and sim[4, 5] > 0.9 and abs(sim[0, 4]) < 0.2
    assert svd_item_vectors(seqs, 9, dim=4).shape == (9, 4)


def test_item_init_sets_item_token_rows_from_training_data_only():
    from textrec.indexing import item_index
    from textrec.p5.item_init import apply_item_init

    class FakeEncoder:  # text vectors: items 0-5 "about A", 6-11 "about B"
        def encode(self, texts, progress=False):
            return np.array([[1.0, 0.0, 0.1 * i] if "A" in t else [0.0, 1.0, 0.1 * i] for i, t in enumerate(texts)])

    seqs = [np.array([0, 1, 2]) for _ in range(6)] + [np.array([6, 7, 8]) for _ in range(6)]
    texts = ["A"] * 6 + ["B"] * 6
    index = item_index(N_ITEMS)
    ser = compact_serializer(index)
    model = tiny_model(index, ser, TrainData(seqs, N_ITEMS))
    table = model.t5.get_input_embeddings().weight
    ids = model.tokenizer.convert_tokens_to_ids([t[0] for t in index.tokens])
    before = table[ids].detach().clone()
    rep = apply_item_init(model, "svd+text", seqs, texts=texts, encoder=FakeEncoder())
    assert rep["trained_items"] == 6 and rep["new_items"] == 6 and rep["rows_set"] == N_ITEMS
    after = table[ids].detach()
    assert not torch.allclose(after, before)
    cos = torch.nn.functional.cosine_similarity
    # a new item whose text resembles trained group A starts next to group A's tokens
    assert cos(after[4], after[0], dim=0) > cos(after[4], after[6], dim=0)
    assert cos(after[10], after[7], dim=0) > cos(after[10], after[1], dim=0)
    # the output layer is tied to the same table: the init reaches the item logits too
    assert torch.equal(model.t5.get_output_embeddings().weight[ids], after)
    with pytest.raises(ValueError, match="unknown item initialisation"):
        apply_item_init(model, "magic", seqs)


def test_first_token_scores_rank_every_item_like_the_beams():
    from textrec.indexing import item_index
    from textrec.p5.generation import first_token_scores, item_score_matrix

    seqs = planted_sequences()
    index = item_index(N_ITEMS)
    ser = P5Serializer(index, None, SerializerConfig(max_history=3, item_sep=""), templates=SHORT)
    data = TrainData(seqs, N_ITEMS)
    model = tiny_model(index, ser, data)
    train_p5(model, ser, data, None, P5TrainConfig(epochs=12, batch_size=32, lr=5e-3, warmup_steps=5), progress=False)
    histories = [np.array([(s + j) % N_ITEMS for j in range(3)]) for s in range(N_ITEMS)]
    src = [ser.sequential_source(0, h, SHORT["sequential"][0]) for h in histories]
    full = first_token_scores(model, src, histories)
    assert full.shape == (N_ITEMS, N_ITEMS)
    for h, row in zip(histories, full):
        assert torch.isneginf(row[h]).all() and torch.isfinite(row).sum() == N_ITEMS - 3
    top = full.argmax(1).numpy()
    assert (top == np.array([(h[-1] + 1) % N_ITEMS for h in histories])).mean() >= 0.9
    items, _ = generate_items(model, src, consumed=histories, k=3)
    assert (items[:, 0] == top).mean() >= 0.9  # beams (which add log p(EOS)) agree on the best item
    assert torch.equal(item_score_matrix(model, src, histories, N_ITEMS, k=3), full)
    beams = item_score_matrix(model, src, histories, N_ITEMS, k=3, decode="beam")
    assert (torch.isfinite(beams).sum(1) == 3).all()


def test_evaluation_counts_repeated_targets_apart_from_unscored_ones():
    from textrec.data.splits import EvalSet
    from textrec.evaluation import evaluate

    class Beamish:  # scores items 0-2 only, like a 3-beam generator
        name = "beamish"

        def score(self, users, histories):
            s = torch.full((len(users), 10), float("-inf"))
            s[:, :3] = torch.tensor([3.0, 2.0, 1.0])
            return s

    ev = EvalSet.from_lists([0, 1, 2, 3], [np.array([5]), np.array([1, 2]), np.array([4]), np.array([7])],
                            [np.array([1]), np.array([1]), np.array([8]), np.array([9])])
    res = evaluate(Beamish(), ev, 10, ks=(10,)).to_dict()
    assert res["targets_in_history"] == 1  # user 1's target repeats a history item (masked)
    assert res["targets_unscored"] == 2  # users 2 and 3: outside the generated items
    assert res["unreachable_targets"] == 3


def test_epoch_shards_cover_every_prefix_once_per_cycle():
    from textrec.indexing import item_index

    rng = np.random.default_rng(0)
    seqs = [rng.permutation(30)[:n] for n in (2, 9, 15, 4, 1, 22)]  # distinct items: target -> position
    ser = compact_serializer(item_index(30), positions_per_user=None, epoch_shards=3)
    data = TrainData(seqs, 30)
    every = sorted((u, t) for u, s in enumerate(seqs) for t in range(1, len(s)))
    for cycle in (0, 1):
        seen = []
        for e in range(3 * cycle, 3 * cycle + 3):
            cols = ser.examples(data, epoch=e)
            assert 0 < len(cols["source"]) < len(every)
            seen += [(u, int(np.flatnonzero(seqs[u] == it)[0])) for u, it in zip(cols["user"], cols["target_item"])]
        assert sorted(seen) == every  # every prefix exactly once per 3 epochs


def test_expected_ratings_and_text_never_answer_with_item_ids(trained):
    from textrec.p5.generation import expected_ratings, generate_text

    model, ser, _ = trained
    src = [ser.sequential_source(0, [2, 3, 4], SHORT["sequential"][0])] * 2
    r, argmax = expected_ratings(model, src)
    assert r.shape == (2,) and np.all((r >= 1) & (r <= 5)) and set(argmax) <= set("12345")
    pred = predict_ratings(model, src, mode="expected")
    assert pred.n_fallback == 0 and np.allclose(pred.ratings, r)
    # a sequential prompt would be answered with an item id; text generation cannot produce one
    texts = generate_text(model, src, max_new_tokens=4)
    assert all(not model.index.find_items(t) for t in texts)
    ids = model.t5.generate(**{"encoder_outputs": model.encode(**model.tokenize_sources(src[:1]))},
                            max_new_tokens=2, decoder_start_token_id=0, do_sample=False)
    assert model.is_item_token[ids[0, 1]]  # (unconstrained, the model does answer with an item token)
    sampled = generate_text(model, src * 3, max_new_tokens=6, top_p=0.9, no_repeat_ngram_size=2, seed=1)
    assert len(sampled) == 6


def test_compact_item_recommender_fits_scores_every_item_and_round_trips(tmp_path):
    import textrec
    from textrec.data.dataset import RecDataset
    from textrec.data.splits import leave_one_out
    from textrec.models.base import TrainView

    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"item-{(s + t) % 24}", float(t)) for u in range(40) for s in [int(rng.integers(24))]
            for t in range(6)]
    items = pd.DataFrame({"item_id": [f"item-{i}" for i in range(24)], "title": [f"model {i}" for i in range(24)]})
    ds = RecDataset.from_frames("tiny", pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]), items,
                                text_fields=["title"])
    view = TrainView.from_split(leave_one_out(ds), with_text=True)
    rec = P5Recommender(indexing="item", model_config={"preset": "tiny", "vocab_size": 300, "item_init": "svd"},
                        serializer_config={"prompt_set": "p5/compact", "item_sep": "", "max_history": 4,
                                           "max_history_titles": None},
                        train_config={"epochs": 2, "batch_size": 32}, template_id="seq-c1")
    rec.fit(view, progress=False)
    assert rec.init_report["item_init"] == "svd" and rec.init_report["rows_set"] > 0
    hist = [np.array([0, 1, 2]), np.array([5])]
    scores = rec.score(np.array([0, 1]), hist)
    assert torch.isneginf(scores[0, :3]).all() and torch.isfinite(scores[0, 3:]).all()  # every other item ranked
    assert torch.isfinite(scores[1]).sum() == 23
    back = textrec.load(rec.save_pretrained(tmp_path / "p5"))
    assert back.model.index.scheme == "item" and back.decode == "auto"
    torch.testing.assert_close(back.score(np.array([0, 1]), hist), scores)


def test_p5_bench_shows_core_baselines_only_for_their_own_split():
    from textrec.benchmarks.p5 import baseline_rows

    same = baseline_rows("scientific", "published")
    assert "EASE" in same and same["EASE"]["ndcg@10"] > 0
    # the committed Scientific table is on the published split: a new-item run must not show it
    assert baseline_rows("scientific", "new_item") == {}
