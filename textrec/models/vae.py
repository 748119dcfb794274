"""Mult-VAE and Mult-DAE (Liang et al., 2018): autoencoders of a user's item set with a
multinomial likelihood.

A history is a binary item vector ``x``; it is L2-normalised, dropped out (training only),
encoded (``n_items -> 600 -> 200`` by default, tanh) and decoded back through the mirrored
layers to logits over the whole catalog. The loss is the multinomial log-likelihood
``-sum_i x_i log softmax(logits)_i``: every item competes for probability mass, which matches
top-N ranking better than per-item Gaussian or logistic losses.

Mult-VAE encodes a Gaussian (mean, log-variance) and adds ``beta * KL(q(z|x) || N(0, I))``,
with ``beta`` annealed linearly from 0 to ``anneal_cap`` over ``anneal_epochs`` epochs; the
cap is the knob chosen on valid. Two ways: a grid of caps (one fit each), or Liang et al.'s own
single run: anneal toward a high cap with ``stop_during_anneal=True`` and read the cap off the
valid peak (``best_beta``). A run annealed to cap ``c`` at the same slope follows the very same
trajectory until ``beta`` reaches ``c``, so the checkpoint kept at the peak is that run's model
up to there. Mult-DAE is the deterministic version (no KL, no
sampling). Scoring folds any history in: the encoder's mean is decoded, so valid/test users
(or unseen ones) are scored from their history alone, like EASE. The user index is ignored.

The first layer reads the sparse history with an ``EmbeddingBag`` (a weighted sum of the
rows of the history items), so the encoder costs O(history length), not O(catalog).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from textrec.models.base import Recommender, TrainView
from textrec.models.seq_trainer import seeded
from textrec.options import progress_bar as tqdm

__all__ = ["MultVAE", "MultDAE", "MultAutoencoder"]


class MultAutoencoder(nn.Module):
    """Encoder ``n_items -> hidden... -> latent`` (Gaussian when variational) and mirrored decoder."""

    def __init__(self, n_items: int, hidden: Sequence[int], latent: int, variational: bool) -> None:
        super().__init__()
        dims = [*hidden, latent]
        self.variational = variational
        self.first = nn.EmbeddingBag(n_items, dims[0], mode="sum")
        self.first_bias = nn.Parameter(torch.zeros(dims[0]))
        enc_out = [d * 2 if (variational and i == len(dims) - 2) else d for i, d in enumerate(dims[1:])]
        self.encoder = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], enc_out))
        dec = [latent, *reversed(hidden), n_items]
        self.decoder = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dec[:-1], dec[1:]))
        # Xavier weights, small normal biases: the initialisation of the reference implementation
        for m in [*self.encoder, *self.decoder]:
            nn.init.xavier_uniform_(m.weight)
            nn.init.normal_(m.bias, std=0.001)
        nn.init.xavier_uniform_(self.first.weight)
        nn.init.normal_(self.first_bias, std=0.001)

    def encode(self, items: torch.Tensor, offsets: torch.Tensor, weights: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mean, log-variance or None) of each bag of items with its per-item input weights."""
        h = self.first(items, offsets, per_sample_weights=weights) + self.first_bias
        if not self.encoder:
            # a single-layer encoder: the bag itself is the code (the DAE case only)
            return h, None
        h = torch.tanh(h)
        for i, layer in enumerate(self.encoder):
            h = layer(h)
            if i < len(self.encoder) - 1:
                h = torch.tanh(h)
        if self.variational:
            mu, logvar = h.chunk(2, dim=-1)
            return mu, logvar
        return torch.tanh(h), None

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Logits over the whole catalog."""
        for i, layer in enumerate(self.decoder):
            z = layer(z)
            if i < len(self.decoder) - 1:
                z = torch.tanh(z)
        return z


def _bags(histories: Sequence[np.ndarray], dropout: float, training: bool,
          generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """EmbeddingBag inputs for a batch: distinct items, offsets and the L2-normalised, dropped
    out input weights (the reference order: normalise, then dropout with 1/keep scaling)."""
    uniq = [np.unique(np.asarray(h, dtype=np.int64)) for h in histories]
    lens = np.array([len(u) for u in uniq], dtype=np.int64)
    items = torch.from_numpy(np.concatenate(uniq) if lens.sum() else np.zeros(0, np.int64))
    offsets = torch.from_numpy(np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64))
    norm = torch.from_numpy(np.repeat(1.0 / np.sqrt(np.maximum(lens, 1)), lens).astype(np.float32))
    if training and dropout > 0:
        keep = torch.rand(len(norm), generator=generator) >= dropout
        norm = norm * keep.float() / (1.0 - dropout)
    return items, offsets, norm


class _MultBase(Recommender):
    """Shared fit/score/persistence of the two autoencoders; ``variational`` picks which."""

    variational: bool = True

    def __init__(self, hidden: Sequence[int] | int = (600,), latent: int = 200, dropout: float = 0.5,
                 anneal_cap: float = 0.2, anneal_epochs: int = 20, epochs: int = 200, batch_size: int = 128,
                 lr: float = 1e-3, weight_decay: float = 0.0, patience: int = 20, eval_every: int = 1,
                 seed: int = 0, n_items: int | None = None, eval_batch_size: int = 1024,
                 stop_during_anneal: bool = False) -> None:
        hidden = [int(hidden)] if isinstance(hidden, int) else [int(h) for h in hidden]
        if latent < 1 or any(h < 1 for h in hidden):
            raise ValueError(f"{self.name} needs positive layer sizes, got hidden={hidden}, latent={latent}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"{self.name} needs 0 <= dropout < 1, got {dropout}")
        if anneal_cap < 0:
            raise ValueError(f"{self.name} needs anneal_cap >= 0, got {anneal_cap}")
        if epochs < 1 or batch_size < 1 or patience < 1 or eval_every < 1 or anneal_epochs < 0:
            raise ValueError("epochs, batch_size, patience and eval_every must be >= 1, anneal_epochs >= 0")
        self.hidden = hidden
        self.latent = int(latent)
        self.dropout = float(dropout)
        self.anneal_cap = float(anneal_cap)
        self.anneal_epochs = int(anneal_epochs)
        self.epochs = int(epochs)
        self.batch_size = int(batch_size)
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.patience = int(patience)
        self.eval_every = int(eval_every)
        self.seed = int(seed)
        self.eval_batch_size = int(eval_batch_size)
        self.stop_during_anneal = bool(stop_during_anneal)
        self.n_items = n_items
        self.module: MultAutoencoder | None = None
        self.history: list[dict[str, Any]] = []
        self.best_epoch: int | None = None
        #: the KL weight at the best valid epoch: the cap chosen on valid by a single annealing run
        self.best_beta: float | None = None

    def get_config(self) -> dict[str, Any]:
        return {"hidden": self.hidden, "latent": self.latent, "dropout": self.dropout,
                "anneal_cap": self.anneal_cap, "anneal_epochs": self.anneal_epochs, "epochs": self.epochs,
                "batch_size": self.batch_size, "lr": self.lr, "weight_decay": self.weight_decay,
                "patience": self.patience, "eval_every": self.eval_every, "seed": self.seed,
                "n_items": self.n_items, "eval_batch_size": self.eval_batch_size,
                "stop_during_anneal": self.stop_during_anneal}

    def _build(self, n_items: int) -> MultAutoencoder:
        self.n_items = int(n_items)
        with seeded(self.seed):
            return MultAutoencoder(self.n_items, self.hidden, self.latent, self.variational)

    def _loss(self, module: MultAutoencoder, batch: list[np.ndarray], beta: float,
              gen: torch.Generator) -> tuple[torch.Tensor, float]:
        items, offsets, weights = _bags(batch, self.dropout, True, gen)
        mu, logvar = module.encode(items, offsets, weights)
        if logvar is not None:
            z = mu + torch.randn(mu.shape, generator=gen) * torch.exp(0.5 * logvar)
            kl = 0.5 * (-logvar + logvar.exp() + mu.pow(2) - 1.0).sum(1).mean()
        else:
            z, kl = mu, torch.zeros(())
        logp = F.log_softmax(module.decode(z), dim=1)
        # the target is the full (undropped) item set: -sum over its items of log p
        rows = torch.repeat_interleave(torch.arange(len(batch)), torch.diff(
            torch.cat([offsets, torch.tensor([len(items)])])))
        nll = -logp[rows, items].sum() / len(batch)
        return nll + beta * kl, float(kl.detach())

    def fit(self, data: TrainView, progress: bool = True) -> _MultBase:
        from textrec.evaluation import evaluate

        module = self._build(data.n_items)
        self.module = module
        users = [np.unique(s) for s in data.sequences()]
        users = [s for s in users if len(s)]
        if not users:
            raise ValueError(f"{self.name}: the training data has no user with an event")
        steps_per_epoch = int(np.ceil(len(users) / self.batch_size))
        anneal_steps = max(self.anneal_epochs * steps_per_epoch, 1)
        gen = torch.Generator().manual_seed(self.seed)
        opt = torch.optim.Adam(module.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        has_valid = len(data.valid) > 0
        best, bad, best_state, step = -float("inf"), 0, None, 0
        self.history, self.best_epoch, self.best_beta = [], None, None
        bar = tqdm(range(1, self.epochs + 1), desc=f"train {self.name}", disable=not progress)
        for epoch in bar:
            t0 = time.perf_counter()
            module.train()
            perm = torch.randperm(len(users), generator=gen).numpy()
            total = 0.0
            for start in range(0, len(users), self.batch_size):
                batch = [users[i] for i in perm[start:start + self.batch_size]]
                beta = self.anneal_cap * min(1.0, step / anneal_steps) if self.variational else 0.0
                loss, _ = self._loss(module, batch, beta, gen)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                total += float(loss.detach()) * len(batch)
            rec: dict[str, Any] = {"epoch": epoch, "loss": round(total / len(users), 4),
                                   "beta": round(beta, 4), "seconds": round(time.perf_counter() - t0, 3)}
            if has_valid and (epoch % self.eval_every == 0 or epoch == self.epochs):
                module.eval()
                m = evaluate(self, data.valid, data.n_items, ks=(10,), batch_size=self.eval_batch_size)
                rec["valid_ndcg@10"] = round(m.metrics["ndcg@10"], 5)
                if m.metrics["ndcg@10"] > best:
                    best, bad, self.best_epoch, self.best_beta = m.metrics["ndcg@10"], 0, epoch, rec["beta"]
                    best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
                # patience counts only once beta has reached its cap: the paper's best point is
                # often mid-annealing, and stopping before the cap would not test the cap at all
                # (unless this run is the single-run cap search, which stops at the valid peak)
                elif step >= anneal_steps or not self.variational or self.stop_during_anneal:
                    bad += 1
            self.history.append(rec)
            bar.set_postfix({k: rec[k] for k in ("loss", "beta", "valid_ndcg@10") if k in rec})
            if has_valid and bad >= self.patience:
                break
        if best_state is not None:
            module.load_state_dict(best_state)
        module.eval()
        return self

    @torch.no_grad()
    def score(self, users: np.ndarray, histories: list[np.ndarray]) -> torch.Tensor:
        if self.module is None:
            raise RuntimeError(f"{self.name} is not fitted; call fit() or from_pretrained() first")
        was_training = self.module.training
        self.module.eval()
        try:
            out = []
            for start in range(0, len(histories), self.eval_batch_size):
                items, offsets, weights = _bags(histories[start:start + self.eval_batch_size], 0.0, False, None)
                mu, _ = self.module.encode(items, offsets, weights)
                out.append(self.module.decode(mu))
            return torch.cat(out) if out else torch.zeros(0, self.n_items)
        finally:
            self.module.train(was_training)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        if self.module is None:
            raise RuntimeError(f"{self.name} is not fitted: nothing to save")
        return dict(self.module.state_dict())

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if self.n_items is None:
            self.n_items = int(tensors["first.weight"].shape[0])
        self.module = self._build(self.n_items)
        self.module.load_state_dict(tensors)
        self.module.eval()


class MultVAE(_MultBase):
    """Variational autoencoder with a multinomial likelihood and KL annealing to ``anneal_cap``."""

    name = "MultVAE"
    variational = True


class MultDAE(_MultBase):
    """Denoising autoencoder with a multinomial likelihood (Mult-VAE without the KL term)."""

    name = "MultDAE"
    variational = False
