"""The small-data toolbox models: Mult-VAE / Mult-DAE (tiny synthetic data, seconds each)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from textrec.data import RecDataset
from textrec.data.splits import leave_one_out
from textrec.evaluation import evaluate, run_protocol
from textrec.models.base import Recommender
from textrec.models.baselines import Popularity

torch.set_num_threads(1)


def _clustered(n_users: int = 200, n_clusters: int = 4, per_cluster: int = 10, length: int = 8, seed: int = 0):
    """Users pick items inside one cluster (skewed cluster sizes): co-occurrence is the signal."""
    rng = np.random.default_rng(seed)
    probs = np.array([0.4, 0.3, 0.2, 0.1])[:n_clusters]
    rows = []
    for u in range(n_users):
        c = rng.choice(n_clusters, p=probs / probs.sum())
        items = rng.choice(per_cluster, size=length, replace=False)
        for t, i in enumerate(items):
            rows.append((f"u{u}", f"i{c * per_cluster + i}", float(t)))
    ds = RecDataset.from_frames("clustered", pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]))
    return leave_one_out(ds)


@pytest.fixture(scope="module")
def split():
    return _clustered()


# ---- Mult-VAE / Mult-DAE -------------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted_vaes(split):
    from textrec.models.vae import MultDAE, MultVAE

    small = dict(hidden=[32], latent=8, epochs=30, batch_size=32, lr=3e-3, patience=30)
    out = {}
    for cls in (MultVAE, MultDAE):
        model = cls(anneal_epochs=5, anneal_cap=0.3, **small)
        out[cls.name] = (model, run_protocol(model, split, progress=False))
    return out


def test_vae_and_dae_beat_popularity_on_clustered_data(split, fitted_vaes):
    pop = run_protocol(Popularity(), split, progress=False).test.metrics["ndcg@10"]
    for name, (model, res) in fitted_vaes.items():
        assert res.test.metrics["ndcg@10"] > pop + 0.05, name
        assert model.best_epoch is not None


def test_vae_kl_annealing_reaches_cap_and_dae_has_none(fitted_vaes):
    vae, _ = fitted_vaes["MultVAE"]
    betas = [h["beta"] for h in vae.history]
    assert betas == sorted(betas) and max(betas) == pytest.approx(0.3) and betas[0] < 0.3
    dae, _ = fitted_vaes["MultDAE"]
    assert all(h["beta"] == 0.0 for h in dae.history)


def test_vae_single_run_cap_search_stops_at_the_valid_peak(split):
    from textrec.models.base import TrainView
    from textrec.models.vae import MultVAE

    model = MultVAE(hidden=[32], latent=8, epochs=40, batch_size=32, lr=3e-3, patience=2, anneal_cap=1.0,
                    anneal_epochs=100, stop_during_anneal=True)
    model.fit(TrainView.from_split(split), progress=False)
    hist = model.history
    # stopped long before beta reached its cap, two evaluations after the valid peak
    assert len(hist) < 40 and hist[-1]["beta"] < 1.0
    assert len(hist) == model.best_epoch + 2
    assert model.best_beta == hist[model.best_epoch - 1]["beta"] > 0
    assert max(h["valid_ndcg@10"] for h in hist) == hist[model.best_epoch - 1]["valid_ndcg@10"]
    assert model.get_config()["stop_during_anneal"] is True


def test_vae_folds_in_any_history(split, fitted_vaes):
    model, _ = fitted_vaes["MultVAE"]
    # two unseen users whose histories sit in different clusters rank their own cluster first
    s = model.score(np.array([-1, -1]), [np.array([0, 1, 2]), np.array([30, 31, 32])])
    assert s.shape == (2, split.n_items)
    item_ids = split.dataset.item_ids
    top_a = {int(item_ids[i][1:]) // 10 for i in torch.topk(s[0], 5).indices.tolist()}
    assert s[0].argmax() != s[1].argmax() and len(top_a) <= 2
    # scoring is deterministic (the mean is decoded, dropout is off)
    assert torch.equal(s, model.score(np.array([-1, -1]), [np.array([0, 1, 2]), np.array([30, 31, 32])]))
    assert model.score(np.array([0]), [np.array([], dtype=np.int64)]).shape == (1, split.n_items)


def test_vae_save_load_identical_scores(tmp_path, split, fitted_vaes):
    from textrec.registry import model_class

    hists = split.test.histories()[:20]
    users = split.test.users[:20]
    for name, (model, _) in fitted_vaes.items():
        model.save_pretrained(tmp_path / name)
        loaded = Recommender.from_pretrained(tmp_path / name)
        assert type(loaded) is model_class(name)
        assert torch.equal(model.score(users, hists), loaded.score(users, hists))
        before = evaluate(model, split.test, split.n_items).metrics
        assert evaluate(loaded, split.test, split.n_items).metrics == before


def test_vae_is_seeded_and_buildable_by_bench(split):
    from textrec.bench import make_model
    from textrec.models.vae import MultVAE

    a = make_model("MultVAE", {"hidden": [16], "latent": 4, "epochs": 3}, seed=3)
    assert isinstance(a, MultVAE) and a.seed == 3
    b = make_model("MultVAE", {"hidden": [16], "latent": 4, "epochs": 3}, seed=3)
    from textrec.models.base import TrainView

    view = TrainView.from_split(split)
    h = split.valid.histories()[:5]
    assert torch.equal(a.fit(view, progress=False).score(split.valid.users[:5], h),
                       b.fit(view, progress=False).score(split.valid.users[:5], h))
    with pytest.raises(ValueError, match="unknown model"):
        make_model("NoSuchModel")


@pytest.mark.parametrize("kwargs", [{"dropout": 1.0}, {"latent": 0}, {"anneal_cap": -0.1}, {"epochs": 0}])
def test_vae_rejects_bad_settings(kwargs):
    from textrec.models.vae import MultVAE

    with pytest.raises(ValueError):
        MultVAE(**kwargs)


def test_vae_unfitted_raises():
    from textrec.models.vae import MultDAE

    with pytest.raises(RuntimeError, match="not fitted"):
        MultDAE().score(np.array([0]), [np.array([1])])


# ---- ID tables -----------------------------------------------------------------------------
def test_hash_buckets_deterministic_in_range_and_defined_for_new_ids():
    from textrec.models.id_table import hash_buckets

    a = hash_buckets(np.arange(1000), 250, seed=1)
    assert a.min() >= 0 and a.max() < 250
    assert np.array_equal(a, hash_buckets(np.arange(1000), 250, seed=1))
    assert not np.array_equal(a, hash_buckets(np.arange(1000), 250, seed=2))
    # ids beyond the catalog hash without growing anything; old ids keep their bucket
    b = hash_buckets(np.arange(1500), 250, seed=1)
    assert np.array_equal(b[:1000], a)
    # roughly uniform: no bucket holds more than 3x its fair share
    assert np.bincount(a, minlength=250).max() <= 12


def test_collision_report_hand_case_and_collision_free_zeros():
    from textrec.models.id_table import collision_report

    pop = np.array([1, 2, 3, 100])
    # items 0 and 3 share bucket 0; items 1 and 2 are alone
    rows = collision_report(np.array([0, 1, 2, 0]), pop, n_deciles=4)
    assert [r["item_collision_rate"] for r in rows] == [1.0, 0.0, 0.0, 1.0]
    assert rows[0]["foreign_mass"] == pytest.approx(100 / 101, abs=1e-4)  # the rare item learns the popular one
    assert rows[3]["foreign_mass"] == pytest.approx(1 / 101, abs=1e-4)
    free = collision_report(np.arange(4), pop, n_deciles=2)
    assert all(r["item_collision_rate"] == 0 and r["foreign_mass"] == 0 for r in free)
    with pytest.raises(ValueError):
        collision_report(np.arange(3), pop)


def test_make_id_table_kinds():
    from textrec.models.id_table import HashedIdTable, make_id_table

    assert isinstance(make_id_table(10, 4), torch.nn.Embedding)
    h = make_id_table(100, 4, kind="hashed", size=0.25)
    assert isinstance(h, HashedIdTable) and h.n_buckets == 25 and h.weight.shape == (100, 4)
    with pytest.raises(ValueError, match="unknown id table"):
        make_id_table(10, 4, kind="bloom")


SASREC_SMALL = dict(hidden=16, layers=1, heads=1, ff=32, dropout=0.1, attn_dropout=0.1, max_len=10,
                    epochs=4, batch_size=32, patience=5)


def test_sasrec_hashed_table_ties_colliding_items_and_round_trips(split, tmp_path):
    from textrec.models.sasrec import SASRec

    model = SASRec(id_table={"kind": "hashed", "size": 0.25, "seed": 0}, **SASREC_SMALL)
    run_protocol(model, split, progress=False)
    buckets = model.module.items.buckets.numpy()
    assert model.module.items.n_buckets == int(np.ceil(split.n_items * 0.25))
    s = model.score(split.test.users[:8], split.test.histories()[:8])
    b0 = int(np.bincount(buckets).argmax())  # a bucket with several items
    same = np.flatnonzero(buckets == b0)
    assert len(same) > 1 and torch.equal(s[:, same[0]], s[:, same[1]])
    model.save_pretrained(tmp_path / "hashed")
    loaded = Recommender.from_pretrained(tmp_path / "hashed")
    assert loaded.id_table == {"kind": "hashed", "size": 0.25, "seed": 0}
    assert torch.equal(s, loaded.score(split.test.users[:8], split.test.histories()[:8]))


def test_sasrec_default_table_is_collision_free_and_unchanged():
    from textrec.models.sasrec import SASRec

    m = SASRec(**SASREC_SMALL)
    module = m._build(30)
    assert isinstance(module.items, torch.nn.Embedding) and module.items.weight.shape == (30, 16)
    assert "id_table" not in m.get_config() and "items.weight" in module.state_dict()


# ---- multi-persona users -------------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted_persona(split):
    from textrec.models.persona import PersonaRec

    model = PersonaRec(n_personas=3, **SASREC_SMALL)
    return model, run_protocol(model, split, progress=False)


def test_persona_learns_and_scores_full_catalog(split, fitted_persona):
    model, res = fitted_persona
    pop = run_protocol(Popularity(), split, progress=False).test.metrics["ndcg@10"]
    assert res.test.metrics["ndcg@10"] > pop
    s = model.score(split.test.users[:4], split.test.histories()[:4])
    assert s.shape == (4, split.n_items) and torch.isfinite(s).all()


def test_persona_recommendations_name_persona_and_history_items(split, fitted_persona):
    model, _ = fitted_persona
    hist = split.test.history(0)
    recs = model.recommend_with_personas(hist, k=5)
    idx, vals = model.recommend(hist, k=5)
    assert [r["item"] for r in recs] == idx.tolist()
    assert [r["score"] for r in recs] == pytest.approx(vals.tolist(), abs=1e-5)
    window = set(hist[-model.trainer_config.max_len:].tolist())
    for r in recs:
        assert 0 <= r["persona"] < 3 and r["item"] not in set(hist.tolist())
        assert r["persona_weight"] == max(r["persona_weights"])
        assert sum(r["persona_weights"]) == pytest.approx(1.0, abs=1e-3)
        assert r["because_of"] and {b["item"] for b in r["because_of"]} <= window
        weights = [b["weight"] for b in r["because_of"]]
        assert weights == sorted(weights, reverse=True)
    one = model.explain_recommendation(hist, recs[0]["item"])
    assert one == recs[0]
    summary = model.persona_summary(hist)
    assert len(summary) == 3 and all(s["items"] for s in summary)
    with pytest.raises(ValueError):
        model.explain_recommendation(hist, split.n_items)


def test_persona_round_trip_and_recipe(split, fitted_persona, tmp_path):
    from textrec.models.persona import PersonaRec
    from textrec.registry import model_class

    model, _ = fitted_persona
    model.save_pretrained(tmp_path / "p")
    loaded = Recommender.from_pretrained(tmp_path / "p")
    assert type(loaded) is model_class("PersonaRec") and loaded.n_personas == 3
    h = split.test.histories()[:6]
    assert torch.equal(model.score(split.test.users[:6], h), loaded.score(split.test.users[:6], h))
    r = PersonaRec.from_recipe("sasrec", n_personas=2, max_epochs=1)
    assert r.n_personas == 2 and r.trainer_config.epochs == 1
    with pytest.raises(ValueError):
        PersonaRec(n_personas=0)


def test_persona_named_in_recommend_ids_and_cli(split, fitted_persona, tmp_path, capsys):
    import json

    from textrec.cli import main

    model, _ = fitted_persona
    hist = split.test.history(0)
    hist_ids = [model.catalog.id(i) for i in hist]
    expected = model.recommend_with_personas(hist, k=4)
    rows = model.recommend_ids(history_ids=hist_ids, k=4)
    assert [r["id"] for r in rows] == [model.catalog.id(e["item"]) for e in expected]
    for r, e in zip(rows, expected):
        assert r["persona"] == e["persona"] and r["persona_weight"] == e["persona_weight"]
        assert [b["id"] for b in r["because_of"]] == [model.catalog.id(b["item"]) for b in e["because_of"]]
        assert {b["id"] for b in r["because_of"]} <= set(hist_ids)

    model.save_pretrained(tmp_path / "p")
    assert main(["recommend", "--model", str(tmp_path / "p"), "--history", *hist_ids, "--k", "4", "--json"]) == 0
    cli_rows = json.loads(capsys.readouterr().out)
    assert [r["item_id"] for r in cli_rows] == [r["id"] for r in rows]
    assert [r["persona"] for r in cli_rows] == [r["persona"] for r in rows]
    assert [[b["item_id"] for b in r["because_of"]] for r in cli_rows] == \
        [[b["id"] for b in r["because_of"]] for r in rows]
    assert main(["recommend", "--model", str(tmp_path / "p"), "--history", *hist_ids, "--k", "4"]) == 0
    text = capsys.readouterr().out
    lines = [ln for ln in text.splitlines() if "persona" in ln]
    assert len(lines) == 4 and f"[{rows[0]['because_of'][0]['id']}]" in lines[0]
    assert f"persona {rows[0]['persona']} " in lines[0]


# ---- GHRS side-information cold start --------------------------------------------------------
def _attribute_world(n_users: int = 160, n_items: int = 40, seed: int = 0):
    """Two user groups (attribute 0/1) each prefer one item genre (genre 0/1); items alternate genres."""
    rng = np.random.default_rng(seed)
    group = np.arange(n_users) % 2
    genre = np.arange(n_items) % 2
    rows = []
    for u in range(n_users):
        liked = np.flatnonzero(genre == group[u])
        # a few globally popular items of the other genre too, so Popularity is a real rival
        other = np.flatnonzero(genre != group[u])[:3]
        for t, i in enumerate(np.concatenate([rng.choice(liked, 6, replace=False), rng.choice(other, 1)])):
            rows.append((u, int(i), float(t)))
    train = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    train["row"] = np.arange(len(train))
    user_side = np.eye(2, dtype=np.float32)[group]
    item_side = np.eye(2, dtype=np.float32)[genre]
    return train, user_side, item_side, group, genre


def test_graph_features_shape_range_and_isolated_nodes():
    from textrec.models.ghrs import graph_features

    x = np.zeros((6, 5), np.float32)
    x[:5, :3] = 1.0
    x[:2, 3] = 1.0
    f = graph_features(x, quantile=0.0)
    assert f.shape == (6, 5) and f.min() >= 0 and f.max() <= 1.0
    assert np.all(f[5] == 0)  # a node without events has no graph features


def test_ghrs_scores_new_users_by_attributes_and_new_items_by_neighbours(tmp_path):
    from textrec.data.splits import EvalSet
    from textrec.models.base import TrainView
    from textrec.models.ghrs import GHRS

    train, user_side, item_side, group, genre = _attribute_world()
    new_users = np.arange(140, 160)
    new_items = np.array([38, 39])  # one of each genre, held out of training
    keep = ~np.isin(train["user"], new_users) & ~np.isin(train["item"], new_items)
    view = TrainView(train=train[keep].reset_index(drop=True), valid=EvalSet.from_lists([], [], []),
                     n_users=160, n_items=40)
    model = GHRS(n_clusters=4, ae_epochs=200, history_weight=0.0).set_side_info(user_side, item_side)
    model.fit(view, progress=False)
    s = model.score(new_users, [np.zeros(0, np.int64)] * len(new_users))
    assert s.shape == (20, 40)
    # attributes alone place a new user: their held-out items rank better than under Popularity
    held = train[np.isin(train["user"], new_users) & ~np.isin(train["item"], new_items)]
    targets = [held.loc[held["user"] == u, "item"].unique() for u in new_users]
    rows = EvalSet.from_lists(new_users, [np.zeros(0, np.int64)] * len(new_users), targets)
    pop = Popularity().fit(view, progress=False)
    assert evaluate(model, rows, 40).metrics["ndcg@10"] > evaluate(pop, rows, 40).metrics["ndcg@10"] + 0.05
    # a new item is ranked above the other genre's new item for users of its genre
    assert (s[group[new_users] == 0, 38] > s[group[new_users] == 0, 39]).all()
    assert (s[group[new_users] == 1, 39] > s[group[new_users] == 1, 38]).all()
    model.save_pretrained(tmp_path / "g")
    loaded = Recommender.from_pretrained(tmp_path / "g")
    assert torch.equal(loaded.score(new_users, [np.array([0, 2])] * 20), model.score(new_users, [np.array([0, 2])] * 20))


def test_ghrs_side_info_is_optional_but_must_match():
    from textrec.models.ghrs import GHRS

    train, *_ = _attribute_world()
    from textrec.data.splits import EvalSet
    from textrec.models.base import TrainView

    view = TrainView(train=train, valid=EvalSet.from_lists([], [], []), n_users=160, n_items=40)
    graph_only = GHRS(n_clusters=2, ae_epochs=20).fit(view, progress=False)  # no side info: graph features only
    assert graph_only.score(np.array([0]), [np.array([1])]).shape == (1, 40)
    with pytest.raises(ValueError, match="side information has"):
        GHRS().set_side_info(np.zeros((3, 2)), np.zeros((40, 2))).fit(view, progress=False)


# ---- dimension sweep (textrec bench toolbox-dim-sweep) ---------------------------------------------
def test_dim_sweep_builds_both_engines_at_the_asked_size():
    from textrec.benchmarks.toolbox_dim_sweep import build_model

    sas = build_model("sasrec", 16, max_epochs=2, stride=50, seed=0, patience=3)
    assert (sas.backbone_config.hidden, sas.backbone_config.ff) == (16, 64)
    assert sas.trainer_config.patience == 3 and sas.trainer_config.epochs == 2
    tf = build_model("textfusion", 32, max_epochs=2, stride=50, seed=0)
    assert (tf.backbone_config.hidden, tf.backbone_config.ff) == (32, 128)
    # the sweep scores the sequential part alone: no tuned mix, which would not depend on the size
    assert tf.tune_mix is False and all(v == 0 for v in tf.mix.values())


def test_dim_sweep_standard_errors_match_hand_values():
    from textrec.benchmarks.toolbox_dim_sweep import standard_errors
    from textrec.evaluation import EvalResult

    pop = np.array([100.0, 50, 10, 5, 1])  # head (20%) = item 0
    ndcg = np.array([1.0, 0.0, 0.5, 0.0])
    topk = np.array([[0, 1], [0, 2], [3, 4], [0, 0]])
    res = EvalResult(metrics={}, n_rows=4, per_row={"ndcg@10": ndcg}, topk=topk)
    se = standard_errors(res, pop)
    assert se["ndcg@10_se"] == pytest.approx(np.std(ndcg, ddof=1) / 2, abs=1e-6)
    tail_per_list = np.array([0.5, 0.5, 1.0, 0.0])
    assert se["tail_share@10_se"] == pytest.approx(np.std(tail_per_list, ddof=1) / 2, abs=1e-6)
