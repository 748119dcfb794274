"""Transfer: text-only pretraining on several domains, save/load with its record, fine-tune with
parts frozen or re-initialised, zero-shot on an unseen domain, user subsets."""

import numpy as np
import pytest
import torch
from test_fusion import SMALL, _model, _planted, bag_of_words

import textrec
from textrec.data.splits import leave_one_out
from textrec.evaluation import evaluate
from textrec.models.base import TrainView
from textrec.models.text_term import DECAYS as ZS_DECAYS
from textrec.models.text_term import SHRINKS as ZS_SHRINKS
from textrec.models.text_term import recency_text_scores
from textrec.models.transfer import (
    ZeroShotTextFusion,
    parse_domains,
    pretrain_views,
    subset_split,
    tune_zero_shot,
    zero_shot,
)
from textrec.text.whitening import whiten_text


def _views():
    a = TrainView.from_split(leave_one_out(_planted(n_items=30, n_users=60, seed=1)), with_text=True)
    b = TrainView.from_split(leave_one_out(_planted(n_items=20, n_users=40, seed=3)), with_text=True)
    return [a, b]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    torch.set_num_threads(1)
    model = _model(trainer={**SMALL["trainer"], "epochs": 2})
    pretrain_views(model, _views(), command="textrec train textfusion --pretrain-on a,b", progress=False)
    path = tmp_path_factory.mktemp("pre") / "pre"
    model.save_pretrained(path)
    return model, path


def test_pretraining_is_text_only_and_saved_with_what_it_saw(pretrained):
    model, path = pretrained
    assert model.module.id_residual is None and model.ease_B is None
    loaded = textrec.load(path)
    rec = loaded.pretraining
    assert [d["events"] for d in rec["domains"]] == [len(v.train) for v in _views()]
    assert rec["command"].startswith("textrec train textfusion") and rec["cpu_seconds"] >= 0
    chosen = rec["zero_shot"]["chosen"]  # chosen on the sources' valid rows, saved with the model
    assert chosen == model.pretraining["zero_shot"]["chosen"] and chosen["decay"] in ZS_DECAYS
    assert chosen["shrink"] in ZS_SHRINKS and [d["name"] for d in rec["zero_shot"]["domains"]] == ["planted"] * 2
    hist = [np.array([0, 1, 2]), np.array([5])]
    loaded.text_embedder = bag_of_words
    assert torch.allclose(loaded.score(np.array([0, 1]), hist), model.score(np.array([0, 1]), hist), atol=1e-5)


def test_fine_tune_freezes_and_reinitialises_the_named_parts(pretrained):
    _, path = pretrained
    pre = textrec.load(path)
    target = TrainView.from_split(leave_one_out(_planted(n_items=24, n_users=40, seed=2)), with_text=True)
    model = _model(trainer={**SMALL["trainer"], "epochs": 2, "patience": 5})
    model.warm_start(pre, reinit=["encoder"], freeze=["adaptor"], source=str(path)).fit(target, progress=False)
    ps, s = pre.module.state_dict(), model.module.state_dict()
    assert torch.equal(ps["adaptor.weight"], s["adaptor.weight"])  # frozen: untouched by training
    assert not torch.equal(ps["encoder.blocks.0.qkv.weight"], s["encoder.blocks.0.qkv.weight"])
    assert model.module.id_residual is not None  # the target gets its own ID residual
    assert model.pretraining["init"] == {"source": str(path), "codes": "pretrained", "reinit": ["encoder"],
                                         "freeze": ["adaptor"], "text_term": None}
    assert [d["name"] for d in model.get_config()["pretraining"]["domains"]] == ["planted", "planted"]


def test_warm_start_refuses_unknown_or_conflicting_parts(pretrained):
    pre, _ = pretrained
    with pytest.raises(ValueError, match="unknown part"):
        _model().warm_start(pre, freeze=["gate"])
    with pytest.raises(ValueError, match="both"):
        _model().warm_start(pre, reinit=["codes"], freeze=["codes"])


def test_zero_shot_reads_item_text_only_and_round_trips(pretrained, tmp_path):
    pre, pre_dir = pretrained
    split = leave_one_out(_planted(n_items=24, n_users=40, seed=2))
    view = TrainView.from_split(split, with_text=True)
    view.train = view.train.iloc[:0]  # no target interaction may matter
    model = zero_shot(pre, view)
    assert model.n_scored_items() == 24 and not model.fusion.counts.any()
    assert model.settings == pre.pretraining["zero_shot"]["chosen"]
    assert torch.equal(model.fusion.module.state_dict()["adaptor.weight"], pre.module.state_dict()["adaptor.weight"])
    res = evaluate(model, split.test, split.n_items)
    assert 0.0 <= res.metrics["ndcg@10"] <= 1.0
    model.save_pretrained(tmp_path / "zs")
    loaded = textrec.load(tmp_path / "zs")
    hist = [split.test.history(i) for i in range(3)]
    assert type(loaded) is ZeroShotTextFusion
    assert torch.allclose(loaded.score(np.arange(3), hist), model.score(np.arange(3), hist), atol=1e-5)
    assert loaded.pretraining["init"] == {"zero_shot_on": "planted"}
    # the parts alone: seq-only is the pretrained encoder's h . rep(i); text-only the text term
    seq = zero_shot(pre, view, w_seq=1.0, w_text=0.0).score(np.arange(3), hist)
    text = zero_shot(pre, view, w_seq=0.0, w_text=1.0).score(np.arange(3), hist)
    both = zero_shot(pre, view, w_seq=1.0, w_text=2.0).score(np.arange(3), hist)
    assert torch.allclose(both, seq + 2.0 * text, atol=1e-5)


def test_zero_shot_fit_from_a_folder_refuses_a_pretraining_domain(pretrained, monkeypatch):
    from test_fusion_recipe import _FakeEncoder

    monkeypatch.setattr("textrec.text.encoder.TextEncoder", _FakeEncoder)  # the folder's model embeds with MiniLM
    pre, pre_dir = pretrained
    view = TrainView.from_split(leave_one_out(_planted(n_items=24, n_users=40, seed=2)), with_text=True)
    with pytest.raises(ValueError, match="pretrained on 'planted'"):
        ZeroShotTextFusion(pretrained=str(pre_dir)).fit(view)
    view.dataset_name = "another"
    a = ZeroShotTextFusion(pretrained=str(pre_dir), settings={"decay": 0.5}).fit(view)
    b = zero_shot(pre, view, decay=0.5)
    assert a.settings == b.settings and a.settings["decay"] == 0.5
    hist = [np.array([0, 1, 2]), np.array([5])]
    assert torch.allclose(a.score(np.arange(2), hist), b.score(np.arange(2), hist), atol=1e-5)
    with pytest.raises(ValueError, match="unknown zero-shot setting"):
        ZeroShotTextFusion(settings={"alpha": 1.0})


def test_whitening_removes_the_direction_a_domain_shares():
    rng = np.random.default_rng(0)
    common = rng.normal(size=16)
    emb = common[None, :] * 5 + rng.normal(size=(200, 16))
    emb = np.vstack([emb / np.linalg.norm(emb, axis=1, keepdims=True), np.zeros((1, 16))])  # last: no text
    raw_cos = emb[:200] @ emb[:200].T
    w = whiten_text(emb, 0.1)
    white_cos = w[:200] @ w[:200].T
    off = ~np.eye(200, dtype=bool)
    assert raw_cos[off].mean() > 0.8 and abs(white_cos[off].mean()) < 0.05
    assert np.allclose(np.linalg.norm(w[:200], axis=1), 1.0, atol=1e-5) and not w[200].any()
    assert np.array_equal(whiten_text(emb, None), emb.astype(np.float32))


def test_recency_weights_the_latest_items():
    text = torch.nn.functional.normalize(torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1.0, 0]]), dim=1)
    hist = [np.array([0, 0, 1])]
    mean = recency_text_scores(text, hist, 1.0)
    latest = recency_text_scores(text, hist, 1e-6)
    assert mean[0, 0] > mean[0, 1]  # the plain mean (TextKNN) leans to the item seen twice
    assert latest[0, 1] > 0.99 and latest[0, 0] < 0.01  # a tiny decay: the latest item alone


def test_zero_shot_settings_are_chosen_on_the_sources_only(pretrained):
    pre, _ = pretrained
    sources = _views()
    report = tune_zero_shot(pre, sources, max_rows=30)
    best = max(report["table"], key=lambda r: r["mean_valid_ndcg@10"])
    assert report["chosen"] == {k: best[k] for k in ("decay", "shrink", "w_seq", "w_text")}
    assert [d["valid_rows_used"] for d in report["domains"]] == [min(30, len(v.valid)) for v in sources]
    assert set(report["text_knn_valid_ndcg@10"]) == {"planted"}



def test_zero_shot_settings_leave_one_domain_out_use_a_probe_that_never_saw_them(pretrained, tmp_path):
    import copy

    pre, path = pretrained
    target = textrec.load(path)
    probe = textrec.load(path)
    with pytest.raises(ValueError, match="not held out"):  # the probe saw "planted"
        tune_zero_shot(target, _views(), max_rows=30, probe=probe)
    probe.pretraining = copy.deepcopy(probe.pretraining)
    probe.pretraining["domains"] = [{"name": "elsewhere", "users": 1, "items": 1, "events": 1}]
    with torch.no_grad():  # a different sequence part: the table must be the probe's, not the target's
        for p in probe.module.encoder.parameters():
            p.mul_(0.0)
    for m in (target, probe):
        m.text_embedder = bag_of_words
    report = tune_zero_shot(target, _views(), max_rows=30, probe=probe, probe_source="probe-dir")
    assert report["on"].startswith("leave-one-domain-out") and report["probe"]["domains"] == ["elsewhere"]
    assert target.pretraining["zero_shot"]["chosen"] == report["chosen"]
    own = textrec.load(path)
    own.text_embedder = bag_of_words
    assert report["table"] != tune_zero_shot(own, _views(), max_rows=30)["table"]


def test_parse_domains_keeps_the_target_out():
    assert parse_domains("games, office", exclude="scientific") == ["games", "office"]
    with pytest.raises(ValueError, match="target 'office'"):
        parse_domains("games,office", exclude="office")
    with pytest.raises(ValueError, match="twice"):
        parse_domains(["games", "games"])


def test_subset_split_same_users_for_same_seed_and_all_test_rows():
    split = leave_one_out(_planted(n_items=24, n_users=40, seed=2))
    a, b, c = subset_split(split, 0.25, 0), subset_split(split, 0.25, 0), subset_split(split, 0.25, 1)
    assert a.train.equals(b.train) and not a.train.equals(c.train)
    assert a.report["train_users"] == 10 and a.train["user"].nunique() == 10
    assert len(a.test) == len(split.test) and set(a.valid.users) <= set(a.train["user"])
    assert subset_split(split, 1.0, 0).train.equals(split.train)


def test_bench_rows_share_users_and_targets_say_met_or_missed(pretrained, tmp_path, monkeypatch):
    import argparse

    from test_fusion_recipe import _FakeEncoder

    monkeypatch.setattr("textrec.text.encoder.TextEncoder", _FakeEncoder)  # TextKNN rows without MiniLM

    from textrec.benchmarks.transfer import (
        OWN_TERM,
        PRETRAINED,
        SCRATCH,
        TEXT_TERM,
        ZERO_SHOT,
        ZERO_SHOT_SEQ,
        ZERO_SHOT_TEXT,
        Harness,
        fine_tune_epochs,
        run_subset,
        run_zero_shot,
        summarise,
    )

    assert fine_tune_epochs(0.1, 40, 2.0) == 20 and fine_tune_epochs(0.05, 30, 2.0) == 30
    assert fine_tune_epochs(1.0, None, None) is None
    pre, _ = pretrained
    split = leave_one_out(_planted(n_items=24, n_users=40, seed=2))
    recipe = {"model": "TextFusionRec", "backbone": SMALL["backbone"], "trainer": SMALL["trainer"],
              "options": {k: v for k, v in SMALL.items() if k not in ("backbone", "trainer", "ease_lam")}}
    args = argparse.Namespace(recipe=recipe, epochs=2, epochs_full_equiv=None, ease_grid=[5.0, 10.0], quiet=True)
    h = Harness(split, args, tmp_path / "part.json", text_embedder=bag_of_words)
    for seed in (0, 1):
        run_subset(h, pre, "pre", 0.5, seed, ablation=seed == 0, curve=True)
    run_subset(h, pre, "pre", 1.0, 0, ablation=False, curve=True)
    run_zero_shot(h, pre, split)
    assert h.rows[ZERO_SHOT]["settings"] == pre.pretraining["zero_shot"]["chosen"]
    assert h.rows[ZERO_SHOT_SEQ]["settings"]["w_text"] == 0 and h.rows[ZERO_SHOT_TEXT]["settings"]["w_seq"] == 0
    rows = h.rows
    a, b = rows[f"50% users, seed 0: {SCRATCH}"], rows[f"50% users, seed 0: {PRETRAINED}"]
    assert a["train_users"] == b["train_users"] == 20 and a["train_events"] == b["train_events"]
    assert a["test"]["n_rows"] == len(split.test) and a["valid"]["n_rows"] == len(split.valid)  # all users' rows
    assert rows["50% users, seed 0: pretrained+fine-tuned, encoder frozen"]["ablation"] == {"freeze": ["encoder"]}
    chosen = pre.pretraining["zero_shot"]["chosen"]
    for name in (SCRATCH, PRETRAINED):  # each fine-tuned row beside itself plus the transferred text term
        row, base = rows[f"50% users, seed 0: {name}{TEXT_TERM}"], rows[f"50% users, seed 0: {name}"]
        term = row["text_term"]
        assert (term["decay"], term["shrink"]) == (chosen["decay"], chosen["shrink"])
        assert term["rho"] == row["mix"]["rho"] and base["mix"]["rho"] == 0.0  # the trained row keeps its mix
    own = rows[f"50% users, seed 0: {SCRATCH}{OWN_TERM}"]["text_term"]
    assert own["settings_from"] == "the kept users' valid rows"
    assert f"50% users, seed 0: {PRETRAINED}{OWN_TERM}" not in rows
    assert "50% users, seed 1: pretrained+fine-tuned, encoder frozen" not in rows
    curve, targets = summarise(h, [0.5, 1.0])
    assert curve["50%"][SCRATCH]["n_seeds"] == 2 and curve["50%"][SCRATCH]["se_over_seeds"] is not None
    assert isinstance(targets["100% users"]["met"], bool)
    assert targets["100% users"]["standard_error_kind"] == "paired over test rows (one seed)"
    assert "10% users" not in targets  # no 10% rows: the target is not claimed either way
    zs = targets["zero-shot"]
    assert isinstance(zs["met"], bool) and round(zs["textknn"], 4) == h.rows["TextKNN"]["test"]["ndcg@10"]
    assert "ratio_to_last_item" in zs and "100% users, both with the text term" in targets


def test_train_textfusion_init_and_pretrain_on_options(pretrained, tmp_path, monkeypatch, capsys):
    from test_fusion_recipe import _csv, _FakeEncoder

    from textrec.cli import main

    _, pre_dir = pretrained
    monkeypatch.setattr("textrec.text.encoder.TextEncoder", _FakeEncoder)
    _csv(tmp_path)
    data = ["--dataset", str(tmp_path / "ratings.csv"), "--columns", "user=uid,item=mid,time=ts",
            "--items", str(tmp_path / "items.csv")]
    out = tmp_path / "ft"
    argv = ["train", "textfusion", *data, "--init", str(pre_dir), "--out", str(out), "--epochs", "1",
            "--threads", "1", "--quiet", "--set", "trainer.max_len=10", "--set", "trainer.window_stride=10"]
    assert main(argv) == 0
    capsys.readouterr()
    fine_tuned = textrec.load(out)
    rec = fine_tuned.pretraining
    assert rec["init"]["source"] == str(pre_dir) and len(rec["domains"]) == 2  # says what it started from
    chosen = rec["zero_shot"]["chosen"]  # --init brings the text term the sources chose
    assert fine_tuned.get_config()["text_term"] == rec["init"]["text_term"] == {"decay": chosen["decay"],
                                                                                "shrink": chosen["shrink"]}
    no_term = [a if a != str(out) else str(tmp_path / "ft0") for a in argv] + ["--set", "options.text_term=null"]
    assert main(no_term) == 0
    assert textrec.load(tmp_path / "ft0").get_config()["text_term"] is None  # unless --set names it
    capsys.readouterr()
    # the target cannot be among the pretraining domains; --init is not a pretraining option
    assert main(["train", "textfusion", "--pretrain-on", "scientific,office", "--dataset", "office",
                 "--out", str(tmp_path / "x")]) == 2
    assert "target 'office'" in capsys.readouterr().err
    assert main(["train", "textfusion", "--pretrain-on", "office", "--init", str(pre_dir),
                 "--out", str(tmp_path / "x")]) == 2
    assert main(["train", "textfusion", "--out", str(tmp_path / "x")]) == 2
    assert "--dataset is required" in capsys.readouterr().err


def test_choose_zero_shot_rereads_the_recorded_domains_and_saves(pretrained, tmp_path, monkeypatch):
    import shutil

    from textrec.transfer_cli import main

    _, pre_dir = pretrained
    path = tmp_path / "pre"
    shutil.copytree(pre_dir, path)
    asked = []

    def fake_view(name, max_users=None, seed=0):
        asked.append((name, max_users, seed))
        return _views()[len(asked) - 1]

    monkeypatch.setattr("textrec.models.transfer.domain_view", fake_view)
    monkeypatch.setattr("textrec.models.fusion.TextFusionRec.embed",
                        lambda self, texts, progress=False: bag_of_words(list(texts)))
    assert main(["--choose-zero-shot", str(path), "--quiet", "--threads", "1"]) == 0
    assert [a[0] for a in asked] == ["planted", "planted"]
    rec = textrec.load(path).pretraining
    assert rec["zero_shot"]["chosen"]["decay"] in ZS_DECAYS and "zero_shot_cpu_seconds" in rec
    # leave-one-domain-out: a probe folder that never saw the held-out domain chooses the settings
    probe = textrec.load(pre_dir)
    probe.pretraining = {**probe.pretraining, "domains": [{"name": "elsewhere", "users": 1, "items": 1, "events": 1}]}
    probe.save_pretrained(tmp_path / "probe")
    asked.clear()
    assert main(["--choose-zero-shot", str(path), "--probe", str(tmp_path / "probe"), "--held-out", "planted",
                 "--quiet", "--threads", "1"]) == 0
    rec = textrec.load(path).pretraining
    assert rec["zero_shot"]["on"].startswith("leave-one-domain-out") and rec["zero_shot"]["probe"]["domains"] == [
        "elsewhere"]
    with pytest.raises(ValueError, match="--held-out must name"):
        main(["--choose-zero-shot", str(path), "--probe", str(tmp_path / "probe"), "--held-out", "office",
              "--quiet", "--threads", "1"])


@pytest.mark.parametrize("loss", ["inbatch", "sampled"])
def test_domain_batches_keep_every_step_and_its_negatives_inside_one_domain(loss, monkeypatch):
    from textrec.models.fusion import TextFusionModule

    torch.set_num_threads(1)
    merged, offsets = TrainView.concat(_views())
    model = _model(id_residual=False, trainer={**SMALL["trainer"], "epochs": 2, "loss": loss, "negatives": 8,
                                               "domain_batches": True, "batch_size": 16})
    seen: list[tuple[int, int]] = []
    real = TextFusionModule.represent

    def spy(self, items):
        seen.append((int(items.min()), int(items.max())))
        return real(self, items)

    monkeypatch.setattr(TextFusionModule, "represent", spy)
    model.pretrain(_views(), progress=False)
    assert seen
    domain = lambda i: int(np.searchsorted(offsets, i, side="right")) - 1  # noqa: E731
    assert all(domain(lo) == domain(hi) for lo, hi in seen)  # inputs, targets and negatives of one domain
    assert {domain(lo) for lo, _ in seen} == {0, 1}
    # valid rows are ranked within their own domain's catalog
    from textrec.models.seq_trainer import _ModuleScorer

    scorer = _ModuleScorer(model.module, 10, "m", 64, item_domains=offsets)
    s = scorer.score(np.array([0, 1]), [np.array([1, 2]), np.array([int(offsets[1]) + 3])])
    assert torch.isinf(s[0, offsets[1]:]).all() and torch.isfinite(s[0, :offsets[1]]).all()
    assert torch.isinf(s[1, :offsets[1]]).all() and torch.isfinite(s[1, offsets[1]:]).all()


def test_text_whiten_whitens_each_domain_on_its_own_and_warm_start_keeps_it(pretrained):
    merged, offsets = TrainView.concat(_views())
    model = _model(text_whiten=0.1)
    emb = bag_of_words(merged.item_text)
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    out = model.whiten(emb, offsets)
    for a, b in zip(offsets[:-1], offsets[1:]):
        assert np.allclose(out[a:b], whiten_text(emb[a:b], 0.1), atol=1e-6)
    assert np.allclose(_model().whiten(emb, offsets), emb)  # the default reads raw vectors
    _, path = pretrained
    pre = textrec.load(path)
    pre.text_whiten = 0.5
    assert _model().warm_start(pre).text_whiten == 0.5


def test_a_whitened_model_adds_items_through_its_own_whitening_after_a_reload(tmp_path):
    torch.set_num_threads(1)
    view = _views()[0]
    model = _model(text_whiten=0.1, trainer={**SMALL["trainer"], "epochs": 1}).fit(view, progress=False)
    emb = bag_of_words(view.item_text)
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    assert np.allclose(model.module.text_emb.numpy(), whiten_text(emb, 0.1), atol=1e-5)
    model.save_pretrained(tmp_path / "m")
    loaded = textrec.load(tmp_path / "m")
    loaded.text_embedder = bag_of_words
    new = loaded.add_items([view.item_text[3]], ids=["new-item"])
    # a copy of item 3's text is whitened exactly as item 3 was
    assert torch.allclose(loaded.module.text_emb[new[0]], loaded.module.text_emb[3], atol=1e-5)


def test_bench_adds_a_whitened_scratch_control_for_a_whitened_pretrained_model(pretrained, tmp_path):
    import argparse

    from textrec.benchmarks.transfer import PRETRAINED, SCRATCH_WH, TEXT_TERM, Harness, run_subset, summarise

    _, path = pretrained
    pre = textrec.load(path)
    pre.text_embedder, pre.text_whiten = bag_of_words, 0.1
    split = leave_one_out(_planted(n_items=24, n_users=40, seed=2))
    recipe = {"model": "TextFusionRec", "backbone": SMALL["backbone"], "trainer": {**SMALL["trainer"], "epochs": 1},
              "options": {k: v for k, v in SMALL.items() if k not in ("backbone", "trainer", "ease_lam")}}
    args = argparse.Namespace(recipe=recipe, epochs=1, epochs_full_equiv=None, ease_grid=[5.0], quiet=True)
    h = Harness(split, args, tmp_path / "part.json", text_embedder=bag_of_words)
    run_subset(h, pre, "pre", 0.1, 0, ablation=False, curve=True)
    assert f"10% users, seed 0: {SCRATCH_WH}" in h.rows and f"10% users, seed 0: {SCRATCH_WH}{TEXT_TERM}" in h.rows
    curve, targets = summarise(h, [0.1])
    assert curve["10%"]["pretrained_minus_whitened_scratch_control_paired"]
    t = targets["10% users"]
    assert t["pretrained_over_control"] == round(curve["10%"][PRETRAINED]["mean"] / curve["10%"][SCRATCH_WH]["mean"], 3)


def test_pretraining_without_code_tables_lets_the_target_fit_its_own(tmp_path):
    torch.set_num_threads(1)
    pre = _model(n_subvectors=0, trainer={**SMALL["trainer"], "epochs": 1, "loss": "inbatch", "domain_batches": True})
    pretrain_views(pre, _views(), progress=False)
    assert pre.module.code_emb is None and pre.quantizer is None
    target = TrainView.from_split(leave_one_out(_planted(n_items=24, n_users=40, seed=2)), with_text=True)
    with pytest.raises(ValueError, match="no code tables to freeze"):
        _model().warm_start(pre, freeze=["codes"])
    model = _model(trainer={**SMALL["trainer"], "epochs": 1}).warm_start(pre).fit(target, progress=False)
    assert model.module.codes is not None and model.quantizer is not None  # the target's own quantizer
    assert model.pretraining["init"]["codes"] == "own"


def test_bench_rows_choose_the_learning_rate_on_valid_from_one_grid(pretrained, tmp_path):
    import argparse

    from textrec.benchmarks.transfer import PRETRAINED, SCRATCH, Harness, run_subset

    pre, _ = pretrained
    split = leave_one_out(_planted(n_items=24, n_users=40, seed=2))
    recipe = {"model": "TextFusionRec", "backbone": SMALL["backbone"], "trainer": {**SMALL["trainer"], "epochs": 1},
              "options": {k: v for k, v in SMALL.items() if k not in ("backbone", "trainer", "ease_lam")}}
    args = argparse.Namespace(recipe=recipe, epochs=1, epochs_full_equiv=None, ease_grid=[5.0], quiet=True,
                              fine_tune_lrs=[0.01, 0.0001], fine_tune_reinit=["adaptor"], fine_tune_freeze=None)
    h = Harness(split, args, tmp_path / "part.json", text_embedder=bag_of_words)
    run_subset(h, pre, "pre", 0.5, 0, ablation=False, curve=True)
    for name in (SCRATCH, PRETRAINED):
        tried = {lr: h.rows[f"50% users, seed 0: {name}, lr {lr:g}"] for lr in (0.01, 0.0001)}
        chosen = h.rows[f"50% users, seed 0: {name}"]
        best = max(tried, key=lambda lr: tried[lr]["valid"]["ndcg@10"])
        assert chosen["lr_chosen_on_valid"] == best and chosen["test"] == tried[best]["test"]
        assert np.array_equal(h.per_user[f"50% users, seed 0: {name}"], h.per_user[f"50% users, seed 0: {name}, lr {best:g}"])
    assert h.rows[f"50% users, seed 0: {PRETRAINED}"]["warm_start"] == {"reinit": ["adaptor"], "freeze": []}
    assert "warm_start" not in h.rows[f"50% users, seed 0: {SCRATCH}"]


def test_pretraining_takes_recipe_overrides_from_the_command_line(tmp_path, monkeypatch):
    from textrec import transfer_cli

    seen = {}

    def fake(domains, recipe, **kw):
        seen.update(recipe=recipe, domains=domains)
        raise SystemExit(0)

    monkeypatch.setattr("textrec.models.transfer.pretrain_textfusion", fake)
    with pytest.raises(SystemExit):
        transfer_cli.main(["--pretrain-on", "games,office", "--exclude", "scientific", "--set", "trainer.patience=50",
                           "--out", str(tmp_path / "p"), "--threads", "1"])
    assert seen["domains"] == ["games", "office"]
    assert seen["recipe"]["trainer"]["patience"] == 50 and seen["recipe"]["trainer"]["loss"] == "inbatch"


def test_plot_merges_result_files_and_draws_the_text_term_rows(tmp_path):
    from textrec.benchmarks.transfer import OWN_TERM, PRETRAINED, SCRATCH, TEXT_TERM
    from textrec.benchmarks.transfer_plot import collect, plot

    def row(v):
        return {"test": {"ndcg@10": v}}

    a = {"dataset": "d", "models": {f"10% users, seed 0: {SCRATCH}": row(0.05), f"10% users, seed 0: {PRETRAINED}": row(0.06),
                                    f"10% users, seed 0: {SCRATCH}{OWN_TERM}": row(0.07), "TextKNN": row(0.04)}}
    b = {"dataset": "d", "models": {f"10% users, seed 1: {SCRATCH}": row(0.07),
                                    f"100% users, seed 0: {PRETRAINED}{TEXT_TERM}": row(0.09)}}
    name, curves, flat = collect([a, b])
    assert name == "d" and curves[SCRATCH][0.1] == [0.05, 0.07] and flat == {"TextKNN": 0.04}
    assert plot([a, b], tmp_path / "p.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="several targets"):
        collect([a, {**b, "dataset": "e"}])
