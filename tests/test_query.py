"""Rec-R1 engine: reward math, tolerant parsing, retrieval determinism and ranks, save/load."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import requires_shared_data

from textrec.metrics.ranking import MISS
from textrec.query.catalog import Catalog, short_title
from textrec.query.parsing import parse_query
from textrec.query.retrieval import BM25Retriever, load_retriever, tokenize
from textrec.query.rewards import FormatReward, RetrievalReward, reward_metric, reward_name

DOCS = [
    "Red apple juice. Drinks Juice. FruitCo.",
    "Green apple pie. Bakery Pies. BakeHouse.",
    "Orange juice fresh squeezed. Drinks Juice. FruitCo.",
    "Chocolate cake with cherries. Bakery Cakes. BakeHouse.",
    "Digital caliper stainless steel 150mm. Measuring Tools. ToolMax.",
    "Laboratory glass beaker 250ml set. Lab Supplies Glassware. LabPro.",
    "Apple cider vinegar. Pantry Vinegar. FruitCo.",
    "Soldering iron kit with stand. Tools Electronics. ToolMax.",
]


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.from_texts(DOCS, name="toy")


@pytest.fixture(scope="module")
def bm25(catalog) -> BM25Retriever:
    return BM25Retriever(catalog)


# ---- reward math on hand-computed cases ---------------------------------------------------

def test_ndcg_and_recall_hand_cases():
    assert reward_metric([0], 10)[0] == pytest.approx(1.0)
    assert reward_metric([1], 10)[0] == pytest.approx(1 / math.log2(3))  # 0.6309
    assert reward_metric([9], 10)[0] == pytest.approx(1 / math.log2(11))
    assert reward_metric([10], 10)[0] == 0.0  # rank 11 is outside the top 10
    assert reward_metric([50], 100)[0] == pytest.approx(1 / math.log2(52))
    assert reward_metric([MISS], 100)[0] == 0.0
    assert reward_metric([0, 9, 10, 99], 10, "recall").tolist() == [1.0, 1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="metric"):
        reward_metric([0], 10, "mrr")


def test_reward_without_cutoff_credits_every_retrieved_rank():
    # k=None: a target at rank 5000 still earns 1/log2(5002) (NDCG@10 would give 0), a miss still 0
    got = reward_metric([0, 9, 4999, MISS], None)
    assert got[0] == pytest.approx(1.0) and got[3] == 0.0
    assert got[1] == pytest.approx(1 / math.log2(11)) and got[2] == pytest.approx(1 / math.log2(5001))
    assert reward_metric([MISS, MISS], None).tolist() == [0.0, 0.0]
    assert reward_metric([3, 7000], None, "recall").tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="k must be"):
        reward_metric([0], 0)
    assert reward_name("ndcg", None, "dense") == "ndcg@all_dense"
    assert reward_name("ndcg", 1000, "bm25") == "ndcg@1000_bm25"


def test_retrieval_reward_without_cutoff(bm25):
    r = RetrievalReward(bm25, k=None)
    assert r.__name__ == "ndcg@all_bm25"
    # "orange juice": item 2 at rank 0, item 0 at rank 1; an unmatched query retrieves nothing
    assert r(None, ["orange juice", "orange juice", "zzz"], target=[2, 0, 0]) == pytest.approx(
        [1.0, 1 / math.log2(3), 0.0])
    with pytest.raises(ValueError, match="k must be"):
        RetrievalReward(bm25, k=0)


def test_retrieval_reward_caches_by_query_text(bm25):
    r = RetrievalReward(bm25, k=10)
    first = r(None, ["orange juice"] * 4 + ["apple"], target=[2] * 5, history=[[1]] * 5)
    assert (r.cache_misses, r.cache_hits) == (2, 3)  # two distinct queries retrieved once each
    again = r(None, ["orange juice", "apple"], target=[2, 2], history=[[1], [1]])
    assert (r.cache_misses, r.cache_hits) == (2, 5) and again == [first[0], first[4]]
    # Another history is another key (the mask changes the rank).
    r(None, ["orange juice"], target=[0], history=[[2]])
    assert r.cache_misses == 3


def test_retrieval_reward_matches_hand_rank(bm25):
    # "orange juice": item 2 has both terms, item 0 only "juice" -> item 0 at rank 1 (0-based).
    r = RetrievalReward(bm25, k=10, metric="ndcg")
    out = r(None, ["orange juice", "orange juice", "", "zzz unknown words"], target=[2, 0, 0, 0])
    assert out[0] == pytest.approx(1.0)
    assert out[1] == pytest.approx(1 / math.log2(3))
    assert out[2] == 0.0 and out[3] == 0.0  # nothing parsed / nothing matched = not retrieved
    rec = RetrievalReward(bm25, k=1, metric="recall")
    assert rec(None, ["orange juice", "orange juice"], target=[2, 0]) == [1.0, 0.0]
    # The history is masked: with item 2 excluded, item 0 moves up to rank 0.
    assert r(None, ["orange juice"], target=[0], history=[[2]])[0] == pytest.approx(1.0)
    # A target inside the masked history can never be hit.
    assert r(None, ["orange juice"], target=[2], history=[[2]])[0] == 0.0


def test_retrieval_reward_conversational_and_json(bm25):
    r = RetrievalReward(bm25, k=10)
    conv = [[{"role": "assistant", "content": 'The user likes baking. {"query": "chocolate cake"}'}]]
    assert r(["p"], conv, target=[3])[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="target"):
        r(None, ["x"])


# ---- parsing / format reward ----------------------------------------------------------

@pytest.mark.parametrize("completion,query,shape", [
    ("apple juice", "apple juice", "plain"),
    ('  "apple juice"  \nmore text', "apple juice", "plain"),
    ('User likes fruit drinks. {"query": "apple juice"}', "apple juice", "json"),
    ('{"query": "a"} then {"query": "apple juice"}', "apple juice", "json"),
    ('reasoning... {"query": "apple jui', "apple jui", "json"),  # cut at the token limit
    ("Thinking first.\nQuery: apple juice", "apple juice", "label"),
    ("<answer>apple juice</answer>", "apple juice", "tag"),
    ("**apple juice**", "apple juice", "plain"),
    ("Here's a search query:\n\n1. apple juice\n2. pie", "apple juice", "plain"),
])
def test_parse_shapes(completion, query, shape):
    p = parse_query(completion)
    assert (p.query, p.shape, p.well_formed) == (query, shape, True)


MALFORMED = ["", "   \n\t ", None, {"role": "assistant"}, [], [{"role": "assistant", "content": ""}],
             '{"query": ""}', "Query:", "<answer></answer>", "word " * 40, "{" * 500, "Here's a query to find the next item:", "\x00\x01 ..."]
ODD = [17, object(), b"bytes?", '{"query": {"nested": 1}}', [{"role": "user", "content": "hi"}], float("nan")]


@pytest.mark.parametrize("completion", MALFORMED)
def test_malformed_completions_get_the_penalty_and_never_raise(completion, bm25):
    fmt = FormatReward(min_words=1, max_words=24, penalty=1.0)
    assert not parse_query(completion, 1, 24).well_formed
    assert fmt(None, [completion]) == [-1.0]
    # The retrieval reward survives them too: a number in [0, 1], no exception.
    assert 0.0 <= RetrievalReward(bm25, k=10, max_words=24)(None, [completion], target=[0])[0] <= 1.0


@pytest.mark.parametrize("completion", ODD)
def test_odd_completions_never_raise(completion, bm25):
    p = parse_query(completion)
    assert isinstance(p.query, str)
    assert FormatReward()(None, [completion])[0] in (0.0, -1.0)
    assert 0.0 <= RetrievalReward(bm25, k=10)(None, [completion], target=[0])[0] <= 1.0


def test_format_reward_bounds():
    fmt = FormatReward(min_words=2, max_words=4, penalty=0.5)
    assert fmt(None, ["one", "one two", "one two three four", "a b c d e"]) == [-0.5, 0.0, 0.0, -0.5]
    with pytest.raises(ValueError):
        FormatReward(min_words=5, max_words=2)


# ---- retrieval --------------------------------------------------------------------------

def test_tokenize_and_short_title():
    assert tokenize("The Red APPLE, juice!") == ["red", "apple", "juice"]
    assert short_title("eSUN PLA 1.75mm Filament. Industrial & Scientific. eSUN.") == "eSUN PLA 1.75mm Filament"
    assert short_title("a b c d e f", max_words=3) == "a b c"


def test_bm25_search_is_deterministic_and_tie_ordered(bm25):
    q = ["apple", "juice drinks", "toolmax", "nothing matches this"]
    a = bm25.search(q, k=3)
    b = bm25.search(q, k=3)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert set(a[0][0]) == {0, 1, 6}  # the three apple items
    assert set(a[0][2][:2]) == {4, 7}  # the two ToolMax items
    assert np.all(np.diff(a[1][:3], axis=1) <= 0)
    assert (a[0][3] == -1).all()  # a query that matches nothing retrieves nothing
    # Same ranking as a full stable sort (ties by lower index), and ranks agree with it.
    s = bm25.score_matrix(["apple juice"])[0]
    full = np.lexsort((np.arange(len(s)), -s))
    n_hit = int((s > 0).sum())
    assert bm25.search(["apple juice"], k=n_hit)[0][0].tolist() == full[:n_hit].tolist()
    for pos, item in enumerate(full[:n_hit]):
        assert bm25.target_rank("apple juice", int(item)) == pos
    assert bm25.target_rank("apple juice", int(full[-1])) == MISS  # score 0: not retrieved


def test_search_excludes_history(bm25):
    items, _ = bm25.search(["apple"], k=8, exclude=[[0, 6]])
    assert 0 not in items[0] and 6 not in items[0]
    assert items[0][0] == 1
    # Excluded items and items the query does not match are never returned: -1 pads the rest.
    assert (items[0] == -1).sum() == 7


def test_bm25_save_load_round_trip(bm25, tmp_path):
    bm25.save(tmp_path / "idx")
    again = load_retriever(tmp_path / "idx")
    assert isinstance(again, BM25Retriever) and (again.k1, again.b) == (1.2, 0.75)
    q = ["apple juice", "glass beaker", "cake"]
    np.testing.assert_allclose(again.score_matrix(q), bm25.score_matrix(q), rtol=1e-6)
    assert again.catalog.titles == bm25.catalog.titles


class HashEncoder:
    """A fast stand-in for MiniLM: normalized bag of hashed tokens (the real model is tested in test_text)."""

    def encode(self, texts, progress=False):
        import zlib

        out = np.zeros((len(texts), 64), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in tokenize(t):
                out[i, zlib.crc32(w.encode()) % 64] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def test_dense_retriever_round_trip_and_ranks(catalog, tmp_path):
    from textrec.query.retrieval import DenseRetriever

    flat = DenseRetriever(catalog, encoder=HashEncoder())
    q = ["fruit juice drinks", "measuring tools"]
    items, scores = flat.search(q, k=3)
    assert items[0][0] in (0, 2) and items[1][0] == 4
    # Exact rank = position in the full ranking.
    s = flat.score_matrix(q[:1])[0]
    full = np.lexsort((np.arange(len(s)), -s))
    assert [flat.target_rank(q[0], int(i)) for i in full[:4]] == [0, 1, 2, 3]
    hnsw = DenseRetriever(catalog, index_type="hnsw", hnsw_m=8, encoder=HashEncoder(), _embeddings=flat.embeddings)
    assert hnsw.search(q, k=3)[0].tolist() == items.tolist()  # 8 items: HNSW is exact here
    hnsw.save(tmp_path / "dense")
    again = load_retriever(tmp_path / "dense", encoder=HashEncoder())
    assert again.index_type == "hnsw"
    np.testing.assert_array_equal(again.search(q, k=3)[0], items)
    np.testing.assert_allclose(again.search(q, k=3)[1], scores, rtol=1e-5)


class _NamedDataset:
    """The two attributes ``retriever_for_dataset`` reads when it is given a catalog."""

    def __init__(self, name):
        self.name = name


def test_retriever_cache_is_keyed_by_content(catalog, tmp_path, capsys):
    from textrec.query.retrieval import retriever_for_dataset

    first = retriever_for_dataset(_NamedDataset("shop"), "bm25", cache_dir=tmp_path, catalog=catalog)
    assert first.search(["apple"], k=1)[0][0][0] == 0
    # A second dataset with the same name but other items must not get the first one's index.
    other = Catalog.from_texts(["Blue ink pen. Office.", "Green apple tea. Drinks."], name="toy")
    second = retriever_for_dataset(_NamedDataset("shop"), "bm25", cache_dir=tmp_path, catalog=other)
    assert second.n_items == 2 and second.catalog.documents == other.documents
    assert second.search(["apple"], k=1)[0][0][0] == 1
    assert len(list(tmp_path.glob("shop-bm25-*"))) == 2
    # The same content is reused from disk; other settings are another key.
    again = retriever_for_dataset(_NamedDataset("shop"), "bm25", cache_dir=tmp_path, catalog=catalog)
    assert again.catalog == catalog and again.n_items == len(catalog)
    tuned = retriever_for_dataset(_NamedDataset("shop"), "bm25", cache_dir=tmp_path, catalog=catalog, k1=2.0)
    assert tuned.k1 == 2.0 and len(list(tmp_path.glob("shop-bm25-*"))) == 3
    # A cache folder whose catalog was swapped is detected on load and rebuilt.
    folder = next(f for f in tmp_path.glob("shop-bm25-*") if Catalog.load(f).documents == other.documents)
    catalog.save(folder)  # now catalog.json no longer matches the hash the index was built for
    with pytest.raises(ValueError, match="another catalog"):
        load_retriever(folder)
    rebuilt = retriever_for_dataset(_NamedDataset("shop"), "bm25", cache_dir=tmp_path, catalog=other)
    assert rebuilt.catalog.documents == other.documents
    assert "rebuilding" in capsys.readouterr().err


def test_dense_cache_key_names_the_encoder(catalog, tmp_path):
    from textrec.query.retrieval import retriever_for_dataset

    class OtherEncoder(HashEncoder):
        def identity(self):
            return "other-encoder"

    a = retriever_for_dataset(_NamedDataset("shop"), "dense", cache_dir=tmp_path, catalog=catalog,
                              encoder=HashEncoder())
    b = retriever_for_dataset(_NamedDataset("shop"), "dense", cache_dir=tmp_path, catalog=catalog,
                              encoder=OtherEncoder())
    assert a.encoder_name != b.encoder_name
    assert len(list(tmp_path.glob("shop-dense-*"))) == 2


def test_catalog_round_trip_and_errors(catalog, tmp_path):
    catalog.save(tmp_path)
    assert Catalog.load(tmp_path) == catalog
    (tmp_path / "catalog.json").write_text("{not json")
    with pytest.raises(ValueError, match="catalog.json"):
        Catalog.load(tmp_path)
    with pytest.raises(ValueError, match="differ in length"):
        Catalog("x", ["a"], ["a", "b"], ["0"])


# ---- tasks on a real dataset ----------------------------------------------------------

@requires_shared_data
def test_tasks_transductive_and_inductive_on_scientific():
    from textrec.data.registry import load_dataset
    from textrec.query.tasks import make_tasks, split_for

    ds = load_dataset("scientific")
    cat = Catalog.from_dataset(ds, verbose=False)
    assert "Industrial & Scientific" not in cat.titles[0]
    split = split_for(ds, "inductive")
    ind = make_tasks(ds, "inductive", "test", cat, max_history=5, split=split)
    new = set(split.new_items.tolist())
    assert ind and all(t.target in new and t.is_new for t in ind)
    train = make_tasks(ds, "inductive", "train", cat, max_history=5, split=split)
    # Training tasks never see a held-out item, neither as target nor in the context.
    assert all(t.target not in new and not (set(t.history.tolist()) & new) for t in train)
    assert all(len(t.context) <= 5 for t in train) and train[0].raw_query()


def test_cli_registers_query_commands():
    from textrec.cli import build_parser

    p = build_parser()
    args = p.parse_args(["query", "search", "apple juice", "--dataset", "scientific", "--k", "3"])
    assert args.text == "apple juice" and args.k == 3 and args.retriever == "bm25"
    args = p.parse_args(["query", "generate", "--dataset", "ml-100k", "--user", "196"])
    assert args.user == "196" and args.setting == "transductive"
    args = p.parse_args(["query", "train", "--dataset", "ml-100k", "--max-steps", "5", "--resume"])
    assert args.max_steps == 5 and args.resume and args.recipe == "recr1_cpu"


@requires_shared_data
def test_cli_search_on_scientific(tmp_path, capsys):
    import json

    from textrec.cli import main

    rc = main(["query", "search", "PLA filament 1.75mm", "--dataset", "scientific", "--k", "3", "--json",
               "--index-dir", str(tmp_path)])
    assert rc == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 3 and all("filament" in h["title"].lower() for h in hits)
    assert len(list(tmp_path.glob("scientific-bm25-*/retriever.json"))) == 1  # the index was cached
