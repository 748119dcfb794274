"""Issue #29: the chooser writer (textrec.query.choice): one word names the heuristic query to send."""

from __future__ import annotations

import numpy as np
import pytest

from textrec.query.catalog import Catalog
from textrec.query.choice import CHOICE_WORD, CHOICES, choice_query, parse_choice
from textrec.query.heuristics import heuristic_query
from textrec.query.retrieval import BM25Retriever
from textrec.query.tasks import QueryTask

DOCS = [
    "Red apple juice. Drinks Juice. FruitCo.",
    "Green apple pie. Bakery Pies. BakeHouse.",
    "Digital caliper stainless steel. Measuring Tools. ToolMax.",
    "Soldering iron kit with stand. Tools Electronics. ToolMax.",
]
CTX = ["Green apple pie bakery", "Soldering iron kit with stand and many extra words here"]


def test_parse_choice_reads_the_first_word_only():
    assert parse_choice(" title") == "last_title"
    assert parse_choice("Words.\nmore text") == "keywords"
    assert parse_choice([{"role": "assistant", "content": "raw"}]) == "raw_history"
    assert parse_choice("keywords") is None  # not a choice word: the policy must name one of CHOICES
    assert parse_choice("") is None and parse_choice(None) is None
    assert set(CHOICE_WORD) == set(CHOICES.values())


def test_choice_query_is_the_named_heuristic_under_the_budget():
    for word, kind in CHOICES.items():
        q = choice_query(word, CTX, 4)
        assert q == heuristic_query(kind, CTX, 4) and len(q.split()) <= 4
    assert choice_query("title", CTX, 3) == "Soldering iron kit"
    assert choice_query("nonsense", CTX, 8) == ""


def test_choice_rewards_build_the_query_from_the_context_column():
    from textrec.query.rewards import FormatReward, RetrievalReward

    bm25 = BM25Retriever(Catalog.from_texts(DOCS, name="toy"))
    r = RetrievalReward(bm25, k=None, max_words=4, mode="choose")
    ctx = [["Red apple juice drinks", "Digital caliper stainless steel"]] * 3
    # "title" sends the caliper title (target 2 at rank 0); "raw" the newest words (the same here);
    # an unknown word sends nothing and earns 0
    got = r(None, ["title", "zzz", "title"], target=[2, 2, 0], history=[[], [], []], context=ctx)
    assert got[0] == pytest.approx(1.0) and got[1] == 0.0 and got[2] < 1.0
    with pytest.raises(ValueError, match="context"):
        r(None, ["title"], target=[2], history=[[]])
    assert FormatReward(mode="choose")(None, ["two", "two words please", "x"]) == [0.0, 0.0, -1.0]
    with pytest.raises(ValueError, match="mode"):
        FormatReward(mode="pick")


def test_chooser_writer_and_sft_targets(monkeypatch, tmp_path):
    from textrec.query.policy import QueryWriter
    from textrec.query.sft import QuerySFTConfig, sft_targets

    w = QueryWriter.__new__(QueryWriter)
    w.max_words, w.mode = 3, "choose"
    monkeypatch.setattr(w, "generate", lambda tasks, **kw: [" title", " ???"], raising=False)
    tasks = [QueryTask(user=0, history=np.array([0, 2]), target=3, context=CTX)] * 2
    assert w.write(tasks) == ["Soldering iron kit", ""]
    bm25 = BM25Retriever(Catalog.from_texts(DOCS, name="toy"))
    cfg = QuerySFTConfig(mode="choose", candidates=("raw_history", "last_title", "keywords"), reward_k=None)
    targets, report = sft_targets(tasks, bm25, cfg)
    assert all(t and set(t) <= {"raw", "title", "words"} for t in targets)
    assert report["n_tasks"] == 2
    with pytest.raises(ValueError, match="chooser"):
        sft_targets(tasks, bm25, QuerySFTConfig(mode="choose", candidates=("tfidf_keywords",)))


def test_query_profile_counts_heuristic_copies_digits_and_empties():
    from textrec.query.bench import query_profile

    p = query_profile(["a b", "", "123 456", "c d", "own words"],
                      {"last_title": ["a b", "x", "y", "z", "w"], "keywords": ["a b", "x", "y", "c d", "w"]})
    assert p["shares"] == {"empty": 0.2, "no_letters": 0.2, "last_title": 0.2, "keywords": 0.2, "own_text": 0.2}
    assert p["n"] == 5 and p["mean_words"] == 1.6


def test_greedy_cache_writes_each_prompt_once_and_keeps_the_choice_across_budgets(monkeypatch):
    from textrec.query.policy import QueryWriter

    w = QueryWriter.__new__(QueryWriter)
    w.max_words, w.mode, w.max_new_tokens, w.greedy_cache = 8, "choose", 3, {}
    calls: list[list[str]] = []

    def fake_generate(prompts, *args):
        calls.append(list(prompts))
        return [" title" if p == "a" else " words" for p in prompts]

    monkeypatch.setattr(w, "prompts", lambda tasks: [t.context[0][0] for t in tasks], raising=False)
    monkeypatch.setattr(w, "_generate", fake_generate, raising=False)
    ta = QueryTask(user=0, history=np.array([0, 2]), target=-1, context=["a"] + CTX[1:])
    tb = QueryTask(user=1, history=np.array([1, 2]), target=-1, context=["b"] + CTX[1:])
    assert w.write([ta, tb, ta], max_words=8) == ["Soldering iron kit with stand and many extra",
                                                  "soldering iron kit stand many extra words here",
                                                  "Soldering iron kit with stand and many extra"]
    assert calls == [["a", "b"]]  # one generation per distinct prompt
    assert w.write([tb, ta], max_words=2) == ["soldering iron", "Soldering iron"]
    assert calls == [["a", "b"]]  # the other budget reuses the completions
    w.generate([ta], do_sample=True)  # sampling never reads or fills the cache
    assert calls[-1] == ["a"] and len(calls) == 2
