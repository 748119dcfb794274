"""Tiny servable artifacts shared by the serve tests (API and browser)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from textrec.data import RecDataset
from textrec.data.splits import leave_one_out
from textrec.models.base import TrainView
from textrec.models.fusion import TextFusionRec
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


def build_folders(root, names=("vq", "sas", "knn"), ds: RecDataset | None = None):
    """Fit tiny VQ-Rec / SASRec / TextKNN / TextFusion models and save them as servable artifacts under ``root``."""
    torch.set_num_threads(1)
    ds = ds or tiny_dataset()
    view = TrainView.from_split(leave_one_out(ds), with_text=True)
    out = {}
    for name, model in [("vq", VQRec(n_subvectors=4, n_centroids=16, **SMALL)),
                        ("sas", SASRec(backbone=SMALL["backbone"], trainer=SMALL["trainer"])),
                        ("knn", TextKNN()),
                        ("fusion", TextFusionRec(backbone=SMALL["backbone"], trainer=SMALL["trainer"],
                                                 n_subvectors=4, n_centroids=16, opq=False, max_epochs=1))]:
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




#: ids the documented curls of docs/serving.md use (a demo-like ML-100K catalog, and Instruments ids)
DOC_USERS = ["196", "186", "22", "244", "166"]
DOC_ITEMS = {"50": "Star Wars (1977)", "172": "Empire Strikes Back, The (1980)",
             "181": "Return of the Jedi (1983)", "1": "Toy Story (1995)", "71": "Lion King, The (1994)",
             "95": "Aladdin (1992)", "588": "Beauty and the Beast (1991)", "98": "Silence of the Lambs, The (1991)",
             "127": "Godfather, The (1972)", "100": "Fargo (1996)", "174": "Raiders of the Lost Ark (1981)",
             "1384719342": "Guitar strings, light gauge"}
DOC_EXPLAIN = ("A2IBPI20UZIR0U", "1384719342")


def doc_dataset() -> RecDataset:
    """A tiny dataset with the ids and titles the documentation's curls use."""
    items = list(DOC_ITEMS)
    users = DOC_USERS + [f"x{u}" for u in range(25)]
    rows = [(u, items[(n + t) % len(items)], float(t)) for n, u in enumerate(users) for t in range(6)]
    frame = pd.DataFrame({"item_id": items, "title": [DOC_ITEMS[i] for i in items],
                          "genres": ["Action|Sci-Fi" if i in ("50", "172", "181", "174") else "Animation|Children's"
                                     for i in items]})
    return RecDataset.from_frames("ml-100k", pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]),
                                  frame, text_fields=["title", "genres"])


class DocExplainer:
    """Answers for the documented (user, item) pair only, like an explainer trained on those reviews."""

    def explain(self, user_id, item_id):
        if user_id != DOC_EXPLAIN[0]:
            raise UnknownIdError("user", user_id)
        if item_id != DOC_EXPLAIN[1]:
            raise UnknownIdError("item", item_id)
        return {"explanation": "the strings sound bright and stay in tune", "rating": 4.6, "aspects": ["sound"],
                "cited": [{"sentence_id": 3, "text": "Bright strings that stay in tune.", "review_user": "A1",
                           "review_item": item_id, "score": 0.8}]}
