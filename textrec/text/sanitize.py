"""Data text made safe to put into a prompt: one function set every engine calls before tokenizing.

Item titles, reviews and other data text end up inside prompts. Unchecked, such text can forge
structure (a title holding ``<|im_end|><|im_start|>system`` adds a chat turn; a P5 title
``<n_4><n_4>`` encodes to item-id tokens; an ERRA review holding ``<u_3>`` becomes the user
token) or exhaust memory (a 1 MB one-word title). :func:`clean_text` / :class:`TextSanitizer`:

1. remove control and format characters (C0/C1 controls, zero-width and bidi overrides such as
   U+202E, lone surrogates, line/paragraph separators); tabs and line breaks become spaces;
2. neutralise special-token patterns: chat markers ``<|...|>`` (also with full-width bars),
   tag-like tokens ``<s>``, ``</s>``, ``<pad>``, ``<n_4>``, ``<u_3>``, ``<extra_id_0>``,
   ``[INST]``, ``<<SYS>>``, plus any literal special token of the engine's tokenizer. The
   angle (or square) brackets become the look-alikes U+2039/U+203A, so the text still reads
   the same to a person but can never encode to a special token;
3. cap the characters of the field.

Every change is counted in a :class:`SanitizeStats` so a run can report what it cleaned.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# Unicode categories Cc, Cf, Cs, Zl, Zp (Unicode 14): control, format (zero-width, bidi
# overrides, BOM...), surrogate, line and paragraph separators. Kept as ranges so importing this
# module does not scan a million code points; a test checks the table against unicodedata.
_CONTROL_RANGES = [
    (0x0, 0x1F), (0x7F, 0x9F), (0xAD, 0xAD), (0x600, 0x605), (0x61C, 0x61C), (0x6DD, 0x6DD),
    (0x70F, 0x70F), (0x890, 0x891), (0x8E2, 0x8E2), (0x180E, 0x180E), (0x200B, 0x200F),
    (0x2028, 0x202E), (0x2060, 0x2064), (0x2066, 0x206F), (0xD800, 0xDFFF), (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB), (0x110BD, 0x110BD), (0x110CD, 0x110CD), (0x13430, 0x13438),
    (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0001, 0xE0001), (0xE0020, 0xE007F),
]


def _char_class(ranges: list[tuple[int, int]]) -> re.Pattern[str]:
    return re.compile("[" + "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}"
                                    for a, b in ranges) + "]")


CONTROL_RE = _char_class(_CONTROL_RANGES)
_CONTROL_NOT_NEWLINE = _char_class([(0x0, 0x9), (0xB, 0x1F)] + _CONTROL_RANGES[1:])
# Whitespace-like controls become a space so words on either side stay apart.
_SPACE_LIKE = re.compile("[\t\n\r\x0b\x0c\x85\u2028\u2029]")
_NEWLINES = frozenset("\n\r\x85\u2028\u2029")

_OPEN, _CLOSE = "\u2039", "\u203a"  # single angle quotation marks: look like < >, are not < >
_LT, _GT, _BAR = "<\uff1c\ufe64", ">\uff1e\ufe65", "|\uff5c"
SPECIAL_TOKEN_RE = re.compile(
    rf"[{_LT}][{_BAR}][^<>\n]{{0,64}}?[{_BAR}][{_GT}]"  # <|im_start|>, <｜begin▁of▁sentence｜>
    rf"|[{_LT}]/?[A-Za-z][A-Za-z0-9_]{{0,40}}[{_GT}]"  # <s> </s> <pad> <n_4> <u_3> <extra_id_0> <think>
    rf"|[{_LT}][{_LT}]/?[A-Za-z]{{1,16}}[{_GT}][{_GT}]"  # <<SYS>>
    r"|\[/?[A-Z][A-Z_]{1,16}\]"  # [INST] [/INST] [CLS] [SEP] [MASK]
)
ELLIPSIS = "\u2026"


@dataclass
class SanitizeStats:
    """What sanitizing changed, counted over every text it saw."""

    texts: int = 0
    control_removed: int = 0  # texts that had control/format characters
    special_neutralized: int = 0  # special-token patterns neutralised (occurrences)
    truncated: int = 0  # texts cut to the character cap
    prompts_truncated: int = 0  # token sequences cut to the token cap

    def __bool__(self) -> bool:
        return bool(self.control_removed or self.special_neutralized or self.truncated or self.prompts_truncated)

    def merge(self, other: SanitizeStats) -> None:
        """Add another counter's counts to this one."""
        for k in ("texts", "control_removed", "special_neutralized", "truncated", "prompts_truncated"):
            setattr(self, k, getattr(self, k) + getattr(other, k))

    def __str__(self) -> str:
        return (f"sanitized {self.texts} texts: {self.control_removed} had control characters, "
                f"{self.special_neutralized} special-token patterns neutralised, {self.truncated} cut to the "
                f"character cap, {self.prompts_truncated} prompts cut to the token cap")


def find_control(text: str) -> str | None:
    """The first control/format/surrogate character of ``text``, or ``None``."""
    m = CONTROL_RE.search(text)
    return m.group(0) if m else None


def strip_control(text: str, keep_newlines: bool = False) -> tuple[str, bool]:
    """``text`` without control/format characters; and whether it changed.

    Tabs and line breaks become spaces, or with ``keep_newlines`` line breaks (``\r\n``,
    U+2028...) become ``"\n"`` (for text whose lines mean something, e.g. sentence splitting).
    """
    if not CONTROL_RE.search(text):
        return text, False
    if keep_newlines:
        text = _SPACE_LIKE.sub(lambda m: "\n" if m.group(0) in _NEWLINES else " ", text.replace("\r\n", "\n"))
        return _CONTROL_NOT_NEWLINE.sub("", text), True
    return CONTROL_RE.sub("", _SPACE_LIKE.sub(" ", text)), True


def _neutral(token: str) -> str:
    first, last = token[0], token[-1]
    if first in _LT + "[" and last in _GT + "]":
        return _OPEN + token[1:-1] + _CLOSE
    return token[0] + " " + token[1:]  # a special token without brackets: break it with a space


def _literal_pattern(tokens: Iterable[str]) -> re.Pattern[str] | None:
    # Only tokens the generic patterns miss, and only ones that are not plain words
    # (a tokenizer may list ordinary words as added tokens; those are not structure).
    extra = sorted({t for t in tokens if t and len(t) > 1 and not t.isalnum()
                    and not SPECIAL_TOKEN_RE.fullmatch(t)}, key=len, reverse=True)
    return re.compile("|".join(map(re.escape, extra))) if extra else None


def neutralize_special_tokens(text: str, special_tokens: Sequence[str] = (),
                              _literal: re.Pattern[str] | None = None) -> tuple[str, int]:
    """``text`` with every special-token pattern neutralised; and how many were."""
    literal = _literal if _literal is not None else _literal_pattern(special_tokens)
    total = 0
    for _ in range(4):  # "<<SYS>>" -> "‹<SYS>›" -> "‹‹SYS››": repeat until nothing matches
        text, n = SPECIAL_TOKEN_RE.subn(lambda m: _neutral(m.group(0)), text)
        if literal is not None:
            text, k = literal.subn(lambda m: _neutral(m.group(0)), text)
            n += k
        total += n
        if not n:
            break
    return text, total


def cap_chars(text: str, max_chars: int | None) -> tuple[str, bool]:
    """``text`` cut to ``max_chars`` characters (ending in an ellipsis); and whether it was cut."""
    if max_chars is None or len(text) <= max_chars:
        return text, False
    return text[: max(0, max_chars - 1)].rstrip() + ELLIPSIS, True


class TextSanitizer:
    """Cleans data text for one engine: control characters, special tokens, a character cap.

    ``special_tokens``: literal special tokens of the engine's tokenizer (see
    :func:`tokenizer_special_tokens`), neutralised on top of the generic patterns.
    ``max_chars``: default cap per text (``None``: no cap). Counts go to ``stats``.
    """

    def __init__(self, max_chars: int | None = None, special_tokens: Sequence[str] = (),
                 stats: SanitizeStats | None = None):
        self.max_chars = max_chars
        self.stats = stats if stats is not None else SanitizeStats()
        self._literal = _literal_pattern(special_tokens)

    @classmethod
    def for_tokenizer(cls, tokenizer, max_chars: int | None = None) -> TextSanitizer:
        """A sanitizer that also neutralises every special/added token of ``tokenizer``."""
        return cls(max_chars, tokenizer_special_tokens(tokenizer))

    def __call__(self, text: object, max_chars: int | None = -1) -> str:
        """The cleaned text; ``max_chars=-1`` uses the sanitizer's default cap, ``None`` none."""
        cap = self.max_chars if max_chars == -1 else max_chars
        s = "" if text is None else str(text)
        self.stats.texts += 1
        if cap is not None and len(s) > 4 * cap + 64:
            s = s[: 4 * cap + 64]  # never scan megabytes that the cap would drop anyway
        s, changed = strip_control(s)
        self.stats.control_removed += changed
        s, n = neutralize_special_tokens(s, _literal=self._literal)
        self.stats.special_neutralized += n
        s, cut = cap_chars(s, cap)
        self.stats.truncated += cut
        return s

    def cap_tokens(self, ids: Sequence[int], max_tokens: int | None, keep: str = "end") -> list[int]:
        """At most ``max_tokens`` ids, keeping the ``"end"`` (most recent) or the ``"start"``; counted."""
        ids = list(ids)
        if max_tokens is None or len(ids) <= max_tokens:
            return ids
        self.stats.prompts_truncated += 1
        return ids[len(ids) - max_tokens:] if keep == "end" else ids[:max_tokens]


def clean_text(text: object, max_chars: int | None = None, special_tokens: Sequence[str] = ()) -> str:
    """One text cleaned (control characters, special-token patterns, character cap), uncounted."""
    return TextSanitizer(max_chars, special_tokens)(text)


def tokenizer_special_tokens(tokenizer) -> list[str]:
    """Every special or added token of a Hugging Face or ``tokenizers`` tokenizer."""
    out: set[str] = set()
    for attr in ("all_special_tokens", "additional_special_tokens"):
        out.update(str(t) for t in (getattr(tokenizer, attr, None) or []))
    decoder = getattr(tokenizer, "added_tokens_decoder", None)
    if decoder is None and hasattr(tokenizer, "get_added_tokens_decoder"):
        decoder = tokenizer.get_added_tokens_decoder()
    if isinstance(decoder, dict):
        out.update(getattr(t, "content", str(t)) for t in decoder.values())
    inner = getattr(tokenizer, "tok", None)  # textrec's WordTokenizer wraps a tokenizers.Tokenizer
    if inner is not None and inner is not tokenizer:
        out.update(tokenizer_special_tokens(inner))
    return sorted(out)
