"""What every explanation model shares: batching, prediction and the save/load round trip.

A model folder is a textrec artifact: ``config.json`` (model type + config + sizes),
``model.safetensors`` (all weights, tied ones stored once), ``tokenizer.json`` and the manifest.
No pickle anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from textrec.explain.tokenizer import WordTokenizer


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
        from textrec.options import progress_bar as tqdm

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

    def fill_folder(self, folder: Path) -> None:
        """Write this model's artifact files into an existing folder (used inside an explainer too)."""
        from dataclasses import asdict

        from textrec.artifact import fill_model
        from textrec.registry import registered_name

        def weights(dst: Path) -> None:
            from safetensors.torch import save_file, save_model

            if self.save_frozen:
                save_model(self, str(dst / "model.safetensors"))  # tied weights are stored once
            else:
                save_file({k: v.detach().contiguous() for k, v in self.named_parameters() if v.requires_grad},
                          str(dst / "model.safetensors"))
            self.tokenizer.save(dst)

        config = {"model": asdict(self.config), "n_users": self.tokenizer.n_users,
                  "n_items": self.tokenizer.n_items, "rating_mean": self.rating_mean}
        fill_model(folder, registered_name(type(self)), config, tensors=None, extra=weights)

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write the artifact (config.json, model.safetensors, tokenizer.json, manifest) as one unit."""
        from textrec.artifact import write_folder

        return write_folder(folder, self.fill_folder)

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> ExplainModel:
        """Rebuild a saved model (the model type in config.json picks the class); manifest verified."""
        from textrec.artifact import ArtifactError, detect_format, read_config
        from textrec.registry import model_class

        folder = Path(folder)
        fmt = detect_format(folder)
        if fmt == "current":
            body = read_config(folder)
            klass = model_class(str(body["model_type"]))
            meta = body["config"]
            model_cfg = meta.get("model")
        elif "explanation model" in fmt:  # textrec 0.1: {"kind", "config", "n_users", ...}
            meta = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            klass = model_class(LEGACY_KINDS.get(meta.get("kind"), str(meta.get("kind"))))
            model_cfg = meta.get("config")
        else:
            raise ArtifactError(f"{folder}: {fmt}, not an explanation model")
        if not (isinstance(klass, type) and issubclass(klass, ExplainModel)):
            raise ArtifactError(f"{folder}/config.json: {klass.__name__} is not an explanation model")
        return klass._build_from(folder, meta, model_cfg)

    @classmethod
    def _build_from(cls, folder: Path, meta: dict[str, Any], model_cfg: Any) -> ExplainModel:
        from safetensors.torch import load_file, load_model

        from textrec.artifact import ArtifactError
        from textrec.recipes import config_from_dict

        try:
            tok = WordTokenizer.load(folder, int(meta["n_users"]), int(meta["n_items"]))
            model = cls(config_from_dict(cls.config_class, model_cfg, f"{cls.kind} model"), tok,
                        rating_mean=float(meta.get("rating_mean", 4.0)))
        except (KeyError, TypeError, ValueError) as e:
            raise ArtifactError(f"{folder}/config.json: invalid explanation-model config ({e})") from None
        if cls.save_frozen:
            load_model(model, str(folder / "model.safetensors"))
        else:
            saved = load_file(str(folder / "model.safetensors"))
            trained = {k for k, v in model.named_parameters() if v.requires_grad}
            if set(saved) != trained:
                raise ArtifactError(f"{folder}/model.safetensors: trained tensors do not match the model "
                                    f"(missing {sorted(trained - set(saved))[:5]}, "
                                    f"unexpected {sorted(set(saved) - trained)[:5]})")
            model.load_state_dict(saved, strict=False)
        model.eval()
        return model


#: model kinds written by textrec 0.1 -> registry names
LEGACY_KINDS = {"peter": "PETER", "erra": "ERRA", "erra_t5": "ERRA-T5", "erra_lm": "ERRA-LM"}
