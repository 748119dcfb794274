"""AdamW that also takes sparse gradients: a large ID table is updated only where a step touched it.

A sequence model trained with a sampled or in-batch softmax reads a few thousand rows of its
item table per step, but a dense gradient and a dense AdamW update cost a pass over the whole
table (200k x 64 at 10M events) every step, which made the step grow with the catalog.
:class:`LazyAdamW` applies the usual AdamW update to dense gradients and, for a sparse gradient
(``F.embedding(..., sparse=True)``), updates only the rows present in it: their moments, their
decoupled weight decay and their step. Rows a step did not touch keep their value *and* their
moments ("lazy Adam", as TensorFlow's ``LazyAdam`` and torch's ``SparseAdam``): with plain Adam an
untouched row would still drift by its old momentum and decay. Where every row is touched at
every step the two updates are the same arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

__all__ = ["LazyAdamW"]


class LazyAdamW(torch.optim.Optimizer):
    """AdamW (decoupled weight decay, bias-corrected moments) for dense gradients; lazy row-wise
    AdamW for sparse ones. Same hyper-parameters and defaults as :class:`torch.optim.AdamW`."""

    def __init__(self, params: Iterable[torch.nn.Parameter] | Iterable[dict], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2) -> None:
        if not lr > 0 or eps < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"invalid LazyAdamW settings: lr={lr}, betas={betas}, eps={eps}, "
                             f"weight_decay={weight_decay}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One update of every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    # a tensor step (as torch's optimizers keep it) so checkpoints load with weights_only
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                step = float(state["step"])
                bc1, bc2 = 1 - b1 ** step, 1 - b2 ** step
                m, v = state["exp_avg"], state["exp_avg_sq"]
                grad = p.grad
                if grad.is_sparse:
                    grad = grad.coalesce()
                    rows, g = grad.indices()[0], grad.values()
                    w = p[rows]
                    if wd:
                        w.mul_(1 - lr * wd)
                    mr = m[rows].mul_(b1).add_(g, alpha=1 - b1)
                    vr = v[rows].mul_(b2).addcmul_(g, g, value=1 - b2)
                    m[rows], v[rows] = mr, vr
                    denom = (vr.sqrt() / math.sqrt(bc2)).add_(eps)
                    p[rows] = w.addcdiv_(mr, denom, value=-lr / bc1)
                else:
                    if wd:
                        p.mul_(1 - lr * wd)
                    m.lerp_(grad, 1 - b1)
                    v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
                    denom = (v.sqrt() / math.sqrt(bc2)).add_(eps)
                    p.addcdiv_(m, denom, value=-lr / bc1)
        return loss
