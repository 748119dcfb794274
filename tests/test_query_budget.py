"""Issue #29: a query budget in words for every query (heuristic, reward, writer, benchmark), the
TF-IDF keyword heuristic, the oracle over every heuristic, the hybrid retriever, issue targets."""

from __future__ import annotations

import numpy as np
import pytest

from textrec.query.catalog import Catalog
from textrec.query.heuristics import HEURISTICS, TermWeights, budget_words, heuristic_query, term_weights
from textrec.query.retrieval import BM25Retriever, HybridRetriever

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


class FakeEncoder:
    """Bag-of-letters unit vectors: a deterministic dense encoder for tests."""

    identity = "fake-letters"

    def encode(self, texts, progress=False):
        out = np.zeros((len(texts), 26), dtype=np.float32)
        for i, t in enumerate(texts):
            for ch in str(t).lower():
                if "a" <= ch <= "z":
                    out[i, ord(ch) - 97] += 1
        n = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(n > 0, n, 1)


@pytest.fixture(scope="module")
def catalog():
    return Catalog.from_texts(DOCS, name="toy")


CTX = ["Green apple pie old", "Digital caliper stainless steel tools", "Apple cider vinegar pantry newest"]


@pytest.mark.parametrize("budget", [1, 4, 8])
def test_every_heuristic_keeps_the_budget(catalog, budget):
    w = term_weights(catalog)
    for kind in HEURISTICS:
        q = heuristic_query(kind, CTX, budget, w)
        assert 1 <= len(q.split()) <= budget, kind
    # raw history keeps its newest words, in reading order
    assert heuristic_query("raw_history", CTX, 4) == "apple cider vinegar pantry newest".split(" ", 1)[1]
    with pytest.raises(ValueError, match="max_words"):
        heuristic_query("last_title", CTX, 0)


def test_tfidf_keywords_prefer_distinctive_and_repeated_terms(catalog):
    w = TermWeights(catalog.documents)
    assert w("caliper") > w("apple") > 0 and w("nonexistent") == 0.0
    q = heuristic_query("tfidf_keywords", ["apple juice", "apple caliper"], 2, w)
    # "caliper" is rare in the catalog; "apple" is repeated in the history (tf 2 x idf beats juice)
    assert set(q.split()) == {"caliper", "apple"}
    with pytest.raises(ValueError, match="term weights"):
        heuristic_query("tfidf_keywords", CTX, 4)
    assert term_weights(catalog) is term_weights(catalog)  # memoised per catalog content


def test_budget_words_cuts_and_collapses():
    assert budget_words("  a  b c d ", 2) == "a b"
    assert budget_words("a b c", None) == "a b c"


def test_hybrid_retriever_mixes_dense_and_normalised_bm25(catalog):
    from textrec.query.retrieval import DenseRetriever

    dense = DenseRetriever(catalog, encoder=FakeEncoder(), progress=False)
    bm25 = BM25Retriever(catalog)
    hyb = HybridRetriever(dense, bm25, dense_weight=0.5)
    q = ["apple juice"]
    s = hyb.score_matrix(q)[0]
    b = bm25.score_matrix(q)[0]
    np.testing.assert_allclose(s, 0.5 * dense.score_matrix(q)[0] + 0.5 * b / b.max(), rtol=1e-5)
    # a query with no BM25 term still ranks every item by its dense part
    assert np.isfinite(hyb.ranking_scores(["zzz qqq"]).numpy()).all()
    assert hyb.target_rank("apple juice", 0) < hyb.target_rank("soldering iron", 0)
    assert hyb.kind == "hybrid" and hyb.settings()["dense_weight"] == 0.5
    with pytest.raises(ValueError, match="dense_weight"):
        HybridRetriever(dense, bm25, dense_weight=1.5)


def test_reward_and_recommender_cut_to_the_budget(catalog):
    from textrec.query.recommender import QueryRecommender
    from textrec.query.rewards import FormatReward, RetrievalReward

    bm25 = BM25Retriever(catalog)
    long = "stainless steel caliper " * 4 + "apple juice"
    r = RetrievalReward(bm25, k=None, max_words=3)
    assert r.queries([long]) == ["stainless steel caliper"]
    # the target (apple juice) sits past the budget: the cut query cannot reach it
    assert r(None, [long], target=[0], history=[[]]) == [0.0]
    assert FormatReward(1, 3)(None, [long]) == [-1.0]
    rec = QueryRecommender(query="all_titles", max_query_words=3, catalog=catalog)
    qs = rec.queries(np.array([0]), [np.array([0, 2, 4])])
    assert len(qs[0].split()) == 3
    with pytest.raises(ValueError, match="retriever must be one of"):
        QueryRecommender(retriever="nope")


def test_oracle_covers_every_heuristic_and_targets_read_the_blocks():
    from textrec.query.bench import ORACLE, oracle_row, summarize_block, targets_block

    class R:
        def __init__(self, v):
            self.per_row = {"ndcg@10": np.asarray(v, float)}

    res = {h: R([0.0, 0.0, 0.0, 0.0]) for h in HEURISTICS}
    res["tfidf_keywords"] = R([0.0, 0.4, 0.0, 0.0])
    res["raw_history"] = R([0.2, 0.0, 0.0, 0.1])
    assert oracle_row(res)["ndcg@10"].tolist() == [0.2, 0.4, 0.0, 0.1]
    per_row = {h: r.per_row for h, r in res.items()}
    per_row["grpo"] = {"ndcg@10": np.array([0.3, 0.5, 0.1, 0.2])}
    per_row["sft"] = {"ndcg@10": np.array([0.2, 0.4, 0.0, 0.1])}
    per_row[ORACLE] = oracle_row(res)
    b = summarize_block(per_row, {}, n_boot=200, seed=0, compare=[("grpo", "sft")])
    assert b["best_heuristic"] == "tfidf_keywords"
    vs = b["rows"]["grpo"]["vs_best_heuristic_ndcg@10"]
    assert vs["heuristic"] == "tfidf_keywords" and vs["ratio"] == pytest.approx(1.1 / 0.4, rel=1e-3)
    blocks = {}
    for setting in ("transductive", "held_out_users"):
        for kind in ("dense", "bm25", "hybrid"):
            blocks[f"{setting}/{kind}/test/4/w8"] = {
                **b, "setting": setting, "evaluation_retriever": kind, "part": "test", "max_words": 8,
                # every held-out user evaluated: no subsample, and the targets still read the block
                "subsample": {"n": 4, "seed": 0} if setting == "transductive" else None}
    t = targets_block({"dataset": "toy", "blocks": blocks, "writers": {"grpo": {"reward_retrievers": ["hybrid"]}}},
                      "grpo", "sft")
    assert t["reward_retriever"] == "hybrid"
    assert t["grpo_gt_sft_on_reward_retriever"]["met"] and t["grpo_gt_sft_on_reward_retriever"]["diff"] == 0.1
    assert t["grpo_ge_1.15x_best_heuristic_dense"]["met"]
    assert t["held_out_users_grpo_ge_sft"]["met"]
    missing = targets_block({"dataset": "toy", "blocks": {}, "writers": {}}, "grpo", "sft")
    assert not missing["grpo_gt_sft_on_reward_retriever"]["met"] and "missing" in missing["held_out_users_grpo_ge_sft"]


def test_writer_write_cuts_completions_to_the_budget(monkeypatch):
    from textrec.query.policy import QueryWriter

    w = QueryWriter.__new__(QueryWriter)
    w.max_words, w.mode = 3, "write"
    monkeypatch.setattr(w, "generate", lambda tasks, **kw: ["Query: one two three four five", ""], raising=False)
    assert w.write([None, None]) == ["one two three", ""]
    assert w.write([None, None], max_words=2) == ["one two", ""]
    with pytest.raises(ValueError, match="max_words"):
        w.write([None], max_words=-1)


def test_serve_query_engine_honours_max_words():
    from textrec.catalog import Catalog as ItemCatalog
    from textrec.serve.backends import QueryEngine

    cat = ItemCatalog([f"item{i}" for i in range(len(DOCS))], text=DOCS, titles=[d.split(".")[0] for d in DOCS])
    eng = QueryEngine(cat, max_history=3)
    q, ctx, rows = eng.query(np.array([1, 4, 6]), 3, max_words=2)
    assert len(q.split()) == 2
    q8, _, _ = eng.query(np.array([1, 4, 6]), 3)
    assert len(q8.split()) <= 8
