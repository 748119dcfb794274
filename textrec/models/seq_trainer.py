"""Sequential next-item training over item representations, on the one loop (:mod:`textrec.training`).

This module supplies what is specific to next-item models (training windows, losses, scoring);
optimisation, early stopping, checkpoints and devices are :class:`textrec.training.Trainer`'s.

A model plugs in by being an ``nn.Module`` with two methods (:class:`SequentialModule`):

* ``item_representations() -> (n_items, d)`` — the catalog side: input item vectors *and*
  the output (scoring) vectors. SASRec returns its ID embedding table; VQ-Rec will return
  sums of code embeddings. Computed once per training step and once per scoring batch.
* ``encode(items, mask, item_reps) -> (B, L, d)`` — hidden states for left-padded item index
  rows (``mask`` True at real items; see :mod:`textrec.models.backbone`).

Optionally ``score_hidden(hidden, item_reps) -> logits`` (default ``hidden @ item_reps.T``)
for models that scale or normalise scores, e.g. a temperature.

Training examples (RecBole's "every prefix predicts its next item", computed efficiently):
each user's training sequence is cut into windows of ``max_len + 1`` items taken from the
end, ``[s[-L-1:], s[-2L-1:-L], ...]``; a window's first ``L`` items are the input and the
last ``L`` the targets, and the loss is taken at *every* position. Because the encoder is
causal and position ids start at each row's first real item, position ``t`` of a window
computes exactly what scoring computes for the prefix ending there. So one forward pass
trains up to ``L`` prefixes at the cost of one, every target of a sequence is predicted once
per epoch, and the last window reproduces inference (last ``L`` items) exactly. The price:
the first targets of the earlier windows of long sequences see a shorter context than
RecBole's prefix copies give them. ``window_stride < max_len`` buys that context back
(overlapping windows; only the last ``stride`` targets of each window count) at
``max_len / stride`` times the compute.

Loss: ``loss="ce"`` is softmax cross-entropy over the full catalog (the RecBole ``CE`` loss);
``"sampled"`` is softmax over the positive and ``negatives`` uniformly sampled items (what makes
a 200k-item catalog trainable on a CPU; see docs/scale.md for its quality cost); ``"inbatch"`` is softmax over the distinct targets of the batch (VQ-Rec's pretraining loss),
optionally with semi-synthetic hard negatives: a module that has ``corrupt_representations``
(VQ-Rec: replace each code of the positive with probability ``hard_negative_prob``) adds one
near-copy of every positive as an extra negative column. More losses can be added with
:func:`register_loss` without touching the loop.

Step cost independent of the catalog: under ``"sampled"`` and ``"inbatch"`` a step reads only
the rows of its inputs, targets and negatives. When the module has ``represent(ids) -> (len(ids),
d)`` (the rows of ``item_representations()`` for those ids, built alone) and ``touched_rows`` is
on (the default), the trainer builds just those rows, runs the encoder and the loss on local
indexes into them, and the module's ID tables return sparse gradients that
:class:`textrec.optim.LazyAdamW` applies to the touched rows only (lazy Adam: an untouched row
keeps its value and its moments). Nothing in such a step is proportional to the number of
items. ``"ce"`` (full softmax) reads every row and trains densely as before.

``length_pools > 0`` batches windows of similar length together (:func:`length_batches`), so a
step costs what its real events cost rather than ``max_len`` per row (the padding of one long
window in a batch of short ones).

``domain_batches`` (with ``item_domains``, the item offsets of the domains of a merged view, given to
:meth:`SeqTrainer.fit`) makes every batch come from one domain: the in-batch loss's negatives are
then that domain's items, the sampled loss draws its negatives inside the domain's item range, and
valid rows are ranked within their own domain's catalog. A merged catalog's other-domain items are
easy negatives (a history names its domain), so without this a multi-domain step teaches mostly
which domain comes next.

``catalog="train"`` restricts the softmax to items with at least one training event, so items
held out for zero-shot evaluation are never seen, not even as negatives.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from textrec.models.backbone import last_hidden, pad_left
from textrec.models.base import Recommender, TrainView
from textrec.optim import LazyAdamW
from textrec.recipes import config_from_dict
from textrec.training import Trainer, TrainingConfig, TrainResult


class SequentialModule(Protocol):
    """What :class:`SeqTrainer` needs from a model (an ``nn.Module``)."""

    def item_representations(self) -> torch.Tensor: ...

    def encode(self, items: torch.Tensor, mask: torch.Tensor,
               item_reps: torch.Tensor | None = None) -> torch.Tensor: ...


@dataclass
class SeqTrainerConfig(TrainingConfig):
    """The shared loop options (:class:`~textrec.training.TrainingConfig`) with this trainer's
    defaults, plus example construction, loss and scoring."""

    epochs: int = 200
    batch_size: int = 128
    metric: str = "ndcg@10"            # valid metric for early stopping / best-weight selection
    max_len: int = 50                  # window length = the history length the model reads
    window_stride: int | None = None   # None = max_len (non-overlapping windows)
    device: str = "cpu"                # "cpu", "cuda", "cuda:0", or "auto"
    loss: str = "ce"                   # key into LOSSES
    eval_batch_size: int = 512
    hard_negative_prob: float = 0.0    # "inbatch": code-replacement probability of the fake negatives
    catalog: str = "all"               # "all" items, or only items with "train" events, as negatives
    negatives: int = 1024              # "sampled": uniform negatives per batch (shared by its rows)
    touched_rows: bool = True          # sampled/in-batch + module.represent: build and update only the touched rows
    length_pools: int = 0              # >0: batches of similar-length windows, sorted within pools of this many batches
    domain_batches: bool = False       # with fit(item_domains=...): one domain per batch, negatives and valid in it

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_len < 1:
            raise ValueError("max_len must be >= 1")
        if self.window_stride is not None and not 1 <= self.window_stride <= self.max_len:
            raise ValueError("window_stride must be in [1, max_len]")
        if self.catalog not in ("all", "train"):
            raise ValueError(f"catalog must be 'all' or 'train', got '{self.catalog}'")
        if self.length_pools < 0:
            raise ValueError("length_pools must be >= 0 (0 = plain shuffled batches)")
        if self.negatives < 1:
            raise ValueError("negatives must be >= 1")
        if not 0.0 <= self.hard_negative_prob < 1.0:
            raise ValueError("hard_negative_prob must be in [0, 1)")
        name, _, k = self.metric.partition("@")
        if name not in ("hr", "recall", "ndcg", "mrr") or not k.isdigit() or int(k) < 1:
            raise ValueError(f"metric must look like 'ndcg@10' (hr/recall/ndcg/mrr @K), got '{self.metric}'")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | SeqTrainerConfig | None) -> SeqTrainerConfig:
        return config_from_dict(cls, d, "trainer")


# ---- losses --------------------------------------------------------------------------------
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, nn.Module, "SeqTrainerConfig"], torch.Tensor]
LOSSES: dict[str, LossFn] = {}


def register_loss(name: str) -> Callable[[LossFn], LossFn]:
    """Decorator: ``fn(hidden (N, d), targets (N,), item_reps (n_items, d), module, config) -> scalar``.

    ``targets`` index rows of ``item_reps`` (with ``catalog="train"`` that is the train catalog)."""
    def deco(fn: LossFn) -> LossFn:
        LOSSES[name] = fn
        return fn
    return deco


def _logits(module: nn.Module, hidden: torch.Tensor, reps: torch.Tensor) -> torch.Tensor:
    fn = getattr(module, "score_hidden", None)
    return fn(hidden, reps) if fn is not None else hidden @ reps.T


@register_loss("ce")
def full_softmax_ce(hidden: torch.Tensor, targets: torch.Tensor, reps: torch.Tensor,
                    module: nn.Module, config: SeqTrainerConfig) -> torch.Tensor:
    """Cross-entropy of the softmax over the whole catalog."""
    return F.cross_entropy(_logits(module, hidden, reps), targets)


@register_loss("inbatch")
def inbatch_softmax_ce(hidden: torch.Tensor, targets: torch.Tensor, reps: torch.Tensor,
                       module: nn.Module, config: SeqTrainerConfig) -> torch.Tensor:
    """Cross-entropy over the distinct targets of the batch (in-batch negatives), plus one
    corrupted copy of each positive as a hard negative when the module supports it."""
    uniq, inv = torch.unique(targets, return_inverse=True)
    logits = _logits(module, hidden, reps[uniq])
    corrupt = getattr(module, "corrupt_representations", None)
    if config.hard_negative_prob > 0 and corrupt is not None:
        fake = corrupt(targets, config.hard_negative_prob)  # (N, d): row i is a near-copy of target i
        logits = torch.cat([logits, _logits(module, hidden, fake)], dim=1)
    return F.cross_entropy(logits, inv)


inbatch_softmax_ce.in_batch = True  # negatives come from the batch: the catalog option is moot


@register_loss("sampled")
def sampled_softmax_ce(hidden: torch.Tensor, targets: torch.Tensor, reps: torch.Tensor,
                       module: nn.Module, config: SeqTrainerConfig, negatives: torch.Tensor | None = None
                       ) -> torch.Tensor:
    """Cross-entropy over the positive and ``config.negatives`` items drawn uniformly (one draw
    shared by the whole batch); a draw that hits a row's own target is masked out.

    ``negatives`` (rows of ``reps``) is the draw when the caller made it (the trainer does, so it
    can build only the rows a step touches); otherwise it is drawn here over all rows of ``reps``.
    Cost per step is O(positions x negatives) instead of O(positions x catalog): at 200k items
    and 1,024 negatives the output layer is ~200x cheaper. Uniform proposals need no logQ
    correction (it is the same constant for every item).
    """
    if negatives is None:
        negatives = draw_negatives(reps.shape[0], config.negatives, hidden.device)
    neg = negatives
    if getattr(module, "score_hidden", None) is None:
        pos = (hidden * reps[targets]).sum(1, keepdim=True)
    else:  # a module that scales scores: its own scoring of each row's positive
        pos = _logits(module, hidden, reps[targets]).diagonal()[:, None]
    neg_logits = _logits(module, hidden, reps[neg])
    neg_logits = neg_logits.masked_fill(neg[None, :] == targets[:, None], float("-inf"))
    logits = torch.cat([pos, neg_logits], dim=1)
    return F.cross_entropy(logits, torch.zeros(len(targets), dtype=torch.long, device=hidden.device))


def draw_negatives(n: int, count: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``count`` uniform draws (with replacement) from ``0..n-1``: the sampled loss's negatives.
    A catalog of at most ``count`` items is taken whole (``arange(n)``: the sampled loss is then
    the full softmax) instead of drawn, which would miss some items and repeat others."""
    if n <= count:
        return torch.arange(n, device=device)
    return torch.randint(0, n, (count,), device=device)


# ---- examples ------------------------------------------------------------------------------
def build_windows(sequences: list[np.ndarray], max_len: int, stride: int | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Training windows (N, max_len + 1), left-padded with -1, and per window how many of the
    trailing targets count in the loss (all of them unless windows overlap)."""
    stride = stride or max_len
    rows: list[np.ndarray] = []
    n_loss: list[int] = []
    for seq in sequences:
        n = len(seq)
        end = n
        while end >= 2:
            start = max(0, end - max_len - 1)
            rows.append(seq[start:end])
            # the earliest window counts all its targets; later ones only the new `stride`
            n_loss.append(end - start - 1 if start == 0 else stride)
            if start == 0:
                break
            end -= stride
    out = np.full((len(rows), max_len + 1), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, max_len + 1 - len(r):] = r
    return out, np.asarray(n_loss, dtype=np.int64)


def length_batches(perm: torch.Tensor, lengths: torch.Tensor, batch_size: int, pool: int,
                   gen: torch.Generator) -> list[torch.Tensor]:
    """Batches of windows of similar length: the shuffled order ``perm`` is cut into pools of
    ``pool`` batches, each pool sorted by window length and cut into batches, and the batches are
    shuffled. A batch is as wide as its longest window, so on a log where most users are short and
    a few long (power-law lengths) plain shuffling pads nearly every batch to ``max_len``; pooled
    batches keep the padding, and the step's cost, close to the events actually read. Every window
    still appears exactly once per epoch."""
    out: list[torch.Tensor] = []
    span = batch_size * pool
    for s in range(0, len(perm), span):
        chunk = perm[s:s + span]
        chunk = chunk[torch.sort(lengths[chunk], stable=True).indices]
        out.extend(chunk[b:b + batch_size] for b in range(0, len(chunk), batch_size))
    order = torch.randperm(len(out), generator=gen)
    return [out[i] for i in order]


# ---- scoring -------------------------------------------------------------------------------
@torch.no_grad()
def score_histories(module: nn.Module, histories: list[np.ndarray], max_len: int,
                    batch_size: int = 512) -> torch.Tensor:
    """(len(histories), n_items) scores on CPU: last hidden state against every item vector."""
    device = next(module.parameters()).device
    was_training = module.training
    module.eval()
    try:
        reps = module.item_representations()
        out = []
        for start in range(0, len(histories), batch_size):
            items, mask = pad_left(histories[start:start + batch_size], max_len, device)
            h = last_hidden(module.encode(items, mask, reps))
            out.append(_logits(module, h, reps).float().cpu())
        if not out:
            return torch.zeros(0, reps.shape[0])
        return out[0] if len(out) == 1 else torch.cat(out)  # one chunk: no copy of (rows x items)
    finally:
        module.train(was_training)


class _ModuleScorer(Recommender):
    """Adapter so ``textrec.evaluation.evaluate`` can score a bare module during training."""

    fresh_scores = True

    def __init__(self, module: nn.Module, max_len: int, name: str, batch_size: int,
                 item_domains: np.ndarray | None = None) -> None:
        self.module, self.max_len, self.name, self.batch_size = module, max_len, name, batch_size
        self.item_domains = item_domains  # offsets: rank each row within its latest item's domain

    def fit(self, data: TrainView, progress: bool = True) -> Recommender:  # pragma: no cover
        raise NotImplementedError

    def score(self, users: np.ndarray, histories: list[np.ndarray]) -> torch.Tensor:
        out = score_histories(self.module, histories, self.max_len, self.batch_size)
        if self.item_domains is not None:
            off = self.item_domains
            for i, h in enumerate(histories):
                if len(h):
                    d = int(np.searchsorted(off, h[-1], side="right")) - 1
                    out[i, :off[d]] = float("-inf")
                    out[i, off[d + 1]:] = float("-inf")
        return out


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Run a block under ``torch.manual_seed(seed)`` without disturbing the caller's RNG state."""
    dev = torch.device(device)
    devices = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def resolve_device(device: str) -> torch.device:
    """``"auto"`` picks CUDA when present; a CUDA request on a machine without one falls back to
    CPU with a warning (so a model trained on a GPU loads anywhere)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        warnings.warn(f"device '{device}' requested but CUDA is unavailable; using CPU", stacklevel=2)
        return torch.device("cpu")
    return dev


def uses_touched_rows(module: nn.Module, config: SeqTrainerConfig) -> bool:
    """Whether a step builds and updates only the item rows it reads (see the module docstring):
    a sampled or in-batch loss, ``touched_rows`` on, a module with ``represent``, and no hard
    negatives made from the whole table."""
    if not config.touched_rows or config.loss not in ("sampled", "inbatch"):
        return False
    if not callable(getattr(module, "represent", None)):
        return False
    hard = config.hard_negative_prob > 0 and getattr(module, "corrupt_representations", None) is not None
    return not hard


# ---- the loop ------------------------------------------------------------------------------
class SeqTrainer:
    """Windows, losses and scoring for :class:`textrec.training.Trainer` (the one loop: seeded
    shuffling, AdamW, periodic valid evaluation, patience, best-weight restore, checkpoints)."""

    def __init__(self, config: SeqTrainerConfig | dict | None = None) -> None:
        self.config = SeqTrainerConfig.from_dict(config)
        if self.config.loss not in LOSSES:
            raise ValueError(f"unknown loss '{self.config.loss}'; registered: {sorted(LOSSES)}")
        self.history: list[dict[str, Any]] = []
        self.best_epoch: int | None = None
        self.best_metric: float | None = None
        self.result: TrainResult | None = None

    def fit(self, module: nn.Module, data: TrainView, progress: bool = True, name: str = "model",
            item_domains: np.ndarray | None = None) -> list[dict[str, Any]]:
        """Train ``module`` in place on ``data.sequences()``; return the per-epoch history.

        ``item_domains``: for a merged multi-domain view, the first item of each domain and the
        catalog size (``TrainView.concat``'s offsets); read only under ``domain_batches``.
        The caller's torch RNG state is left as it was (training runs on a forked RNG)."""
        device = next(module.parameters()).device
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            return self._fit(module, data, progress, name, item_domains)

    def _fit(self, module: nn.Module, data: TrainView, progress: bool, name: str,
             item_domains: np.ndarray | None = None) -> list[dict[str, Any]]:
        from textrec.evaluation import evaluate

        cfg = self.config
        loss_fn = LOSSES[cfg.loss]
        windows, n_loss = build_windows(data.sequences(), cfg.max_len, cfg.window_stride)
        train_items = np.unique(data.train["item"].to_numpy()) if cfg.catalog == "train" else None
        windows_t = torch.from_numpy(windows)
        n_loss_t = torch.from_numpy(n_loss)
        n = len(windows)
        gen = torch.Generator().manual_seed(cfg.seed)
        offsets = None
        if cfg.domain_batches and item_domains is not None and len(item_domains) > 2:
            if cfg.catalog != "all":
                raise ValueError("domain_batches needs catalog='all'")
            offsets = np.asarray(item_domains, dtype=np.int64)
            # a window's domain is its latest item's (every window ends in a real item)
            win_domain = torch.from_numpy(np.searchsorted(offsets, windows[:, -1], side="right") - 1)
        scorer = _ModuleScorer(module, cfg.max_len, name, cfg.eval_batch_size, item_domains=offsets)
        pos = torch.arange(cfg.max_len)
        ks = sorted({10, int(cfg.metric.partition("@")[2])})
        # catalog="train": the loss sees train items only; targets are remapped into that list
        catalog: dict[str, torch.Tensor] = {}

        touched = uses_touched_rows(module, cfg)

        lengths = torch.from_numpy((windows >= 0).sum(1))

        def batches(epoch: int) -> list[torch.Tensor]:
            perm = torch.randperm(n, generator=gen)
            if offsets is not None:
                out: list[torch.Tensor] = []
                for d in range(len(offsets) - 1):
                    sub = perm[win_domain[perm] == d]
                    if cfg.length_pools:
                        out += length_batches(sub, lengths, cfg.batch_size, cfg.length_pools, gen)
                    else:
                        out += [sub[s:s + cfg.batch_size] for s in range(0, len(sub), cfg.batch_size)]
                return [out[i] for i in torch.randperm(len(out), generator=gen)]
            if cfg.length_pools:
                return length_batches(perm, lengths, cfg.batch_size, cfg.length_pools, gen)
            return [perm[s:s + cfg.batch_size] for s in range(0, n, cfg.batch_size)]

        def loss(idx: torch.Tensor) -> dict[str, Any] | None:
            device = next(module.parameters()).device
            if train_items is not None and not catalog:
                catalog["items"] = torch.from_numpy(train_items).to(device)
                catalog["remap"] = torch.full((data.n_items,), -1, dtype=torch.long, device=device)
                catalog["remap"][catalog["items"]] = torch.arange(len(train_items), device=device)
            w = windows_t[idx]
            valid = w >= 0
            # drop leading columns that are padding in every row of the batch
            first = int(valid.any(0).long().argmax())
            first = min(first, cfg.max_len - 1)
            w, valid = w[:, first:], valid[:, first:]
            inp, tgt = w[:, :-1].clamp(min=0), w[:, 1:]
            in_mask = valid[:, :-1]
            counts = (pos[first:] >= cfg.max_len - n_loss_t[idx, None])
            loss_mask = in_mask & valid[:, 1:] & counts
            if not loss_mask.any():
                return None
            inp, in_mask = inp.to(device), in_mask.to(device)
            loss_mask, tgt = loss_mask.to(device), tgt.to(device)
            t = tgt[loss_mask]
            in_batch = getattr(loss_fn, "in_batch", False)
            # the sampled loss's negatives are drawn before the forward pass, on either path, so the
            # touched-rows path and the full-table path see the same draws (catalog positions)
            neg = None
            if cfg.loss == "sampled" and offsets is not None:  # inside the batch's one domain
                d = int(win_domain[idx[0]])
                neg = int(offsets[d]) + draw_negatives(int(offsets[d + 1] - offsets[d]), cfg.negatives, device)
            elif cfg.loss == "sampled":
                n_cat = len(catalog["items"]) if catalog else data.n_items
                neg = draw_negatives(n_cat, cfg.negatives, device)
            if touched:
                # only the rows this step reads: inputs, targets, negatives (as item ids)
                neg_ids = (catalog["items"][neg] if catalog else neg) if neg is not None else t[:0]
                ids, local = torch.unique(torch.cat([inp[in_mask], t, neg_ids]), return_inverse=True)
                reps = module.represent(ids)
                k, m = int(in_mask.sum()), len(t)
                inp_local = torch.zeros_like(inp)
                inp_local[in_mask] = local[:k]
                hidden = module.encode(inp_local, in_mask, reps)
                extra = {"negatives": local[k + m:]} if neg is not None else {}
                value = loss_fn(hidden[loss_mask], local[k:k + m], reps, module, cfg, **extra)
                return {"loss": value, "weight": int(loss_mask.sum())}
            reps = module.item_representations()
            hidden = module.encode(inp, in_mask, reps)
            extra = {"negatives": neg} if neg is not None else {}
            if catalog and not in_batch:
                value = loss_fn(hidden[loss_mask], catalog["remap"][t], reps[catalog["items"]], module, cfg, **extra)
            else:
                value = loss_fn(hidden[loss_mask], t, reps, module, cfg, **extra)
            return {"loss": value, "weight": int(loss_mask.sum())}

        def valid_metrics() -> dict[str, float]:
            res = evaluate(scorer, data.valid, data.n_items, ks=ks, batch_size=cfg.eval_batch_size)
            return res.metrics

        trainer = Trainer(cfg, module, batches=batches, loss=loss,
                          evaluate=valid_metrics if len(data.valid) > 0 else None,
                          rngs={"shuffle": gen},
                          name=name, progress=progress, optimizer=LazyAdamW if touched else None)
        self.result = result = trainer.fit()
        self.history = []
        for r in result.history:
            rec: dict[str, Any] = {"epoch": r["epoch"], "loss": round(r["loss"] if r["steps"] else 0.0, 5),
                                   "seconds": round(r["train_seconds"], 3)}
            if "valid" in r:
                v = r["valid"]
                rec.update({"valid_ndcg@10": round(v["ndcg@10"], 5), "valid_hr@10": round(v["hr@10"], 5),
                            "eval_seconds": round(r["eval_seconds"], 3)})
                rec[f"valid_{cfg.metric}"] = round(v[cfg.metric], 5)
            self.history.append(rec)
        if result.stopped == "max_minutes" and self.history:
            self.history[-1]["stopped"] = f"max_minutes={cfg.max_minutes} reached"
        self.best_epoch, self.best_metric = result.best_epoch, result.best_metric
        return self.history


__all__ = ["SeqTrainerConfig", "SeqTrainer", "SequentialModule", "LOSSES", "register_loss",
           "full_softmax_ce", "inbatch_softmax_ce", "sampled_softmax_ce", "draw_negatives", "uses_touched_rows",
           "build_windows", "length_batches", "score_histories", "seeded", "resolve_device"]
