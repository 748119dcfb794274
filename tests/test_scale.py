"""Scale path: Arrow loader = row loader, exact batched top-k = brute force, evaluation split
across two processes = one process, EASE refused before the split, the model saved before
evaluation, grid search within a budget, sampled softmax, and a tiny ``textrec bench scale``."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch

from textrec.cli import main
from textrec.data.dataset import DataError
from textrec.data.loaders import tabular
from textrec.data.splits import leave_one_out
from textrec.data.synthetic import synthetic_log, write_log
from textrec.evaluation import evaluate
from textrec.metrics.ranking import brute_force_topk, topk_items
from textrec.models.base import TrainView
from textrec.models.baselines import ItemKNN, MarkovChain, Popularity

COLUMNS = {"user_id": "user_id", "item_id": "item_id", "timestamp": "timestamp"}


@pytest.fixture(scope="module")
def small_split():
    log = synthetic_log(6000, seed=3)
    from textrec.data.dataset import RecDataset

    ds = RecDataset.from_codes("syn", log.users, np.arange(log.n_users).astype(str), log.items,
                               np.arange(log.n_items).astype(str), log.timestamps)
    return leave_one_out(ds)


# ---- loader ----------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["parquet", "csv", "tsv", "jsonl"])
def test_arrow_loader_equals_row_loader(tmp_path, monkeypatch, fmt):
    log = synthetic_log(3000, seed=1)
    events, items = write_log(log, tmp_path, fmt)
    kw = {"item_path": items} if fmt != "jsonl" else {}
    fast = tabular.load_table(events, COLUMNS, **kw)
    monkeypatch.setattr(tabular, "read_events_arrow", lambda *a, **k: None)
    slow = tabular.load_table(events, COLUMNS, **kw)
    assert fast.interactions["user"].dtype == np.int32 and fast.interactions["item"].dtype == np.int32
    assert list(fast.user_ids) == list(slow.user_ids) and list(fast.item_ids) == list(slow.item_ids)
    for col in ("user", "item", "timestamp", "row"):
        np.testing.assert_array_equal(fast.interactions[col].to_numpy(), slow.interactions[col].to_numpy())
    pd.testing.assert_frame_equal(fast.items, slow.items)
    assert fast.notes == slow.notes


def test_arrow_loader_hands_bad_rows_to_the_row_reader(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id,timestamp\nu1,i1,10\nu1, ,11\nu2,i2,12\n")
    with pytest.raises(DataError, match=r"line 3.*item_id"):
        tabular.load_table(path, COLUMNS)
    path.write_text("user_id,item_id,timestamp\nu1,i1,10\nu1,i2,1_000\n")
    with pytest.raises(DataError, match=r"line 3.*timestamp"):
        tabular.load_table(path, COLUMNS)
    ds = tabular.load_table(path, COLUMNS, on_error="skip")
    assert ds.n_interactions == 1 and ds.skipped.total == 1


def test_arrow_loader_keeps_text_ids_and_duplicates_policy(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id,timestamp\n007,A,10\n007,A,10\n8,B,11\n")
    ds = tabular.load_table(path, COLUMNS)
    assert list(ds.user_ids) == ["007", "8"] and any("duplicate" in n for n in ds.notes)
    assert tabular.load_table(path, COLUMNS, duplicates="drop").n_interactions == 2
    with pytest.raises(DataError, match="duplicate event"):
        tabular.load_table(path, COLUMNS, duplicates="error")


def test_synthetic_log_is_seeded_and_sequential(small_split):
    a, b = synthetic_log(2000, seed=5), synthetic_log(2000, seed=5)
    np.testing.assert_array_equal(a.items, b.items)
    assert a.titles == b.titles and not np.array_equal(a.items, synthetic_log(2000, seed=6).items)
    view = TrainView.from_split(small_split)
    mc = evaluate(MarkovChain().fit(view), small_split.test, small_split.n_items).metrics["ndcg@10"]
    pop = evaluate(Popularity().fit(view), small_split.test, small_split.n_items).metrics["ndcg@10"]
    assert mc > 2 * pop  # the ring structure is learnable


# ---- exact evaluation ------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 5, 20, 50])
def test_topk_equals_a_full_stable_sort_under_heavy_ties(k):
    gen = torch.Generator().manual_seed(k)
    scores = torch.randint(0, 4, (64, 50), generator=gen).float()
    scores[torch.rand(64, 50, generator=gen) < 0.3] = float("-inf")
    scores[0] = float("-inf")  # every item masked
    scores[1] = 2.0            # every item tied
    idx, val = topk_items(scores, k)
    ref_idx, ref_val = brute_force_topk(scores, k)
    assert torch.equal(idx, ref_idx) and torch.equal(val, ref_val)


@pytest.mark.parametrize("model_cls", [Popularity, MarkovChain, ItemKNN])
def test_evaluate_equals_brute_force(small_split, model_cls):
    model = model_cls().fit(TrainView.from_split(small_split))
    fast = evaluate(model, small_split.test, small_split.n_items, ks=(1, 10, 20), batch_size=97)
    ref = evaluate(model, small_split.test, small_split.n_items, ks=(1, 10, 20), batch_size=97, reference=True)
    assert fast.metrics == ref.metrics
    np.testing.assert_array_equal(fast.topk, ref.topk)
    rows = np.arange(0, len(small_split.test), 7)
    sub = evaluate(model, small_split.test, small_split.n_items, rows=rows, reference=True)
    assert sub.n_rows == len(rows)
    np.testing.assert_array_equal(sub.topk, fast.topk[rows])


def _sharded_worker(rank: int, world: int, init: str, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        log = synthetic_log(3000, seed=7)
        from textrec.data.dataset import RecDataset

        ds = RecDataset.from_codes("syn", log.users, np.arange(log.n_users).astype(str), log.items,
                                   np.arange(log.n_items).astype(str), log.timestamps)
        split = leave_one_out(ds)
        model = MarkovChain().fit(TrainView.from_split(split))
        res = evaluate(model, split.test, split.n_items, batch_size=50, distributed=True)
        if rank == 0:
            np.save(out + ".topk.npy", res.topk)
            with open(out, "w") as f:
                json.dump({"metrics": res.metrics, "n_rows": res.n_rows}, f)
    finally:
        dist.destroy_process_group()


def test_evaluation_split_across_two_processes_equals_one(tmp_path):
    import torch.multiprocessing as mp

    out = str(tmp_path / "metrics.json")
    init = f"file://{tmp_path / 'rendezvous'}"
    mp.spawn(_sharded_worker, args=(2, init, out), nprocs=2, join=True)
    two = json.loads(open(out).read())
    log = synthetic_log(3000, seed=7)
    from textrec.data.dataset import RecDataset

    ds = RecDataset.from_codes("syn", log.users, np.arange(log.n_users).astype(str), log.items,
                               np.arange(log.n_items).astype(str), log.timestamps)
    split = leave_one_out(ds)
    one = evaluate(MarkovChain().fit(TrainView.from_split(split)), split.test, split.n_items)
    assert two["n_rows"] == one.n_rows and two["metrics"] == one.metrics
    np.testing.assert_array_equal(np.load(out + ".topk.npy"), one.topk)


# ---- CLI: EASE refusal, save before evaluation, budgeted grid -----------------------------------------
@pytest.fixture()
def events_csv(tmp_path):
    log = synthetic_log(3000, seed=2)
    events, _ = write_log(log, tmp_path / "data", "csv")
    return str(events)


def test_train_ease_refuses_from_the_item_count_before_splitting(events_csv, tmp_path, monkeypatch, capsys):
    import textrec.data.splits as splits

    monkeypatch.setenv("TEXTREC_AVAILABLE_MEMORY", "1000")
    monkeypatch.setattr(splits, "make_split", lambda *a, **k: pytest.fail("split before the EASE refusal"))
    rc = main(["train", "ease", "--dataset", events_csv, "--columns", "user=user_id,item=item_id,time=timestamp",
               "--out", str(tmp_path / "m"), "--quiet", "--threads", "1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "Traceback" not in err
    assert "--ignore-memory-check" in err and "items squared" in err


def test_train_saves_the_model_before_evaluating(events_csv, tmp_path, monkeypatch):
    import textrec.evaluation as ev

    def boom(*a, **k):
        raise RuntimeError("evaluation died")

    monkeypatch.setattr(ev, "evaluate", boom)
    out = tmp_path / "pop"
    with pytest.raises(RuntimeError, match="evaluation died"):
        main(["train", "popularity", "--dataset", events_csv, "--columns", "user=user_id,item=item_id,time=timestamp",
              "--out", str(out), "--quiet", "--threads", "1"])
    import textrec

    assert textrec.load(out).name == "Popularity"


def test_grid_search_thins_the_grid_to_its_budget(small_split, capsys):
    from textrec.models.tuning import grid_search

    grid = {"k": [5, 10, 20, 50, 100], "shrink": [0.0, 10.0]}
    best, table = grid_search(lambda p: ItemKNN(**p), grid, small_split, budget_seconds=1e-6)
    assert len(table) == 1  # the budget fits one point: the first, and the rest are listed as skipped
    row = next(r for r in table if r["best"])
    assert len(row["skipped"]) == 9 and "skipped 9 of 10 points" in capsys.readouterr().out


def test_tune_says_what_widening_does(small_split, capsys):
    from textrec.bench import tune

    tune("ItemKNN", small_split, grid={"k": [1, 2], "shrink": [0.0]}, max_widen=1)
    out = capsys.readouterr().out
    assert "widen the grid" not in out
    assert "widening k to" in out or "still at the grid's edge" in out or "at the grid's edge" not in out


# ---- sampled softmax and the bench ---------------------------------------------------------------------
def test_sasrec_trains_with_sampled_softmax(small_split):
    from textrec.models.sasrec import SASRec

    model = SASRec(hidden=16, layers=1, heads=1, ff=32, max_len=10, epochs=1, loss="sampled", negatives=32,
                   batch_size=64)
    model.fit(TrainView.from_split(small_split), progress=False)
    assert np.isfinite(model.history[0]["loss"]) and model.history[0]["loss"] > 0


@pytest.mark.skipif(os.environ.get("TEXTREC_SKIP_SLOW") == "1", reason="slow")
def test_bench_scale_tiny(tmp_path):
    out = tmp_path / "res"
    assert main(["bench", "scale", "--sizes", "2k", "4k", "--real", "--models", "sasrec", "--epoch-minutes", "0.02",
                 "--no-encoder-rate", "--out", str(out), "--quiet", "--threads", "1"]) == 0
    res = json.loads((out / "scale.json").read_text())
    assert [p["events"] for p in res["sizes"]] == sorted(p["events"] for p in res["sizes"])
    steps = res["sizes"][-1]["steps"]
    assert {"load", "split", "fit Popularity", "fit EASE", "SASRec epoch", "eval all test users"} <= set(steps)
    assert steps["exactness 1% users"]["metrics_equal"] and steps["exactness 1% users"]["topk_equal"]
    assert "load+split" in res["exponents"] and "targets" in res and (out / "scale.png").is_file()
