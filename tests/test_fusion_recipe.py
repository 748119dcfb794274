"""TextFusion as a product: item text from the training period only, the no-text mode, the
recipe derived from the data, EASE's L2 chosen on valid, and `textrec train textfusion` on a CSV."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import SHARED_DATA, requires_shared_data
from tests.test_fusion import _model, _planted, bag_of_words
from textrec.data import RecDataset
from textrec.data.item_text import choose_item_text, training_review_text
from textrec.data.splits import leave_one_out
from textrec.evaluation import run_protocol
from textrec.models.base import TrainView
from textrec.models.baselines import Popularity
from textrec.models.fusion import TextFusionRec
from textrec.models.fusion_recipe import code_size, derive_recipe, ease_grid, epoch_cap, training_windows


def _reviewed(n_users=40, n_items=12, per_user=6, seed=0) -> RecDataset:
    """Every review's summary names its own (user, item) event, so a leak is a visible token."""
    rng = np.random.default_rng(seed)
    rows, reviews = [], []
    for u in range(n_users):
        for t, i in enumerate(rng.choice(n_items, per_user, replace=False)):
            rows.append((f"u{u}", f"i{i}", float(t)))
            reviews.append({"user_id": f"u{u}", "item_id": f"i{i}", "timestamp": float(t),
                            "summary": f"tok_u{u}_i{i}"})
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    ds = RecDataset.from_frames("reviewed", inter, pd.DataFrame({"item_id": [f"i{i}" for i in range(n_items)],
                                                                  "title": [""] * n_items}), text_fields=["title"])
    rev = pd.DataFrame(reviews)
    uidx = {str(u): n for n, u in enumerate(ds.user_ids)}
    iidx = {str(i): n for n, i in enumerate(ds.item_ids)}
    ds.reviews = pd.DataFrame({"user": rev["user_id"].map(uidx), "item": rev["item_id"].map(iidx),
                               "rating": 5.0, "text": "", "summary": rev["summary"], "timestamp": rev["timestamp"]})
    return ds


def test_review_text_holds_training_reviews_and_no_valid_or_test_review():
    ds = _reviewed()
    split = leave_one_out(ds)
    texts = training_review_text(split, max_reviews=1000)
    joined = " ".join(texts)
    users = {n: str(u) for n, u in enumerate(ds.user_ids)}
    items = {n: str(i) for n, i in enumerate(ds.item_ids)}
    held_out = [(split.valid.users[r], t) for r in range(len(split.valid)) for t in split.valid.targets(r)]
    held_out += [(split.test.users[r], t) for r in range(len(split.test)) for t in split.test.targets(r)]
    assert held_out
    for u, i in held_out:
        assert f"tok_{users[int(u)]}_{items[int(i)]} " not in joined + " "  # not even in another item's text
    for u, i in split.train[["user", "item"]].itertuples(index=False):
        assert f"tok_{users[int(u)]}_{items[int(i)]}" in texts[int(i)].split(". ")


def test_choose_item_text_falls_back_from_empty_titles_to_training_reviews_then_none():
    ds = _reviewed()
    split = leave_one_out(ds)
    text_split, report = choose_item_text(split)
    assert report["source"] == "train_reviews"
    assert text_split.dataset.item_text() == training_review_text(split)
    assert split.dataset.item_text()[0] == ""  # the original split is untouched
    ds.reviews = None
    _, report = choose_item_text(leave_one_out(ds))
    assert report["source"] == "none"


@requires_shared_data
def test_instruments_text_never_holds_a_unique_held_out_summary():
    from textrec.data.registry import load_dataset

    ds = load_dataset("instruments", data_root=SHARED_DATA)
    split, report = choose_item_text(leave_one_out(ds))
    assert report["source"] == "train_reviews" and report["items_with_text"] > 800
    texts = split.dataset.item_text()
    counts = ds.reviews["summary"].value_counts()
    rev = ds.reviews.set_index(["user", "item"])
    checked = 0
    for evalset in (split.valid, split.test):
        for r in range(len(evalset)):
            u, i = int(evalset.users[r]), int(evalset.targets(r)[0])
            summ = str(rev.loc[(u, i), "summary"].iloc[0] if isinstance(rev.loc[(u, i)], pd.DataFrame)
                       else rev.loc[(u, i), "summary"]).strip().rstrip(".")
            if len(summ) > 12 and counts.get(summ, 0) == 1:  # a summary written only for this held-out event
                # compared part by part: another (training) review may extend it ("Wonderful Case!!!!")
                assert summ not in texts[i].split(". ")
                checked += 1
    assert checked > 100


def test_without_text_the_model_is_id_plus_cooccurrence_and_says_so(tmp_path):
    torch.set_num_threads(1)
    split = leave_one_out(_planted())
    model = _model(use_text=False)
    res = run_protocol(model, split, progress=False)
    assert model.text_mode == "none" and model.text_report["text"] == "none"
    assert model.module.code_emb is None and model.module.text_emb.shape[1] == 1
    pop = run_protocol(Popularity(), split, progress=False)
    assert res.test.metrics["ndcg@10"] > pop.test.metrics["ndcg@10"] + 0.1
    with pytest.raises(ValueError, match="without item text"):
        model.add_items(texts=["a new product"], ids=["new"])
    model.save_pretrained(tmp_path / "m")
    loaded = TextFusionRec.from_pretrained(tmp_path / "m")
    assert loaded.text_mode == "none"
    h = split.test.histories()[:4]
    assert torch.allclose(loaded.score(np.zeros(4), h), model.score(np.zeros(4), h), atol=1e-5)


def test_empty_text_gets_a_zero_vector():
    m = _model()
    emb = m.embed(["red pen", "", "   "])
    assert np.abs(emb[0]).sum() > 0 and not emb[1:].any()


def test_ease_l2_is_chosen_on_valid_from_the_grid():
    torch.set_num_threads(1)
    view = TrainView.from_split(leave_one_out(_planted()), with_text=True)
    model = _model(ease_lam=None, ease_grid=[0.5, 5.0, 500.0], tune_mix=False)
    model.trainer_config.epochs = 1
    model.fit(view, progress=False)
    rep = model.ease_report
    assert rep["chosen_on_valid"] and model.ease_lam in (0.5, 5.0, 500.0)
    best = max(rep["grid"], key=lambda r: r["valid_ndcg@10"])
    assert model.ease_lam == best["lam"]
    assert model.get_config()["ease_lam"] == model.ease_lam  # a saved model keeps the chosen value


def test_derived_recipe_follows_catalog_size_events_and_text():
    assert len(ease_grid(2_000)) > len(ease_grid(15_000)) >= 1
    assert code_size(100) == 16 and code_size(40_000) == 256 and code_size(39 * 64) == 64
    assert epoch_cap(100, 128) == 50 and epoch_cap(1_000_000, 128) == 3
    view = TrainView.from_split(leave_one_out(_planted()), with_text=True)
    options, report = derive_recipe(view)
    assert options["use_text"] and options["ease_lam"] is None and options["ease_grid"] == ease_grid(view.n_items)
    assert 3 <= options["trainer"]["epochs"] <= 50
    assert report["training_events"] == len(view.train) and set(report["why"]) >= {"ease_grid", "epochs", "use_text"}
    options, report = derive_recipe(view, coverage=0.1)
    assert not options["use_text"] and "ID + co-occurrence" in report["why"]["use_text"]


def test_dense_logs_get_overlapping_windows_and_few_steps_a_longer_patience():
    from textrec.models.fusion_recipe import LONG_PATIENCE

    view = TrainView.from_split(leave_one_out(_planted()), with_text=True)  # 8 events a user
    short, _ = derive_recipe(view, {"trainer": {"max_len": 50, "window_stride": 50, "batch_size": 128, "patience": 5}})
    assert short["trainer"]["window_stride"] == 50  # sequences shorter than the window: nothing changes
    dense, report = derive_recipe(view, {"trainer": {"max_len": 4, "window_stride": 4, "batch_size": 128,
                                                     "patience": 5}})
    assert dense["trainer"]["window_stride"] == 2 and "stride 2" in report["why"]["window_stride"]
    assert report["training_windows"] == training_windows(view, 4, 2) > training_windows(view, 4, 4)
    assert dense["trainer"]["patience"] == LONG_PATIENCE  # a few dozen updates an epoch


def _csv(tmp_path):
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"m{(s + t) % 24}", 1000 + t) for u in range(60) for s in [int(rng.integers(24))]
            for t in range(7)]
    pd.DataFrame(rows, columns=["uid", "mid", "ts"]).to_csv(tmp_path / "ratings.csv", index=False)
    genres = ["animation kids cartoon", "space war laser", "romance love drama"]
    pd.DataFrame({"mid": [f"m{i}" for i in range(24)], "title": [f"Film {i}" for i in range(24)],
                  "about": [genres[i % 3] for i in range(24)]}).to_csv(tmp_path / "items.csv", index=False)


class _FakeEncoder:
    """Stands in for MiniLM in the CLI test (hashed bag of words, no model download)."""

    def __init__(self, name=None):
        pass

    def encode(self, texts, progress=False):
        return bag_of_words(texts)


def test_train_textfusion_on_a_csv_then_recommend_prints_titles(tmp_path, monkeypatch, capsys):
    from textrec.cli import main

    monkeypatch.setattr("textrec.text.encoder.TextEncoder", _FakeEncoder)
    _csv(tmp_path)
    out = tmp_path / "model"
    small = ["backbone.hidden=16", "backbone.layers=1", "backbone.heads=1", "backbone.ff=32",
             "options.n_subvectors=4", "options.opq=false"]
    argv = ["train", "textfusion", "--dataset", str(tmp_path / "ratings.csv"), "--columns", "user=uid,item=mid,time=ts",
            "--items", str(tmp_path / "items.csv"), "--out", str(out), "--epochs", "2", "--threads", "1", "--quiet"]
    for s in small:
        argv += ["--set", s]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["text_mode"] == "text" and report["item_text"]["source"] == "catalog"
    assert report["chosen_on_valid"]["ease_lam"] > 0
    assert "epochs" in report["derived_recipe"]["why"] and report["test"]["ndcg@10"] >= 0
    assert main(["recommend", "--model", str(out), "--user", "u3", "--k", "5"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 5 and all("Film" in line for line in printed)


def test_bench_textfusion_quality_writes_models_and_targets(tmp_path, monkeypatch):
    from textrec.cli import main

    monkeypatch.setattr("textrec.text.encoder.TextEncoder", _FakeEncoder)
    _csv(tmp_path)
    out = tmp_path / "res"
    argv = ["bench", "textfusion", "quality", "--dataset", str(tmp_path / "ratings.csv"),
            "--columns", "user=uid,item=mid,time=ts", "--items", str(tmp_path / "items.csv"), "--epochs", "1",
            "--n-seeds", "2", "--sasrec-seeds", "1", "--baseline-params", "tune", "--grid", "ItemKNN.k=5,10",
            "--grid", "ItemKNN.shrink=0", "--grid", "MarkovChain.L=1,2", "--grid", "MarkovChain.alpha=0",
            "--grid", "MarkovChain.decay=1.0", "--grid", "EASE.lam=5,50", "--threads", "1", "--quiet",
            "--set", "options.text_term=valid", "--out", str(out), "--name", "t"]
    assert main(argv) == 0
    res = json.loads((out / "t.json").read_text())
    models = res["models"]
    assert {"Popularity", "EASE", "ItemKNN", "MarkovChain", "TextKNN", "SASRec seed 0", "TextFusion seed 0",
            "TextFusion seed 1", "TextFusion (mean)"} <= set(models)
    mean = models["TextFusion (mean)"]
    assert mean["n_seeds"] == 2 and "ndcg@10" in mean["test_se"]
    assert res["targets"]["best_baseline_on_test"] in models and "quality_met" in res["targets"]
    assert res["targets"]["cost"]["sasrec_train_cpu_seconds"] >= 0 and "cost_met" in res["targets"]
    assert models["TextFusion seed 0"]["train_peak_rss_mb"] > 0
    assert set(models["TextFusion seed 0"]["config"]["text_term"]) == {"decay", "shrink"}  # --set reached the model
    assert (out / "t.md").is_file()



def test_without_text_items_without_events_are_not_placed_above_warm_ones():
    """No text means no affinity to place a new item by (every one ties): the model fits no
    placement, and items seen only as held-out targets stay out of users' top 10."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(1)
    rows = [(f"u{u}", f"i{(s + t) % 30}", float(t)) for u in range(150) for s in [int(rng.integers(30))]
            for t in range(8)]
    rows += [(f"u{u}", f"new{u % 4}", 100.0) for u in range(0, 150, 5)]  # only ever a test target
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    ds = RecDataset.from_frames("no-text-cold", inter)
    split = leave_one_out(ds)
    model = _model(use_text=False)
    model.fit(TrainView.from_split(split, with_text=True), progress=False)
    cold = np.flatnonzero(model.counts.numpy() == 0)
    assert model.text_mode == "none" and model.calibration is None and len(cold) == 4
    h = split.test.histories()[:40]
    s = model.score(np.zeros(40), h)
    s[torch.from_numpy(np.repeat(np.arange(40), [len(x) for x in h])),
      torch.from_numpy(np.concatenate(h).astype(np.int64))] = float("-inf")
    order = torch.argsort(s, dim=1, descending=True).numpy()
    best_cold = np.array([np.flatnonzero(np.isin(row, cold))[0] for row in order])  # 0-based rank
    assert best_cold.min() >= 3 and best_cold.mean() > 8  # a placement would have put them first for everyone
