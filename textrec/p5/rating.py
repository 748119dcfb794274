"""The rating family's numeric path: expected stars from the first answer token, trained and checked.

A rating prompt is answered with one star digit, so the model's first decoding step holds a
distribution over ``1..5``; its mean is the squared-error point prediction (RMSE is the metric).
Cross-entropy alone fits that distribution to the skewed star marginal and leaves it nearly
flat across prompts; :func:`expected_stars_mse` adds the squared error of the mean beside the
LM loss (``P5TrainConfig.rating_mse_weight``), a gradient that points straight at what RMSE
measures while the answer stays a token of the vocabulary (the prompt in, a rating out).
:class:`RatingRows` and :func:`rating_rmse` give the valid RMSE that early stopping reads
(``metric: rating_rmse``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

STARS = (1, 2, 3, 4, 5)


def star_token_ids(tokenizer, stars: Sequence[int] = STARS) -> list[int]:
    """Vocabulary ids of the star digits, failing loudly if one is not a single token."""
    ids = tokenizer.convert_tokens_to_ids([str(s) for s in stars])
    if any(i is None or i == tokenizer.unk_token_id for i in ids):
        raise ValueError(f"the tokenizer has no single token for every star digit {list(stars)}")
    return list(ids)


def expected_stars(first_logits: torch.Tensor, star_ids: Sequence[int],
                   stars: Sequence[int] = STARS) -> torch.Tensor:
    """Mean star value under the first-step distribution restricted to the star tokens (differentiable)."""
    p = torch.softmax(first_logits.float()[:, list(star_ids)], dim=-1)
    return p @ torch.as_tensor(stars, dtype=p.dtype, device=p.device)


def expected_stars_mse(first_logits: torch.Tensor, targets: Sequence[str], tasks: Sequence[str],
                       star_ids: Sequence[int], per_rows: int | None = None) -> torch.Tensor | None:
    """Sum of squared errors of the expected stars on the batch's rating rows, divided by ``per_rows``
    (default: the batch size, so the term weighs rows as the LM loss does); None without rating rows.

    ``first_logits`` are the logits of the first decoding step, one row per example; a rating
    row's target is its star value as text (``"4"``).
    """
    rows = [j for j, t in enumerate(tasks) if t == "rating"]
    if not rows:
        return None
    try:
        true = torch.tensor([float(targets[j]) for j in rows], device=first_logits.device)
    except ValueError as e:
        raise ValueError(f"a rating row's target is not a number: {e}") from None
    pred = expected_stars(first_logits[rows], star_ids)
    return ((pred - true) ** 2).sum() / float(per_rows or len(tasks))


@torch.no_grad()
def expected_ratings(model, sources: list[str], lo: int = 1, hi: int = 5,
                     batch_size: int = 256) -> tuple[np.ndarray, list[str]]:
    """Mean star rating under the first-token distribution over the digits ``lo..hi`` (and the argmax digit)."""
    stars = list(range(int(lo), int(hi) + 1))
    ids = star_token_ids(model.tokenizer, stars)
    model.eval()
    pad = model.tokenizer.pad_token_id
    vals: list[np.ndarray] = []
    for s in range(0, len(sources), batch_size):
        enc = model.tokenize_sources(sources[s:s + batch_size])
        start = torch.full((enc["input_ids"].shape[0], 1), pad, dtype=torch.long, device=model.device)
        logits = model.t5(encoder_outputs=model.encode(enc["input_ids"], enc["attention_mask"]),
                          attention_mask=enc["attention_mask"], decoder_input_ids=start).logits[:, 0]
        vals.append(torch.softmax(logits.float()[:, ids], -1).cpu().numpy())
    p = np.concatenate(vals) if vals else np.zeros((0, len(stars)))
    return p @ np.asarray(stars, dtype=np.float64), [str(stars[j]) for j in p.argmax(1)]


@dataclass
class RatingRows:
    """Rating prompts and their true stars (e.g. the valid events'), for :func:`rating_rmse`."""

    sources: list[str]
    ratings: np.ndarray

    def __post_init__(self) -> None:
        self.ratings = np.asarray(self.ratings, dtype=np.float64)
        if len(self.sources) != len(self.ratings):
            raise ValueError(f"{len(self.sources)} rating prompts for {len(self.ratings)} ratings")
        if not len(self.sources):
            raise ValueError("no rating rows to evaluate on")


def rating_rmse(model, rows: RatingRows) -> dict[str, float]:
    """RMSE and MAE of the model's expected stars on ``rows``."""
    pred, _ = expected_ratings(model, rows.sources)
    err = pred - rows.ratings
    return {"rating_rmse": float(np.sqrt(np.mean(err ** 2))), "rating_mae": float(np.mean(np.abs(err)))}
