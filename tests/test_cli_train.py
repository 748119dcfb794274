"""`textrec train erra` then `textrec explain`: ERRA trains from the command line, no bench script needed."""

import json

import yaml
from test_explain import RECIPE, HashEncoder, synthetic_reviews

from textrec.cli import main


def test_train_erra_from_the_cli_then_explain(tmp_path, monkeypatch, capsys):
    import textrec.text.encoder as enc_mod

    monkeypatch.setattr(enc_mod, "TextEncoder", HashEncoder)  # no MiniLM load in a unit test
    rv = synthetic_reviews()
    reviews = tmp_path / "reviews.json"
    reviews.write_text("".join(json.dumps({"reviewerID": r.user_id, "asin": r.item_id, "overall": r.rating,
                                           "reviewText": r.text, "summary": r.summary,
                                           "unixReviewTime": int(r.timestamp)}) + "\n" for r in rv.itertuples()))
    recipe = tmp_path / "erra_tiny.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    out = tmp_path / "erra-model"
    assert main(["train", "erra", "--dataset", str(reviews), "--recipe", str(recipe), "--variant", "erra",
                 "--epochs", "1", "--set", "trainer.batch_size=8", "--out", str(out), "--quiet", "--threads", "1"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["model"] == "erra" and res["saved"] == str(out) and res["epochs_run"] == 1
    assert {"bleu4", "usr"} <= set(res["test"]) and {"bleu4", "usr"} <= set(res["valid"])
    assert main(["explain", "--dataset", str(reviews), "--model", str(out), "--user", "U1", "--item", "I3",
                 "--quiet", "--threads", "1"]) == 0
    assert "explanation:" in capsys.readouterr().out


def test_train_erra_rejects_an_unknown_variant_and_key(tmp_path, capsys):
    assert main(["train", "erra", "--dataset", str(tmp_path / "none.json"), "--set", "trainer.epoch=1",
                 "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert "unknown recipe key 'trainer.epoch'" in err and "trainer.epochs" in err
