"""A word-level tokenizer trained on the training reviews with ``tokenizers``.

Word level (not BPE) because PETER/ERRA evaluate on words: what the model emits are exactly the
words BLEU/ROUGE count. Lower-cased; split like :func:`textrec.explain.sentences.words`. Ids 0/1/2
are ``<pad>``/``</s>``/``<unk>`` as T5 expects; users and items get their own tokens ``<u_N>`` /
``<i_N>`` (integer indexes) so the generator sees them as input symbols.

Text is sanitized before it is tokenized (:mod:`textrec.text.sanitize`): a review holding
``<u_3>`` or ``</s>`` reads as words, never as the user token or end of sequence.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from textrec.text.sanitize import SanitizeStats, TextSanitizer

SPECIALS = ["<pad>", "</s>", "<unk>", "<bos>", "<sep>", "<asp>", "<ctx>"]
PAD, EOS, UNK, BOS, SEP, ASP, CTX = range(len(SPECIALS))


class WordTokenizer:
    """Wraps a ``tokenizers.Tokenizer`` (WordLevel) plus the user/item token ranges."""

    def __init__(self, tok, n_users: int, n_items: int):
        self.tok = tok
        self.n_users, self.n_items = int(n_users), int(n_items)
        self.user_offset = tok.token_to_id("<u_0>") if n_users else len(tok.get_vocab())
        self.item_offset = tok.token_to_id("<i_0>") if n_items else len(tok.get_vocab())
        # Specials and user/item tokens match the generic patterns; no literal list needed.
        self.sanitizer = TextSanitizer()

    @property
    def sanitize_stats(self) -> SanitizeStats:
        """What sanitizing changed in the texts encoded so far."""
        return self.sanitizer.stats

    @classmethod
    def train(cls, texts: Iterable[str], n_users: int, n_items: int, vocab_size: int = 8000,
              min_frequency: int = 2) -> WordTokenizer:
        """Train on texts (the training reviews); keep the ``vocab_size`` most frequent words."""
        from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

        tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
        tok.normalizer = normalizers.Lowercase()
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        trainer = trainers.WordLevelTrainer(vocab_size=vocab_size + len(SPECIALS), min_frequency=min_frequency,
                                            special_tokens=SPECIALS, show_progress=False)
        clean = TextSanitizer()
        tok.train_from_iterator((clean(t) for t in texts), trainer=trainer)
        tok.add_special_tokens([f"<u_{u}>" for u in range(n_users)] + [f"<i_{i}>" for i in range(n_items)])
        return cls(tok, n_users, n_items)

    def __len__(self) -> int:
        return self.tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str, max_len: int | None = None) -> list[int]:
        """Word ids of a text, no special tokens; truncated to ``max_len``."""
        # a word is rarely over 40 characters: the cap only bounds work on megabyte-long texts
        cap = None if max_len is None else 40 * max_len + 200
        ids = self.tok.encode(self.sanitizer(text, cap), add_special_tokens=False).ids
        return ids[:max_len] if max_len is not None else ids

    def decode(self, ids: Sequence[int]) -> str:
        """Words joined by spaces; special, user and item tokens (and ``<unk>``) dropped."""
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=True)

    def user_token(self, user: int) -> int:
        """Token id of user index ``user``."""
        if not 0 <= user < self.n_users:
            raise ValueError(f"user index {user} outside the tokenizer's {self.n_users} users")
        return self.user_offset + int(user)

    def item_token(self, item: int) -> int:
        """Token id of item index ``item``."""
        if not 0 <= item < self.n_items:
            raise ValueError(f"item index {item} outside the tokenizer's {self.n_items} items")
        return self.item_offset + int(item)

    def save(self, folder: str | Path) -> None:
        """Write ``tokenizer.json`` (atomically) into ``folder``."""
        from textrec.io import atomic_write_text

        atomic_write_text(Path(folder) / "tokenizer.json", self.tok.to_str())

    @classmethod
    def load(cls, folder: str | Path, n_users: int, n_items: int) -> WordTokenizer:
        """Read ``tokenizer.json`` from ``folder``."""
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(Path(folder) / "tokenizer.json")), n_users, n_items)
