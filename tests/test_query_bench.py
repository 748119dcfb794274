"""The Rec-R1 benchmark's statistics: paired bootstrap intervals, oracle rows, block summaries."""

from __future__ import annotations

import numpy as np
import pytest

from textrec.query.bench import markdown, oracle_row, paired_bootstrap, summarize_block


def test_paired_bootstrap_resolves_a_paired_gain_and_not_noise():
    rng = np.random.default_rng(0)
    base = rng.random(2000) * (rng.random(2000) < 0.1)
    better = base * 1.5
    out = paired_bootstrap(better, base, n_boot=500)
    assert out["ratio"] == pytest.approx(1.5, rel=1e-6)
    assert out["ratio_ci95"][0] > 1.3 and out["ratio_ci95"][1] < 1.7  # pairing: a tight interval
    assert out["diff_ci95"][0] > 0
    same = paired_bootstrap(rng.permutation(base), base, n_boot=500)
    assert same["diff_ci95"][0] < 0 < same["diff_ci95"][1]  # no gain: the interval covers 0
    assert paired_bootstrap(base, np.zeros_like(base), n_boot=50)["ratio"] is None
    with pytest.raises(ValueError, match="equal-length"):
        paired_bootstrap(base, base[:10])


def test_oracle_is_the_per_user_best_and_blocks_summarize():
    class R:
        def __init__(self, v):
            self.per_row = {"ndcg@10": np.asarray(v, float), "recall@10": (np.asarray(v) > 0).astype(float)}

    res = {"last_title": R([0.0, 1.0, 0.2]), "last_two_titles": R([0.5, 0.0, 0.1]),
           "all_titles": R([0.0, 0.0, 0.0]), "keywords": R([0.1, 0.3, 0.0])}
    orc = oracle_row(res)
    assert orc["ndcg@10"].tolist() == [0.5, 1.0, 0.2]
    per_row = {"raw_history": res["keywords"].per_row, "last_title": res["last_title"].per_row, "oracle": orc}
    block = summarize_block(per_row, {"last_title": {"reward_retriever": None, "evaluation_retriever": "bm25"}},
                            n_boot=100, seed=0, compare=[("oracle", "last_title")])
    assert block["n_rows"] == 3 and "vs_raw_history_ndcg@10" in block["rows"]["oracle"]
    assert block["rows"]["last_title"]["evaluation_retriever"] == "bm25"
    assert block["differences"]["oracle-last_title"]["diff"] == pytest.approx(0.5 / 3, abs=1e-6)
    md = markdown({"dataset": "toy", "protocol": "p", "blocks": {"t/bm25/test/3": {**block, "rows_total": 3}}})
    assert "| last_title | - | bm25 |" in md and "oracle-last_title" in md


def test_compare_runs_pairs_rows_of_two_results_on_the_same_users():
    from textrec.query.bench import compare_runs

    def run(row, values, users=("u1", "u2", "u3", "u4")):
        return {"blocks": {"t/bm25/test/4": {"user_ids": list(users), "rows": {
            row: {"per_user_ndcg@10": list(values)}}}}}

    out = compare_runs(run("grpo", [0.5, 0.2, 0.0, 1.0]), "grpo", run("sft", [0.1, 0.2, 0.0, 0.6]), "sft", n_boot=200)
    d = out["t/bm25/test/4"]["grpo-sft"]
    assert d["diff"] == pytest.approx(0.2) and d["diff_ci95"][0] >= 0
    with pytest.raises(ValueError, match="different users"):
        compare_runs(run("grpo", [0.5] * 4), "grpo", run("sft", [0.1] * 4, users=("a", "b", "c", "d")), "sft")


def test_merge_runs_adds_the_other_row_and_the_difference_to_shared_blocks():
    from textrec.query.bench import merge_runs

    def run(row, values, raw=(0.1, 0.1, 0.0, 0.5), users=("u1", "u2", "u3", "u4")):
        rows = {"raw_history": {"per_user_ndcg@10": list(raw), "metrics": {"ndcg@10": 0.175, "recall@10": 1.0}},
                row: {"per_user_ndcg@10": list(values), "reward_retriever": ["dense"], "evaluation_retriever": "dense",
                      "metrics": {"ndcg@10": float(np.mean(values)), "recall@10": 1.0}}}
        return {"dataset": "toy", "protocol": "p", "writers": {row: {"path": row}},
                "blocks": {"t/dense/test/4": {"user_ids": list(users), "rows": rows, "n_rows": 4, "rows_total": 9,
                                              "differences": {}}}}

    a, b = run("grpo", [0.5, 0.2, 0.0, 1.0]), run("sft", [0.1, 0.2, 0.0, 0.6])
    merged = merge_runs(a, "grpo", b, "sft", n_boot=200)
    block = merged["blocks"]["t/dense/test/4"]
    assert list(block["rows"]) == ["raw_history", "grpo", "sft"] and merged["writers"]["sft"] == {"path": "sft"}
    assert block["differences"]["grpo-sft"]["diff"] == pytest.approx(0.2)
    assert "sft" not in a["blocks"]["t/dense/test/4"]["rows"]  # the inputs are left alone
    assert "grpo-sft: NDCG@10 difference +0.2000" in markdown(merged)
    with pytest.raises(ValueError, match="raw-history rows differ"):
        merge_runs(a, "grpo", run("sft", [0.1] * 4, raw=(0.0, 0.1, 0.0, 0.5)), "sft")
    with pytest.raises(ValueError, match="different users"):
        merge_runs(a, "grpo", run("sft", [0.1] * 4, users=("a", "b", "c", "d")), "sft")
