"""`textrec bench baselines` end to end on a tiny dataset: JSON written, grid override recorded."""

import json

import numpy as np

from textrec.bench import bench_baselines


def test_bench_baselines_writes_json_with_grid_override(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "tiny"
    data.mkdir()
    lines = []
    for u in range(1, 41):
        start = int(rng.integers(1, 30))
        lines.append(" ".join([str(u)] + [str((start + t) % 30 + 1) for t in range(6)]))
    (data / "sequential_data.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (data / "datamaps.json").write_text(json.dumps({
        "user2id": {f"U{u}": str(u) for u in range(1, 41)},
        "item2id": {f"I{i}": str(i) for i in range(1, 31)}}), encoding="utf-8")
    out = tmp_path / "results"
    bench_baselines(dataset=str(data), models=["Popularity", "EASE"], out_dir=str(out), threads=1,
                    grids={"EASE": {"lam": [10.0, 100.0]}}, progress=False)
    (path,) = list(out.glob("baselines_*.json"))
    res = json.loads(path.read_text())
    assert res["grid_overrides"] == {"EASE": {"lam": [10.0, 100.0]}}
    assert set(res["models"]) == {"Popularity", "EASE"}
    tried = {row["params"]["lam"] for row in res["models"]["EASE"]["tuning"]}
    assert {10.0, 100.0} <= tried  # the override replaced the default grid (widening may add more)
    assert res["models"]["EASE"]["test"]["ndcg@10"] > res["models"]["Popularity"]["test"]["ndcg@10"]


def test_bench_adds_registry_model_rows_to_an_existing_table(tmp_path):
    import pytest

    data = tmp_path / "tiny"
    data.mkdir()
    rng = np.random.default_rng(1)
    lines = [" ".join([str(u)] + [str((int(rng.integers(1, 30)) + t) % 30 + 1) for t in range(6)])
             for u in range(1, 41)]
    (data / "sequential_data.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (data / "datamaps.json").write_text(json.dumps({
        "user2id": {f"U{u}": str(u) for u in range(1, 41)},
        "item2id": {f"I{i}": str(i) for i in range(1, 31)}}), encoding="utf-8")
    out = tmp_path / "results"
    bench_baselines(dataset=str(data), models=["Popularity", "EASE"], out_dir=str(out), threads=1, progress=False)
    (path,) = list(out.glob("baselines_*.json"))
    before = json.loads(path.read_text())
    vae = {"MultVAE": {"hidden": [[16]], "latent": [4], "epochs": [3], "anneal_cap": [0.2]}}
    bench_baselines(dataset=str(data), models=["MultVAE"], out_dir=str(out), threads=1, progress=False,
                    grids=vae, add_to=path)
    after = json.loads(path.read_text())
    assert set(after["models"]) == {"Popularity", "EASE", "MultVAE"}
    assert after["models"]["EASE"] == before["models"]["EASE"] and after["date"] == before["date"]
    assert after["split"] == before["split"]
    assert after["models"]["MultVAE"]["params"]["anneal_cap"] == 0.2
    assert "tuning" not in after["models"]["MultVAE"]  # one grid point: no selection fit
    assert after["added_rows"]["MultVAE"]["grid_overrides"] == vae
    assert "MultVAE" in (out / path.name.replace(".json", ".md")).read_text()
    other = dict(before, seed=7)
    path.write_text(json.dumps(other))
    with pytest.raises(ValueError, match="seed"):
        bench_baselines(dataset=str(data), models=["MultVAE"], out_dir=str(out), threads=1, progress=False,
                        grids=vae, add_to=path)
    with pytest.raises(ValueError, match="unknown model"):
        bench_baselines(dataset=str(data), models=["NoSuchModel"], out_dir=str(out), add_to=path)
