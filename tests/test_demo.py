"""`textrec demo` end to end at one epoch: every step runs, TextFusion takes a new movie from its text,
and the printed command serves what it saved."""

from __future__ import annotations

import shlex

import pytest


@pytest.mark.slow
def test_demo_one_epoch_ends_with_a_working_serve_command(tmp_path, capsys):
    pytest.importorskip("recbole", reason="ML-100K ships in the recbole wheel (pip install --no-deps recbole)")
    from fastapi.testclient import TestClient

    from textrec.demo import NEW_MOVIE, demo
    from textrec.serve.app import create_app
    from textrec.serve.cli import load_artifacts

    result = demo(out_dir=str(tmp_path / "demo"), threads=1, epochs=1)
    out = capsys.readouterr().out
    last = out.strip().splitlines()[-1]
    assert last == result["serve_command"] and " textrec serve " in last
    assert set(result["models"]) == {"Popularity", "EASE", "SASRec", "TextFusion"}
    assert 0 <= result["models"]["TextFusion"]["test"]["ndcg@10"] <= 1
    new = result["new_item"]
    assert new["rank"] >= 1 and new["calibrated"] and result["query"]["method"] == "raw-history"
    # the calibrated score sits among the user's warm-item scores (or just above the best one)
    assert new["warm_min"] <= new["score"] <= new["warm_max"] + (new["warm_max"] - new["warm_min"])
    assert "TextFusion" in out and "added to TextFusion" in out
    dirs = [a for a in shlex.split(last) if a.startswith(str(tmp_path))]
    client = TestClient(create_app(load_artifacts(dirs)))
    health = client.get("/health").json()["models"]
    assert [m["name"] for m in health] == ["ml-100k-textfusion", "ml-100k-sasrec"]
    assert health[0]["capabilities"]["add_items"] and not health[0]["capabilities"]["explain"]
    assert health[0]["n_items"] == 1683  # the demo's new movie was written into the artifact
    r = client.post("/recommend", json={"history": [NEW_MOVIE["item_id"], "1"], "k": 3})
    assert r.status_code == 200 and len(r.json()["items"]) == 3
