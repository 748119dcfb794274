"""What every explanation model shares: batching, prediction and the save/load round trip.

A model folder holds ``config.json`` (model kind + config + sizes), ``model.safetensors``
(all weights, tied ones stored once) and ``tokenizer.json``. No pickle anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from textrec.explain.tokenizer import WordTokenizer

MODEL_KINDS: dict[str, type[ExplainModel]] = {}


class ExplainModel(nn.Module):
    """Base class: subclasses define ``collate``, ``forward`` (returns losses) and ``predict_batch``."""

    kind = "base"
    #: False for a model wrapping a frozen pretrained network that it rebuilds from its config:
    #: then only the trainable tensors are saved (see :mod:`textrec.explain.lm`).
    save_frozen = True

    def __init__(self, config: Any, tokenizer: WordTokenizer, rating_mean: float = 4.0):
        super().__init__()
        self.config, self.tokenizer = config, tokenizer
        self.rating_mean = float(rating_mean)

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        MODEL_KINDS[cls.kind] = cls

    # subclasses implement these -----------------------------------------------------------
    def collate(self, examples: Sequence) -> dict[str, torch.Tensor]:  # pragma: no cover
        """Examples -> a batch of tensors."""
        raise NotImplementedError

    def predict_batch(self, batch: dict[str, torch.Tensor], num_beams: int = 1) -> tuple[list[str], list[float]]:
        """(explanations, ratings) for one batch."""
        raise NotImplementedError  # pragma: no cover

    # shared ------------------------------------------------------------------------------
    def clip_rating(self, r: torch.Tensor) -> torch.Tensor:
        """Ratings clipped to the configured scale, as PETER does at test time."""
        return r.clamp(self.config.rating_min, self.config.rating_max)

    @torch.no_grad()
    def predict(self, examples: Sequence, batch_size: int = 128, num_beams: int | None = None,
                progress: bool = False) -> tuple[list[str], list[float]]:
        """Explanations and ratings for examples (eval mode, no gradients)."""
        from tqdm.auto import tqdm

        was = self.training
        self.eval()
        beams = self.config.num_beams if num_beams is None else num_beams
        texts: list[str] = []
        ratings: list[float] = []
        for s in tqdm(range(0, len(examples), batch_size), desc=f"generating ({self.kind})", disable=not progress,
                      leave=False):
            t, r = self.predict_batch(self.collate(examples[s:s + batch_size]), num_beams=beams)
            texts += t
            ratings += r
        self.train(was)
        return texts, ratings

    def save_pretrained(self, folder: str | Path) -> None:
        """Write config.json, model.safetensors and tokenizer.json into ``folder``."""
        from dataclasses import asdict

        from safetensors.torch import save_model

        from textrec.io import atomic_path, write_json

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tmp, final = atomic_path(folder / "model.safetensors")
        if self.save_frozen:
            save_model(self, str(tmp))
        else:
            from safetensors.torch import save_file

            save_file({k: v.detach().contiguous() for k, v in self.named_parameters() if v.requires_grad}, str(tmp))
        tmp.replace(final)
        self.tokenizer.save(folder)
        write_json(folder / "config.json", {"kind": self.kind, "config": asdict(self.config),
                                            "n_users": self.tokenizer.n_users, "n_items": self.tokenizer.n_items,
                                            "rating_mean": self.rating_mean})

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> ExplainModel:
        """Rebuild a model saved by ``save_pretrained`` (the kind in config.json picks the class)."""
        from safetensors.torch import load_model

        import textrec.explain.generator  # noqa: F401  (registers every model kind)
        import textrec.explain.lm  # noqa: F401
        from textrec.recipes import config_from_dict

        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"{folder}: no config.json (not a saved explanation model)")
        meta = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        kind = meta.get("kind")
        if kind not in MODEL_KINDS:
            raise ValueError(f"{folder}/config.json: unknown model kind {kind!r} (known: {sorted(MODEL_KINDS)})")
        klass = MODEL_KINDS[kind]
        tok = WordTokenizer.load(folder, meta["n_users"], meta["n_items"])
        model = klass(config_from_dict(klass.config_class, meta["config"], f"{kind} model"), tok,
                      rating_mean=meta.get("rating_mean", 4.0))
        if klass.save_frozen:
            load_model(model, str(folder / "model.safetensors"))
        else:
            from safetensors.torch import load_file

            saved = load_file(str(folder / "model.safetensors"))
            trained = {k for k, v in model.named_parameters() if v.requires_grad}
            if set(saved) != trained:
                raise ValueError(f"{folder}/model.safetensors: trained tensors do not match the model "
                                 f"(missing {sorted(trained - set(saved))[:5]}, "
                                 f"unexpected {sorted(set(saved) - trained)[:5]})")
            model.load_state_dict(saved, strict=False)
        model.eval()
        return model
