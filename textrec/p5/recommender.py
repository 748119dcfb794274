"""``P5Recommender``: the P5 model behind the core ``Recommender`` interface.

``score(users, histories)`` renders each history with a sequential template, runs
trie-constrained beam search with the history removed from the trie, and returns a
``(rows, n_items)`` matrix holding the beam scores (sum of token log-probabilities) of the
``k`` generated items and ``-inf`` everywhere else. ``textrec.evaluation.evaluate`` therefore
computes exact full-catalogue HR/NDCG/MRR at every cut-off ``<= k`` (items outside the beams are
never hits: a target scored ``-inf`` gets rank MISS); HR/NDCG@10 need only the top-10 beams,
metrics at larger cut-offs need ``k`` at least that large. With one token per item
(``indexing="item"``) ``decode="auto"`` scores every item by its first-token log-probability
instead: a full ranking from one decoder step (:func:`textrec.p5.generation.first_token_scores`).

``fit(view)`` builds the index (training data only), the tokenizer (item texts + rendered
seen prompts), the T5 model and trains it with :func:`textrec.p5.trainer.train_p5`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from textrec.models.base import Recommender, TrainView
from textrec.p5.model import P5Config, P5Model
from textrec.p5.serializer import P5Serializer, SerializerConfig, TrainData
from textrec.p5.trainer import P5TrainConfig, train_p5
from textrec.recipes import config_from_dict


def tokenizer_corpus(serializer: P5Serializer, data: TrainData, item_texts: list[str] | None,
                     max_examples: int = 20000, seed: int = 0) -> list[str]:
    """Texts the BPE vocabulary is learned from: item texts + a sample of seen training prompts."""
    cols = serializer.examples(data, epoch=0)
    n = len(cols["source"])
    rng = np.random.default_rng(seed)
    pick = rng.choice(n, size=min(n, max_examples), replace=False) if n else []
    texts = list(item_texts or [])
    texts += [cols["source"][i] for i in pick] + [cols["target"][i] for i in pick]
    return texts


class P5Recommender(Recommender):
    """P5 (T5 + item index + constrained beams) as a full-catalogue recommender."""

    name = "P5"

    def __init__(self, model: P5Model | None = None, serializer: P5Serializer | None = None,
                 template_id: str | None = None, k: int = 10, num_beams: int | None = None,
                 batch_size: int = 32, indexing: str = "collaborative", index_kw: dict | None = None,
                 model_config: dict | P5Config | None = None, serializer_config: dict | SerializerConfig | None = None,
                 train_config: dict | P5TrainConfig | None = None, item_titles: list[str] | None = None,
                 seed: int = 0, decode: str = "auto"):
        self.model = model
        self.serializer = serializer
        self.template_id = template_id
        self.k = int(k)
        self.num_beams = num_beams
        self.batch_size = batch_size
        self.indexing = indexing if model is None else model.index.scheme
        self.index_kw = dict(index_kw or {})
        self.model_config = config_from_dict(P5Config, model_config, "P5 model")
        self.serializer_config = config_from_dict(SerializerConfig, serializer_config, "P5 serializer")
        self.train_config = config_from_dict(P5TrainConfig, train_config, "P5 trainer")
        self.item_titles = item_titles
        self.seed = seed
        self.decode = decode
        self.history: dict = {}
        if model is not None and serializer is None:
            self.serializer = P5Serializer(model.index, item_titles, self.serializer_config)
        self.name = f"P5-{self.indexing}"

    @property
    def scores_new_items(self) -> bool:  # type: ignore[override]
        """Semantic ids, or item tokens started from text, carry signal for items never seen in training."""
        text_init = self.model is not None and "text" in self.model.config.item_init
        return self.indexing.startswith("semantic") or text_init or "text" in self.model_config.item_init

    def fit(self, data: TrainView, progress: bool = True) -> P5Recommender:
        """Build index, tokenizer and T5 from the training view, then train (valid = early stopping)."""
        from textrec.indexing import build_index

        seqs = data.sequences()
        titles = self.item_titles or data.item_text
        if self.model is None:
            index = build_index(self.indexing, seqs, data.n_items, texts=data.item_text, seed=self.seed,
                                **self.index_kw)
            self.serializer = P5Serializer(index, titles, self.serializer_config)
            tdata = TrainData.from_frame(data.train, data.n_users, data.n_items)
            corpus = tokenizer_corpus(self.serializer, tdata, titles, seed=self.seed)
            self.model = P5Model.build(self.model_config, index, corpus, seed=self.seed)
            from textrec.p5.item_init import apply_item_init

            self.init_report = apply_item_init(self.model, self.model_config.item_init, seqs, texts=data.item_text,
                                               seed=self.seed)
        assert self.serializer is not None
        tdata = TrainData.from_frame(data.train, data.n_users, data.n_items)
        self.history = train_p5(self.model, self.serializer, tdata, data.valid, self.train_config, progress)
        self.model.merge_lora()
        from textrec.p5.item_init import refit_after_training
        from textrec.p5.trainer import valid_ndcg

        def valid_score() -> float:
            return valid_ndcg(self.model, self.serializer, data.valid, data.n_items,
                              template_id=self.train_config.eval_template)["ndcg@10"]

        self.refit_report = refit_after_training(self.model, seqs, data.item_text,
                                                 score=valid_score if data.valid is not None else None)
        return self

    def sources(self, users: np.ndarray, histories: list[np.ndarray]) -> list[str]:
        """Sequential prompts for each (user, history) row."""
        assert self.serializer is not None
        tpl = self.serializer.template("sequential", self.template_id)
        return [self.serializer.sequential_source(u, h, tpl) for u, h in zip(users, histories)]

    def score(self, users: np.ndarray, histories: list[np.ndarray]) -> torch.Tensor:
        """Beam scores for the top-``k`` generated items, ``-inf`` elsewhere (one-token ids: every item's score)."""
        from textrec.p5.generation import item_score_matrix

        if self.model is None:
            raise RuntimeError("P5Recommender is not fitted")
        return item_score_matrix(self.model, self.sources(users, histories), histories, self.model.index.n_items,
                                 k=self.k, num_beams=self.num_beams, batch_size=self.batch_size, decode=self.decode)

    def get_config(self) -> dict[str, Any]:
        """Adapter settings and the model config (the T5 has its own folder)."""
        cfg = {"template_id": self.template_id, "k": self.k, "num_beams": self.num_beams,
               "batch_size": self.batch_size, "indexing": self.indexing, "decode": self.decode,
               "serializer_config": asdict(self.serializer_config), "seed": self.seed}
        if self.model is not None:
            cfg["model_config"] = self.model.config_dict()
        return cfg

    def n_scored_items(self) -> int | None:
        return self.model.index.n_items if self.model is not None else None

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """One artifact: config, whole-word tables, catalog (ids + titles), ``t5/``, ``tokenizer/``, index."""
        from textrec.artifact import save_model
        from textrec.catalog import Catalog

        if self.model is None:
            raise RuntimeError("nothing to save: P5Recommender is not fitted")
        model = self.model
        catalog = self.catalog
        titles = self.serializer.item_titles if self.serializer is not None else None
        if catalog is None and (model.item_ids is not None or titles is not None):
            ids = model.item_ids if model.item_ids is not None else [str(i) for i in range(model.index.n_items)]
            catalog = Catalog(ids, titles=titles)
        if catalog is not None and titles is not None and catalog.titles != list(map(str, titles)):
            catalog = Catalog(catalog.ids, catalog.text, titles)  # the prompts' titles are what P5 reads
        model.merge_lora()
        return save_model(path, "P5", self.get_config(), model.extra_tensors(), catalog=catalog, users=self.users,
                          extra=model.write_parts)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> P5Recommender:
        """Load a P5 artifact (or a textrec 0.1 P5 folder, whose files are read as before)."""
        from textrec.artifact import read_config, read_tensors
        from textrec.catalog import Catalog, UserTable

        path = Path(path)
        if (path / "p5_config.json").is_file():
            model = P5Model.from_pretrained(path)
            cfg = json.loads((path / "p5_recommender.json").read_text()) if (path / "p5_recommender.json").is_file() else {}
            titles = json.loads((path / "item_titles.json").read_text()) if (path / "item_titles.json").is_file() else None
            cfg.pop("indexing", None)
            return cls(model=model, item_titles=titles, **cfg)
        body = read_config(path)
        cfg = dict(body["config"])
        catalog = Catalog.load(path) if (path / "catalog.json").is_file() else None
        model = P5Model.read_parts(path, cfg.pop("model_config"), read_tensors(path),
                                   item_ids=catalog.ids if catalog is not None else None)
        cfg.pop("indexing", None)
        rec = cls(model=model, item_titles=catalog.titles if catalog is not None else None, **cfg)
        rec.catalog, rec.users = catalog, UserTable.load(path)
        return rec
