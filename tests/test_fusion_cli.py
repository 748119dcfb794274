"""`textrec add-items` on a saved TextFusion model: new items from text alone, then recommendable."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from textrec.cli import main
from textrec.data import RecDataset
from textrec.data.splits import leave_one_out
from textrec.models.base import TrainView
from textrec.models.baselines import EASE
from textrec.models.fusion import TextFusionRec


def _dataset() -> RecDataset:
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"i{(s + t) % 24}", float(t)) for u in range(50) for s in [int(rng.integers(24))]
            for t in range(6)]
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(24)],
                          "title": [f"{['stapler', 'pen', 'paper'][i % 3]} number {i}" for i in range(24)]})
    return RecDataset.from_frames("cli", pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]), items,
                                  text_fields=["title"])


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    torch.set_num_threads(1)
    view = TrainView.from_split(leave_one_out(_dataset()), with_text=True)
    model = TextFusionRec(backbone={"hidden": 16, "layers": 1, "heads": 1, "ff": 32, "max_len": 8},
                          trainer={"epochs": 1, "max_len": 8, "batch_size": 32}, n_subvectors=4, n_centroids=8,
                          opq=False, small_catalog="keep", ease_lam=5.0)
    model.fit(view, progress=False)
    root = tmp_path_factory.mktemp("fusion")
    model.save_pretrained(root / "fusion")
    EASE(lam=5.0).fit(view, progress=False).save_pretrained(root / "ease")
    return root


def test_add_items_to_textfusion_then_recommend_them(model_dirs, tmp_path, capsys):
    new = tmp_path / "new.jsonl"
    new.write_text('{"item_id": "new-stapler", "text": "stapler number 99"}\n', encoding="utf-8")
    out = tmp_path / "grown"
    assert main(["add-items", "--model", str(model_dirs / "fusion"), "--items", str(new), "--out", str(out)]) == 0
    assert json.loads((out / "catalog.json").read_text())["ids"][-1] == "new-stapler"
    grown = TextFusionRec.from_pretrained(out)
    assert grown.n_items == 25 and float(grown.counts[-1]) == 0.0  # a zero-evidence item
    capsys.readouterr()
    assert main(["recommend", "--model", str(out), "--history", "i0", "i3", "--k", "25", "--json"]) == 0
    ids = [r["item_id"] for r in json.loads(capsys.readouterr().out)]
    assert "new-stapler" in ids and "i0" not in ids


def test_add_items_refuses_a_model_without_text(model_dirs, tmp_path, capsys):
    new = tmp_path / "new.jsonl"
    new.write_text('{"item_id": "x", "text": "pen"}\n', encoding="utf-8")
    assert main(["add-items", "--model", str(model_dirs / "ease"), "--items", str(new)]) == 2
    assert "cannot add items from text" in capsys.readouterr().err
