"""Answers in the prompt's family: decoding constrained by what a task family's answer is.

A template names its family, so the answer's form is known before decoding; a small model
given an unseen wording can still drift into another family's answer (an explanation prompt
answered "5", a rating prompt answered with an item id). :class:`FamilyConstraint` masks the
logits so that cannot happen, for seen and unseen templates alike:

* ``rating`` – one star digit (``1`` .. ``5``), then the end: always a star value;
* ``explanation`` / ``review`` – text: item tokens and rating value tokens are never generated,
  the first token must hold a letter (not a number, punctuation or a byte piece), and the end cannot come before
  ``min_tokens`` tokens, so the answer is never a bare rating or item id.

:func:`family_answers` decodes greedily, by beams, or by seeded sampling (``top_p``,
``temperature``), with optional ``repetition_penalty`` / ``no_repeat_ngram_size``;
:func:`is_bare_answer` says whether a text answer is out of the text families (only numbers,
punctuation or item tokens), for reporting.
"""

from __future__ import annotations

import re

import numpy as np
import torch

from textrec.p5.generation import decode_text
from textrec.p5.rating import STARS, star_token_ids

TEXT_FAMILIES = ("explanation", "review")
ANSWER_FAMILIES = ("rating", *TEXT_FAMILIES)
_NOT_WORD = re.compile(r"^[\W\d_]*$")  # only digits, punctuation, spaces: not a word
_ITEM_LIKE = re.compile(r"<[A-Za-z][A-Za-z0-9]*_[0-9]+>")


def is_bare_answer(text: str) -> bool:
    """True when ``text`` holds no word: empty, a number ("5", "4.5"), punctuation or item ids only."""
    return bool(_NOT_WORD.match(_ITEM_LIKE.sub(" ", text)))


def _letterless_token_ids(tokenizer) -> list[int]:
    """Vocabulary ids whose decoded text has no letter: digits, punctuation, spaces, and byte pieces
    of a multi-byte character (they decode to U+FFFD alone); an answer starting with one of these
    can be a bare number."""
    vocab = tokenizer.get_vocab()
    return [i for tok, i in vocab.items()
            if not any(ch.isalpha() for ch in tokenizer.convert_tokens_to_string([tok]))]


class FamilyConstraint:
    """A logits processor that keeps every decoding step inside one family's answer form (module doc)."""

    def __init__(self, model, family: str, min_tokens: int = 3):
        if family not in ANSWER_FAMILIES:
            raise ValueError(f"no answer constraint for family '{family}'; choose from {ANSWER_FAMILIES}")
        tok = model.tokenizer
        vocab_n = model.t5.get_output_embeddings().weight.shape[0]
        self.family = family
        self.min_tokens = int(min_tokens)
        self.eos = tok.eos_token_id
        self.start_len: int | None = None
        if family == "rating":
            allow = torch.zeros(vocab_n, dtype=torch.bool)
            allow[star_token_ids(tok)] = True
            self.first_ban = ~allow
            self.always_ban = torch.zeros(vocab_n, dtype=torch.bool)
            return
        always = model.is_item_token[:vocab_n].clone().cpu()
        always[[i for i in tok.all_special_ids if i != self.eos and i < vocab_n]] = True  # pad, unk: no text
        from textrec.p5.serializer import RATING_VALUE_TOKENS

        vocab = tok.get_vocab()
        always[[vocab[t] for t in RATING_VALUE_TOKENS if t in vocab]] = True
        first = always.clone()
        first[[i for i in _letterless_token_ids(tok) if i < vocab_n]] = True
        self.always_ban, self.first_ban = always, first

    def reset(self) -> FamilyConstraint:
        """Ready for a new batch (the step count restarts); returns itself."""
        self.start_len = None
        return self

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.start_len is None:
            self.start_len = input_ids.shape[1]  # the decoder start token(s)
        step = input_ids.shape[1] - self.start_len
        scores = scores.clone()
        neg = torch.finfo(scores.dtype).min
        if self.family == "rating":
            if step == 0:
                scores[:, self.first_ban.to(scores.device)] = neg
            else:  # one digit is the whole answer
                keep = scores[:, self.eos].clone()
                scores[:] = neg
                scores[:, self.eos] = keep
            return scores
        ban = self.first_ban if step == 0 else self.always_ban
        scores[:, ban.to(scores.device)] = neg
        if step < self.min_tokens:
            scores[:, self.eos] = neg
        return scores


@torch.no_grad()
def family_answers(model, sources: list[str], family: str, max_new_tokens: int = 40, num_beams: int = 1,
                   top_p: float | None = None, temperature: float = 1.0, repetition_penalty: float = 1.0,
                   no_repeat_ngram_size: int = 0, min_tokens: int = 3, batch_size: int = 32,
                   seed: int = 0) -> list[str]:
    """Decoded answers to ``sources``, each constrained to ``family``'s form (see the module doc).

    ``top_p`` switches from greedy/beam decoding to seeded nucleus sampling at ``temperature``.
    """
    if family == "rating":
        max_new_tokens = 2
    constraint = FamilyConstraint(model, family, min_tokens)
    return decode_text(model, sources, max_new_tokens=max_new_tokens, num_beams=num_beams, batch_size=batch_size,
                       top_p=top_p, temperature=temperature, repetition_penalty=repetition_penalty,
                       no_repeat_ngram_size=no_repeat_ngram_size, seed=seed,
                       processors=lambda: [constraint.reset()])


def rating_answers(model, sources: list[str]) -> np.ndarray:
    """The star each source is answered with under the rating constraint (greedy: the likeliest digit)."""
    texts = family_answers(model, sources, "rating")
    bad = [t for t in texts if t not in {str(s) for s in STARS}]
    if bad:
        raise RuntimeError(f"constrained rating decoding produced non-star answers, e.g. {bad[:3]}")
    return np.asarray([float(t) for t in texts])
