"""Tiny servable artifacts shared by the serve tests (API and browser)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from textrec.data import RecDataset
from textrec.data.splits import leave_one_out
from textrec.models.base import TrainView
from textrec.models.sasrec import SASRec
from textrec.models.text_knn import TextKNN
from textrec.serve.backends import UnknownIdError
from textrec.vqrec.model import VQRec

TOKEN = "s3cret-token"
INSTRUMENTS = ["flute", "cello", "harp"]
SMALL = {"backbone": {"hidden": 16, "layers": 1, "heads": 1, "ff": 32, "max_len": 8},
         "trainer": {"epochs": 2, "max_len": 8, "batch_size": 32}}


def tiny_dataset() -> RecDataset:
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"i{(s + t) % 24}", float(t)) for u in range(40) for s in [int(rng.integers(24))]
            for t in range(6)]
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(24)],
                          "title": [f"{INSTRUMENTS[i % 3]} number {i}" for i in range(24)]})
    return RecDataset.from_frames("tiny", pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]), items,
                                  text_fields=["title"])


def build_folders(root, names=("vq", "sas", "knn")):
    """Fit tiny VQ-Rec / SASRec / TextKNN models and save them as servable artifacts under ``root``."""
    torch.set_num_threads(1)
    ds = tiny_dataset()
    view = TrainView.from_split(leave_one_out(ds), with_text=True)
    out = {}
    for name, model in [("vq", VQRec(n_subvectors=4, n_centroids=16, **SMALL)),
                        ("sas", SASRec(backbone=SMALL["backbone"], trainer=SMALL["trainer"])),
                        ("knn", TextKNN())]:
        if name not in names:
            continue
        model.fit(view, progress=False)
        model.save_pretrained(root / name)
        out[name] = root / name
    return out


class FakeExplainer:
    """Stands in for the ERRA adapter: answers for known ids, cites one sentence."""

    def explain(self, user_id, item_id):
        if user_id not in {"u1", "u2"}:
            raise UnknownIdError("user", user_id)
        return {"explanation": "the harp sound is warm", "rating": 4.5, "aspects": ["sound"],
                "cited": [{"sentence_id": 7, "text": "A warm harp sound.", "review_user": "u2",
                           "review_item": item_id, "score": 0.9}]}


