"""Build the pieces of one P5 run from a split and a recipe: index, serializer, data, model (+ item init).

Shared by the benchmark and the command line so that both build a model the same way:
the index and the item initialisation see the *training* part of the split only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from textrec.data.splits import Split
from textrec.p5.model import P5Config, P5Model
from textrec.p5.serializer import P5Serializer, SerializerConfig, TrainData


@dataclass
class P5Parts:
    """Everything a P5 run trains and evaluates with."""

    serializer: P5Serializer
    data: TrainData
    model: P5Model
    index_seconds: float
    init_report: dict


def item_titles(ds) -> list[str]:
    """Short item names for prompts: title (+ year) when the catalog has them, else all text."""
    fields = [f for f in ("title", "year") if f in ds.text_fields]
    return ds.item_text(fields or None, sep=" ")


def pick_device(want: str | None = "cpu") -> str:
    """``cpu``, ``cuda`` or ``auto`` (a GPU when one is visible) -> the torch device name."""
    import torch

    want = (want or "cpu").lower()
    if want == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if want.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("the recipe asks for device 'cuda' but no GPU is visible")
    return want


def build_parts(split: Split, recipe: dict, scheme: str, seed: int = 0) -> P5Parts:
    """Index (scheme ``scheme``), serializer, training data, a fresh model with its item tokens initialised.

    The model is moved to the recipe's top-level ``device`` (default cpu; ``auto`` = a GPU if visible).
    """
    from textrec.indexing import build_index
    from textrec.p5.item_init import apply_item_init
    from textrec.p5.recommender import tokenizer_corpus
    from textrec.recipes import config_from_dict
    from textrec.text.encoder import item_texts

    ds = split.dataset
    titles = item_titles(ds)
    mcfg = config_from_dict(P5Config, recipe.get("model", {}), "P5 model")
    needs_text = scheme.startswith("semantic") or "text" in mcfg.item_init
    texts = item_texts(ds, verbose=False).texts if needs_text else None
    t0 = time.perf_counter()
    index_kw = recipe.get("indexing", {}).get(scheme) or {}
    index = build_index(scheme, split.train_sequences(), split.n_items, texts=texts, seed=seed, **index_kw)
    index_seconds = time.perf_counter() - t0
    scfg = config_from_dict(SerializerConfig, {**recipe.get("serializer", {}), "seed": seed}, "P5 serializer")
    ser = P5Serializer(index, titles, scfg)
    data = TrainData.from_frame(split.train, split.n_users, split.n_items, reviews=ds.reviews)
    model = P5Model.build(mcfg, index, tokenizer_corpus(ser, data, titles, seed=seed), item_ids=list(ds.item_ids),
                          seed=seed)
    report = apply_item_init(model, mcfg.item_init, split.train_sequences(), texts=texts, seed=seed)
    model.to(pick_device(recipe.get("device")))
    return P5Parts(ser, data, model, index_seconds, report)
