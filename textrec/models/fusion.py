"""TextFusion: one recommender that fuses full text, PQ codes, item IDs and co-occurrence.

Item representation (what the sequence encoder reads and scores against)::

    rep(i) = adaptor(MiniLM(text_i))          # UniSRec-style: parametric whitening experts + gate
           + sum_d code_emb[d, code_i[d]]     # VQ-Rec-style product-quantized text codes
           + id_residual[i] * has_events(i)   # zero-initialised, warm items only

The causal encoder of :mod:`textrec.models.backbone` turns a history into a hidden state ``h``;
the *sequential* score of item ``i`` is ``h . rep(i)``. The final score adds co-occurrence and
raw text evidence, each gated by how much behaviour the item has (``n_i`` training events)::

    w_i   = n_i / (n_i + kappa)                  # 0 for an item without events, -> 1 when popular
    c_ui  = cos(text(history), text(i))
    score = h . rep(i) + lam * w_i * EASE(history, i) + nu * w_i * T(history, i)
            + mu * (1 - w_i) * c_ui + [n_i == 0] * (mu_cold * (c_ui - mean_j c_uj) + cold_offset)

EASE is fitted in closed form on the same training events. ``T`` is first-order transitions
(a Markov chain: ``P(i | h_-l)`` from consecutive training pairs, summed over the last
``TRANS_WINDOW`` history items with weight ``decay^l``, the decay chosen on valid): EASE reads
which items go together, ``T`` which item comes *next*, the order a dense short-sequence domain
(ML-100K, Beauty) carries. ``lam``, ``kappa``, ``nu``, ``mu``, ``mu_cold`` and ``cold_offset`` are
chosen on the valid rows after training (coordinate ascent on valid NDCG@10; the test set is
never read). An item with no events is scored from text alone
(adaptor + codes + text cosine); a popular one mostly from behaviour (ID residual + EASE).

The zero-evidence items have their own two parameters: ``mu_cold`` weighs the raw text cosine
*centred per user*, so it reorders the cold items among themselves without moving them as a
block, and ``cold_offset`` sets where that block sits against the warm items. (``mu`` alone
cannot do this: the uncentred cosine of MiniLM is positive on average, so raising ``mu`` also
lifts every cold item, which the all-rows objective punishes.) ``tune_objective="balanced"``
scores a mix by the mean of NDCG@10 over valid rows whose target has no training events and over
the other rows, so a deployment that must serve new items weighs both kinds of row equally;
``"rows"`` (default) averages over all rows, where new-item targets are few.

Training prepares the text path for new items: in every batch a share ``new_item_dropout`` of
the warm items is treated as new, i.e. their ID residual is dropped from the representation the
softmax sees, so the text path has to rank those items by itself. (EASE and the text cosine
enter only after training, in the valid-tuned mix, where new items have ``w_i = 0`` and so get
no co-occurrence term at all.)

Without item text (``use_text=False``, or a view with no ``item_text``) the model is ID +
co-occurrence only: every item's representation is its ID embedding (randomly initialised, no
new-item dropout), the text cosine is zero, and ``text_mode`` says so. Items whose text is empty
get a zero text vector, so they carry no false similarity to each other.

``ease_lam=None`` chooses EASE's L2 on valid NDCG@10 (a seeded sample of at most
``early_stop_rows`` valid rows) over ``ease_grid``; :mod:`textrec.models.fusion_recipe` derives
that grid, the epoch cap and the code size from the data.

Codes can be fitted on a larger corpus than one catalog: ``code_corpus`` names other datasets
whose item texts train the quantizer too (the evaluated domain contributes its training items
only), so ``K`` need not drop to 64 on a catalog of a few thousand items.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from textrec.models.backbone import BackboneConfig, CausalSequenceEncoder
from textrec.models.base import Recommender, TrainView
from textrec.models.baselines import history_matrix
from textrec.models.cold_items import history_cosine, seen_mask
from textrec.models.sasrec import SASRec
from textrec.models.seq_trainer import SeqTrainer, SeqTrainerConfig, resolve_device, score_histories, seeded
from textrec.models.text_term import TextTerm
from textrec.text.whitening import apply_whitening, fit_whitening

#: the score-mix parameters chosen on valid, and their values before tuning
DEFAULT_MIX: dict[str, float] = {"lam": 0.0, "kappa": 0.0, "mu": 0.0, "mu_cold": 0.0, "cold_offset": 0.0,
                                  "nu": 0.0, "rho": 0.0}
#: how many of the latest history items the transition part reads, and its decay grid (chosen on valid)
TRANS_WINDOW = 10
TRANS_DECAYS = (0.1, 0.3, 0.6)
#: how ``tune`` averages valid NDCG@10: over all rows, or the mean of cold-target and warm-target rows
TUNE_OBJECTIVES = ("rows", "balanced")
#: how items without training events are scored: placed by :mod:`textrec.models.cold_items`
#: ("calibrated", the default) or by the mix's ``mu_cold`` / ``cold_offset`` terms alone ("mix")
NEW_ITEM_SCORING = ("calibrated", "mix")
#: how many of the latest history items the "recent" text affinity of new items reads
RECENT = 10
#: the pretrained parts :meth:`TextFusionRec.warm_start` can re-initialise or freeze, and their state-dict keys
TRANSFER_PARTS: dict[str, tuple[str, ...]] = {"adaptor": ("adaptor.",), "codes": ("code_emb",),
                                              "encoder": ("encoder.",)}


class MoEAdaptor(nn.Module):
    """UniSRec's text adaptor: ``E`` parametric-whitening experts ``(x - b_e) W_e`` mixed by a
    softmax gate over the input, so a frozen sentence vector becomes a learned ``d``-dim item vector."""

    def __init__(self, in_dim: int, out_dim: int, n_experts: int = 2, dropout: float = 0.2,
                 init_std: float = 0.02) -> None:
        super().__init__()
        if n_experts < 1:
            raise ValueError("n_experts must be >= 1")
        self.bias = nn.Parameter(torch.zeros(n_experts, in_dim))
        self.weight = nn.Parameter(torch.randn(n_experts, in_dim, out_dim) * init_std)
        self.gate = nn.Parameter(torch.zeros(in_dim, n_experts))  # uniform mix at the start
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xd = self.drop(x)
        experts = torch.einsum("nei,eio->neo", xd[:, None, :] - self.bias[None], self.weight)
        gate = torch.softmax(x @ self.gate, dim=-1)  # (n, E)
        return (gate[..., None] * experts).sum(1)


class TextFusionModule(nn.Module):
    """Adaptor(text) + code embeddings + gated ID residual, and the causal encoder.

    Implements the trainer's ``SequentialModule``. ``warm`` marks the items with training
    events (the only ones with an ID residual); in training mode a fresh random share
    ``new_item_dropout`` of them loses its residual at every ``item_representations`` call.
    """

    def __init__(self, text_emb: torch.Tensor, codes: torch.Tensor | None, n_centroids: int,
                 warm: torch.Tensor, cfg: BackboneConfig, n_experts: int = 2, adaptor_dropout: float = 0.2,
                 id_residual: bool = True, new_item_dropout: float = 0.2, random_ids: bool = False) -> None:
        super().__init__()
        self.register_buffer("text_emb", text_emb.float().clone())
        self.register_buffer("warm", warm.bool().clone())
        self.adaptor = MoEAdaptor(text_emb.shape[1], cfg.hidden, n_experts, adaptor_dropout, cfg.init_std)
        self.n_centroids = int(n_centroids)
        if codes is not None:
            self.register_buffer("codes", codes.long().clone())
            self.register_buffer("sub_index", torch.arange(codes.shape[1])[None, :], persistent=False)
            # one (K+1) x d table per sub-vector; row K is padding (never an item's code)
            self.code_emb = nn.Parameter(torch.randn(codes.shape[1], self.n_centroids + 1, cfg.hidden)
                                         * cfg.init_std)
            with torch.no_grad():
                self.code_emb[:, self.n_centroids].zero_()
        else:
            self.codes = None
            self.code_emb = None
        n_fit = int(text_emb.shape[0])
        self.id_residual = nn.Embedding(n_fit, cfg.hidden) if id_residual else None
        if self.id_residual is not None:
            if random_ids:  # no text to start from: the IDs carry everything, so they start apart
                nn.init.normal_(self.id_residual.weight, std=cfg.init_std)
            else:
                nn.init.zeros_(self.id_residual.weight)
        self.new_item_dropout = float(new_item_dropout)
        self.encoder = CausalSequenceEncoder(cfg)

    @property
    def n_items(self) -> int:
        return int(self.text_emb.shape[0])

    def residual_mask(self) -> torch.Tensor:
        """(n_id,) float: 1 where an item's ID residual is used now (warm and not dropped)."""
        n_id = self.id_residual.num_embeddings
        keep = self.warm[:n_id].clone()
        if self.training and self.new_item_dropout > 0:
            keep &= torch.rand(n_id, device=keep.device) >= self.new_item_dropout
        return keep.float()

    def text_representations(self) -> torch.Tensor:
        """(n_items, d): the text path only (adaptor + codes), what a new item gets."""
        reps = self.adaptor(self.text_emb)
        if self.code_emb is not None:
            reps = reps + self.code_emb[self.sub_index, self.codes].sum(1)
        return reps

    def item_representations(self) -> torch.Tensor:
        reps = self.text_representations()
        if self.id_residual is not None:
            n_id = self.id_residual.num_embeddings
            res = self.id_residual.weight * self.residual_mask()[:, None]
            reps = torch.cat([reps[:n_id] + res, reps[n_id:]])
        return reps

    def represent(self, items: torch.Tensor) -> torch.Tensor:
        """(len(items), d): rows ``items`` of :meth:`item_representations`, built for those items
        alone (adaptor over their text, their codes, their ID residual read with a sparse
        gradient), so a sampled/in-batch training step costs nothing per catalog item. In training
        mode each warm item drops its residual with probability ``new_item_dropout``, as there."""
        reps = self.adaptor(self.text_emb[items])
        if self.code_emb is not None:
            reps = reps + self.code_emb[self.sub_index, self.codes[items]].sum(1)
        if self.id_residual is not None:
            n_id = self.id_residual.num_embeddings
            keep = (items < n_id) & self.warm[items]
            if self.training and self.new_item_dropout > 0:
                keep &= torch.rand(len(items), device=keep.device) >= self.new_item_dropout
            res = F.embedding(items.clamp(max=n_id - 1), self.id_residual.weight, sparse=True)
            reps = reps + res * keep[:, None].float()
        return reps

    def encode(self, items: torch.Tensor, mask: torch.Tensor,
               item_reps: torch.Tensor | None = None) -> torch.Tensor:
        reps = self.item_representations() if item_reps is None else item_reps
        return self.encoder(reps[items], mask)

    def add_items(self, text_emb: torch.Tensor, codes: torch.Tensor | None) -> None:
        """Append items (text vectors and codes); they are cold: no ID residual."""
        dev = self.text_emb.device
        self.text_emb = torch.cat([self.text_emb, text_emb.float().to(dev)])
        self.warm = torch.cat([self.warm, torch.zeros(len(text_emb), dtype=torch.bool, device=dev)])
        if self.codes is not None:
            self.codes = torch.cat([self.codes, codes.long().to(dev)])


#: EASE matrices of recent fits, keyed by the training events and L2: several seeds of one run (or a
#: grid revisited) fit the same closed form, which is the costliest step on a large catalog
_EASE_CACHE: dict[tuple, torch.Tensor] = {}
_EASE_CACHE_SIZE = 2


def _ease_b(data: TrainView, lam: float) -> torch.Tensor:
    """EASE's ``B`` on ``data``'s training events at L2 ``lam`` (reused while the events are the same)."""
    import hashlib

    from textrec.models.baselines import EASE

    digest = hashlib.sha1()
    for col in ("user", "item"):
        digest.update(np.ascontiguousarray(data.train[col].to_numpy(dtype=np.int64)).tobytes())
    key = (data.n_users, data.n_items, digest.hexdigest(), float(lam))
    if key not in _EASE_CACHE:
        b = EASE(lam=lam).fit(data, progress=False).B
        while len(_EASE_CACHE) >= _EASE_CACHE_SIZE:
            _EASE_CACHE.pop(next(iter(_EASE_CACHE)))
        _EASE_CACHE[key] = b
    return _EASE_CACHE[key]


class TextFusionRec(Recommender):
    """Full text + codes + ID residual + EASE, mixed per item by its training count.

    Build with :meth:`from_recipe` (``training/fusion.yaml``) or the constructor. ``fit`` embeds
    the item texts (cached), fits the quantizer, EASE, trains the sequence model with new-item
    dropout, then tunes the score mix on valid (``tune_mix=True``).
    """

    name = "TextFusion"
    scores_new_items = True

    def __init__(self, backbone: BackboneConfig | dict | None = None,
                 trainer: SeqTrainerConfig | dict | None = None, n_experts: int = 2,
                 adaptor_dropout: float = 0.2, n_subvectors: int = 32, n_centroids: int = 256,
                 opq: bool = True, small_catalog: str = "lower", code_corpus: list[str] | None = None,
                 encoder: str | None = None, id_residual: bool = True, new_item_dropout: float = 0.2,
                 ease_lam: float | None = 50.0, ease_grid: list[float] | None = None,
                 transitions: bool = True, trans_decay: float | None = None,
                 mix: dict[str, float] | None = None, tune_mix: bool = True,
                 tune_objective: str = "rows", early_stop_rows: int | None = None, use_text: bool = True,
                 n_items: int | None = None, n_fit: int | None = None,
                 max_epochs: int | None = None, seed: int = 0, new_item_scoring: str = "calibrated",
                 pretraining: dict[str, Any] | None = None, text_whiten: float | None = None,
                 text_term: str | dict[str, Any] | None = None) -> None:
        if text_whiten is not None and text_whiten < 0:
            raise ValueError(f"text_whiten must be >= 0 (or None: raw MiniLM vectors), got {text_whiten}")
        if not (text_term is None or text_term == "valid" or isinstance(text_term, dict)):
            raise ValueError(f"text_term must be None (off), 'valid' (settings chosen on valid) or "
                             f"{{'decay': ..., 'shrink': ...}}, got {text_term!r}")
        if isinstance(text_term, dict):
            if set(text_term) != {"decay", "shrink"}:
                raise ValueError(f"text_term settings are 'decay' and 'shrink', got {sorted(text_term)}")
            TextTerm(**text_term)  # refuses out-of-range settings now, not after training
        if new_item_scoring not in NEW_ITEM_SCORING:
            raise ValueError(f"new_item_scoring must be one of {NEW_ITEM_SCORING}, got {new_item_scoring!r}")
        if not 0.0 <= new_item_dropout < 1.0:
            raise ValueError(f"new_item_dropout must be in [0, 1), got {new_item_dropout}")
        if n_subvectors < 0:
            raise ValueError("n_subvectors must be >= 0 (0 = no codes)")
        if ease_lam is not None and ease_lam <= 0:
            raise ValueError("ease_lam must be > 0 (or None: chosen on valid over ease_grid)")
        if ease_grid is not None and (not ease_grid or min(ease_grid) <= 0):
            raise ValueError(f"ease_grid must be a non-empty list of numbers > 0, got {ease_grid}")
        if tune_objective not in TUNE_OBJECTIVES:
            raise ValueError(f"tune_objective must be one of {TUNE_OBJECTIVES}, got {tune_objective!r}")
        if trans_decay is not None and not 0 < trans_decay <= 1:
            raise ValueError(f"trans_decay must be in (0, 1] (or None: chosen on valid), got {trans_decay}")
        unknown = set(mix or {}) - set(DEFAULT_MIX)
        if unknown:
            raise ValueError(f"unknown mix key(s) {sorted(unknown)}; known: {sorted(DEFAULT_MIX)}")
        self.backbone_config = BackboneConfig.from_dict(backbone)
        t = SeqTrainerConfig.from_dict(trainer).to_dict()
        if max_epochs is not None:
            t["epochs"] = min(t["epochs"], int(max_epochs))
        self.trainer_config = SeqTrainerConfig(**t)
        self.n_experts, self.adaptor_dropout = int(n_experts), float(adaptor_dropout)
        self.n_subvectors, self.n_centroids, self.opq = int(n_subvectors), int(n_centroids), bool(opq)
        self.small_catalog = small_catalog
        self.code_corpus = list(code_corpus or [])
        self.encoder_name, self.id_residual = encoder, bool(id_residual)
        self.new_item_dropout = float(new_item_dropout)
        self.ease_lam = None if ease_lam is None else float(ease_lam)
        self.ease_grid = None if ease_grid is None else [float(x) for x in ease_grid]
        self.transitions = bool(transitions)
        self.trans_decay = None if trans_decay is None else float(trans_decay)
        #: the fitted transition part (a :class:`~textrec.models.baselines.MarkovChain` without back-off)
        self.markov = None
        self.trans_report: dict[str, Any] = {}
        self.use_text = bool(use_text)
        #: None: the adaptor reads raw MiniLM vectors; a number: each domain's vectors whitened on that
        #: domain's own items with this shrink (``textrec.text.whitening.whiten_text``), so a pretrained
        #: adaptor meets the same input distribution on every domain
        self.text_whiten = None if text_whiten is None else float(text_whiten)
        #: the fitted (mean, projection) of ``text_whiten`` on this domain's items, applied to added items
        self.whitening: tuple[np.ndarray, np.ndarray] | None = None
        #: the recency-weighted text term as a mix part (weight ``rho``, chosen on valid like the others):
        #: None (off), "valid" (its decay and whitening chosen on valid) or fixed settings, e.g. those a
        #: pretrained model chose on its sources (``warm_start(..., text_term=True)``)
        self.text_term = copy.deepcopy(text_term)
        self.term: TextTerm | None = None
        #: "text" (item text through the adaptor and codes) or "none" (ID + co-occurrence only); set by fit
        self.text_mode = "text" if self.use_text else "none"
        self.text_report: dict[str, Any] = {}
        self.ease_report: dict[str, Any] = {}
        self.mix = {**DEFAULT_MIX, **{k: float(v) for k, v in (mix or {}).items()}}
        self.tune_mix = bool(tune_mix)
        self.tune_objective = tune_objective
        # early stopping reads a seeded sample of this many valid rows (None = all): valid
        # scoring of the full catalog every epoch was as costly as the epoch itself on a CPU
        self.early_stop_rows = early_stop_rows
        self.n_items, self.n_fit, self.seed = n_items, n_fit, int(seed)
        self.module: TextFusionModule | None = None
        self.quantizer = None
        self.ease_B: torch.Tensor | None = None
        self.counts: torch.Tensor | None = None  # training events per item (0 for added items)
        #: optional ``texts -> (n, dim) float32`` used instead of the sentence encoder (tests, caching)
        self.text_embedder: Callable[[list[str]], np.ndarray] | None = None
        self.warm_start_from: TextFusionRec | None = None
        self.warm_start_codes = "pretrained"  # or "own": this domain's quantizer, fresh code tables
        self.warm_start_reinit: tuple[str, ...] = ()  # TRANSFER_PARTS that start fresh despite warm_start
        self.warm_start_freeze: tuple[str, ...] = ()  # TRANSFER_PARTS kept at their pretrained values
        #: what the text path saw before this domain: domains (users, items, events), commands, cost;
        #: saved in the config so a model started from a pretrained one says what it was started from
        self.pretraining = copy.deepcopy(pretraining)
        self.history: list[dict[str, Any]] = []
        self.code_report: dict[str, Any] = {}
        self.mix_report: dict[str, Any] = {}
        self.new_item_scoring = new_item_scoring
        #: the new-item placement fitted on valid (``new_item_scoring="calibrated"``), and the weights of
        #: the text affinity it ranks new items by: ``a_seq * text-path score + a_cos * cosine to the
        #: whole history + a_recent * cosine to the last RECENT items + a_term * the text term``
        self.calibration = None
        self.affinity_weights: tuple[float, float, float, float] = (0.0, 1.0, 0.0, 0.0)

    from_recipe = classmethod(SASRec.from_recipe.__func__)

    # ---- text and codes ---------------------------------------------------------------------
    def embed(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """Unit-norm sentence vectors of ``texts`` (MiniLM by default; cached on disk); an empty
        text gets the zero vector."""
        if self.module is not None and self.text_mode == "none":
            raise ValueError("this TextFusion model was trained without item text (ID + co-occurrence only): "
                             "it cannot score items from text")
        if self.text_embedder is not None:
            emb = np.asarray(self.text_embedder(list(texts)), dtype=np.float32)
        else:
            from textrec.text.encoder import TextEncoder

            emb = TextEncoder(self.encoder_name).encode(list(texts), progress=progress)
        emb = np.asarray(emb, dtype=np.float32)
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        emb = emb / np.maximum(norms, 1e-12)
        empty = np.array([not str(t).strip() for t in texts], dtype=bool)
        if empty.any():  # no text is no evidence: zero, not the encoder's vector of ""
            emb[empty] = 0.0
        return emb

    def corpus_texts(self, exclude: str = "") -> list[str]:
        """Item texts of the ``code_corpus`` datasets (all their items), minus ``exclude``."""
        from textrec.data.registry import load_dataset

        out: list[str] = []
        for name in self.code_corpus:
            if name == exclude:
                continue
            out += [t for t in load_dataset(name).item_text() if t and t.strip()]
        return out

    def build_codes(self, emb: np.ndarray, train_items: np.ndarray, extra: np.ndarray | None = None
                    ) -> np.ndarray:
        """Fit OPQ/PQ on the training items' vectors (+ ``extra`` corpus vectors), code every item."""
        from textrec.text.quantize import ProductQuantizer, code_stats

        self.quantizer = ProductQuantizer(self.n_subvectors, self.n_centroids, opq=self.opq, seed=self.seed,
                                          small_catalog=self.small_catalog)
        self.quantizer.fit(emb[train_items], extra_embeddings=extra)
        codes = self.quantizer.encode(emb)
        self.code_report = {"quantizer": self.quantizer.report,
                            "codes": code_stats(codes, self.quantizer.n_centroids_),
                            "codes_new_items": code_stats(codes[np.setdiff1d(np.arange(len(emb)), train_items)],
                                                          self.quantizer.n_centroids_)
                            if len(train_items) < len(emb) else None}
        return codes

    # ---- fit ---------------------------------------------------------------------------------
    def whiten(self, emb: np.ndarray, item_domains: np.ndarray | None = None) -> np.ndarray:
        """``emb`` as the adaptor reads it: unchanged, or (``text_whiten``) whitened per domain
        (``item_domains`` offsets; one domain when None, whose whitening is kept for ``add_items``)."""
        if self.text_whiten is None:
            return emb
        off = [0, len(emb)] if item_domains is None else [int(x) for x in item_domains]
        out = np.array(emb, dtype=np.float32, copy=True)
        for a, b in zip(off[:-1], off[1:]):
            w = fit_whitening(emb[a:b], self.text_whiten)
            out[a:b] = apply_whitening(emb[a:b], w)
        self.whitening = w if item_domains is None else None  # a merged catalog has no one whitening
        return out

    def _build(self, text_emb: np.ndarray, codes: np.ndarray | None, warm: np.ndarray) -> TextFusionModule:
        with seeded(self.trainer_config.seed):
            module = TextFusionModule(
                torch.from_numpy(text_emb), None if codes is None else torch.from_numpy(codes),
                self.n_centroids, torch.from_numpy(warm), self.backbone_config, n_experts=self.n_experts,
                adaptor_dropout=self.adaptor_dropout, id_residual=self.id_residual,
                new_item_dropout=self.new_item_dropout if self.text_mode == "text" else 0.0,
                random_ids=self.text_mode == "none")
        return module.to(resolve_device(self.trainer_config.device))

    def _prepare(self, data: TrainView, progress: bool, item_domains: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """Item vectors, codes (own quantizer, or the warm-start model's) and training counts.
        ``item_domains``: the domain offsets of a merged view (each domain whitened on its own)."""
        counts = data.popularity().astype(np.float32)
        texts = data.item_text
        covered = 0 if texts is None else sum(bool(str(t).strip()) for t in texts)
        self.text_mode = "text" if self.use_text and covered else "none"
        self.text_report = {"text": self.text_mode, "items_with_text": int(covered), "n_items": int(data.n_items),
                            "text_coverage": round(covered / max(1, data.n_items), 4)}
        if self.text_mode == "none":
            if self.warm_start_from is not None:
                raise ValueError("warm_start needs item text: this model has none (use_text=False or no item_text)")
            self.text_report["note"] = ("no item text: ID + co-occurrence only (ID embeddings, EASE); "
                                        "new items cannot be scored from text")
            return np.zeros((data.n_items, 1), dtype=np.float32), None, counts
        emb = self.whiten(self.embed(texts, progress=progress), item_domains)
        codes = None
        start = self.warm_start_from
        if start is not None and start.quantizer is not None and self.warm_start_codes == "pretrained":
            from textrec.text.quantize import code_stats

            # codes from the pretrained quantizer, so the pretrained code tables mean the same
            self.quantizer = start.quantizer
            self.n_subvectors, self.n_centroids = start.n_subvectors, start.quantizer.n_centroids_
            codes = self.quantizer.encode(emb)
            self.code_report = {"quantizer": self.quantizer.report, "coded_with": "pretrained quantizer",
                                "codes": code_stats(codes, self.n_centroids)}
        elif self.n_subvectors > 0:
            extra = None
            corpus = self.corpus_texts(exclude=data.dataset_name)
            if corpus:
                extra = self.embed(corpus, progress=progress)
            # items without text have nothing to quantize: the codes are fitted on the others
            fit_items = np.flatnonzero((counts > 0) & (np.abs(emb).sum(1) > 0))
            codes = self.build_codes(emb, fit_items if len(fit_items) else np.flatnonzero(counts > 0), extra)
            self.n_centroids = self.quantizer.n_centroids_
        return emb, codes, counts

    def _train(self, data: TrainView, progress: bool, name: str, item_domains: np.ndarray | None = None) -> None:
        view = data
        if self.early_stop_rows and len(data.valid) > self.early_stop_rows:
            rows = np.random.default_rng(self.seed).choice(len(data.valid), self.early_stop_rows, replace=False)
            view = copy.copy(data)
            view.valid = data.valid.select(np.sort(rows))
        self.history = SeqTrainer(self.trainer_config).fit(self.module, view, progress=progress, name=name,
                                                           item_domains=item_domains)

    def fit(self, data: TrainView, progress: bool = True) -> TextFusionRec:
        """Embed, code, fit EASE, train the sequence model, tune the mix on valid.

        After :meth:`warm_start` the text adaptor, code tables and encoder start from the
        pretrained model (its quantizer codes this domain); the ID residual starts at zero.
        """

        emb, codes, counts = self._prepare(data, progress)
        self.n_items = self.n_fit = int(data.n_items)
        self.counts = torch.from_numpy(counts)
        self.ease_B = self._fit_ease(data, progress)
        self.markov = self._fit_transitions(data) if self.transitions else None
        self.term = self._fit_text_term(data, self.text_term, progress) if self.text_term is not None else None
        self.module = self._build(emb, codes, counts > 0)
        if self.warm_start_from is not None:
            skip = ("text_emb", "warm", "codes", "id_residual.weight")
            if self.warm_start_codes == "own":  # codes from this domain's quantizer: their tables start fresh
                skip += ("code_emb",)
            for part in self.warm_start_reinit:
                skip += TRANSFER_PARTS[part]
            state = {k: v for k, v in self.warm_start_from.module.state_dict().items()
                     if k not in skip and not k.startswith(skip)}
            self.module.load_state_dict(state, strict=False)
            for name, param in self.module.named_parameters():
                if any(name.startswith(TRANSFER_PARTS[p]) for p in self.warm_start_freeze):
                    param.requires_grad_(False)  # the trainer's optimizer skips frozen parameters
        self._train(data, progress, self.name)
        self._choose_on_valid(data)
        return self

    def _choose_on_valid(self, data: TrainView) -> None:
        """After training (or adding the text term): the score mix, then the new-item placement."""
        if self.tune_mix and len(data.valid):
            self.tune(data.valid, objective=self.tune_objective)
        # without text there is nothing to rank a new item by (every affinity ties): no placement,
        # items without events keep the mix's score (no co-occurrence, untrained ID row)
        if self.new_item_scoring == "calibrated" and len(data.valid) and self.text_mode == "text":
            self.calibrate(data.valid)

    def _valid_rows(self, valid, limit: int) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """A seeded sample of at most ``limit`` rows of ``valid`` (every choice made on valid reads
        the same sample for the same limit): their histories, and the (row, target item) pairs."""
        rows = np.arange(len(valid))
        if len(rows) > limit:
            rows = np.sort(np.random.default_rng(self.seed).choice(len(rows), limit, replace=False))
        hists = [valid.history(i) for i in rows]
        t_rows = np.repeat(np.arange(len(rows)), [len(valid.targets(i)) for i in rows]) if len(rows) else \
            np.zeros(0, np.int64)
        t_items = np.concatenate([valid.targets(i) for i in rows]).astype(np.int64) if len(rows) else \
            np.zeros(0, np.int64)
        return hists, t_rows, t_items

    @staticmethod
    def _valid_ndcg(scores: torch.Tensor, hists: list[np.ndarray], t_rows: np.ndarray, t_items: np.ndarray) -> float:
        """Valid NDCG@10 of ``scores`` (rows = ``hists``), the history masked."""
        from textrec.metrics.ranking import metrics_from_ranks, target_ranks

        r_idx = np.repeat(np.arange(len(hists)), [len(x) for x in hists])
        scores[torch.from_numpy(r_idx), torch.from_numpy(np.concatenate(hists).astype(np.int64))] = float("-inf")
        ranks = target_ranks(scores, torch.from_numpy(t_rows), torch.from_numpy(t_items)).numpy()
        return float(metrics_from_ranks(ranks, t_rows, len(hists), [10])["ndcg@10"].mean())

    def _fit_ease(self, data: TrainView, progress: bool) -> torch.Tensor:
        """EASE's ``B`` at ``ease_lam``, or at the L2 of ``ease_grid`` best on valid NDCG@10."""
        if self.ease_lam is not None:
            self.ease_report = {"lam": self.ease_lam, "chosen_on_valid": False}
            return _ease_b(data, self.ease_lam)
        grid = sorted(self.ease_grid or [20.0, 50.0, 100.0, 200.0, 500.0])
        hists, t_rows, t_items = self._valid_rows(data.valid, self.early_stop_rows or 3000)
        if not hists:  # nothing to choose on: the middle of the grid
            self.ease_lam = grid[len(grid) // 2]
            self.ease_report = {"lam": self.ease_lam, "chosen_on_valid": False, "note": "no valid rows"}
            return _ease_b(data, self.ease_lam)
        h = history_matrix(hists, data.n_items)
        best_b, table = None, []
        for lam in grid:
            b = _ease_b(data, lam)
            v = self._valid_ndcg(torch.from_numpy(np.ascontiguousarray(h @ b.numpy(), dtype=np.float32)),
                                 hists, t_rows, t_items)
            table.append({"lam": lam, "valid_ndcg@10": round(v, 5)})
            if best_b is None or v > max(t["valid_ndcg@10"] for t in table[:-1]) + 1e-9:
                best_b, self.ease_lam = b, float(lam)
            del b
        self.ease_report = {"lam": self.ease_lam, "chosen_on_valid": True, "valid_rows_used": len(hists),
                            "grid": table}
        return best_b

    def _fit_text_term(self, data: TrainView, spec: str | dict[str, Any], progress: bool = False) -> TextTerm | None:
        """The text term on ``data``'s items: fixed settings (``spec`` a dict) or the ones whose term
        alone ranks ``data``'s valid rows best (``"valid"``). None without item text."""
        if self.text_mode != "text" or data.item_text is None:
            return None
        raw = self.embed(data.item_text, progress=progress)  # unwhitened: the term whitens on its own
        if isinstance(spec, dict):
            return TextTerm(**spec).fit(raw)
        hists, t_rows, t_items = self._valid_rows(data.valid, self.early_stop_rows or 3000)
        if not hists:
            raise ValueError("text_term='valid' needs valid rows to choose its settings on")
        return TextTerm.choose(raw, hists, lambda s: self._valid_ndcg(s, hists, t_rows, t_items))

    def fit_text_term(self, data: TrainView, spec: str | dict[str, Any] = "valid") -> TextFusionRec:
        """Add the text term to a fitted model and choose the mix (and new-item placement) again on
        ``data``'s valid rows; the trained weights are kept. ``rho = 0`` stays possible, so valid
        decides whether the term is used."""
        if self.module is None:
            raise RuntimeError("fit the model before adding the text term")
        self.text_term = copy.deepcopy(spec)
        self.term = self._fit_text_term(data, spec)
        if self.term is not None and isinstance(spec, str):
            self.text_term = self.term.settings
        self._choose_on_valid(data)
        return self

    def _fit_transitions(self, data: TrainView):
        """The transition part: consecutive training pairs, row-normalised; its decay over the last
        ``TRANS_WINDOW`` history items is ``trans_decay`` or the one of ``TRANS_DECAYS`` best on valid."""
        from textrec.models.baselines import MarkovChain

        markov = MarkovChain(alpha=0.0, L=TRANS_WINDOW, decay=self.trans_decay or TRANS_DECAYS[0]).fit(data)
        if self.trans_decay is not None:
            self.trans_report = {"decay": self.trans_decay, "window": TRANS_WINDOW, "chosen_on_valid": False}
            return markov
        hists, t_rows, t_items = self._valid_rows(data.valid, self.early_stop_rows or 3000)
        table = []
        for decay in TRANS_DECAYS:
            markov.decay = decay
            v = self._valid_ndcg(markov.score(None, hists), hists, t_rows, t_items) if hists else 0.0
            table.append({"decay": decay, "valid_ndcg@10": round(v, 5)})
        best = max(table, key=lambda r: r["valid_ndcg@10"])  # the first of equals: the smallest decay
        markov.decay = self.trans_decay = float(best["decay"])
        self.trans_report = {"decay": self.trans_decay, "window": TRANS_WINDOW, "chosen_on_valid": bool(hists),
                             "valid_rows_used": len(hists), "grid": table}
        return markov

    def pretrain(self, views: list[TrainView], progress: bool = True) -> TextFusionRec:
        """Train the text path and encoder on several domains at once (no EASE, no mix).

        Catalogs are concatenated (one quantizer over every domain's training items); use the
        result through ``TextFusionRec(...).warm_start(pretrained).fit(target)``. No EASE is fitted
        (``ease_B`` stays None: the pretrained model scores by sequence and text only). What the
        views were is added to ``pretraining["domains"]`` (saved with the model).
        """
        merged, offsets = TrainView.concat(views)
        emb, codes, counts = self._prepare(merged, progress, offsets)
        self.n_items = self.n_fit = int(merged.n_items)
        self.counts = torch.from_numpy(counts)
        self.ease_B = None
        self.module = self._build(emb, codes, counts > 0)
        self._train(merged, progress, f"{self.name}-pretrain", offsets)
        record = dict(self.pretraining or {})
        seen = [{"name": v.dataset_name, "users": int(v.train["user"].nunique()), "items": int(v.n_items),
                 "events": int(len(v.train))} for v in views]
        record["domains"] = list(record.get("domains", [])) + seen
        record["epochs"] = len(self.history)
        self.pretraining = record
        return self

    def warm_start(self, pretrained: TextFusionRec, codes: str = "pretrained", reinit: Sequence[str] = (),
                   freeze: Sequence[str] = (), source: str | None = None, text_term: bool = False) -> TextFusionRec:
        """Start the next ``fit`` from a pretrained model's text adaptor, code tables and encoder.

        ``codes="own"`` keeps only the adaptor and encoder: this domain's items are coded by a
        quantizer fitted on its own training items (as from scratch) and the code tables start fresh.
        ``reinit`` names parts (``TRANSFER_PARTS``: adaptor, codes, encoder) that start fresh anyway,
        ``freeze`` parts that keep their pretrained values while fine-tuning. ``source`` (e.g. the
        folder it was loaded from) is recorded with the pretrained model's ``pretraining`` record.
        The encoder and adaptor architecture (``backbone``, ``n_experts``) become the pretrained one's.
        ``text_term=True`` also takes the text term's settings the pretrained model chose on its sources
        (its zero-shot record): the term joins this model's mix, its weight chosen on valid.
        """
        if pretrained.module is None:
            raise RuntimeError("warm_start needs a pretrained (fitted) TextFusionRec")
        if codes not in ("pretrained", "own"):
            raise ValueError(f"codes must be 'pretrained' or 'own', got {codes!r}")
        unknown = sorted((set(reinit) | set(freeze)) - set(TRANSFER_PARTS))
        if unknown:
            raise ValueError(f"unknown part(s) {unknown}; known: {sorted(TRANSFER_PARTS)}")
        if set(reinit) & set(freeze):
            raise ValueError(f"a part cannot be both re-initialised and frozen: {sorted(set(reinit) & set(freeze))}")
        if pretrained.module.code_emb is None:  # pretrained without code tables: this domain fits its own
            if "codes" in freeze:
                raise ValueError("the pretrained model has no code tables to freeze")
            codes = "own"
        if codes == "own" and "codes" in freeze:
            raise ValueError("codes='own' starts fresh code tables: they cannot be frozen")
        self.warm_start_from = pretrained
        self.warm_start_codes = codes
        # the pretrained weights fix the shapes: take its encoder and adaptor architecture as is
        self.backbone_config = copy.deepcopy(pretrained.backbone_config)
        self.n_experts = pretrained.n_experts
        self.text_whiten = pretrained.text_whiten  # the adaptor reads what it was pretrained on
        self.warm_start_reinit, self.warm_start_freeze = tuple(reinit), tuple(freeze)
        if text_term:
            self.text_term = pretrained_text_term(pretrained)
        record = copy.deepcopy(pretrained.pretraining or {})
        record["init"] = {"source": source, "codes": codes, "reinit": list(reinit), "freeze": list(freeze),
                          "text_term": copy.deepcopy(self.text_term) if text_term else None}
        self.pretraining = record
        return self

    # ---- scoring -----------------------------------------------------------------------------
    def components(self, histories: list[np.ndarray]) -> dict[str, torch.Tensor]:
        """The score parts for a batch, each (B, n): ``seq`` (h . rep), ``ease``, ``trans`` (transitions),
        ``text`` cosine and, with a text term, ``recency`` (:class:`~textrec.models.text_term.TextTerm`)."""
        if self.module is None:
            raise RuntimeError("TextFusionRec is not fitted; call fit() or from_pretrained() first")
        seq = score_histories(self.module, histories, self.trainer_config.max_len,
                              self.trainer_config.eval_batch_size)
        n = seq.shape[1]
        if self.ease_B is None:  # a pretrained model: no co-occurrence was fitted
            ease = torch.zeros(len(histories), n)
        else:
            n_fit = self.ease_B.shape[0]
            fit_hist = [np.asarray(h, dtype=np.int64)[np.asarray(h, dtype=np.int64) < n_fit] for h in histories]
            ease = torch.from_numpy(np.ascontiguousarray(history_matrix(fit_hist, n_fit) @ self.ease_B.numpy(),
                                                         dtype=np.float32))
            if n > n_fit:  # items added after fitting have no co-occurrence column
                ease = torch.cat([ease, torch.zeros(len(histories), n - n_fit)], dim=1)
        if self.markov is None:
            trans = torch.zeros(len(histories), n)
        else:
            n_fit = self.markov.trans.shape[0]
            trans = self.markov.score(None, [np.asarray(h, dtype=np.int64)[np.asarray(h, dtype=np.int64) < n_fit]
                                             for h in histories])
            if n > n_fit:
                trans = torch.cat([trans, torch.zeros(len(histories), n - n_fit)], dim=1)
        parts = {"seq": seq, "ease": ease, "trans": trans, "text": history_cosine(self.module.text_emb.cpu(), histories)}
        if self.term is not None:
            parts["recency"] = self.term.scores(histories)
        return parts

    def gate(self, kappa: float | None = None) -> torch.Tensor:
        """(n_items,) behaviour weight ``w_i = n_i / (n_i + kappa)`` (``kappa = 0``: 1 if ``n_i > 0``)."""
        kappa = self.mix["kappa"] if kappa is None else kappa
        c = self.counts
        return (c > 0).float() if kappa <= 0 else c / (c + kappa)

    @staticmethod
    def combine(parts: dict[str, torch.Tensor], gate: torch.Tensor, cold: torch.Tensor,
                mix: dict[str, float]) -> torch.Tensor:
        """The final score from the parts, the per-item gate and the mix parameters."""
        out = parts["seq"].clone()
        # in place, one (B, n) pass per term: the tuning grid calls this ~100 times on thousands of rows
        if mix["lam"]:
            out.addcmul_(parts["ease"], mix["lam"] * gate[None, :])
        if mix.get("nu"):
            out.addcmul_(parts["trans"], mix["nu"] * gate[None, :])
        if mix["mu"]:
            out.addcmul_(parts["text"], mix["mu"] * (1.0 - gate)[None, :])
        if mix.get("mu_cold"):
            centred = parts["text"] - parts["text"].mean(dim=1, keepdim=True)
            out += mix["mu_cold"] * cold[None, :].float() * centred
        if mix["cold_offset"]:
            out += mix["cold_offset"] * cold[None, :].float()
        if mix.get("rho"):
            out.add_(parts["recency"], alpha=mix["rho"])
        return out

    def score(self, users: np.ndarray, histories: list[np.ndarray]) -> torch.Tensor:
        parts = self.components(histories)
        cold = self.counts == 0
        out = self.combine(parts, self.gate(), cold, self.mix)
        if self.calibration is not None and bool(cold.any()):
            affinity = self.affinity(self.affinity_parts(histories, parts, self.affinity_weights))
            out = self.calibration.place(out, affinity, seen_mask(histories, out.shape[1]), cold)
        return out

    # ---- new items: calibrated placement -------------------------------------------------------
    def text_path_scores(self, histories: list[np.ndarray]) -> torch.Tensor:
        """(B, n) ``h . text_rep(i)``: every item scored by its text path alone (no ID residual),
        the history encoded as in :meth:`components`."""
        from textrec.models.seq_trainer import _logits, last_hidden, pad_left

        module = self.module
        was_training = module.training
        module.eval()
        try:
            with torch.no_grad():
                reps, text_reps = module.item_representations(), module.text_representations()
                out = []
                bs = self.trainer_config.eval_batch_size
                dev = next(module.parameters()).device
                for start in range(0, len(histories), bs):
                    items, mask = pad_left(histories[start:start + bs], self.trainer_config.max_len, dev)
                    h = last_hidden(module.encode(items, mask, reps))
                    out.append(_logits(module, h, text_reps).float().cpu())
        finally:
            module.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, module.n_items)

    def affinity_parts(self, histories: list[np.ndarray], parts: dict[str, torch.Tensor],
                       weights: tuple[float, ...] | None = None) -> dict[str, torch.Tensor]:
        """The affinity terms (``seq``: text-path score, ``cos``: cosine to the whole history,
        ``recent``: cosine to its last ``RECENT`` items, ``term``: the text term when the model has
        one); with ``weights``, only the non-zero ones."""
        want = (True, True, True, "recency" in parts) if weights is None else tuple(bool(w) for w in weights)
        out: dict[str, torch.Tensor] = {}
        if want[0]:
            out["seq"] = self.text_path_scores(histories)
        if want[1]:
            out["cos"] = parts["text"]
        if want[2]:
            out["recent"] = history_cosine(self.module.text_emb.cpu(), [np.asarray(h)[-RECENT:] for h in histories])
        if len(want) > 3 and want[3]:
            out["term"] = parts["recency"]
        return out

    def affinity(self, terms: dict[str, torch.Tensor],
                 weights: tuple[float, ...] | None = None) -> torch.Tensor:
        """The text affinity new items are ranked by: the weighted sum of :meth:`affinity_parts`."""
        weights = self.affinity_weights if weights is None else weights
        out = None
        for w, key in zip(weights, ("seq", "cos", "recent", "term")):
            if w:
                out = w * terms[key] if out is None else out + w * terms[key]
        return out if out is not None else torch.zeros_like(next(iter(terms.values())))

    def calibrate(self, valid, max_rows: int = 6000):
        """Fit the new-item placement (:class:`~textrec.models.cold_items.RankCalibration`) on valid.

        With new-item targets in valid, chooses the affinity weights (text-path score vs text
        cosine) by how well the affinity alone ranks those targets (full-list NDCG), and the rate
        multiplier by valid NDCG@10 (averaged as ``tune_objective`` says). Without them the affinity is the text cosine
        alone (the text path was trained on the warm items that would stand in for new ones). The
        test set is never read.
        """
        from textrec.models.cold_items import enough_new_targets, fit_calibration, full_ndcg

        hists, t_rows, t_items = self._valid_rows(valid, max_rows)
        rows = np.arange(len(hists))
        parts = self.components(hists)
        terms = self.affinity_parts(hists, parts)
        n = terms["seq"].shape[1]
        cold = self.counts == 0
        seen = seen_mask(hists, n)
        t_cold = cold.numpy()[t_items]
        real_new = enough_new_targets(t_cold)
        pick = t_cold if real_new else np.ones(len(t_items), dtype=bool)

        # the cosines learned nothing from the warm items: any mix of them is fair to choose on stand-ins
        candidates = [(0.0, 1.0, 0.0, 0.0), (0.0, 0.0, 1.0, 0.0), (0.0, 1.0, 1.0, 0.0)]
        if "term" in terms:  # the text term learned nothing from them either
            candidates += [(0.0, 0.0, 0.0, 1.0)]
        if real_new:
            ratio = float(terms["seq"].std()) / (float(terms["cos"].std()) or 1.0)
            candidates += [(1.0, 0.0, 0.0, 0.0)] + [(1.0, ratio * f, 0.0, 0.0) for f in (0.5, 1.0, 2.0, 4.0)] + [
                (1.0, 0.0, ratio * f, 0.0) for f in (1.0, 2.0)]
        # Without new-item targets, warm targets stand in for new items, and the learned text path has
        # been trained on exactly those items: its in-sample ranks would promise far more than a truly
        # new (or out-of-domain) text delivers, so it is a candidate only on real new-item targets.
        table = [{"a_seq": w[0], "a_cos": round(w[1], 5), "a_recent": round(w[2], 5), "a_term": w[3],
                  "full_ndcg": round(full_ndcg(self.affinity(terms, w), seen, t_rows[pick], t_items[pick]), 5)}
                 for w in candidates]
        best = max(range(len(candidates)), key=lambda j: table[j]["full_ndcg"])
        self.affinity_weights = candidates[best]
        affinity = self.affinity(terms)
        scores = self.combine(parts, self.gate(), cold, self.mix)
        cal = fit_calibration(scores, affinity, seen, cold, t_rows, t_items, len(rows), objective=self.tune_objective)
        cal.report.update({"valid_rows_used": int(len(rows)), "affinity_table": table,
                           "affinity_weights": list(self.affinity_weights)})
        self.calibration = cal
        return cal

    # ---- mix tuning on valid -------------------------------------------------------------------
    def tune(self, valid, metric: str = "ndcg@10", sweeps: int = 2, max_rows: int = 6000,
             objective: str = "rows") -> dict[str, float]:
        """Choose the mix (``lam``, ``kappa``, ``mu``, ``mu_cold``, ``cold_offset``, ``nu``, ``rho``)
        by coordinate ascent on ``valid`` rows.

        Grids are relative to the spread of each part (so they fit any score scale); the valid
        score parts are computed once. At most ``max_rows`` rows (a seeded sample) are used.
        ``objective``: ``"rows"`` averages ``metric`` over rows; ``"balanced"`` takes the mean of
        its averages over rows with a zero-event target and over the others (``"rows"`` when one
        of the two groups is empty).
        """
        if objective not in TUNE_OBJECTIVES:
            raise ValueError(f"objective must be one of {TUNE_OBJECTIVES}, got {objective!r}")
        from textrec.metrics.ranking import metrics_from_ranks, target_ranks

        hists, t_rows, t_items = self._valid_rows(valid, max_rows)
        rows = np.arange(len(hists))
        parts = self.components(hists)
        n = parts["seq"].shape[1]
        r_idx = np.repeat(np.arange(len(rows)), [len(h) for h in hists])
        h_idx = np.concatenate(hists).astype(np.int64) if len(r_idx) else np.zeros(0, np.int64)
        mask = (torch.from_numpy(r_idx), torch.from_numpy(h_idx))
        tr, ti = torch.from_numpy(t_rows), torch.from_numpy(t_items)
        cold = self.counts == 0
        k = int(metric.partition("@")[2])
        # a row is "cold" when one of its targets has no training events
        cold_row = np.zeros(len(rows), dtype=bool)
        cold_row[t_rows[cold.numpy()[t_items]]] = True
        groups = [cold_row, ~cold_row] if objective == "balanced" and cold_row.any() and (~cold_row).any() else []

        def value(mix: dict[str, float]) -> float:
            s = self.combine(parts, self.gate(mix["kappa"]), cold, mix)
            s[mask] = float("-inf")
            ranks = target_ranks(s, tr, ti).numpy()
            per_row = metrics_from_ranks(ranks, t_rows, len(rows), [k])[metric]
            if groups:
                return float(np.mean([per_row[g].mean() for g in groups]))
            return float(per_row.mean())

        def spread(x: torch.Tensor) -> float:
            x = x[:, :n]
            return float(x.std()) or 1.0

        s_seq = spread(parts["seq"])
        grids = {"lam": [0.0] + [s_seq / spread(parts["ease"]) * f for f in (0.25, 0.5, 1, 2, 4, 8)],
                 "nu": [0.0] + [s_seq / spread(parts["trans"]) * f for f in (0.25, 0.5, 1, 2, 4, 8)],
                 "kappa": [0.0, 1.0, 3.0, 10.0, 30.0],
                 "mu": [0.0] + [s_seq / spread(parts["text"]) * f for f in (0.25, 0.5, 1, 2, 4)],
                 "mu_cold": [0.0] + [s_seq / spread(parts["text"]) * f for f in (0.25, 0.5, 1, 2, 4, 8)],
                 "cold_offset": [s_seq * f for f in (-1.0, -0.5, 0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)]}
        if not bool(cold.any()):
            grids["mu_cold"] = grids["cold_offset"] = [0.0]
        if self.markov is None:
            grids["nu"] = [0.0]
        grids["rho"] = [0.0] + ([s_seq / spread(parts["recency"]) * f for f in (0.25, 0.5, 1, 2, 4, 8, 16)]
                                if "recency" in parts else [])
        mix = dict(DEFAULT_MIX)
        table = [{**mix, metric: round(value(mix), 5)}]
        best = table[0][metric]
        for _ in range(sweeps):
            changed = False
            for key, grid in grids.items():
                for g in grid:
                    if g == mix[key]:
                        continue
                    trial = {**mix, key: float(g)}
                    v = value(trial)
                    table.append({**trial, metric: round(v, 5)})
                    if v > best + 1e-9:
                        best, mix, changed = v, trial, True
            if not changed:
                break
        self.mix = mix
        self.mix_report = {"metric": metric, "objective": objective if groups else "rows",
                           "valid_rows_used": int(len(rows)), "valid_rows_cold_target": int(cold_row.sum()),
                           "best": round(best, 5),
                           "seq_only": table[0][metric], "chosen": dict(mix), "grids": grids, "table": table}
        return mix

    # ---- new items -----------------------------------------------------------------------------
    def add_items(self, texts: list[str] | None = None, ids: list[str] | None = None,
                  embeddings: np.ndarray | None = None) -> np.ndarray:
        """Append new items from their text (or precomputed vectors); no retraining.

        They are scored from text alone (adaptor, codes from the fitted quantizer, text cosine,
        the cold offset). Returns their item indexes. With a catalog, ``ids`` name them.
        """
        if self.module is None:
            raise RuntimeError("fit or load the model before adding items")
        if embeddings is None:
            if not texts or any(not str(t).strip() for t in texts):
                raise ValueError("add_items needs a non-empty text for every new item")
            emb = self.embed(texts)
        else:
            emb = np.asarray(embeddings, dtype=np.float32)
            emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        if emb.ndim != 2 or emb.shape[1] != self.module.text_emb.shape[1]:
            raise ValueError(f"item vectors must be (n, {self.module.text_emb.shape[1]}), got {emb.shape}")
        raw = emb
        if self.text_whiten is not None:  # the same whitening as the catalog's items
            if self.whitening is None:
                raise RuntimeError("this model whitens its item vectors but has no fitted whitening to add items with")
            emb = apply_whitening(emb, self.whitening)
        if texts is not None and len(texts) != len(emb):
            raise ValueError(f"{len(texts)} texts for {len(emb)} vectors")
        if self.catalog is not None:
            if ids is None or len(ids) != len(emb):
                raise ValueError("this model has an item catalog: pass one id per new item")
            have = set(self.catalog.ids)
            clash = [i for i in map(str, ids) if i in have]
            if clash:
                raise ValueError(f"item id(s) already in the catalog: {clash[:5]}")
        codes = None
        if self.module.codes is not None:
            if self.quantizer is None:
                raise RuntimeError("this model has codes but no quantizer to code new items")
            codes = torch.from_numpy(self.quantizer.encode(emb))
        if self.catalog is not None:
            self.catalog.add(ids, text=texts)
        start = self.module.n_items
        self.module.add_items(torch.from_numpy(emb), codes)
        if self.term is not None:
            self.term.add(raw)
        self.counts = torch.cat([self.counts, torch.zeros(len(emb))])
        self.n_items = self.module.n_items
        return np.arange(start, self.n_items)

    # ---- persistence -----------------------------------------------------------------------------
    def n_scored_items(self) -> int | None:
        return self.module.n_items if self.module is not None else None

    def get_config(self) -> dict[str, Any]:
        return {"backbone": self.backbone_config.to_dict(), "trainer": self.trainer_config.to_dict(),
                "n_experts": self.n_experts, "adaptor_dropout": self.adaptor_dropout,
                "n_subvectors": self.n_subvectors, "n_centroids": self.n_centroids, "opq": self.opq,
                "small_catalog": self.small_catalog, "code_corpus": list(self.code_corpus),
                "encoder": self.encoder_name, "id_residual": self.id_residual,
                "new_item_dropout": self.new_item_dropout, "ease_lam": self.ease_lam, "ease_grid": self.ease_grid,
                "transitions": self.transitions, "trans_decay": self.trans_decay,
                "mix": dict(self.mix), "tune_mix": self.tune_mix, "tune_objective": self.tune_objective,
                "early_stop_rows": self.early_stop_rows, "use_text": self.text_mode == "text",
                "n_items": self.n_items, "n_fit": self.n_fit, "seed": self.seed,
                "new_item_scoring": self.new_item_scoring, "text_whiten": self.text_whiten,
                "text_term": self.term.settings if self.term is not None else copy.deepcopy(self.text_term),
                "pretraining": copy.deepcopy(self.pretraining)}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        if self.module is None:
            raise RuntimeError("TextFusionRec is not fitted: nothing to save")
        out = {f"module.{k}": v for k, v in self.module.state_dict().items()}
        if self.ease_B is not None:  # a pretrained model has none
            out["ease_B"] = self.ease_B
        if self.markov is not None:
            out.update({f"markov.{k}": v for k, v in self.markov.state_tensors().items()})
        out["counts"] = self.counts
        if self.whitening is not None:
            out["text_whitening.mean"] = torch.from_numpy(self.whitening[0])
            out["text_whitening.proj"] = torch.from_numpy(self.whitening[1])
        if self.term is not None:
            out.update(self.term.to_tensors("text_term"))
        if self.calibration is not None:
            out.update(self.calibration.to_tensors("cold_calibration"))
            out["cold_calibration.affinity_weights"] = torch.tensor(self.affinity_weights, dtype=torch.float64)
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        sd = {k[len("module."):]: v for k, v in tensors.items() if k.startswith("module.")}
        ease_B = tensors.get("ease_B")
        n_fit = int(ease_B.shape[0]) if ease_B is not None else int(self.n_fit or sd["text_emb"].shape[0])
        codes = sd.get("codes")
        warm = sd["warm"].numpy()
        with seeded(0):
            module = TextFusionModule(
                sd["text_emb"][:n_fit], None if codes is None else codes[:n_fit], self.n_centroids,
                torch.from_numpy(warm[:n_fit]), self.backbone_config, n_experts=self.n_experts,
                adaptor_dropout=self.adaptor_dropout, id_residual=self.id_residual,
                new_item_dropout=self.new_item_dropout)
        if sd["text_emb"].shape[0] > n_fit:  # items added after fitting
            module.add_items(sd["text_emb"][n_fit:], None if codes is None else codes[n_fit:])
        module.load_state_dict(sd)
        self.module = module.to(resolve_device(self.trainer_config.device)).eval()
        self.ease_B = ease_B.float().contiguous() if ease_B is not None else None
        self.counts = tensors["counts"].float()
        self.whitening = None
        if "text_whitening.mean" in tensors:
            self.whitening = (tensors["text_whitening.mean"].numpy(), tensors["text_whitening.proj"].numpy())
        self.term = (TextTerm.from_tensors(self.text_term, tensors, "text_term")
                     if isinstance(self.text_term, dict) else None)
        self.markov = None
        if "markov.pop" in tensors:  # models saved before the transition part have none
            from textrec.models.baselines import MarkovChain

            self.markov = MarkovChain(alpha=0.0, L=TRANS_WINDOW, decay=self.trans_decay or TRANS_DECAYS[0])
            self.markov.load_state_tensors({k[len("markov."):]: v for k, v in tensors.items()
                                            if k.startswith("markov.")})
        self.n_items = self.module.n_items
        self.text_mode = "text" if self.use_text else "none"
        from textrec.models.cold_items import RankCalibration

        self.calibration = RankCalibration.from_tensors(tensors, "cold_calibration")
        if self.calibration is not None:
            w = [float(x) for x in tensors["cold_calibration.affinity_weights"]]
            self.affinity_weights = tuple((w + [0.0] * 4)[:4])  # models saved before the term have 3

    def save_extra(self, path: Path) -> None:
        from textrec.text.quantize import save_quantizer

        save_quantizer(self.quantizer, path)

    def load_extra(self, path: Path) -> None:
        from textrec.text.quantize import load_quantizer

        self.quantizer = load_quantizer(path)

    def copy_unfitted(self, **overrides: Any) -> TextFusionRec:
        """A fresh, unfitted model with this one's config (``overrides`` replace keys)."""
        cfg = copy.deepcopy(self.get_config())
        cfg.update(overrides)
        return TextFusionRec(**cfg)


def zero_shot_choice(pretrained: TextFusionRec) -> dict[str, Any] | None:
    """The zero-shot settings a pretrained model chose on its sources (None if it records none)."""
    return ((pretrained.pretraining or {}).get("zero_shot") or {}).get("chosen")


def pretrained_text_term(pretrained: TextFusionRec) -> dict[str, Any]:
    """The text term's settings a pretrained model chose on its sources (its zero-shot record)."""
    chosen = zero_shot_choice(pretrained)
    if not chosen:
        raise ValueError("the pretrained model records no text-term settings: choose them with "
                         "python -m textrec.transfer_cli --choose-zero-shot DIR")
    return {"decay": float(chosen["decay"]), "shrink": chosen["shrink"]}


__all__ = ["TextFusionRec", "pretrained_text_term", "zero_shot_choice", "TextFusionModule", "MoEAdaptor", "DEFAULT_MIX", "NEW_ITEM_SCORING", "TRANSFER_PARTS",
           "TRANS_DECAYS", "TRANS_WINDOW"]
