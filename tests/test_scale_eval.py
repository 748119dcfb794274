"""The evaluation's reference path: one stable sort per row gives the same top-k and ranks as
the separate brute-force functions (ties, masked items, several targets per row)."""

from __future__ import annotations

import pytest
import torch

from textrec.metrics.ranking import (
    MISS,
    RANK_CHUNK,
    brute_force_ranks,
    brute_force_topk,
    brute_force_topk_ranks,
    topk_items,
)


@pytest.mark.parametrize("n_rows", [7, RANK_CHUNK + 5])
def test_one_sort_reference_equals_the_two_brute_force_functions(n_rows):
    gen = torch.Generator().manual_seed(n_rows)
    scores = torch.randint(0, 5, (n_rows, 40), generator=gen).float()
    scores[torch.rand(n_rows, 40, generator=gen) < 0.25] = float("-inf")
    rows = torch.sort(torch.randint(0, n_rows, (3 * n_rows,), generator=gen)).values
    targets = torch.randint(0, 40, (3 * n_rows,), generator=gen)
    idx, vals, ranks = brute_force_topk_ranks(scores, 10, rows, targets)
    ref_idx, ref_vals = brute_force_topk(scores, 10)
    assert torch.equal(idx, ref_idx) and torch.equal(vals, ref_vals)
    assert torch.equal(ranks, brute_force_ranks(scores, rows, targets))
    assert (ranks == MISS).any()  # masked targets were exercised
    fast_idx, _ = topk_items(scores, 10)
    assert torch.equal(fast_idx, idx)


def test_bench_scale_eval_timing_part(tmp_path):
    from textrec.cli import main

    out = tmp_path / "res"
    assert main(["bench", "scale", "--skip-sizes", "--eval-timing", "3k", "--eval-timing-users", "300",
                 "--eval-batch-sizes", "64", "128", "--name", "timing", "--out", str(out), "--quiet"]) == 0
    import json

    res = json.loads((out / "timing.json").read_text())["eval_timing"]
    assert res["items"] == 3000 and set(res["batches"]) == {"batch 64", "batch 128"}
    for row in res["batches"].values():
        assert row["users"] == 300 and row["cpu_ms_per_user"] >= 0 and row["peak_rss_gb"] > 0
    table = (out / "timing.md").read_text()
    assert "| 64 |" in table and "| 128 |" in table and "CPU ms a user" in table
