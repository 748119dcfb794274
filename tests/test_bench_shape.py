"""One shape for every command and benchmark: shared options everywhere, ``textrec bench --list``,
every result kind owned by a registered benchmark, ``--seed`` defined once, progress that reads
well off a terminal, part files found in their record's folder."""

from __future__ import annotations

import argparse
import io
import json
import re
from pathlib import Path

import pytest
from conftest import requires_shared_data

ROOT = Path(__file__).resolve().parents[1]
#: result kinds whose benchmark another branch registers (engineer fusion: textfusion; serve: load)
REGISTERED_ELSEWHERE: tuple[str, ...] = ()
#: scripts another branch turns into `textrec bench <name>` (engineer serve: eval/load_bench.py)
SEED_ELSEWHERE: set[str] = set()


def _leaves(p: argparse.ArgumentParser, path=()):
    subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, p
    for action in subs:
        for name, child in action.choices.items():
            yield from _leaves(child, (*path, name))


def test_every_command_takes_threads_and_quiet():
    from textrec.cli import build_parser

    missing = [" ".join(path) for path, leaf in _leaves(build_parser())
               if not {"--threads", "--quiet"} <= {o for a in leaf._actions for o in a.option_strings}]
    assert not missing, f"commands refusing a shared option: {missing}"


@requires_shared_data
def test_data_info_takes_the_run_options(capsys):
    from textrec.cli import main

    assert main(["data", "info", "ml-100k", "--threads", "1", "--quiet"]) == 0
    assert "users" in capsys.readouterr().out


def test_seed_is_defined_once():
    hits = []
    for folder in ("textrec", "eval"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if re.search(r"""add_argument\(\s*["']--seed["']""", line):
                    hits.append((str(path.relative_to(ROOT)), n))
    assert [h for h in hits if h[0].startswith("textrec/")] == [("textrec/options.py", hits[0][1])], hits
    assert {h[0] for h in hits if h[0].startswith("eval/")} <= SEED_ELSEWHERE, hits


def test_bench_list_names_every_benchmark_with_purpose_and_cpu(monkeypatch, capsys):
    from textrec import cli

    # an entry written the old way (module, purpose) still lists
    monkeypatch.setitem(cli.BENCHMARKS, "toy", ("textrec.benchmarks.toy", "a toy benchmark"))
    with pytest.raises(SystemExit) as e:
        cli.main(["bench", "--list"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in cli.BENCHMARKS:
        b = cli.benchmark(name)
        assert name in out and b.purpose in out and b.cpu in out, name
    assert "a toy benchmark" in out


def test_every_result_of_record_has_its_benchmark():
    from textrec.cli import BENCHMARKS, benchmark_of
    from textrec.report import load_results

    orphans = sorted({(r.kind, r.name) for r in load_results(ROOT / "eval" / "results")
                      if benchmark_of(r.kind) is None and not r.kind.startswith(REGISTERED_ELSEWHERE)})
    assert not orphans, f"results whose benchmark `textrec bench --list` lacks: {orphans}"
    for name in BENCHMARKS:  # every registered module has the two entry points
        import importlib

        from textrec.cli import benchmark

        try:
            mod = importlib.import_module(benchmark(name).module)
        except ModuleNotFoundError:  # an optional dependency (RecBole) absent
            continue
        assert callable(mod.add_arguments) and callable(mod.run), name


# ---- progress ------------------------------------------------------------------------------------
def test_progress_off_a_terminal_is_whole_lines(monkeypatch):
    from textrec import options

    monkeypatch.setenv(options.PROGRESS_SECONDS_ENV, "0")
    buf = io.StringIO()
    for _ in options.progress_bar(range(3), desc="grid", file=buf):
        pass
    bar = options.progress_bar(total=2, desc="inner", file=buf, leave=False)
    bar.update(2)
    bar.close()
    text = buf.getvalue()
    assert "\r" not in text and "\x1b[" not in text
    lines = text.splitlines()
    assert lines and all(line.strip() for line in lines)
    assert lines[-1].startswith("inner: 100%") and any(line.startswith("grid: 100%") for line in lines)


def test_progress_throttled_quiet_and_terminal_only(monkeypatch):
    from textrec import options

    monkeypatch.setenv(options.PROGRESS_SECONDS_ENV, "3600")
    buf = io.StringIO()
    for _ in options.progress_bar(range(500), desc="slow", file=buf):
        pass
    assert len(buf.getvalue().splitlines()) <= 3  # the start, the end: nothing in between for an hour
    silent = io.StringIO()
    for _ in options.progress_bar(range(5), desc="tty only", file=silent, disable=None):
        pass
    assert silent.getvalue() == ""
    options.set_quiet(True)
    try:
        quiet = io.StringIO()
        for _ in options.progress_bar(range(5), desc="quiet", file=quiet, disable=False):
            pass
        options.progress_log("a stage")
        assert quiet.getvalue() == ""
    finally:
        options.set_quiet(False)


def test_progress_bar_is_a_tqdm_for_callers():
    from tqdm.auto import tqdm

    from textrec.options import progress_bar

    bar = progress_bar(total=1, disable=True)
    assert isinstance(bar, tqdm)
    bar.close()
    progress_bar.write("a line")  # class methods of tqdm pass through


# ---- results written through the one writer ------------------------------------------------------
def test_metadata_carries_cpu_seconds_unless_the_record_states_its_own(tmp_path):
    from textrec.results import ResultWriter

    with ResultWriter("x", out=tmp_path / "a") as w:
        w.write_json("r.json", {"benchmark": "x"})
        w.write_json("p.json", {"benchmark": "x", "cpu_seconds": 12.5})
    assert isinstance(json.loads((tmp_path / "a" / "r.json").read_text())["cpu_seconds"], float)
    assert json.loads((tmp_path / "a" / "p.json").read_text())["cpu_seconds"] == 12.5


def _id_part(table: str, ndcg: float) -> dict:
    spec = None if table == "collision_free" else {"kind": "hashed", "size": 0.5, "seed": 0}
    return {"table": table, "id_table": spec, "seed": 0, "table_rows": 10, "best_epoch": 1, "epochs_run": 2,
            "max_epochs": 2, "test_ndcg@10_popular_targets": ndcg, "test_ndcg@10_rare_targets": ndcg / 2,
            "popular_target_collision_rate": 0.0, "rare_target_collision_rate": 0.5, "train_seconds": 1.0,
            "test": {"ndcg@10": ndcg}, "valid": {"ndcg@10": ndcg}, "split": {"kind": "toy"},
            "collision_report_by_frequency_decile": [], "command": "textrec bench toolbox-id-table sasrec"}


def test_id_table_merge_reads_the_parts_in_the_records_folder(tmp_path, capsys):
    from textrec.cli import main

    parts = tmp_path / "out" / "toolbox_id_table_toy"
    parts.mkdir(parents=True)
    (parts / "toolbox_id_table_toy_collision_free_seed0.part.json").write_text(json.dumps(_id_part("collision_free", 0.2)))
    (parts / "toolbox_id_table_toy_hashed0.5_seed0.part.json").write_text(json.dumps(_id_part("hashed:0.5", 0.1)))
    assert main(["bench", "toolbox-id-table", "merge", "--dataset", "toy", "--out", str(tmp_path / "out"),
                 "--threads", "1"]) == 0
    merged = json.loads((tmp_path / "out" / "toolbox_id_table_toy.json").read_text())
    assert [r["table"] for r in merged["rows"]] == ["collision_free", "hashed:0.5"]
    assert merged["rows"][1]["loss_overall"] == pytest.approx(0.1)
    assert merged["command"].startswith("textrec bench toolbox-id-table merge") and "cpu_seconds" in merged


def test_id_table_stream_through_the_cli_matches_the_function(tmp_path):
    from textrec.benchmarks.toolbox_id_table import benchmark_stream

    small = benchmark_stream(n_initial=200, n_blocks=2, block_events=2000, new_per_block=40, seed=3)
    again = benchmark_stream(n_initial=200, n_blocks=2, block_events=2000, new_per_block=40, seed=3)
    assert small["rows"] == again["rows"] and len(small["rows"]) == 2
    assert small["rows"][-1]["catalog"] == 280
