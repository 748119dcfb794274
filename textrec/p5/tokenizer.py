"""A tokenizer trained on the data (item texts + rendered prompts) with item tokens added.

No T5 checkpoint ships offline, so the vocabulary is learned with ``tokenizers`` (byte-level
BPE: every string round-trips, unlike a small Unigram vocab on a tiny corpus). T5's special
token ids are kept: ``<pad>`` = 0 (also the decoder start), ``</s>`` = 1, ``<unk>`` = 2. Item
tokens (``<a_17>``, ``<c0_3>``, ``<n_7>``...) are added as *special* tokens, so an item id is
always the same ids whatever text surrounds it and ``decode(skip_special_tokens=True)`` leaves
free text clean.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"


def train_tokenizer(corpus: Iterable[str], item_tokens: Sequence[str], vocab_size: int = 4000,
                    min_frequency: int = 2):
    """Train byte-level BPE on ``corpus``, add ``item_tokens``; returns a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=[PAD, EOS, UNK],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer=trainer)
    from tokenizers.processors import TemplateProcessing

    tok.post_processor = TemplateProcessing(single=f"$A {EOS}", special_tokens=[(EOS, tok.token_to_id(EOS))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK)
    add_item_tokens(fast, item_tokens)
    return fast


def add_item_tokens(tokenizer, item_tokens: Sequence[str]) -> int:
    """Add item tokens as special tokens (those not yet known); returns how many were added."""
    from tokenizers import AddedToken

    have = tokenizer.get_vocab()
    new = [AddedToken(t, special=True, normalized=False) for t in item_tokens if t not in have]
    if new:
        tokenizer.add_tokens(new, special_tokens=True)
    return len(new)


def add_plain_tokens(tokenizer, tokens: Sequence[str]) -> int:
    """Add ``tokens`` as ordinary (non-special) whole tokens not yet known; returns how many were added.

    For vocabulary symbols that are data, such as rating values: they stay in decoded text, and
    the sanitizer keeps data text from ever spelling them (``<name_N>`` patterns are neutralised).
    """
    from tokenizers import AddedToken

    have = tokenizer.get_vocab()
    new = [AddedToken(t, special=False, normalized=False) for t in tokens if t not in have]
    if new:
        tokenizer.add_tokens(new)
    return len(new)


def item_token_ids(tokenizer, item_tokens: Sequence[str]) -> list[int]:
    """Token ids of the item tokens, failing loudly if one is missing from the vocabulary."""
    vocab = tokenizer.get_vocab()
    missing = [t for t in item_tokens if t not in vocab]
    if missing:
        raise ValueError(f"tokenizer lacks {len(missing)} item tokens (e.g. {missing[:3]}); "
                         "call add_item_tokens first")
    return [vocab[t] for t in item_tokens]
