"""VQ-Rec (Hou et al., WWW 2023): items as product-quantized codes of their text.

item text -> sentence embedding -> OPQ/PQ codes (D ints per item) -> code-embedding tables
(D x (K+1) x d; row K of each table is padding) -> item vector = sum over its D code embeddings
-> the shared causal backbone -> scores against every item's code vector (one matmul).

Because an item is its codes, an item never seen in training is scorable from its text alone:
``add_items(texts)`` encodes and quantizes new texts and appends their codes to the catalog.
``id_residual=True`` adds a per-item ID embedding (zero-initialised; zero for new items) on top
of the codes for warm items — the "codes + light ID residual" variant.

Status: the from-scratch recipe (full-softmax CE through the shared SeqTrainer). Pretraining
with in-batch contrastive loss + hard negatives and code-table-only fine-tuning are not built yet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from textrec.models.backbone import BackboneConfig, CausalSequenceEncoder
from textrec.models.base import Recommender, TrainView, register_model
from textrec.models.seq_trainer import SeqTrainer, SeqTrainerConfig, resolve_device, score_histories, seeded


class VQRecModule(nn.Module):
    """Code-embedding tables + causal encoder; implements the trainer's ``SequentialModule``."""

    def __init__(self, codes: torch.Tensor, n_centroids: int, cfg: BackboneConfig,
                 id_residual: bool = False) -> None:
        super().__init__()
        n_items, n_sub = codes.shape
        self.n_centroids = int(n_centroids)
        self.register_buffer("codes", codes.long().clone())
        self.register_buffer("sub_index", torch.arange(n_sub)[None, :])
        # One (K+1) x d table per sub-vector; row K is the padding code (never trained as an item).
        self.code_emb = nn.Parameter(torch.randn(n_sub, self.n_centroids + 1, cfg.hidden) * cfg.init_std)
        with torch.no_grad():
            self.code_emb[:, self.n_centroids].zero_()
        self.id_residual = nn.Embedding(n_items, cfg.hidden) if id_residual else None
        if self.id_residual is not None:
            nn.init.zeros_(self.id_residual.weight)
        self.encoder = CausalSequenceEncoder(cfg)

    def item_representations(self) -> torch.Tensor:
        reps = self.code_emb[self.sub_index, self.codes].sum(1)  # (n_items, d)
        if self.id_residual is not None:
            n_warm = self.id_residual.num_embeddings
            reps = torch.cat([reps[:n_warm] + self.id_residual.weight, reps[n_warm:]])
        return reps

    def encode(self, items: torch.Tensor, mask: torch.Tensor,
               item_reps: torch.Tensor | None = None) -> torch.Tensor:
        reps = self.item_representations() if item_reps is None else item_reps
        return self.encoder(reps[items], mask)


@register_model
class VQRec(Recommender):
    """Sequential recommender over text codes; scores new items from their text.

    ``codes`` may be given (n_items x D ints in [0, K)); otherwise ``fit`` encodes the item
    texts of the TrainView with ``encoder`` (default: bundled MiniLM) and fits the quantizer
    on the items that have training events only.
    """

    name = "VQRec"
    scores_new_items = True

    def __init__(self, backbone: BackboneConfig | dict | None = None,
                 trainer: SeqTrainerConfig | dict | None = None, n_subvectors: int = 32,
                 n_centroids: int = 256, opq: bool = True, encoder: str | None = None,
                 id_residual: bool = False, n_items: int | None = None, n_warm: int | None = None,
                 max_epochs: int | None = None, seed: int = 0) -> None:
        self.backbone_config = BackboneConfig.from_dict(backbone)
        t = SeqTrainerConfig.from_dict(trainer).to_dict()
        if max_epochs is not None:
            t["epochs"] = min(t["epochs"], int(max_epochs))
        self.trainer_config = SeqTrainerConfig(**t)
        self.n_subvectors, self.n_centroids, self.opq = n_subvectors, n_centroids, opq
        self.encoder_name, self.id_residual, self.seed = encoder, id_residual, seed
        self.n_items, self.n_warm = n_items, n_warm
        self.quantizer = None
        self.codes: np.ndarray | None = None
        self.module: VQRecModule | None = None
        self.history: list[dict[str, Any]] = []
        self.code_report: dict[str, Any] = {}

    # ---- codes ----------------------------------------------------------------------------
    def _text_encoder(self):
        from textrec.text.encoder import TextEncoder

        return TextEncoder(self.encoder_name)

    def build_codes(self, texts: list[str], train_items: np.ndarray, progress: bool = True) -> np.ndarray:
        """Embed all item texts, fit OPQ/PQ on the training items' embeddings, code every item."""
        from textrec.text.quantize import ProductQuantizer, code_stats

        emb = self._text_encoder().encode(texts, progress=progress)
        self.quantizer = ProductQuantizer(self.n_subvectors, self.n_centroids, opq=self.opq, seed=self.seed)
        self.quantizer.fit(emb[train_items])
        codes = self.quantizer.encode(emb)
        self.code_report = {"quantizer": self.quantizer.report, "codes": code_stats(codes)}
        return codes

    def set_codes(self, codes: np.ndarray, n_centroids: int) -> VQRec:
        """Use precomputed codes (n_items x D) instead of building them in ``fit``."""
        self.codes = np.asarray(codes, dtype=np.int64)
        self.n_centroids = int(n_centroids)
        return self

    # ---- fit / score ----------------------------------------------------------------------
    def _build(self, codes: np.ndarray, n_warm: int) -> VQRecModule:
        with seeded(self.trainer_config.seed):
            module = VQRecModule(torch.from_numpy(codes), self.n_centroids, self.backbone_config,
                                 id_residual=self.id_residual)
            if module.id_residual is not None and module.id_residual.num_embeddings != n_warm:
                module.id_residual = nn.Embedding(n_warm, self.backbone_config.hidden)
                nn.init.zeros_(module.id_residual.weight)
        return module.to(resolve_device(self.trainer_config.device))

    def fit(self, data: TrainView, progress: bool = True) -> VQRec:
        if self.codes is None:
            if data.item_text is None:
                raise ValueError("VQRec needs item text (TrainView.item_text) or set_codes()")
            train_items = np.unique(data.train["item"].to_numpy())
            self.codes = self.build_codes(data.item_text, train_items, progress=progress)
            if self.quantizer is not None:
                self.n_centroids = self.quantizer.n_centroids_
        self.n_items = self.n_warm = int(data.n_items)
        self.module = self._build(self.codes, self.n_warm)
        trainer = SeqTrainer(self.trainer_config)
        self.history = trainer.fit(self.module, data, progress=progress, name=self.name)
        return self

    def score(self, users: np.ndarray, histories: list[np.ndarray]) -> torch.Tensor:
        if self.module is None:
            raise RuntimeError("VQRec is not fitted; call fit() or from_pretrained() first")
        return score_histories(self.module, histories, self.trainer_config.max_len,
                               self.trainer_config.eval_batch_size)

    def add_items(self, texts: list[str] | None = None, codes: np.ndarray | None = None) -> np.ndarray:
        """Append new items (from text, or from codes) to the catalog without retraining.

        Returns their new item indexes. New items get no ID residual: they are scored by codes only.
        """
        if self.module is None:
            raise RuntimeError("fit or load the model before adding items")
        if codes is None:
            if self.quantizer is None:
                raise RuntimeError("no quantizer: pass codes, or fit the model from text")
            if not texts or any(not str(t).strip() for t in texts):
                raise ValueError("add_items needs a non-empty text for every new item")
            codes = self.quantizer.encode(self._text_encoder().encode(list(texts), progress=False))
        codes = np.asarray(codes, dtype=np.int64)
        if codes.ndim != 2 or codes.shape[1] != self.module.codes.shape[1]:
            raise ValueError(f"codes must be (n, {self.module.codes.shape[1]})")
        if codes.min() < 0 or codes.max() >= self.n_centroids:
            raise ValueError(f"codes must lie in [0, {self.n_centroids})")
        start = int(self.module.codes.shape[0])
        self.module.codes = torch.cat([self.module.codes, torch.from_numpy(codes).to(self.module.codes.device)])
        self.codes = self.module.codes.cpu().numpy()
        self.n_items = int(self.module.codes.shape[0])
        return np.arange(start, self.n_items)

    # ---- persistence ----------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        return {"backbone": self.backbone_config.to_dict(), "trainer": self.trainer_config.to_dict(),
                "n_subvectors": self.n_subvectors, "n_centroids": self.n_centroids, "opq": self.opq,
                "encoder": self.encoder_name, "id_residual": self.id_residual, "n_items": self.n_items,
                "n_warm": self.n_warm, "seed": self.seed}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        if self.module is None:
            raise RuntimeError("VQRec is not fitted: nothing to save")
        return {k: v for k, v in self.module.state_dict().items() if k != "sub_index"}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.codes = tensors["codes"].numpy()
        self.module = self._build(self.codes, int(self.n_warm or self.codes.shape[0]))
        self.module.load_state_dict(tensors, strict=False)
        self.module.eval()

    def save_extra(self, path: Path) -> None:
        if self.quantizer is not None:
            self.quantizer.save(Path(path) / "quantizer")

    def load_extra(self, path: Path) -> None:
        qdir = Path(path) / "quantizer"
        if qdir.is_dir():
            from textrec.text.quantize import ProductQuantizer

            self.quantizer = ProductQuantizer.load(qdir)


__all__ = ["VQRec", "VQRecModule"]
