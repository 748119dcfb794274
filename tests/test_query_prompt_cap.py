"""Rec-R1 prompt-token cap (oldest lines first, a long newest line cut) and dense / hybrid rewards."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_llama

pytest.importorskip("transformers")

from textrec.query.catalog import Catalog  # noqa: E402
from textrec.query.tasks import QueryTask, cap_context, load_template, prompt_text, prompt_tokens  # noqa: E402

TEMPLATE_WORDS = "products a user bought , oldest first : - Search query for the next one".split()
TITLE_WORDS = [f"w{i}" for i in range(40)] + "red apple juice green pie orange cake".split()
DOCS = ["red apple juice", "green apple pie", "orange juice", "chocolate cake", "digital caliper steel"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_llama(tmp_path_factory.mktemp("tiny"), set(TEMPLATE_WORDS) | set(TITLE_WORDS) | set(" ".join(DOCS).split()))


@pytest.fixture(scope="module")
def tok(tiny):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny)


def _task(context):
    return QueryTask(user=0, history=np.arange(len(context)), target=0, context=list(context))


def test_cap_drops_the_oldest_lines_first(tok):
    bare = load_template("query-bare")
    task = _task(["red apple juice", "green pie", "orange cake", "w1 w2 w3"])
    full = prompt_text(task, bare, tok, "toy")
    n = prompt_tokens(full, tok)
    assert prompt_text(task, bare, tok, "toy", max_tokens=n) == full  # fits: unchanged
    capped = prompt_text(task, bare, tok, "toy", max_tokens=n - 1)
    assert prompt_tokens(capped, tok) <= n - 1
    assert "red apple juice" not in capped and "- green pie" in capped and "- w1 w2 w3" in capped
    # A tighter cap keeps only the newest line.
    kept = cap_context(task, bare, tok, "toy", n - 8).context  # lines cost 4, 3, 3 and 4 tokens
    assert kept == ["w1 w2 w3"]


def test_cap_cuts_an_overlong_newest_line(tok):
    bare = load_template("query-bare")
    long_line = " ".join(f"w{i}" for i in range(40))
    task = _task(["red apple juice", long_line])
    empty = prompt_tokens(prompt_text(_task([]), bare, tok, "toy"), tok)
    # the empty history renders as "(nothing yet)", which this vocabulary cannot spell: compare to one word
    one = prompt_tokens(prompt_text(_task(["w0"]), bare, tok, "toy"), tok)
    capped = cap_context(task, bare, tok, "toy", one + 4)
    assert len(capped.context) == 1 and capped.context[0] == "w0 w1 w2 w3 w4"
    assert prompt_tokens(prompt_text(task, bare, tok, "toy", one + 4), tok) <= one + 4
    with pytest.raises(ValueError, match="max_prompt_tokens"):
        cap_context(task, bare, tok, "toy", min(empty, one) - 1)


def test_writer_keeps_its_cap_and_sft_uses_it(tiny, tok, tmp_path):
    from textrec.query.policy import QueryWriter, load_policy
    from textrec.query.sft import sft_pairs

    model, t = load_policy(tiny)
    bare = load_template("query-bare")
    tasks = [_task(["red apple juice", "green pie", "orange cake", " ".join(f"w{i}" for i in range(30))])] * 2
    cap = 22  # the template and one line fit; the four lines do not
    w = QueryWriter(model, t, template_id="query-bare", max_history=4, max_new_tokens=3, base_model=tiny,
                    max_prompt_tokens=cap)
    assert all(prompt_tokens(p, tok) <= cap for p in w.prompts(tasks))
    w.save_pretrained(tmp_path / "w")
    again = QueryWriter.from_pretrained(tmp_path / "w")
    assert again.max_prompt_tokens == cap and again.prompts(tasks) == w.prompts(tasks)
    pairs = sft_pairs(tasks, [["red apple"]] * 2, bare, tok, "toy", max_prompt_tokens=cap)
    assert all(len(p) <= cap for p, _ in pairs)
    assert max(len(p) for p, _ in sft_pairs(tasks, [["red apple"]] * 2, bare, tok, "toy")) > cap


def test_config_checks_cap_and_reward_retrievers():
    from textrec.query.grpo_config import QueryGRPOConfig, load_grpo_config

    with pytest.raises(ValueError, match="max_prompt_tokens"):
        QueryGRPOConfig(max_prompt_tokens=0)
    with pytest.raises(ValueError, match="bm25 | dense | hybrid"):
        QueryGRPOConfig(reward_retrievers=["nope"])
    with pytest.raises(ValueError, match="query budget"):
        QueryGRPOConfig(max_words=0)
    assert QueryGRPOConfig(reward_retrievers=["hybrid"]).max_words == 8
    hybrid = QueryGRPOConfig(reward_retrievers=["bm25", "dense"], reward_weight=0.5, format_weight=0.25)
    assert hybrid.reward_weights() == [0.5, 0.5, 0.25]
    dense = load_grpo_config("recr1_cpu_sft_dense")
    assert dense.reward_retrievers == ["dense"] and dense.max_prompt_tokens and dense.sft_steps > 0
    assert dense.sft_config().max_prompt_tokens == dense.max_prompt_tokens
    with pytest.raises(ValueError, match="reward_k"):
        QueryGRPOConfig(reward_k=0)
    full = load_grpo_config("recr1_cpu_dense_full")  # NDCG without a cutoff, SFT that copies faithfully
    assert full.reward_k is None and full.sft_config().reward_k is None
    assert full.sft_candidates == ["last_title"] and full.sft_config().fidelity_tasks > 0


def test_dense_and_hybrid_rewards_in_the_trainer(tiny, tmp_path):
    from test_query import HashEncoder

    from textrec.query.grpo_config import QueryGRPOConfig
    from textrec.query.grpo_trainer import QueryGRPOTrainer
    from textrec.query.retrieval import BM25Retriever, DenseRetriever

    catalog = Catalog.from_texts(DOCS, name="toy")
    rets = {"bm25": BM25Retriever(catalog), "dense": DenseRetriever(catalog, encoder=HashEncoder(), progress=False)}
    tasks = [QueryTask(user=u, history=np.array([u]), target=(u + 1) % 5, context=[DOCS[u]]) for u in range(5)]
    cfg = QueryGRPOConfig(model=tiny, lora_r=2, lora_alpha=4, lora_top_layers=1, lora_targets=["q_proj"],
                          num_generations=2, max_completion_length=3, max_steps=1, template_id="query-bare",
                          reward_retrievers=["bm25", "dense"], reward_k=5, max_prompt_tokens=32)
    tr = QueryGRPOTrainer(cfg, rets, tasks, tmp_path / "run", verbose=False)
    names = [f.__name__ for f in tr.reward_funcs]
    assert names == ["ndcg@5_bm25", "ndcg@5_dense", "format"]
    dense = tr.reward_funcs[1]
    # The target's own title scores best; a query sharing no word with it scores less (dense still ranks it).
    good, bad = dense(None, ["green apple pie", "digital caliper steel"], target=[1, 1], history=[[0], [0]])
    assert good == 1.0 and 0.0 < bad < good
    assert tr.reward_funcs[0](None, ["digital caliper steel"], target=[1], history=[[0]]) == [0.0]


def test_sft_targets_under_a_hybrid_reward_sum_both_retrievers():
    from test_query import HashEncoder

    from textrec.query.retrieval import BM25Retriever, DenseRetriever
    from textrec.query.sft import QuerySFTConfig, sft_targets

    catalog = Catalog.from_texts(DOCS, name="toy")
    bm25, dense = BM25Retriever(catalog), DenseRetriever(catalog, encoder=HashEncoder(), progress=False)
    tasks = [QueryTask(user=u, history=np.array([u]), target=(u + 1) % 5, context=[DOCS[(u + 1) % 5], DOCS[u]])
             for u in range(5)]
    cfg = QuerySFTConfig(reward_k=5, max_query_words=8)
    _, one = sft_targets(tasks, bm25, cfg)
    _, both = sft_targets(tasks, [bm25, dense], cfg)
    assert one["reward_retriever"] == "bm25" and both["reward_retriever"] == "bm25+dense"
    # summed NDCGs: the hybrid best is at least the BM25 best and at most 2
    assert one["mean_ndcg@5_best"] <= both["mean_ndcg@5_best"] <= 2.0
