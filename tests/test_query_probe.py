"""``textrec bench query-probe``: the candidate queries about different items, and its registration."""

from types import SimpleNamespace

import numpy as np

from textrec.benchmarks.query_probe import ROUND2, candidates, meta_fields, title_choosers


def _task(titles, history):
    return SimpleNamespace(context=list(titles), history=np.asarray(history), target=0)


def test_candidates_name_different_items_and_stay_within_the_budget():
    titles = ["old red lab beaker set glass", "digital scale for grams", "nitrile gloves large box of one hundred"]
    c = candidates(_task(titles, [5, 6, 7]), None, None, budget=4)
    assert set(ROUND2) <= set(c)
    assert c["last_title"] == ("nitrile gloves large box", [0])
    assert c["item2"] == ("digital scale for grams", [1])
    assert c["item3"] == ("old red lab beaker", [2])
    assert c["item4"] == ("", []) and c["item5"] == ("", [])  # history too short: no query, never a wrong one
    assert c["pair12"] == ("nitrile gloves digital scale", [0, 1])
    assert all(len(q.split()) <= 4 for q, _ in c.values())
    assert "cat1" not in c  # no item metadata: no category candidates


def test_category_and_brand_candidates_read_the_item_metadata():
    meta = [meta_fields(d) for d in ["Beaker. Industrial & Scientific Lab Glassware. Pyrex.",
                                     "Scale. Industrial & Scientific Lab Scales. Ohaus.",
                                     "Flask. Industrial & Scientific Lab Glassware. Pyrex."]]
    assert meta[0] == ("Lab Glassware", "Pyrex")
    c = candidates(_task(["Beaker", "Scale", "Flask"], [0, 1, 2]), None, meta, budget=8)
    assert c["cat1"][0] == "Lab Glassware"  # the newest item's (Flask) category
    assert c["catdom"] == ("Lab Glassware", [0, 2])  # positions counted from the newest
    assert c["branddom"][0] == "Pyrex Flask"


def test_title_chooser_finds_a_learnable_choice_and_not_an_unlearnable_one():
    from sklearn.model_selection import KFold

    rng = np.random.default_rng(0)
    n = 400
    # the newest title's length decides which of two kinds wins: a chooser on shape features learns it
    tasks, cands, rew = [], [], np.zeros((n, 2))
    for i in range(n):
        long = bool(rng.integers(2))
        newest = "gloves " * (6 if long else 1)
        tasks.append(_task(["a b", newest.strip()], [1, 2]))
        cands.append({"last_title": ("x", [0]), "last_two_titles": ("y", [0, 1])})
        rew[i] = [1.0, 0.0] if long else [0.0, 1.0]
    folds = list(KFold(5, shuffle=True, random_state=0).split(np.arange(n)))
    got = title_choosers(tasks, cands, rew, folds)
    assert got["cv_title_chooser_shape_features"] > 0.95  # the constant scores about 0.5
    noise = rng.random((n, 2))
    assert title_choosers(tasks, cands, noise, folds)["cv_title_chooser_shape_features"] < noise.max(1).mean()


def test_registered_as_a_benchmark():
    from textrec.cli import BENCHMARKS

    assert BENCHMARKS["query-probe"].module == "textrec.benchmarks.query_probe"
