"""The one result writer: metadata on every result, run folders by default, eval/results only when asked."""

import json
import os

import numpy as np
import pytest

from textrec.results import PUBLISHED, ResultWriter, default_run_dir, markdown_table, metadata_line

META = ("git_commit", "date", "machine", "threads", "command", "wall_seconds", "peak_rss_mb")


@pytest.fixture()
def in_tmp(tmp_path, monkeypatch):
    """Run from an empty folder holding a fake committed eval/results/."""
    monkeypatch.chdir(tmp_path)
    published = tmp_path / PUBLISHED
    published.mkdir(parents=True)
    (published / "baselines_x.json").write_text('{"keep": "me"}')
    (published / "other.json").write_text('{"untouched": true}')
    return tmp_path


def test_default_is_a_new_run_folder_with_metadata(in_tmp):
    with ResultWriter("demo", seed=3) as w:
        w.write_json("r.json", {"dataset": "x", "valid": {}, "test": {}})
        w.write_text("r.md", "| a |\n")
    assert w.out.resolve().parent == in_tmp / "runs" and w.out.name.startswith("demo-")
    rec = json.loads((w.out / "r.json").read_text())
    assert set(META) <= set(rec) and rec["seed"] == 3 and rec["dataset"] == "x"
    assert "torch" in rec["threads"]
    assert json.loads((in_tmp / PUBLISHED / "baselines_x.json").read_text()) == {"keep": "me"}
    assert default_run_dir("demo") != w.out  # a second run never reuses the folder


def test_publish_swaps_files_in_at_the_end_only(in_tmp):
    w = ResultWriter("bench", publish=True)
    w.write_json("baselines_x.json", {"new": 1})
    # during the run the committed file is untouched; the new one waits in a temporary folder
    assert json.loads((in_tmp / PUBLISHED / "baselines_x.json").read_text()) == {"keep": "me"}
    assert w.dir != w.out and w.dir.parent == w.out.parent
    w.finish()
    assert json.loads((in_tmp / PUBLISHED / "baselines_x.json").read_text())["new"] == 1
    assert json.loads((in_tmp / PUBLISHED / "other.json").read_text()) == {"untouched": True}
    assert not w.dir.exists() or w.dir == w.out
    assert not [p for p in in_tmp.joinpath("eval").iterdir() if p.name.startswith(".bench-")]


def test_a_failed_published_run_leaves_results_untouched(in_tmp, capsys):
    with pytest.raises(RuntimeError), ResultWriter("bench", publish=True) as w:
        w.write_json("baselines_x.json", {"partial": 1})
        raise RuntimeError("killed")
    assert json.loads((in_tmp / PUBLISHED / "baselines_x.json").read_text()) == {"keep": "me"}
    assert "left untouched" in capsys.readouterr().err and (w.dir / "baselines_x.json").is_file()


def test_bench_cli_writes_a_run_folder_and_publishes_only_when_asked(in_tmp, capsys):
    from textrec.cli import main

    data = in_tmp / "tiny.csv"
    rng = np.random.default_rng(0)
    rows = ["u,i,t"] + [f"u{u},i{int(rng.integers(20))},{t}" for u in range(30) for t in range(6)]
    data.write_text("\n".join(rows) + "\n")
    before = {p.name: p.read_text() for p in (in_tmp / PUBLISHED).iterdir()}
    argv = ["bench", "baselines", "--dataset", str(data), "--columns", "user=u,item=i,time=t",
            "--models", "Popularity", "MarkovChain", "--threads", "1", "--quiet", "--name", "baselines_x"]
    assert main(argv) == 0
    runs = list((in_tmp / "runs").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("baselines-")
    rec = json.loads((runs[0] / "baselines_x.json").read_text())
    assert set(META) <= set(rec) and rec["command"].startswith("textrec bench baselines")
    assert rec["threads"]["torch"] == 1 and set(rec["models"]) == {"Popularity", "MarkovChain"}
    assert "Command: `textrec bench baselines" in (runs[0] / "baselines_x.md").read_text()
    assert {p.name: p.read_text() for p in (in_tmp / PUBLISHED).iterdir()} == before
    assert main([*argv, "--publish"]) == 0
    assert set(json.loads((in_tmp / PUBLISHED / "baselines_x.json").read_text())["models"]) == {
        "Popularity", "MarkovChain"}
    assert (in_tmp / PUBLISHED / "other.json").read_text() == before["other.json"]


def test_unknown_model_fails_before_any_training(in_tmp, capsys):
    from textrec.cli import main

    assert main(["bench", "baselines", "--models", "Popularity", "Nope", "--threads", "1"]) == 2
    assert "unknown model(s) ['Nope']" in capsys.readouterr().err
    assert not (in_tmp / "runs").exists() or not any((in_tmp / "runs").iterdir())


def test_markdown_table_and_metadata_line():
    text = markdown_table([("A", {"x": 0.5, "y": {"z": 2}}), ("B", {"x": None})],
                          [("X", lambda r: r["x"], ".2f"), ("Z", lambda r: r["y"]["z"], "d")])
    assert text.splitlines() == ["| model | X | Z |", "|---|---|---|", "| A | 0.50 | 2 |", "| B |  |  |"]
    line = metadata_line({"date": "2026-11-28", "git_commit": "abc", "machine": "m", "threads": {"torch": 1},
                          "command": "textrec bench x"})
    assert "2026-11-28" in line and "`textrec bench x`" in line and "1 torch thread" in line
    assert metadata_line({"machine": "x86 torch threads 2", "threads": {"torch": 2}}).count("thread") == 1
    assert "contended" not in line and os.sep not in line


# ---- eval/README.md generated from eval/results -------------------------------------------------------
def test_committed_eval_readme_and_summary_are_up_to_date(capsys):
    from pathlib import Path

    from textrec.report import write_readme

    root = Path(__file__).resolve().parents[1]
    assert write_readme(root / "eval" / "results", check=True) == 0, capsys.readouterr().out


def test_generator_builds_tables_and_summary_from_json(tmp_path):
    from textrec.report import write_readme

    results = tmp_path / "eval" / "results"
    results.mkdir(parents=True)
    (tmp_path / "eval" / "notes").mkdir()
    (tmp_path / "eval" / "notes" / "vqrec.md").write_text("Why VQ-Rec trails here.\n")
    m = {"hr@10": 0.3, "recall@10": 0.3, "ndcg@10": 0.2, "mrr@10": 0.1}
    (results / "baselines_ml-100k.json").write_text(json.dumps({
        "benchmark": "baselines", "dataset": "ml-100k", "date": "2026-11-28", "command": "textrec bench baselines",
        "models": {"EASE": {"valid": m, "test": m, "train_seconds": 1.0, "inference_users_per_s": 10.0,
                            "params": {"lam": 100.0}},
                   "Popularity": {"valid": m, "test": {**m, "ndcg@10": 0.05}, "train_seconds": 0.0,
                                  "inference_users_per_s": 9.0, "params": {}}}}))
    (results / "vqrec_ml-100k.json").write_text(json.dumps({
        "benchmark": "vqrec_from_scratch", "dataset": "ml-100k", "split": {"kind": "leave_one_out"},
        "config": {}, "model": {"valid": m, "test": {**m, "ndcg@10": 0.25}, "train_seconds": 5.0}}))
    (results / "newbench_toy.json").write_text(json.dumps({"benchmark": "newbench", "dataset": "toy", "models": {
        "VAE": {"valid": m, "test": m}}, "targets": [{"target": "VAE beats EASE", "met": False, "detail": "0.2 vs 0.3"}]}))
    (results / "vqrec_ml-100k").mkdir()  # the folder of a result of record holds its parts
    (results / "vqrec_ml-100k" / "vqrec_ml-100k_try.json").write_text("{}")
    (tmp_path / "README.md").write_text("intro\n<!-- summary table: generated by `textrec results`; edit "
                                        "textrec/results_readme.py -->\nold\n<!-- end of summary table -->\nend\n")
    assert write_readme(results, check=True) == 1  # nothing generated yet
    assert write_readme(results) == 0
    page = (tmp_path / "eval" / "README.md").read_text()
    # the report: the notes' lead and one row per result of record, its headline chosen on valid
    assert "Why VQ-Rec trails here." in page and "[`vqrec_ml-100k`](results/vqrec_ml-100k.json)" in page
    assert "| ml-100k | [`baselines_ml-100k`](results/baselines_ml-100k.json) | baselines | EASE: test NDCG@10 0.2000 |" in page
    assert "## Results of record" in page and "### Other results" in page and "newbench_toy" in page
    assert "| 0 met, 1 missed |" in page and "(details/baselines.md)" in page
    details = (tmp_path / "eval" / "details" / "baselines.md").read_text()
    assert "| EASE | 0.3000 | 0.2000 |" in details and "lam=100" in details
    assert "Command: `textrec bench baselines`" in details and "(../results/baselines_ml-100k.json)" in details
    other = (tmp_path / "eval" / "details" / "other.md").read_text()  # no special code: the generic table
    assert "| VAE |" in other and "- MISSED: VAE beats EASE (0.2 vs 0.3)" in other
    assert "vqrec_ml-100k/vqrec_ml-100k_try.json" in (tmp_path / "eval" / "details" / "vqrec.md").read_text()
    top = (tmp_path / "README.md").read_text()
    assert "old" not in top and top.startswith("intro\n") and top.endswith("end\n")
    assert "textrec/report.py -->" in top
    assert "| ml-100k | [EASE 0.2000](eval/results/baselines_ml-100k.json) | [VQ-Rec 0.2500]" in top
    assert "1.25x" in top
    assert write_readme(results, check=True) == 0


def test_summary_shows_the_mean_over_seeds_not_the_luckiest_seed(tmp_path):
    from textrec.report import summary_rows

    m = {"hr@10": 0.3, "recall@10": 0.3, "ndcg@10": 0.2, "mrr@10": 0.1}
    (tmp_path / "baselines_ml-100k.json").write_text(json.dumps({
        "benchmark": "baselines", "dataset": "ml-100k", "models": {"EASE": {"valid": m, "test": m}}}))

    def vqrec(name: str, ndcg: float) -> None:
        (tmp_path / name).write_text(json.dumps({
            "benchmark": "vqrec_from_scratch", "dataset": "ml-100k", "split": {"kind": "leave_one_out"},
            "config": {}, "model": {"valid": m, "test": {**m, "ndcg@10": ndcg}}}))

    vqrec("vqrec_ml-100k_a_seed0.json", 0.30)  # a lucky seed of recipe a ...
    vqrec("vqrec_ml-100k_a_seed1.json", 0.10)  # ... whose mean is 0.20
    vqrec("vqrec_ml-100k_b.json", 0.24)  # recipe b, one seed
    (row,) = summary_rows(tmp_path)
    assert row["engine_file"] == "vqrec_ml-100k_b.json" and row["engine_seeds"] == 1
    vqrec("vqrec_ml-100k_a_seed2.json", 0.41)  # now recipe a's 3-seed mean is 0.27
    (row,) = summary_rows(tmp_path)
    assert row["engine_seeds"] == 3 and abs(row["engine_ndcg"] - 0.27) < 1e-9
    assert row["engine_file"] == "vqrec_ml-100k_a_seed0.json"
