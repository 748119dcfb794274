"""Shared run options: numbers checked at parse time, --set overrides, CSV column mapping, --version."""

import argparse
import json

import pytest
from conftest import requires_shared_data

from textrec.cli import build_parser, main
from textrec.options import (
    apply_overrides,
    available_cpus,
    default_threads,
    parse_columns,
    positive_int,
)


@pytest.mark.parametrize("argv, option", [
    (["p5", "train", "--out", "m", "--epochs", "-1"], "--epochs"),
    (["train", "p5", "--out", "m", "--epochs", "0"], "--epochs"),
    (["vqrec", "recommend", "--model", "m", "--history", "a", "--k", "-5"], "--k"),
    (["recommend", "--model", "m", "--history", "a", "--k", "0"], "--k"),
    (["query", "train", "--max-steps", "-1"], "--max-steps"),
    (["bench", "baselines", "--sasrec-epochs", "-1"], "--sasrec-epochs"),
    (["bench", "vqrec", "scratch", "--epochs", "-3"], "--epochs"),
    (["bench", "erra", "--max-minutes", "0"], "--max-minutes"),
    (["train", "sasrec", "--out", "m", "--threads", "0"], "--threads"),
    (["train", "erra", "--seed", "-1"], "--seed"),
    (["data", "split", "ml-100k", "--kind", "new_item", "--frac", "1.5"], "--frac"),
    (["query", "search", "x", "--k", "ten"], "--k"),
])
def test_bad_numbers_fail_at_parse_time(argv, option, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and ("must be" in err or "is not" in err)


def test_type_functions():
    assert positive_int("3") == 3
    for bad in ("0", "-2", "1.5", "nan"):
        with pytest.raises(argparse.ArgumentTypeError):
            positive_int(bad)


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    import textrec

    assert capsys.readouterr().out.strip() == f"textrec {textrec.__version__}"


def test_threads_default(monkeypatch):
    monkeypatch.setenv("TEXTREC_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.delenv("TEXTREC_THREADS")
    assert default_threads() == available_cpus() >= 1
    monkeypatch.setenv("TEXTREC_THREADS", "zero")
    with pytest.raises(ValueError, match="TEXTREC_THREADS"):
        default_threads()


# ---- --set -----------------------------------------------------------------------------------------
RECIPE = {"model": "SASRec", "backbone": {"hidden": 64, "dropout": 0.5},
          "trainer": {"epochs": 200, "lr": 0.002, "metric": "ndcg@10", "warmup_steps": 0, "norm_first": False},
          "retrievers": ["bm25"]}


def test_set_overrides_are_typed():
    out = apply_overrides(RECIPE, ["trainer.epochs=5", "trainer.lr=1e-3", "backbone.dropout=0.1",
                                   "trainer.metric=hr@10", "trainer.warmup_steps=0", "trainer.norm_first=true",
                                   "retrievers=bm25,dense"])
    assert out["trainer"] == {"epochs": 5, "lr": 0.001, "metric": "hr@10", "warmup_steps": 0, "norm_first": True}
    assert out["backbone"]["dropout"] == 0.1 and out["retrievers"] == ["bm25", "dense"]
    assert RECIPE["trainer"]["epochs"] == 200  # the recipe itself is left alone


@pytest.mark.parametrize("spec, message", [
    ("trainer.epoch=5", r"unknown recipe key 'trainer.epoch' \(did you mean 'trainer.epochs'\?\); known keys: .*"
                        r"trainer.epochs"),
    ("trainer.epochs=five", "expected an integer"),
    ("trainer.epochs=2.5", "expected an integer"),
    ("trainer.epochs=0", "expected a number > 0"),
    ("trainer.lr=-1", "expected a number > 0"),
    ("backbone.dropout=1.5", r"expected a number in \[0, 1\)"),
    ("trainer.norm_first=maybe", "expected true or false"),
    ("trainer.warmup_steps=-1", "expected a number >= 0"),
    ("epochs", "expected KEY=VALUE"),
])
def test_set_rejects_bad_overrides(spec, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides(RECIPE, [spec])


def test_set_accepts_config_fields_absent_from_the_recipe():
    from dataclasses import dataclass

    @dataclass
    class Trainer:
        epochs: int = 10
        max_minutes: float | None = None

    out = apply_overrides(RECIPE, ["trainer.max_minutes=2.5"], schema={"trainer": Trainer})
    assert out["trainer"]["max_minutes"] == 2.5
    with pytest.raises(ValueError, match="unknown recipe key"):
        apply_overrides(RECIPE, ["trainer.nope=1"], schema={"trainer": Trainer})


def test_set_reaches_the_command_and_fails_before_training(tmp_path, capsys):
    rc = main(["train", "sasrec", "--dataset", str(tmp_path / "none.csv"), "--out", str(tmp_path / "m"),
               "--set", "trainer.epoch=3", "--threads", "1"])
    assert rc == 2
    assert "unknown recipe key 'trainer.epoch'" in capsys.readouterr().err
    args = build_parser(["vqrec", "train"]).parse_args(
        ["vqrec", "train", "--dataset", "x", "--out", "m", "--set", "trainer.epochs=2", "--set", "options.opq=false"])
    assert args.overrides == ["trainer.epochs=2", "options.opq=false"]


# ---- CSV datasets in the CLI ---------------------------------------------------------------------------
def test_parse_columns():
    assert parse_columns("user=uid,item=iid,time=ts,rating=r") == {
        "user_id": "uid", "item_id": "iid", "timestamp": "ts", "rating": "r"}
    for bad in ("user=uid", "user=uid,item=iid,colour=c", "user=uid,item", "user=a,user=b,item=c"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_columns(bad)


@pytest.fixture()
def table(tmp_path):
    lines = ["uid,iid,ts,r"] + [f"u{u},m{(u * 3 + t) % 12},{100 * u + t},{1 + (u + t) % 5}"
                                for u in range(25) for t in range(6)]
    path = tmp_path / "good.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_csv_dataset_with_a_column_mapping(table, capsys):
    assert main(["data", "info", str(table), "--columns", "user=uid,item=iid,time=ts,rating=r", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["users"] == 25 and stats["items"] == 12 and stats["events"] == 150


def test_csv_dataset_without_mapping_names_the_option_and_columns(table, capsys):
    assert main(["data", "info", str(table)]) == 2
    err = capsys.readouterr().err
    assert "--columns user=COL,item=COL" in err and "uid, iid, ts, r" in err
    assert main(["data", "info", str(table), "--columns", "user=uid,item=nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_train_and_recommend_a_csv_user_with_titles(table, tmp_path, capsys):
    cols = ["--dataset", str(table), "--columns", "user=uid,item=iid,time=ts,rating=r"]
    assert main(["train", "ease", *cols, "--out", str(tmp_path / "m"), "--quiet", "--threads", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "EASE" and 0 <= out["test"]["ndcg@10"] <= 1
    assert main(["recommend", "--model", str(tmp_path / "m"), *cols, "--user", "u3", "--k", "4", "--json",
                 "--threads", "1"]) == 0
    rows = json.loads(capsys.readouterr().out)
    seen = {f"m{(3 * 3 + t) % 12}" for t in range(6)}
    assert len(rows) == 4 and not seen & {r["item_id"] for r in rows}  # the user's history is masked
    assert [r["rank"] for r in rows] == [1, 2, 3, 4] and all(r["title"] for r in rows)
    assert main(["recommend", "--model", str(tmp_path / "m"), *cols, "--user", "ghost"]) == 2
    assert "user 'ghost' is not in dataset" in capsys.readouterr().err
    # without --dataset: the training history saved with the model (original ids in, titles out)
    assert main(["recommend", "--model", str(tmp_path / "m"), "--user", "u3", "--k", "4", "--json"]) == 0
    saved = json.loads(capsys.readouterr().out)
    assert len(saved) == 4 and all(r["item_id"].startswith("m") for r in saved)
    assert main(["recommend", "--model", str(tmp_path / "m"), "--user", "ghost"]) == 2
    assert "ghost" in capsys.readouterr().err
    assert main(["recommend", "--model", str(tmp_path / "m"), "--user", "u3", "--history", "m1"]) == 2
    assert "not both" in capsys.readouterr().err


def test_query_resume_without_checkpoint_says_so(tmp_path, capsys):
    rc = main(["query", "train", "--dataset", "ml-100k", "--output-dir", str(tmp_path / "run"), "--resume",
               "--threads", "1"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "no checkpoint" in err and str(tmp_path / "run") in err


@requires_shared_data
def test_explain_without_a_model_fits_the_default_then_names_the_unknown_user(tmp_path, capsys):
    # no saved explainer: the trusted (extractive) default is fitted on first use, then the bad id is named
    rc = main(["explain", "--dataset", "instruments", "--model", str(tmp_path / "none"), "--user", "u",
               "--item", "i", "--threads", "1"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "no explainer in" in err and "fitting the default" in err
    assert "unknown user 'u'" in err


def test_every_engine_trains_from_the_cli():
    sub = build_parser()._subparsers._group_actions[0].choices["train"]
    names = set(sub._subparsers._group_actions[0].choices)
    assert {"vqrec", "p5", "query", "erra", "sasrec", "ease"} <= names


def test_trainer_logs_go_to_the_bar_not_stdout(capsys):
    from types import SimpleNamespace

    from transformers.trainer_callback import ProgressCallback

    from textrec.query.cli import quiet_trainer_logs

    calls = []
    fake = SimpleNamespace(remove_callback=lambda c: calls.append(("remove", c)),
                           add_callback=lambda c: calls.append(("add", c)))
    quiet_trainer_logs(fake)
    assert calls[0] == ("remove", ProgressCallback) and issubclass(calls[1][1], ProgressCallback)
    cb = calls[1][1]()
    written, postfix = [], {}
    cb.training_bar = SimpleNamespace(write=written.append, set_postfix=lambda d, refresh: postfix.update(d))
    cb.on_log(None, SimpleNamespace(is_world_process_zero=True), None,
              logs={"reward": 0.1234567, "loss": 0.5, "completions/mean_length": 12.0})
    assert written == [] and postfix == {"reward": "0.1235", "loss": "0.5"}
    assert capsys.readouterr().out == ""


def test_csv_dataset_with_an_item_table_gives_titles(table, tmp_path, capsys):
    items = tmp_path / "items.csv"
    items.write_text("iid,title\n" + "".join(f"m{i},Movie number {i}\n" for i in range(12)), encoding="utf-8")
    cols = ["--dataset", str(table), "--columns", "user=uid,item=iid,time=ts", "--items", str(items)]
    assert main(["train", "popularity", *cols, "--out", str(tmp_path / "pop"), "--quiet", "--threads", "1"]) == 0
    capsys.readouterr()
    assert main(["recommend", "--model", str(tmp_path / "pop"), *cols, "--user", "u3", "--k", "2", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["title"] for r in rows] == [f"Movie number {r['item_id'][1:]}" for r in rows]
    assert main(["data", "info", "ml-100k", "--items", str(items)]) == 2
    assert "--items apply to a CSV" in capsys.readouterr().err


def test_set_reaches_the_training_loop_options_of_every_engine():
    from textrec.options import schema
    from textrec.recipes import load_recipe

    for engine, recipe in (("sequential", "vqrec_scratch"), ("p5", "p5_tiny"), ("erra", "erra")):
        out = apply_overrides(load_recipe(recipe), ["trainer.max_minutes=1.5", "trainer.checkpoint_every=20",
                                                    "trainer.output_dir=ckpt", "trainer.resume=auto"],
                              schema=schema(engine))
        assert out["trainer"]["max_minutes"] == 1.5 and out["trainer"]["checkpoint_every"] == 20
        assert out["trainer"]["output_dir"] == "ckpt" and out["trainer"]["resume"] == "auto"
    out = apply_overrides(load_recipe("recr1_cpu"), ["max_steps=3", "sft_steps=0"], schema=schema("query"))
    assert out["max_steps"] == 3 and out["sft_steps"] == 0


@pytest.fixture()
def item_table(tmp_path):
    """An item table whose title column is called 'name' and whose titles hold periods; two of its
    items (m12, m13) have no events."""
    names = {0: "Mr. Holland's Opus", 1: "E.T. the Extra-Terrestrial", 2: "Boys of St. Vincent"}
    lines = ["iid,name,about"] + [f"m{i},{names.get(i, f'Film {i}')},about film {i}. more words" for i in range(14)]
    path = tmp_path / "items.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_title_column_is_named_and_kept_whole(table, item_table):
    from textrec.catalog import Catalog
    from textrec.data.loaders.tabular import load_table

    ds = load_table(table, {"user_id": "uid", "item_id": "iid"}, item_path=item_table, title_column="name")
    assert ds.text_fields[0] == "title" and "name" not in ds.text_fields
    titles = Catalog.from_dataset(ds).titles
    by_id = dict(zip(ds.item_ids, titles))
    assert by_id["m0"] == "Mr. Holland's Opus" and by_id["m1"] == "E.T. the Extra-Terrestrial"
    assert by_id["m2"] == "Boys of St. Vincent" and ds.n_items == 14  # items without events kept
    with pytest.raises(Exception, match="no title column 'nope'"):
        load_table(table, {"user_id": "uid", "item_id": "iid"}, item_path=item_table, title_column="nope")


def test_title_without_items_table_is_refused(table, capsys):
    assert main(["data", "info", str(table), "--columns", "user=uid,item=iid,title=name"]) == 2
    assert "--items" in capsys.readouterr().err


def test_fallback_title_keeps_abbreviations():
    from textrec.catalog import _short_title

    assert _short_title("Mr. Holland's Opus. 1995. Drama") == "Mr. Holland's Opus"
    assert _short_title("Toy Story. 1995. Animation") == "Toy Story"


def test_every_items_command_ranks_the_same_catalog(table, item_table, tmp_path, capsys):
    cols = ["--dataset", str(table), "--columns", "user=uid,item=iid,time=ts,title=name", "--items", str(item_table)]
    assert main(["train", "ease", *cols, "--out", str(tmp_path / "m"), "--quiet", "--threads", "1"]) == 0
    capsys.readouterr()
    catalog = json.loads((tmp_path / "m" / "catalog.json").read_text(encoding="utf-8"))
    assert len(catalog["ids"]) == 14 and catalog["titles"][0] == "Mr. Holland's Opus"
    assert main(["bench", "baselines", *cols, "--models", "Popularity", "--out", str(tmp_path / "b"),
                 "--quiet", "--threads", "1"]) == 0
    capsys.readouterr()
    result = json.loads(next((tmp_path / "b").glob("*.json")).read_text(encoding="utf-8"))
    assert result["split"]["n_items"] == 14  # the item table is not dropped


def test_recommend_gives_one_answer_with_or_without_dataset(table, item_table, tmp_path, capsys):
    cols = ["--dataset", str(table), "--columns", "user=uid,item=iid,time=ts,title=name", "--items", str(item_table)]
    assert main(["train", "ease", *cols, "--out", str(tmp_path / "m"), "--quiet", "--threads", "1"]) == 0
    capsys.readouterr()
    answers = []
    for extra in (cols, []):
        assert main(["recommend", "--model", str(tmp_path / "m"), *extra, "--user", "u3", "--k", "5", "--json",
                     "--threads", "1"]) == 0
        answers.append(json.loads(capsys.readouterr().out))
    assert answers[0] == answers[1] and len(answers[0]) == 5
    seen = {f"m{(3 * 3 + t) % 12}" for t in range(6)}  # every event of u3, the last ones included
    assert not seen & {r["item_id"] for r in answers[1]}
