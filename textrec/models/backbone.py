"""A SASRec-style causal transformer over item representations, shared by SASRec and VQ-Rec.

The encoder never looks items up itself: the caller supplies item representations
``x`` (B, L, d) — rows of an ID embedding table for SASRec, sums of code embeddings for
VQ-Rec — plus a boolean ``mask`` (B, L) that is True at real items.

Padding convention: **left padding**. A batch row holds its (last ``max_len``) items
right-aligned, so the most recent item of every row sits at position ``L - 1`` and the
next-item representation of a row is simply ``hidden[:, -1]`` (see :func:`last_hidden`).

Positions are **anchored at the first real item**: the first real item of a row gets
position id 0, the next 1, and so on, whatever the amount of padding in front. Together
with the key-padding mask this makes outputs independent of how much a row is padded, and
with the causal mask the output at position ``t`` depends only on items ``<= t`` — so the
hidden state at every position of a training sequence is exactly what inference computes
for that prefix (the property the all-position training loss relies on).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from textrec.recipes import config_from_dict


@dataclass
class BackboneConfig:
    """Size and regularisation of the causal encoder."""

    hidden: int = 64
    layers: int = 2
    heads: int = 2
    ff: int = 256
    dropout: float = 0.5          # embedding + residual dropout
    attn_dropout: float = 0.5     # on the attention weights
    max_len: int = 50             # positional table size = longest input the encoder reads
    norm_first: bool = False      # False: post-LN blocks (SASRec/RecBole); True: pre-LN + final LN
    activation: str = "gelu"      # "gelu" or "relu"
    layer_norm_eps: float = 1e-12
    init_std: float = 0.02        # normal init of linear layers / embeddings (RecBole)

    def __post_init__(self) -> None:
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        if self.activation not in ("gelu", "relu"):
            raise ValueError(f"activation must be 'gelu' or 'relu', got '{self.activation}'")
        if self.max_len < 1 or self.layers < 0:
            raise ValueError("max_len must be >= 1 and layers >= 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | BackboneConfig | None) -> BackboneConfig:
        return config_from_dict(cls, d, "backbone")


class FastDropout(nn.Module):
    """Inverted dropout drawn with ``torch.rand`` (same distribution as ``nn.Dropout``; on CPU
    ``bernoulli_`` is ~3x slower, and dropout was a fifth of a SASRec training step)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return x * (torch.rand_like(x) >= self.p).to(x.dtype) * (1.0 / (1.0 - self.p))


class _Block(nn.Module):
    """Multi-head causal self-attention + position-wise feed-forward, post- or pre-LN."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        d = cfg.hidden
        self.heads = cfg.heads
        self.norm_first = cfg.norm_first
        self.attn_dropout = cfg.attn_dropout
        self.attn_drop = FastDropout(cfg.attn_dropout)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.ff1 = nn.Linear(d, cfg.ff)
        self.ff2 = nn.Linear(cfg.ff, d)
        self.act = nn.GELU() if cfg.activation == "gelu" else nn.ReLU()
        self.ln1 = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.ln2 = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.drop = FastDropout(cfg.dropout)

    def _attn(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        b, length, d = x.shape
        q, k, v = self.qkv(x).view(b, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if self.training and self.attn_dropout > 0:
            # explicit softmax so the attention-weight dropout can use the fast mask
            w = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
            w = torch.softmax(w.masked_fill(~allowed, float("-inf")), dim=-1)
            y = self.attn_drop(w) @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        return self.out(y.transpose(1, 2).reshape(b, length, d))

    def _ff(self, x: torch.Tensor) -> torch.Tensor:
        return self.ff2(self.act(self.ff1(x)))  # dropout after ff2 only, as in SASRec/RecBole

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        if self.norm_first:
            x = x + self.drop(self._attn(self.ln1(x), allowed))
            return x + self.drop(self._ff(self.ln2(x)))
        x = self.ln1(x + self.drop(self._attn(x, allowed)))
        return self.ln2(x + self.drop(self._ff(x)))


class CausalSequenceEncoder(nn.Module):
    """Item representations (B, L, d) + mask (B, L) -> hidden states (B, L, d).

    Input: left-padded rows (see the module docstring), ``L <= cfg.max_len``. Output rows are
    zero at padded positions. Each position attends to itself and to earlier real items only.
    """

    def __init__(self, cfg: BackboneConfig | dict | None = None) -> None:
        super().__init__()
        self.cfg = cfg = BackboneConfig.from_dict(cfg)
        self.position = nn.Embedding(cfg.max_len, cfg.hidden)
        self.in_norm = nn.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps)
        self.in_drop = FastDropout(cfg.dropout)
        self.blocks = nn.ModuleList(_Block(cfg) for _ in range(cfg.layers))
        self.out_norm = nn.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps) if cfg.norm_first else nn.Identity()
        self.apply(self._init)

    def _init(self, m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=self.cfg.init_std)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
        if isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    @staticmethod
    def position_ids(mask: torch.Tensor) -> torch.Tensor:
        """0 at each row's first real item, counting up; 0 on the left padding."""
        return (mask.long().cumsum(1) - 1).clamp(min=0)

    @staticmethod
    def attention_mask(mask: torch.Tensor) -> torch.Tensor:
        """(B, 1, L, L) boolean, True where query t may attend key s: s <= t and s is real.

        The diagonal is always allowed so that padded queries (whose keys are all padding
        under left padding) get a finite softmax; their outputs are zeroed afterwards and no
        real position ever attends to them.
        """
        length = mask.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=mask.device).tril()
        eye = torch.eye(length, dtype=torch.bool, device=mask.device)
        return ((causal[None] & mask[:, None, :]) | eye[None])[:, None]

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.cfg.hidden:
            raise ValueError(f"expected item representations (B, L, {self.cfg.hidden}), got {tuple(x.shape)}")
        if x.shape[1] > self.cfg.max_len:
            raise ValueError(f"sequence length {x.shape[1]} exceeds max_len {self.cfg.max_len}")
        mask = mask.bool()
        keep = mask.unsqueeze(-1).to(x.dtype)
        h = x * keep + self.position(self.position_ids(mask))
        h = self.in_drop(self.in_norm(h))
        allowed = self.attention_mask(mask)
        for block in self.blocks:
            h = block(h, allowed)
        return self.out_norm(h) * keep


def last_hidden(hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """(B, d) hidden state at each row's last real position.

    With left padding that is always position ``L - 1``; if ``mask`` is given the position of
    the last True is used instead, so right-padded callers get the right row too. Rows with
    no real item return the (zero) state at position ``L - 1``.
    """
    if mask is None:
        return hidden[:, -1]
    length = mask.shape[1]
    idx = torch.arange(length, device=mask.device).expand_as(mask)
    last = torch.where(mask.bool(), idx, torch.zeros_like(idx)).amax(1)
    last = torch.where(mask.any(1), last, torch.full_like(last, length - 1))
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def pad_left(histories: list, max_len: int, device: torch.device | str = "cpu"
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad (and truncate to the last ``max_len``) item index sequences.

    Returns ``items`` (B, L) int64 with 0 at padding and ``mask`` (B, L) bool; ``L`` is the
    longest kept history in the batch (at least 1).
    """
    import numpy as np

    kept = [np.asarray(h, dtype=np.int64)[-max_len:] if max_len > 0 else np.zeros(0, np.int64)
            for h in histories]
    length = max(1, max((len(h) for h in kept), default=1))
    items = np.zeros((len(kept), length), dtype=np.int64)
    mask = np.zeros((len(kept), length), dtype=bool)
    for i, h in enumerate(kept):
        if len(h):
            items[i, length - len(h):] = h
            mask[i, length - len(h):] = True
    return torch.from_numpy(items).to(device), torch.from_numpy(mask).to(device)


def num_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = ["BackboneConfig", "CausalSequenceEncoder", "FastDropout", "last_hidden", "pad_left", "num_parameters"]
