"""Rec-R1 as a recommender: scores through the one harness, heuristics, save/load, bare prompts."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_llama

from textrec.data.splits import EvalSet
from textrec.evaluation import evaluate
from textrec.query.catalog import Catalog
from textrec.query.heuristics import heuristic_query
from textrec.query.recommender import QueryRecommender
from textrec.query.retrieval import BM25Retriever
from textrec.query.rewards import RetrievalReward

DOCS = [
    "Red apple juice. Drinks Juice. FruitCo.",
    "Green apple pie. Bakery Pies. BakeHouse.",
    "Orange juice fresh squeezed. Drinks Juice. FruitCo.",
    "Chocolate cake with cherries. Bakery Cakes. BakeHouse.",
    "Digital caliper stainless steel. Measuring Tools. ToolMax.",
    "Laboratory glass beaker set. Lab Supplies Glassware. LabPro.",
    "Apple cider vinegar. Pantry Vinegar. FruitCo.",
    "Soldering iron kit with stand. Tools Electronics. ToolMax.",
]
HISTORIES = [[0, 2], [1, 3], [4], [5, 4], [6, 0, 1], [7, 4]]
TARGETS = [6, 0, 7, 7, 2, 5]


@pytest.fixture(scope="module")
def catalog():
    return Catalog.from_texts(DOCS, name="toy")


@pytest.fixture(scope="module")
def evalset():
    return EvalSet.from_lists(np.arange(len(HISTORIES)), [np.array(h) for h in HISTORIES],
                              [np.array([t]) for t in TARGETS])


def test_heuristics_take_the_newest_items():
    ctx = ["old thing one", "middle thing two", "newest thing three"]
    assert heuristic_query("last_title", ctx) == "newest thing three"
    # all_titles keeps the newest words when it has to cut (it used to keep the oldest)
    assert heuristic_query("all_titles", ctx, max_words=4) == "newest thing three middle"
    assert heuristic_query("last_two_titles", ctx, max_words=4) == "newest thing three middle"
    assert heuristic_query("keywords", ctx, max_words=3).split()[0] == "newest"
    assert heuristic_query("raw_history", ctx, max_words=16) == " ".join(ctx)
    assert heuristic_query("raw_history", ctx, max_words=4) == "two newest thing three"  # newest words
    with pytest.raises(ValueError, match="unknown heuristic"):
        heuristic_query("nope", ctx)


@pytest.mark.parametrize("kind", ["raw_history", "last_title", "keywords"])
def test_harness_ndcg_equals_the_reward(catalog, evalset, kind):
    rec = QueryRecommender(query=kind, max_history=3, catalog=catalog)
    res = evaluate(rec, evalset, len(catalog), ks=[5])
    qs = rec.queries(evalset.users, evalset.histories())
    reward = RetrievalReward(rec.retriever, k=5)(None, qs, target=TARGETS, history=HISTORIES)
    np.testing.assert_allclose(res.per_row["ndcg@5"], reward, atol=1e-9)


def test_unmatched_items_are_never_recommended(catalog):
    rec = QueryRecommender(query="last_title", catalog=catalog)
    items, scores = rec.recommend([4], k=8)  # "Digital caliper stainless steel"
    assert 4 not in items and len(items) < 7 and np.isfinite(scores).all()


def test_fit_builds_the_catalog_from_item_text(evalset):
    import pandas as pd

    from textrec.models.base import TrainView

    view = TrainView(train=pd.DataFrame({"user": [0], "item": [0]}), valid=evalset, n_users=6,
                     n_items=len(DOCS), dataset_name="toy", item_text=DOCS)
    rec = QueryRecommender(query="keywords").fit(view, progress=False)
    assert rec.catalog.ids == [str(i) for i in range(len(DOCS))] and rec.catalog.text == DOCS
    assert rec.score(np.array([0]), [np.array([0, 2])]).shape == (1, len(DOCS))
    with pytest.raises(ValueError, match="item text"):
        QueryRecommender().fit(TrainView(train=view.train, valid=evalset, n_users=6, n_items=8), progress=False)
    with pytest.raises(ValueError, match="query must be"):
        QueryRecommender(query="magic")


def test_heuristic_save_load_round_trip(catalog, evalset, tmp_path):
    rec = QueryRecommender(query="keywords", max_history=2, catalog=catalog, retriever_options={"k1": 1.5})
    rec.save_pretrained(tmp_path / "m")
    again = QueryRecommender.from_pretrained(tmp_path / "m")
    assert again.search_catalog == catalog and again.retriever.k1 == 1.5 and again.max_history == 2
    assert again.catalog == rec.catalog and again.catalog.ids == catalog.item_ids
    u, h = evalset.users, evalset.histories()
    np.testing.assert_array_equal(again.score(u, h).numpy(), rec.score(u, h).numpy())


def test_llm_recommender_round_trip_with_a_lora_writer(catalog, evalset, tmp_path):
    pytest.importorskip("peft")
    import torch
    from peft import get_peft_model

    from textrec.query.policy import QueryWriter, load_policy, lora_config

    torch.set_num_threads(1)
    words = {w for d in DOCS for w in d.lower().replace(".", " ").split()}
    words |= set("products a user bought oldest first search query for the next one - :".split())
    base = tiny_llama(tmp_path / "tiny", words)
    model, tok = load_policy(base)
    model = get_peft_model(model, lora_config(4, 8, 0.0, ["q_proj", "v_proj"]))
    writer = QueryWriter(model, tok, template_id="query-bare", max_history=2, max_new_tokens=5, base_model=base)
    rec = QueryRecommender.from_writer(writer, catalog)
    res = evaluate(rec, evalset, len(catalog), ks=[5])
    rec.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "writer" / "adapter" / "adapter_model.safetensors").is_file()
    import textrec

    again = textrec.load(tmp_path / "m")
    assert isinstance(again, QueryRecommender)
    assert again.query == "llm" and again.writer.template_id == "query-bare"
    u, h = evalset.users, evalset.histories()
    assert again.queries(u, h) == rec.queries(u, h)
    np.testing.assert_allclose(evaluate(again, evalset, len(catalog), ks=[5]).per_row["ndcg@5"],
                               res.per_row["ndcg@5"])


def test_bare_prompt_is_short_and_has_no_chat_markup(tmp_path):
    from transformers import AutoTokenizer

    from textrec.query.tasks import QueryTask, load_template, prompt_text

    words = {"a", "b"}
    tok = AutoTokenizer.from_pretrained(tiny_llama(tmp_path / "t", words))
    task = QueryTask(user=0, history=np.array([0, 1]), target=2, context=["Red apple juice", "Green apple pie"])
    bare = prompt_text(task, load_template("query-bare"), tok, "toy")
    chat = prompt_text(task, load_template("query-plain"), tok, "toy")
    assert bare.startswith("products a user bought") and bare.endswith("Search query for the next one:")
    assert "- Green apple pie" in bare and "system" not in bare and len(bare) < len(chat)


def test_registered_by_name():
    from textrec.registry import model_class

    assert model_class("QueryRec") is QueryRecommender


def test_bm25_reward_retriever_is_the_one_in_the_recommender(catalog):
    rec = QueryRecommender(query="raw_history", catalog=catalog)
    assert isinstance(rec.retriever, BM25Retriever)
    with pytest.raises(ValueError, match="not over this catalog"):
        rec.set_catalog(catalog, retriever=BM25Retriever(Catalog.from_texts(DOCS[:3])))
