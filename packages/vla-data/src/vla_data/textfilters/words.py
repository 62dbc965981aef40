"""CJK-aware word and sentence splitting shared by every text filter.

Words
    A *word* is either

    * one CJK character: a Han ideograph (URO, extensions A-I, compatibility ideographs,
      and 々 〆 〇), a kana (hiragana, katakana incl. halfwidth, the prolonged mark ー) or a
      Hangul syllable / jamo, optionally followed by combining marks; or
    * a maximal run of other Unicode word characters (``\\w``: letters, digits, underscore),
      with combining marks (categories Mn/Mc/Me) kept inside the word so that Devanagari,
      Arabic and similar scripts are not cut at vowel signs.

    Counting each CJK character as a word is a deliberate, dictionary-free choice: it makes
    word counts of Chinese and Japanese text comparable in order of magnitude to those of
    space-delimited text, at the price of a mean "word" length of 1. Korean is written with
    spaces but is still counted per syllable here, so all three scripts behave alike. Scripts
    written without spaces that are not CJK (Thai, Lao, Khmer, Myanmar) come out as long runs.

Sentences
    A sentence ends after a run of ``. ! ?`` (and ‼ ⁇ ⁈ ⁉) that is followed by whitespace or
    the end of the text, after a run of ``。 ！ ？ ｡ ．`` whatever follows (CJK text has no
    spaces), or at a blank line. Closing quotes/brackets right after the terminator stay in the
    sentence. Pieces without any letter or digit are not sentences. There is no abbreviation
    list, so ``"Dr. Who"`` counts as two sentences.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

_CJK_RANGES: tuple[tuple[int, int], ...] = (
    (0x1100, 0x11FF),  # Hangul Jamo
    (0x3005, 0x3007),  # 々 〆 〇
    (0x3021, 0x3029),  # Hangzhou numerals
    (0x3041, 0x3096),  # Hiragana
    (0x309D, 0x309F),  # hiragana iteration marks, ゟ
    (0x30A1, 0x30FA),  # Katakana
    (0x30FC, 0x30FF),  # ー and katakana iteration marks
    (0x3131, 0x318E),  # Hangul compatibility Jamo
    (0x31F0, 0x31FF),  # Katakana phonetic extensions
    (0x3400, 0x4DBF),  # CJK Unified Ideographs Extension A
    (0x4E00, 0x9FFF),  # CJK Unified Ideographs
    (0xA960, 0xA97F),  # Hangul Jamo Extended-A
    (0xAC00, 0xD7A3),  # Hangul Syllables
    (0xD7B0, 0xD7FF),  # Hangul Jamo Extended-B
    (0xF900, 0xFAFF),  # CJK Compatibility Ideographs
    (0xFF66, 0xFF9F),  # halfwidth katakana
    (0xFFA0, 0xFFDC),  # halfwidth Hangul
    (0x1B000, 0x1B16F),  # Kana Supplement / Extended-A / Small Kana Extension
    (0x20000, 0x3FFFF),  # CJK Unified Ideographs Extensions B-I, compatibility supplement
)


def _char_class(ranges: Iterable[tuple[int, int]]) -> str:
    return "".join(f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges)


def _mark_ranges() -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for cp in (*range(0x0300, 0x20000), *range(0xE0100, 0xE01F0)):
        if unicodedata.category(chr(cp))[0] == "M":
            if out and out[-1][1] == cp - 1:
                out[-1] = (out[-1][0], cp)
            else:
                out.append((cp, cp))
    return out


_CJK = _char_class(_CJK_RANGES)
CJK_CHAR_CLASS = _CJK
"""Regex character-class body (without brackets) of the CJK characters counted one by one."""
_MARKS = _char_class(_mark_ranges())
MARK_CHAR_CLASS = _MARKS
"""Regex character-class body of the combining marks (categories Mn, Mc, Me)."""
_CJK_RE = re.compile(f"[{_CJK}]")
WORD_RE = re.compile(f"[{_CJK}][{_MARKS}]*|(?:(?![{_CJK}])\\w[{_MARKS}]*)+")
"""Compiled word pattern (see module docstring); ``WORD_RE.finditer`` gives word spans."""

#: Terminal punctuation used by FineWeb-style line checks: ASCII, CJK (incl. the ellipsis …)
#: and the sentence terminators of other common scripts.
TERMINAL_PUNCTUATION: frozenset[str] = frozenset(
    ".!?‼‽⁇⁈⁉"  # Latin and general
    "。！？．｡…︒﹒﹖﹗"  # CJK, fullwidth/halfwidth/small forms, ellipsis
    "։؟۔܁܂।॥။።፧។៕᠃᠉"  # Armenian, Arabic, Syriac, Devanagari, Myanmar, Ethiopic, Khmer, ...
)
#: Closing quotes and brackets that may follow a terminator ("Yes." / 好。” / 《书》。).
CLOSING_PUNCTUATION = "\"'”’»›)]}）］｝」』】》〉〕"
CJK_SENTENCE_TERMINATORS = "。！？｡．"

_CLOSE = re.escape(CLOSING_PUNCTUATION)
_SENTENCE_END_RE = re.compile(
    rf"[.!?‼⁇⁈⁉]+[{_CLOSE}]*(?=\s|$)"
    rf"|[{CJK_SENTENCE_TERMINATORS}]+[{_CLOSE}]*"
    r"|\n[^\S\n]*\n\s*"
)


def is_cjk_char(ch: str) -> bool:
    """True for a single Han / kana / Hangul character (the ranges listed in this module)."""
    return _CJK_RE.match(ch) is not None


def is_cjk_word(word: str) -> bool:
    """True for a word produced by :func:`split_words` from a CJK character."""
    return bool(word) and _CJK_RE.match(word) is not None


def split_words(text: str) -> list[str]:
    """Words of ``text`` in order: CJK characters one by one, other ``\\w`` runs whole."""
    return WORD_RE.findall(text)


def count_words(text: str) -> int:
    """``len(split_words(text))`` without building the list."""
    return sum(1 for _ in WORD_RE.finditer(text))


def has_word_char(s: str) -> bool:
    """True if ``s`` holds a letter or digit (underscore-only runs are symbols, not words)."""
    return any(ch.isalnum() for ch in s)


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` (stripped), knowing ``. ! ?`` and ``。 ！ ？`` as terminators."""
    out: list[str] = []
    start = 0
    for m in _SENTENCE_END_RE.finditer(text):
        piece = text[start : m.end()].strip()
        if has_word_char(piece):
            out.append(piece)
        start = m.end()
    tail = text[start:].strip()
    if has_word_char(tail):
        out.append(tail)
    return out


def count_sentences(text: str) -> int:
    """``len(split_sentences(text))``."""
    return len(split_sentences(text))


def ends_with_terminal(
    line: str,
    terminals: Iterable[str] = TERMINAL_PUNCTUATION,
    closers: str = CLOSING_PUNCTUATION,
) -> bool:
    """True if ``line`` (right-stripped, then stripped of trailing ``closers``) ends with one of
    ``terminals`` (single characters or longer strings)."""
    s = line.rstrip()
    if closers:
        s = s.rstrip(closers)
    return s.endswith(tuple(terminals))
