"""`textrec vqrec add-items / recommend`: new items from text, original ids, clear errors."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from textrec.cli import main
from textrec.data import RecDataset
from textrec.data.dataset import DataError
from textrec.data.splits import leave_one_out
from textrec.models.base import TrainView
from textrec.vqrec.cli import read_new_items
from textrec.vqrec.model import VQRec


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"i{(s + t) % 24}", float(t)) for u in range(50) for s in [int(rng.integers(24))]
            for t in range(6)]
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(24)],
                          "title": [f"{['flute', 'cello', 'harp'][i % 3]} number {i}" for i in range(24)]})
    ds = RecDataset.from_frames("cli", pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]), items,
                                text_fields=["title"])
    model = VQRec(backbone={"hidden": 16, "layers": 1, "heads": 1, "ff": 32, "max_len": 8},
                  trainer={"epochs": 2, "max_len": 8, "batch_size": 32}, n_subvectors=4, n_centroids=16)
    model.fit(TrainView.from_split(leave_one_out(ds), with_text=True), progress=False)
    folder = tmp_path_factory.mktemp("vq") / "model"
    model.save_pretrained(folder)
    return folder


def test_add_items_then_recommend_them(model_dir, tmp_path, capsys):
    new = tmp_path / "new.jsonl"
    new.write_text('{"item_id": "brand-new-harp", "text": "harp number 99"}\n'
                   '{"item_id": "brand-new-cello", "text": "cello number 98"}\n', encoding="utf-8")
    out = tmp_path / "grown"
    assert main(["vqrec", "add-items", "--model", str(model_dir), "--items", str(new), "--out", str(out)]) == 0
    assert json.loads((out / "catalog.json").read_text())["ids"][-2:] == ["brand-new-harp", "brand-new-cello"]
    capsys.readouterr()
    assert main(["vqrec", "recommend", "--model", str(out), "--history", "i0", "i1", "--k", "26", "--json"]) == 0
    recs = json.loads(capsys.readouterr().out)
    ids = [r["item_id"] for r in recs]
    assert "brand-new-harp" in ids and "i0" not in ids  # new items are scorable; history masked
    assert VQRec.from_pretrained(out).n_items == 26


def test_cli_errors_name_the_problem(model_dir, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"item_id": "x", "text": "ok"}\n{"item_id": "y"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.jsonl, line 2, field 'text'"):
        read_new_items(bad)
    bad.write_text('{"item_id": "x", "text": "ok"}\nnot json\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 2.*malformed JSON"):
        read_new_items(bad)
    clash = tmp_path / "clash.jsonl"
    clash.write_text('{"item_id": "i3", "text": "flute again"}\n', encoding="utf-8")
    assert main(["vqrec", "add-items", "--model", str(model_dir), "--items", str(clash)]) == 2
    assert "already in the catalog" in capsys.readouterr().err
    assert main(["vqrec", "recommend", "--model", str(model_dir), "--history", "nope"]) == 2
    assert "unknown item id" in capsys.readouterr().err
