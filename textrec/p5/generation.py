"""Generation with a trained P5 model: items (trie-constrained beams), candidates, ratings, text.

* ``first_token_scores`` – for one-token-per-item indexes: the log-probability of every item's
  token at the first decoding step, i.e. an exact full-catalogue ranking in one decoder step
  (the beam path adds ``log p(EOS | item)``, which a trained model puts near 0).
* ``generate_items`` – beam search where every step may only take a token the item trie allows
  (``prefix_allowed_tokens_fn``), with the user's consumed items removed from the trie, so the
  output is always real, not-yet-consumed items. Score = the sum of the item's token
  log-probabilities (``length_penalty=0``, so ids of different lengths compare fairly).
* ``rank_candidates`` – the direct task: each candidate's id log-likelihood, teacher-forced.
* ``predict_ratings`` – ``mode="expected"``: the mean of the star digits ``lo..hi`` under the
  model's first-token distribution restricted to them (always a rating, and the squared-error
  optimal point prediction); ``mode="text"``: greedy text parsed as a number, unparsable outputs
  get a fallback value and are counted (``n_fallback``), never silently dropped.
* ``generate_text`` – free text (explanation, review summary); item tokens are suppressed, so a
  text prompt (seen or unseen) is always answered with words, never with item ids.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from textrec.p5.model import P5Model
from textrec.p5.rating import expected_ratings


@torch.no_grad()
def generate_items(model: P5Model, sources: list[str], consumed: Sequence[Sequence[int]] | None = None,
                   k: int = 10, num_beams: int | None = None, batch_size: int = 32
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` items and scores per source (items ``-1`` / score ``-inf`` if fewer exist)."""
    model.eval()
    beams = max(num_beams or k, k)
    trie = model.trie
    max_len = max(len(t) for t in model.index.tokens) + 1  # + EOS
    pad = model.tokenizer.pad_token_id
    eos = model.tokenizer.eos_token_id
    n = len(sources)
    items = np.full((n, k), -1, dtype=np.int64)
    scores = np.full((n, k), -np.inf, dtype=np.float32)
    for s in range(0, n, batch_size):
        chunk = sources[s:s + batch_size]
        enc = model.tokenize_sources(chunk)
        banned = [trie.banned(consumed[s + j]) if consumed is not None else None for j in range(len(chunk))]
        out = model.t5.generate(
            encoder_outputs=model.encode(enc["input_ids"], enc["attention_mask"]),
            attention_mask=enc["attention_mask"], num_beams=beams, num_return_sequences=beams,
            max_new_tokens=max_len, min_new_tokens=0, length_penalty=0.0, early_stopping=True,
            do_sample=False, prefix_allowed_tokens_fn=trie.prefix_fn(banned, n_skip=1, pad_id=pad),
            output_scores=True, return_dict_in_generate=True, decoder_start_token_id=pad,
            eos_token_id=model.tokenizer.eos_token_id, pad_token_id=pad)
        seqs = out.sequences.view(len(chunk), beams, -1).cpu()
        seq_scores = out.sequences_scores.view(len(chunk), beams).cpu().numpy()
        for j in range(len(chunk)):
            got: list[tuple[int, float]] = []
            for b in range(beams):
                ids = seqs[j, b, 1:].tolist()
                if eos in ids:  # finished beams are filled with EOS or pad after the first EOS
                    ids = ids[:ids.index(eos) + 1]
                it = trie.item_of([t for t in ids if t != pad])
                if it is not None and np.isfinite(seq_scores[j, b]):
                    got.append((it, float(seq_scores[j, b])))
            got.sort(key=lambda x: -x[1])
            for r, (it, sc) in enumerate(got[:k]):
                items[s + j, r] = it
                scores[s + j, r] = sc
    return items, scores


@torch.no_grad()
def sequence_logprobs(model: P5Model, sources: list[str], targets: list[str], batch_size: int = 64) -> np.ndarray:
    """Sum of target token log-probabilities given each source (teacher forcing)."""
    model.eval()
    out = np.zeros(len(sources), dtype=np.float64)
    for s in range(0, len(sources), batch_size):
        enc = model.tokenize_sources(sources[s:s + batch_size])
        labels = model.tokenize_targets(targets[s:s + batch_size])
        logits = model.t5(encoder_outputs=model.encode(enc["input_ids"], enc["attention_mask"]),
                          attention_mask=enc["attention_mask"], labels=labels).logits
        logp = torch.log_softmax(logits.float(), -1)
        mask = labels != -100
        tok = logp.gather(-1, labels.clamp(min=0)[..., None])[..., 0]
        out[s:s + len(labels)] = (tok * mask).sum(1).cpu().numpy()
    return out


def rank_candidates(model: P5Model, source: str, candidates: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Direct task: candidates sorted by the log-likelihood of their id after ``source``."""
    targets = [model.index.item_text(c) for c in candidates]
    lp = sequence_logprobs(model, [source] * len(candidates), targets)
    order = np.argsort(-lp, kind="stable")
    return np.asarray(candidates)[order], lp[order]


@torch.no_grad()
def generate_text(model: P5Model, sources: list[str], max_new_tokens: int = 40, num_beams: int = 1,
                  batch_size: int = 32, no_repeat_ngram_size: int = 0, top_p: float | None = None,
                  seed: int = 0) -> list[str]:
    """Free text (explanations, summaries, ratings as text); item tokens are never generated.

    ``top_p`` samples (nucleus, seeded) instead of greedy/beam decoding;
    ``no_repeat_ngram_size`` blocks repeated n-grams (both make outputs less generic).
    """
    item_ids = torch.nonzero(model.is_item_token).flatten().tolist()
    return decode_text(model, sources, max_new_tokens=max_new_tokens, num_beams=num_beams, batch_size=batch_size,
                       no_repeat_ngram_size=no_repeat_ngram_size, top_p=top_p, seed=seed,
                       suppress_tokens=item_ids or None)


@torch.no_grad()
def decode_text(model: P5Model, sources: list[str], max_new_tokens: int, num_beams: int = 1,
                batch_size: int = 32, top_p: float | None = None, temperature: float = 1.0,
                repetition_penalty: float = 1.0, no_repeat_ngram_size: int = 0, seed: int = 0,
                suppress_tokens: list[int] | None = None,
                processors: Callable[[], list] | None = None) -> list[str]:
    """Decoded answers to ``sources``, batch by batch: greedy or beams, or seeded nucleus sampling
    when ``top_p`` is given; ``processors()`` returns fresh logits processors for each batch."""
    from transformers import LogitsProcessorList

    model.eval()
    out: list[str] = []
    pad = model.tokenizer.pad_token_id
    sample = top_p is not None
    if sample:
        torch.manual_seed(seed)
    for s in range(0, len(sources), batch_size):
        enc = model.tokenize_sources(sources[s:s + batch_size])
        proc = LogitsProcessorList(processors()) if processors is not None else None
        ids = model.t5.generate(encoder_outputs=model.encode(enc["input_ids"], enc["attention_mask"]),
                                attention_mask=enc["attention_mask"], max_new_tokens=max_new_tokens,
                                num_beams=num_beams, do_sample=sample, top_p=top_p if sample else None,
                                temperature=temperature if sample else None,
                                repetition_penalty=repetition_penalty if repetition_penalty != 1.0 else None,
                                no_repeat_ngram_size=no_repeat_ngram_size or None,
                                suppress_tokens=suppress_tokens, logits_processor=proc,
                                decoder_start_token_id=pad, eos_token_id=model.tokenizer.eos_token_id,
                                pad_token_id=pad)
        out.extend(t.strip() for t in model.tokenizer.batch_decode(ids, skip_special_tokens=True))
    return out


_NUM = re.compile(r"[-+]?\d+(?:\.\d+)?")


@dataclass
class RatingPredictions:
    """Parsed ratings, the raw texts, and how many needed the fallback value."""

    ratings: np.ndarray
    texts: list[str]
    n_fallback: int


def parse_rating(text: str, lo: float = 1.0, hi: float = 5.0) -> float | None:
    """The first number in ``text`` clipped to ``[lo, hi]``, or None if there is none."""
    m = _NUM.search(text)
    return None if m is None else float(min(max(float(m.group()), lo), hi))


def predict_ratings(model: P5Model, sources: list[str], fallback: float = 3.0, lo: float = 1.0,
                    hi: float = 5.0, mode: str = "text") -> RatingPredictions:
    """Ratings as text parsed (``text``; unparsable ones get ``fallback``, counted) or ``expected`` stars."""
    if mode == "expected":
        r, texts = expected_ratings(model, sources, int(lo), int(hi))
        return RatingPredictions(r, texts, 0)
    if mode != "text":
        raise ValueError(f"unknown rating mode '{mode}'; choose text or expected")
    texts = generate_text(model, sources, max_new_tokens=4)
    vals, n_fb = [], 0
    for t in texts:
        v = parse_rating(t, lo, hi)
        if v is None:
            n_fb += 1
            v = fallback
        vals.append(v)
    return RatingPredictions(np.asarray(vals, dtype=np.float64), texts, n_fb)


def beam_score_matrix(model, sources: list[str], consumed: list[np.ndarray], n_items: int, k: int,
                      num_beams: int | None = None, batch_size: int = 32) -> torch.Tensor:
    """(rows, n_items): the beam score of each of the ``k`` generated items, ``-inf`` elsewhere."""
    items, scores = generate_items(model, sources, consumed=consumed, k=k, num_beams=num_beams,
                                   batch_size=batch_size)
    out = torch.full((len(sources), n_items), float("-inf"))
    rows, cols = np.nonzero(items >= 0)
    out[torch.from_numpy(rows), torch.from_numpy(items[rows, cols])] = torch.from_numpy(scores[rows, cols])
    return out



@torch.no_grad()
def first_token_scores(model, sources: list[str], consumed: Sequence[Sequence[int]] | None = None,
                       batch_size: int = 256) -> torch.Tensor:
    """(rows, n_items) log-probability of each item's single id token as the first output token.

    Only for indexes with one token per item; consumed items get ``-inf``.
    """
    if any(len(t) != 1 for t in model.index.tokens):
        raise ValueError(f"first-token scoring needs one token per item; '{model.index.scheme}' ids are longer")
    model.eval()
    tok_ids = torch.as_tensor(model.tokenizer.convert_tokens_to_ids([t[0] for t in model.index.tokens]),
                              device=model.device)
    pad = model.tokenizer.pad_token_id
    out = []
    for s in range(0, len(sources), batch_size):
        enc = model.tokenize_sources(sources[s:s + batch_size])
        start = torch.full((enc["input_ids"].shape[0], 1), pad, dtype=torch.long, device=model.device)
        logits = model.t5(encoder_outputs=model.encode(enc["input_ids"], enc["attention_mask"]),
                          attention_mask=enc["attention_mask"], decoder_input_ids=start).logits[:, 0]
        out.append(torch.log_softmax(logits.float(), -1)[:, tok_ids].cpu())
    scores = torch.cat(out) if out else torch.zeros(0, model.index.n_items)
    if consumed is not None:
        for r, h in enumerate(consumed):
            if len(h):
                scores[r, torch.as_tensor(np.asarray(h, dtype=np.int64))] = float("-inf")
    return scores


def item_score_matrix(model, sources: list[str], consumed: list[np.ndarray], n_items: int, k: int,
                      num_beams: int | None = None, batch_size: int = 32, decode: str = "auto") -> torch.Tensor:
    """Item scores for evaluation: ``beam`` (top-``k`` beam scores, ``-inf`` elsewhere) or ``first_token``.

    ``auto`` uses ``first_token`` (a full ranking) when every item id is one token, else beams.
    """
    if decode not in ("auto", "beam", "first_token"):
        raise ValueError(f"unknown decode '{decode}'; choose auto, beam or first_token")
    single = all(len(t) == 1 for t in model.index.tokens)
    if decode == "first_token" or (decode == "auto" and single):
        return first_token_scores(model, sources, consumed, batch_size=max(batch_size, 256))
    return beam_score_matrix(model, sources, consumed, n_items, k, num_beams=num_beams, batch_size=batch_size)
