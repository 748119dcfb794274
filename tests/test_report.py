"""`textrec report` and the load benchmark's synthetic catalog: built from small inputs, checked."""

from __future__ import annotations

import json

import numpy as np

from textrec.report import build_report, collect_rows, headline_rows


def _result(path, benchmark, dataset, models, **extra):
    path.write_text(json.dumps({"benchmark": benchmark, "dataset": dataset, "models": models, **extra}))


def test_report_selects_on_valid_and_writes_html_markdown_plots(tmp_path):
    res = tmp_path / "results"
    res.mkdir()
    hist = [{"epoch": e, "valid_ndcg@10": 0.01 * e} for e in range(1, 5)]
    _result(res / "baselines_toy.json", "baselines", "toy", {
        "Popularity": {"model": "Popularity", "valid": {"ndcg@10": 0.02}, "test": {"ndcg@10": 0.03, "tail_share@10": 0.0}},
        "EASE (refit train+valid)": {"model": "EASE (refit train+valid)", "test": {"ndcg@10": 0.9}},
        "SASRec": {"model": "SASRec", "valid": {"ndcg@10": 0.05}, "test": {"ndcg@10": 0.06, "tail_share@10": 0.2},
                   "training_history": hist}})
    # an engine file with two rows: the one best on VALID is shown, even though the other wins on test
    _result(res / "engine_toy.json", "engine", "toy", {
        "a": {"model": "A", "valid": {"ndcg@10": 0.08}, "test": {"ndcg@10": 0.04, "tail_share@10": 0.3}},
        "b": {"model": "B", "valid": {"ndcg@10": 0.01}, "test": {"ndcg@10": 0.50, "tail_share@10": 0.1}}},
        codes={"codes": {"n_distinct_codes": 90, "collision_rate": 0.1, "mean_entropy_norm": 0.8}})
    (res / "vqrec_toy.json").write_text(json.dumps({"dataset": "toy", "codes": {"codes": {
        "n_distinct_codes": 90, "collision_rate": 0.1, "mean_entropy_norm": 0.8}}}))
    (res / "broken.json").write_text("{not json")
    rows = collect_rows(res)
    assert not any("refit" in r.label for r in rows)
    head = headline_rows(rows)["toy"]
    assert {r.label for r in head} == {"Popularity", "SASRec", "A"}
    html, md = build_report(res, tmp_path / "out")
    text = md.read_text()
    assert "| engine_toy: A | engine | 0.0800 | 0.0400 |" in text
    # the same model as eval/README.md: every result of record with its headline (chosen on valid)
    assert "## Results of record" in text and "| Other results | toy | engine_toy.json | engine | A: test NDCG@10 0.0400 |" in text
    for png in ("accuracy_toy.png", "popularity.png", "curves_toy.png", "vqrec_codes.png"):
        assert (tmp_path / "out" / png).stat().st_size > 1000, png
        assert png in html.read_text()


def test_synthetic_catalog_served_through_faiss(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "eval"))
    from load_bench import synthetic_artifact

    from textrec.serve.backends import ServedArtifact

    folder = synthetic_artifact(500, tmp_path / "syn", dim=16)
    full = ServedArtifact.load(folder)
    faiss = ServedArtifact.load(folder, faiss_min_items=100)
    assert full.ranking == "full" and faiss.ranking == "index-scan"
    hist = full.catalog.indices(["s1", "s7", "s42"])
    a = [r.index for r in full.recommend(hist, 10)]
    b = [r.index for r in faiss.recommend(hist, 10)]
    assert a == b and not set(a) & set(hist.tolist())
    assert np.isclose(full.recommend(hist, 1)[0].score, faiss.recommend(hist, 1)[0].score, atol=1e-5)
