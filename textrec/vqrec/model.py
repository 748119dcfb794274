"""VQ-Rec (Hou et al., WWW 2023): items as product-quantized codes of their text.

item text -> sentence embedding -> OPQ/PQ codes (D ints per item) -> code-embedding tables
(D x (K+1) x d; row K of each table is padding) -> item vector = sum over its D code embeddings
-> the shared causal backbone -> scores against every item's code vector (one matmul).

Because an item is its codes, an item never seen in training is scorable from its text alone:
``add_items(texts)`` encodes and quantizes new texts and appends their codes to the catalog.
``id_residual=True`` adds a per-item ID embedding (zero-initialised; zero for new items) on top
of the codes for warm items — the "codes + light ID residual" variant.

Three recipes, one loop (:class:`~textrec.models.seq_trainer.SeqTrainer`), configs in ``training/``:

* ``vqrec_scratch`` — one domain, full-softmax CE (``fit``).
* ``vqrec_pretrain`` — one or several domains (``pretrain``): catalogs concatenated, one
  quantizer fit on all domains' training items, shuffled windows so batches mix domains,
  in-batch contrastive loss over cosine / temperature, and semi-synthetic hard negatives (each
  positive's codes replaced at random with probability ``hard_negative_prob``).
* ``vqrec_finetune`` — a new domain (``transfer``): its items are coded with the *pretrained*
  quantizer, and only the code-embedding tables are trained (``train="codes"``; option
  ``"codes+transformer"``). Option ``permutation=True``: first learn, per sub-vector, a
  differentiable permutation of the table rows (Gumbel-Sinkhorn, VQ-Rec's code-embedding
  re-assignment) for ``permutation_epochs``, harden it (Hungarian assignment) and apply it,
  then train the tables. ``transfer(view, train="none")`` is the zero-shot row.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from textrec.models.backbone import BackboneConfig, CausalSequenceEncoder
from textrec.models.base import Recommender, TrainView
from textrec.models.sasrec import SASRec
from textrec.models.seq_trainer import SeqTrainer, SeqTrainerConfig, resolve_device, score_histories, seeded


class CodePermutation(nn.Module):
    """A learnable, differentiable permutation of each sub-vector's code-table rows.

    Gumbel-Sinkhorn (Mena et al., 2018): ``P = Sinkhorn((L + noise * G) / tau)`` is a soft
    doubly-stochastic matrix per sub-vector; logits start at ``init_scale * I`` so training starts
    from the identity (the pretrained assignment). ``hard()`` solves the assignment problem on the
    logits (Hungarian) and gives the permutation that :meth:`VQRec.apply_permutation` bakes in.
    The padding row is never permuted.
    """

    def __init__(self, n_sub: int, n_centroids: int, tau: float = 0.1, noise: float = 0.1,
                 iters: int = 20, init_scale: float = 1.0) -> None:
        super().__init__()
        self.tau, self.noise, self.iters = tau, noise, iters
        self.logits = nn.Parameter(torch.eye(n_centroids).repeat(n_sub, 1, 1) * init_scale)

    def soft(self) -> torch.Tensor:
        """(D, K, K) doubly-stochastic matrices (noisy while training, deterministic in eval)."""
        x = self.logits
        if self.training and self.noise > 0:
            u = torch.rand_like(x).clamp_(1e-9, 1 - 1e-9)
            x = x + self.noise * -torch.log(-torch.log(u))
        x = x / self.tau
        for _ in range(self.iters):  # Sinkhorn normalisation in log space
            x = x - torch.logsumexp(x, dim=2, keepdim=True)
            x = x - torch.logsumexp(x, dim=1, keepdim=True)
        return x.exp()

    def hard(self) -> np.ndarray:
        """(D, K) permutation: new row k of table d is old row ``perm[d, k]``."""
        from scipy.optimize import linear_sum_assignment

        out = []
        for lg in self.logits.detach().cpu().numpy():
            rows, cols = linear_sum_assignment(-lg)
            perm = np.empty_like(cols)
            perm[rows] = cols
            out.append(perm)
        return np.stack(out)

    def forward(self, tables: torch.Tensor) -> torch.Tensor:
        k = self.logits.shape[-1]
        mixed = torch.einsum("dij,djh->dih", self.soft(), tables[:, :k])
        return torch.cat([mixed, tables[:, k:]], dim=1)


class VQRecModule(nn.Module):
    """Code-embedding tables + causal encoder; implements the trainer's ``SequentialModule``."""

    def __init__(self, codes: torch.Tensor, n_centroids: int, cfg: BackboneConfig,
                 id_residual: bool = False, similarity: str = "dot", temperature: float = 1.0,
                 code_dropout: float = 0.0) -> None:
        super().__init__()
        self.code_dropout = float(code_dropout)
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
        self.similarity, self.temperature = similarity, float(temperature)
        self.permutation: CodePermutation | None = None

    def tables(self) -> torch.Tensor:
        """The (D, K+1, d) code tables, with the learned row permutation applied if one is active."""
        if self.permutation is None:
            return self.code_emb
        return self.permutation(self.code_emb)

    def score_hidden(self, hidden: torch.Tensor, reps: torch.Tensor) -> torch.Tensor:
        """Dot product, or cosine / temperature (the pretraining similarity)."""
        if self.similarity == "cos":
            return F.normalize(hidden, dim=-1) @ F.normalize(reps, dim=-1).T / self.temperature
        return hidden @ reps.T

    def corrupt_representations(self, targets: torch.Tensor, prob: float) -> torch.Tensor:
        """Semi-synthetic hard negatives: each target's codes, each replaced by a random code
        with probability ``prob`` (at least one replaced, so a fake never equals its positive)."""
        codes = self.codes[targets].clone()
        replace = torch.rand(codes.shape, device=codes.device) < prob
        none = ~replace.any(1)
        if none.any():
            replace[none, torch.randint(codes.shape[1], (int(none.sum()),), device=codes.device)] = True
        shift = torch.randint(1, self.n_centroids, codes.shape, device=codes.device)
        codes = torch.where(replace, (codes + shift) % self.n_centroids, codes)
        return self.tables()[self.sub_index, codes].sum(1)

    def item_representations(self) -> torch.Tensor:
        per_code = self.tables()[self.sub_index, self.codes]  # (n_items, D, d)
        if self.training and self.code_dropout > 0:
            # Code dropout: each item's sum is taken over a random subset of its codes (rescaled),
            # so the model cannot lean on one exact code tuple; a new item is, to the model, an
            # unseen combination of codes it has seen.
            keep = torch.rand(per_code.shape[:2], device=per_code.device) >= self.code_dropout
            keep[torch.arange(keep.shape[0]), torch.randint(keep.shape[1], (keep.shape[0],))] = True
            scale = keep.shape[1] / keep.sum(1, keepdim=True).float()
            reps = (per_code * keep[..., None]).sum(1) * scale
        else:
            reps = per_code.sum(1)  # (n_items, d)
        if self.id_residual is not None:
            n_warm = self.id_residual.num_embeddings
            reps = torch.cat([reps[:n_warm] + self.id_residual.weight, reps[n_warm:]])
        return reps

    def encode(self, items: torch.Tensor, mask: torch.Tensor,
               item_reps: torch.Tensor | None = None) -> torch.Tensor:
        reps = self.item_representations() if item_reps is None else item_reps
        return self.encoder(reps[items], mask)


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
                 id_residual: bool = False, similarity: str = "dot", temperature: float = 1.0,
                 code_dropout: float = 0.0, cold_start_offset: float = 0.0, n_items: int | None = None, n_warm: int | None = None,
                 max_epochs: int | None = None, seed: int = 0, new_item_scoring: str = "calibrated") -> None:
        if new_item_scoring not in ("calibrated", "raw"):
            raise ValueError(f"new_item_scoring must be 'calibrated' or 'raw', got {new_item_scoring!r}")
        if similarity not in ("dot", "cos"):
            raise ValueError(f"similarity must be 'dot' or 'cos', got '{similarity}'")
        if temperature <= 0:
            raise ValueError("temperature must be > 0")
        if not 0.0 <= code_dropout < 1.0:
            raise ValueError(f"code_dropout must be in [0, 1), got {code_dropout}")
        self.similarity, self.temperature = similarity, float(temperature)
        self.code_dropout = float(code_dropout)
        # Added to the scores of items that had no training event when the model was fitted
        # (and of items added later). Such items never took part in the softmax, so they carry
        # none of the popularity the warm items' scores absorbed; the offset, chosen on valid
        # (``tune_cold_start_offset``), sets how much exposure they get. 0 = scores as trained.
        self.cold_start_offset = float(cold_start_offset)
        self.cold_items: np.ndarray | None = None
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
        # Items without training events (and items added from text) are placed inside each user's
        # warm-score distribution by a calibration fitted on valid (textrec.models.cold_items), by
        # their text cosine to the history: raw code scores let uninformative added texts take over
        # the rankings. "raw" keeps the code scores (+ cold_start_offset) as trained.
        self.new_item_scoring = new_item_scoring
        self.text_emb: np.ndarray | None = None  # the items' sentence vectors (what the calibration ranks by)
        self.calibration = None
        #: weights of the new-item affinity: cosine to the whole history, to its last 10 items
        self.affinity_weights: tuple[float, float] = (1.0, 0.0)

    # ---- codes ----------------------------------------------------------------------------
    def _text_encoder(self):
        from textrec.text.encoder import TextEncoder

        return TextEncoder(self.encoder_name)

    def build_codes(self, texts: list[str], train_items: np.ndarray, progress: bool = True) -> np.ndarray:
        """Embed all item texts, fit OPQ/PQ on the training items' embeddings, code every item."""
        from textrec.text.quantize import ProductQuantizer, code_stats

        emb = self._text_encoder().encode(texts, progress=progress)
        self.text_emb = np.asarray(emb, dtype=np.float32)
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
                                 id_residual=self.id_residual, similarity=self.similarity,
                                 temperature=self.temperature, code_dropout=self.code_dropout)
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
        self.cold_items = np.ones(self.n_items, dtype=bool)
        self.cold_items[np.unique(data.train["item"].to_numpy())] = False
        self.module = self._build(self.codes, self.n_warm)
        trainer = SeqTrainer(self.trainer_config)
        self.history = trainer.fit(self.module, data, progress=progress, name=self.name)
        self.calibration = None
        if self.new_item_scoring == "calibrated" and self.text_emb is not None and len(data.valid):
            self.calibrate(data.valid)
        return self

    def calibrate(self, valid, max_rows: int = 6000):
        """Fit the new-item placement on valid rows (:func:`textrec.models.cold_items.fit_calibration`),
        new items ranked by the cosine of their text to the mean text of the whole history, of its
        last 10 items, or both (whichever ranks the valid targets best by text alone)."""
        from textrec.models.cold_items import enough_new_targets, fit_calibration, full_ndcg, seen_mask

        rows = np.arange(len(valid))
        if len(rows) > max_rows:
            rows = np.sort(np.random.default_rng(self.seed).choice(len(rows), max_rows, replace=False))
        hists = [valid.history(i) for i in rows]
        self.calibration = None
        scores = self.score(np.zeros(len(hists), dtype=np.int64), hists)
        t_rows = np.repeat(np.arange(len(rows)), [len(valid.targets(i)) for i in rows])
        t_items = np.concatenate([valid.targets(i) for i in rows]).astype(np.int64)
        cold = torch.from_numpy(self._cold_mask(scores.shape[1]))
        seen = seen_mask(hists, scores.shape[1])
        t_cold = cold.numpy()[t_items]
        pick = t_cold if enough_new_targets(t_cold) else np.ones(len(t_items), dtype=bool)
        table = []
        for w in ((1.0, 0.0), (0.0, 1.0), (1.0, 1.0)):
            a = self._affinity(hists, w)
            table.append((full_ndcg(a, seen, t_rows[pick], t_items[pick]), w, a))
        best = max(table, key=lambda x: x[0])
        self.affinity_weights = best[1]
        self.calibration = fit_calibration(scores, best[2], seen, cold, t_rows, t_items, len(rows))
        self.calibration.report["affinity_table"] = [{"weights": list(w), "full_ndcg": round(v, 5)}
                                                     for v, w, _ in table]
        return self.calibration

    def _affinity(self, histories: list[np.ndarray], weights: tuple[float, float] | None = None) -> torch.Tensor:
        from textrec.models.cold_items import history_cosine

        w_all, w_recent = self.affinity_weights if weights is None else weights
        emb = torch.from_numpy(self.text_emb)
        out = torch.zeros(len(histories), emb.shape[0])
        if w_all:
            out += w_all * history_cosine(emb, histories)
        if w_recent:
            out += w_recent * history_cosine(emb, [np.asarray(h)[-10:] for h in histories])
        return out

    def _cold_mask(self, n: int) -> np.ndarray:
        if self.cold_items is None:
            return np.zeros(n, dtype=bool)
        return np.asarray(self.cold_items[:n], dtype=bool)

    from_recipe = classmethod(SASRec.from_recipe.__func__)

    def pretrain(self, views: list[TrainView], progress: bool = True) -> VQRec:
        """Pretrain on one or several domains at once (recipe ``vqrec_pretrain``).

        Catalogs are concatenated; one quantizer is fit on every domain's training items; the
        loop's shuffled windows mix domains in each batch; early stopping reads the merged valid
        rows. Afterwards the model scores the merged catalog; ``transfer`` moves it to a domain.
        """
        merged, offsets = TrainView.concat(views)
        if merged.item_text is None:
            raise ValueError("pretraining needs item text for every domain")
        train_items = np.unique(merged.train["item"].to_numpy())
        self.codes = self.build_codes(merged.item_text, train_items, progress=progress)
        self.n_centroids = self.quantizer.n_centroids_
        self.n_items = self.n_warm = int(merged.n_items)
        self.module = self._build(self.codes, self.n_warm)
        self.history = SeqTrainer(self.trainer_config).fit(self.module, merged, progress=progress,
                                                           name=f"{self.name}-pretrain")
        self.pretrain_report = {"domains": [v.dataset_name for v in views],
                                "item_offsets": offsets.tolist(), "epochs": len(self.history)}
        return self

    def transfer(self, view: TrainView, train: str = "codes", trainer: SeqTrainerConfig | dict | None = None,
                 permutation: bool = False, permutation_epochs: int = 3, permutation_lr: float = 0.05,
                 id_residual: bool | None = None,
                 progress: bool = True) -> VQRec:
        """A copy of this (pretrained) model for another domain, coded with this quantizer.

        ``train``: ``"none"`` (zero-shot: no training on the domain), ``"codes"`` (only the
        code-embedding tables, and the ID residual if enabled), ``"codes+transformer"``, or
        ``"all"``. ``permutation``: first learn and apply a per-sub-vector row permutation of the
        tables (Gumbel-Sinkhorn) for ``permutation_epochs`` at ``permutation_lr``. The original
        model is unchanged.
        """
        import copy

        if train not in ("none", "codes", "codes+transformer", "all"):
            raise ValueError(f"train must be none|codes|codes+transformer|all, got '{train}'")
        if self.module is None or self.quantizer is None:
            raise RuntimeError("transfer needs a fitted model with its quantizer")
        if view.item_text is None:
            raise ValueError("the target domain needs item text (TrainView.item_text)")
        new = copy.copy(self)
        new.history, new.code_report = [], {}
        new.id_residual = self.id_residual if id_residual is None else id_residual
        if isinstance(trainer, SeqTrainerConfig):
            new.trainer_config = trainer
        elif trainer:  # a dict overrides the pretraining trainer options key by key
            new.trainer_config = SeqTrainerConfig.from_dict({**self.trainer_config.to_dict(), **trainer})
        emb = new._text_encoder().encode(view.item_text, progress=progress)
        from textrec.text.quantize import code_stats

        new.codes = self.quantizer.encode(emb)
        new.text_emb, new.calibration = np.asarray(emb, dtype=np.float32), None  # calibrate() on the target's valid
        new.code_report = {"quantizer": self.quantizer.report, "codes": code_stats(new.codes),
                           "coded_with": "pretrained quantizer"}
        new.n_items = new.n_warm = int(view.n_items)
        new.keep_catalog(view)  # the target domain's ids travel with the transferred model
        new.module = new._build(new.codes, new.n_warm)
        state = {k: v for k, v in self.module.state_dict().items()
                 if k not in ("codes",) and not k.startswith("id_residual")}
        new.module.load_state_dict(state, strict=False)
        if train == "none":
            new.module.eval()
            return new
        if permutation:
            new.module.permutation = CodePermutation(new.codes.shape[1], new.n_centroids).to(
                next(new.module.parameters()).device)
            new._set_trainable(train="permutation")
            # the logits start at the identity and must travel O(1) to swap rows: a larger lr
            cfg = {**new.trainer_config.to_dict(), "epochs": permutation_epochs,
                   "patience": permutation_epochs, "lr": permutation_lr}
            if cfg["output_dir"]:  # its own checkpoints: a resumed fine-tuning must not pick them up
                cfg["output_dir"] = os.path.join(cfg["output_dir"], "permutation")
            if cfg["resume"] is True:  # two stages: either may have no checkpoint yet
                cfg["resume"] = "auto"
                new.trainer_config = SeqTrainerConfig.from_dict({**new.trainer_config.to_dict(), "resume": "auto"})
            new.history += [{**h, "stage": "permutation"} for h in SeqTrainer(cfg).fit(
                new.module, view, progress=progress, name=f"{new.name}-permute")]
            new.apply_permutation()
        new._set_trainable(train)
        new.history += [{**h, "stage": f"train:{train}"} for h in SeqTrainer(new.trainer_config).fit(
            new.module, view, progress=progress, name=f"{new.name}-finetune")]
        new._set_trainable("all")
        return new

    def _set_trainable(self, train: str) -> None:
        for name, p in self.module.named_parameters():
            if train == "all":
                p.requires_grad_(True)
            elif train == "permutation":
                p.requires_grad_(name.startswith("permutation."))
            elif train == "codes":
                p.requires_grad_(name == "code_emb" or name.startswith("id_residual"))
            elif train == "codes+transformer":
                p.requires_grad_(not name.startswith("permutation."))

    def apply_permutation(self) -> np.ndarray:
        """Harden the learned permutation, bake it into the code tables, drop the soft one."""
        if self.module is None or self.module.permutation is None:
            raise RuntimeError("no permutation is being learned")
        perm = self.module.permutation.hard()
        with torch.no_grad():
            k = perm.shape[1]
            idx = torch.from_numpy(perm).to(self.module.code_emb.device)
            table = self.module.code_emb.data
            table[:, :k] = torch.stack([table[d, idx[d]] for d in range(len(idx))])
        self.module.permutation = None
        self.permutation_report = {"rows_moved": int((perm != np.arange(perm.shape[1])).sum()),
                                   "rows_total": int(perm.size)}
        return perm

    def score(self, users: np.ndarray, histories: list[np.ndarray]) -> torch.Tensor:
        if self.module is None:
            raise RuntimeError("VQRec is not fitted; call fit() or from_pretrained() first")
        scores = score_histories(self.module, histories, self.trainer_config.max_len,
                                 self.trainer_config.eval_batch_size)
        if self.cold_start_offset and self.cold_items is not None and self.cold_items.any():
            cold = torch.from_numpy(self.cold_items[: scores.shape[1]]).to(scores.device)
            scores[:, cold] += self.cold_start_offset
        if self.calibration is not None and self.text_emb is not None:
            cold = self._cold_mask(scores.shape[1])
            if cold.any():
                from textrec.models.cold_items import seen_mask

                affinity = self._affinity(histories)
                scores = self.calibration.place(scores.cpu(), affinity, seen_mask(histories, scores.shape[1]),
                                                torch.from_numpy(cold))
        return scores

    def tune_cold_start_offset(self, valid, n_items: int, grid: Sequence[float] = (0, 0.5, 1, 2, 3, 4, 6, 8),
                               metric: str = "ndcg@10", max_widen: int = 3) -> tuple[float, list[dict]]:
        """Choose ``cold_start_offset`` on valid rows (all rows, warm and cold targets together).

        The grid is doubled upwards while the best value is its largest. Sets the chosen value
        and returns it with the per-value table.
        """
        from textrec.evaluation import evaluate

        grid = sorted(float(g) for g in grid)
        table: list[dict] = []
        tried: dict[float, float] = {}
        for _ in range(max_widen + 1):
            for g in grid:
                if g in tried:
                    continue
                self.cold_start_offset = g
                m = evaluate(self, valid, n_items, progress=False).metrics
                tried[g] = float(m[metric])
                table.append({"offset": g, metric: round(tried[g], 5)})
            best = max(tried, key=lambda g: (tried[g], -g))
            if best < max(grid):
                break
            grid = grid + [max(grid) * 2]
        self.cold_start_offset = best
        return best, table

    def add_items(self, texts: list[str] | None = None, codes: np.ndarray | None = None,
                  ids: list[str] | None = None) -> np.ndarray:
        """Append new items (from text, or from codes) to the catalog without retraining.

        Returns their new item indexes. New items get no ID residual: they are scored by codes only.
        When the model carries a catalog (it was fitted on a view or loaded from a folder), ``ids``
        names the new items and the catalog grows with them, so a save keeps the two in step.
        """
        if self.module is None:
            raise RuntimeError("fit or load the model before adding items")
        if self.catalog is not None:
            if ids is None:
                raise ValueError("this model has an item catalog: pass ids for the new items")
            n_new = len(texts) if texts is not None else len(codes) if codes is not None else 0
            if len(ids) != n_new:
                raise ValueError(f"{len(ids)} ids for {n_new} new items")
            clash = [i for i in map(str, ids) if i in set(self.catalog.ids)]
            if clash:
                raise ValueError(f"item id(s) already in the catalog: {clash[:5]}")
        if codes is None:
            if self.quantizer is None:
                raise RuntimeError("no quantizer: pass codes, or fit the model from text")
            if not texts or any(not str(t).strip() for t in texts):
                raise ValueError("add_items needs a non-empty text for every new item")
            emb = np.asarray(self._text_encoder().encode(list(texts), progress=False), dtype=np.float32)
            codes = self.quantizer.encode(emb)
        else:  # items added from codes alone have no text vector: zero cosine, placed low
            emb = np.zeros((len(codes), 0 if self.text_emb is None else self.text_emb.shape[1]), np.float32)
        codes = np.asarray(codes, dtype=np.int64)
        if codes.ndim != 2 or codes.shape[1] != self.module.codes.shape[1]:
            raise ValueError(f"codes must be (n, {self.module.codes.shape[1]})")
        if codes.min() < 0 or codes.max() >= self.n_centroids:
            raise ValueError(f"codes must lie in [0, {self.n_centroids})")
        if self.catalog is not None:  # validated above; grows in step with the code table
            self.catalog.add(ids, text=texts)
        start = int(self.module.codes.shape[0])
        self.module.codes = torch.cat([self.module.codes, torch.from_numpy(codes).to(self.module.codes.device)])
        self.codes = self.module.codes.cpu().numpy()
        self.n_items = int(self.module.codes.shape[0])
        if self.cold_items is not None:
            self.cold_items = np.concatenate([self.cold_items, np.ones(len(codes), dtype=bool)])
        if self.text_emb is not None:
            self.text_emb = np.concatenate([self.text_emb, emb.reshape(len(codes), self.text_emb.shape[1])])
        return np.arange(start, self.n_items)

    # ---- persistence ----------------------------------------------------------------------
    def n_scored_items(self) -> int | None:
        return int(self.n_items) if self.module is not None else None

    def get_config(self) -> dict[str, Any]:
        return {"backbone": self.backbone_config.to_dict(), "trainer": self.trainer_config.to_dict(),
                "n_subvectors": self.n_subvectors, "n_centroids": self.n_centroids, "opq": self.opq,
                "encoder": self.encoder_name, "id_residual": self.id_residual,
                "similarity": self.similarity, "temperature": self.temperature,
                "code_dropout": self.code_dropout, "cold_start_offset": self.cold_start_offset, "n_items": self.n_items,
                "n_warm": self.n_warm, "seed": self.seed, "new_item_scoring": self.new_item_scoring}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        if self.module is None:
            raise RuntimeError("VQRec is not fitted: nothing to save")
        out = {k: v for k, v in self.module.state_dict().items() if k != "sub_index"}
        if self.cold_items is not None:
            out["cold_items"] = torch.from_numpy(self.cold_items.astype(np.uint8))
        if self.text_emb is not None:
            out["text_emb"] = torch.from_numpy(np.ascontiguousarray(self.text_emb, dtype=np.float32))
        if self.calibration is not None:
            out.update(self.calibration.to_tensors("cold_calibration"))
            out["cold_calibration.affinity_weights"] = torch.tensor(self.affinity_weights, dtype=torch.float64)
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.codes = tensors["codes"].numpy()
        cold = tensors.get("cold_items")
        self.cold_items = cold.numpy().astype(bool) if cold is not None else None
        self.module = self._build(self.codes, int(self.n_warm or self.codes.shape[0]))
        extra = ("cold_items", "text_emb")
        self.module.load_state_dict({k: v for k, v in tensors.items()
                                     if k not in extra and not k.startswith("cold_calibration.")}, strict=False)
        self.module.eval()
        from textrec.models.cold_items import RankCalibration

        self.text_emb = tensors["text_emb"].numpy() if "text_emb" in tensors else None
        self.calibration = RankCalibration.from_tensors(tensors, "cold_calibration") if self.text_emb is not None \
            else None
        if "cold_calibration.affinity_weights" in tensors:
            self.affinity_weights = tuple(float(x) for x in tensors["cold_calibration.affinity_weights"])

    def save_extra(self, path: Path) -> None:
        from textrec.text.quantize import save_quantizer

        save_quantizer(self.quantizer, path)

    def load_extra(self, path: Path) -> None:
        from textrec.text.quantize import load_quantizer

        self.quantizer = load_quantizer(path)


__all__ = ["VQRec", "VQRecModule", "CodePermutation"]
