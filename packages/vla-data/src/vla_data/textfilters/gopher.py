"""Gopher (MassiveText) quality and repetition rules, Rae et al. 2021, appendix A, table A1.

Defaults and rule order follow datatrove's ``GopherQualityFilter`` / ``GopherRepetitionFilter``;
words come from :mod:`vla_data.textfilters.words` (``\\w`` runs, one word per CJK character)
instead of an NLTK/spaCy tokenizer, so punctuation is never a word.

CJK handling (quality filter)
    * Every CJK character is one word (see ``words``), so the 50..100,000 word bounds count
      characters for Chinese/Japanese.
    * Mean word length: CJK words are left out of the mean, which is taken over the other
      (non-symbol) words only. If CJK words are at least ``cjk_skip_avg_ratio`` of all
      non-symbol words, or no other words exist, the rule is skipped (no
      ``gopher_avg_word_length`` score). Chinese documents are therefore never dropped by this
      rule, and English documents are scored exactly as before.
    * Stop words: per-language sets (``stop_words``; the published English list by default).
      Language codes are lower-cased and cut at ``-``/``_`` (``en-US``, ``zh_Hans`` -> ``en``,
      ``zh``; ``eng``/``zho``/``cmn``/``jpn``/``kor`` map to two-letter codes). A language
      without a set skips the rule. Matching is case-insensitive and counts *distinct* stop
      words (datatrove matches case-sensitively). :data:`ZH_STOP_WORDS` is a ready set for
      Chinese (single characters, matching the per-character words), not enabled by default.

Repetition definitions (numerically equal to datatrove's on the same word list)
    * paragraphs: ``text.strip()`` split on 2+ newlines; lines: ``text`` split on 1+ newlines.
      Duplicate fraction = elements equal to an earlier element / all elements; duplicate char
      fraction = characters of those repeated elements / ``len(text)``.
    * top n-gram (n=2,3,4): count of the most frequent n-gram (first seen wins ties) times its
      length, over ``len(text)``. Its length is the words plus one separator between words,
      except that no separator is counted next to a CJK character (CJK text has no spaces).
    * duplicate n-grams (n=5..10): scan left to right; an n-gram already seen adds the
      characters of its words (no separators) and the scan jumps ``n`` words, otherwise it is
      remembered and the scan moves one word; the sum is divided by ``len(text)``. N-grams are
      compared as word tuples (datatrove concatenates words, which can merge distinct n-grams).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from vla_data.textfilters.base import FilterResult, ratio, verdict
from vla_data.textfilters.words import has_word_char, is_cjk_word, split_words

#: Gopher's English stop words (Rae et al. 2021, A.1.1).
EN_STOP_WORDS: frozenset[str] = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
#: Frequent Chinese function characters, for ``stop_words={"zh": ZH_STOP_WORDS, ...}``.
ZH_STOP_WORDS: frozenset[str] = frozenset({"的", "了", "是", "在", "和", "有", "不", "这"})
DEFAULT_STOP_WORDS: Mapping[str, frozenset[str]] = {"en": EN_STOP_WORDS}

_LANGUAGE_ALIASES = {"eng": "en", "zho": "zh", "cmn": "zh", "jpn": "ja", "kor": "ko"}


def normalize_language(language: str | None) -> str | None:
    """``"en-US"`` / ``"zh_Hans"`` / ``"cmn"`` -> ``"en"`` / ``"zh"`` / ``"zh"``; None stays None."""
    if not language:
        return None
    code = re.split(r"[-_]", language.strip().lower(), maxsplit=1)[0]
    return _LANGUAGE_ALIASES.get(code, code)


@dataclass(frozen=True)
class GopherQualityFilter:
    """Gopher quality heuristics; ``None`` disables a rule. Defaults: Gopher table A1 / datatrove."""

    min_doc_words: int | None = 50
    max_doc_words: int | None = 100_000
    min_avg_word_length: float | None = 3
    max_avg_word_length: float | None = 10
    max_symbol_word_ratio: float | None = 0.1
    max_bullet_lines_ratio: float | None = 0.9
    max_ellipsis_lines_ratio: float | None = 0.3
    max_non_alpha_words_ratio: float | None = 0.8  # datatrove's name: min share of alpha words
    min_stop_words: int | None = 2
    stop_words: Mapping[str, frozenset[str]] = field(
        default_factory=lambda: dict(DEFAULT_STOP_WORDS)
    )
    language: str | None = "en"
    bullet_prefixes: tuple[str, ...] = ("•", "-")
    cjk_skip_avg_ratio: float = 0.5

    REASONS: ClassVar[tuple[str, ...]] = (
        "gopher_short_doc",
        "gopher_long_doc",
        "gopher_below_avg_threshold",
        "gopher_above_avg_threshold",
        "gopher_too_many_hashes",
        "gopher_too_many_ellipsis",
        "gopher_too_many_bullets",
        "gopher_too_many_end_ellipsis",
        "gopher_below_alpha_threshold",
        "gopher_few_stop_words",
    )

    def measure(self, text: str, language: str | None = None) -> dict[str, float]:
        """All quality scores of ``text`` (``language`` overrides the configured one)."""
        words = split_words(text)
        n_words = len(words)
        content = [w for w in words if has_word_char(w)]
        n_cjk = sum(1 for w in content if is_cjk_word(w))
        other = [len(w) for w in content if not is_cjk_word(w)]
        lines = text.splitlines()
        scores: dict[str, float] = {
            "gopher_n_words": float(len(content)),
            "gopher_cjk_word_ratio": ratio(n_cjk, len(content)),
            "gopher_hash_ratio": ratio(text.count("#"), n_words),
            "gopher_ellipsis_ratio": ratio(text.count("...") + text.count("…"), n_words),
            "gopher_bullet_lines_ratio": ratio(
                sum(ln.lstrip().startswith(self.bullet_prefixes) for ln in lines), len(lines)
            ),
            "gopher_end_ellipsis_lines_ratio": ratio(
                sum(ln.rstrip().endswith(("...", "…")) for ln in lines), len(lines)
            ),
            "gopher_alpha_words_ratio": ratio(
                sum(any(ch.isalpha() for ch in w) for w in words), n_words
            ),
        }
        if other:
            scores["gopher_avg_word_length"] = sum(other) / len(other)
        lang = normalize_language(language or self.language)
        stop = self.stop_words.get(lang) if lang else None
        if stop:
            present = {w.casefold() for w in words} & {s.casefold() for s in stop}
            scores["gopher_stop_words"] = float(len(present))
        return scores

    def decide(self, scores: Mapping[str, float]) -> FilterResult:
        """Apply this config's thresholds to ``scores`` from :meth:`measure`."""
        n = scores["gopher_n_words"]
        avg = scores.get("gopher_avg_word_length")
        if scores["gopher_cjk_word_ratio"] >= self.cjk_skip_avg_ratio:
            avg = None
        sym = self.max_symbol_word_ratio
        stop = scores.get("gopher_stop_words")
        return verdict(
            scores,
            [
                (self.min_doc_words is not None and n < self.min_doc_words, "gopher_short_doc"),
                (self.max_doc_words is not None and n > self.max_doc_words, "gopher_long_doc"),
                (
                    avg is not None
                    and self.min_avg_word_length is not None
                    and avg < self.min_avg_word_length,
                    "gopher_below_avg_threshold",
                ),
                (
                    avg is not None
                    and self.max_avg_word_length is not None
                    and avg > self.max_avg_word_length,
                    "gopher_above_avg_threshold",
                ),
                (sym is not None and scores["gopher_hash_ratio"] > sym, "gopher_too_many_hashes"),
                (
                    sym is not None and scores["gopher_ellipsis_ratio"] > sym,
                    "gopher_too_many_ellipsis",
                ),
                (
                    self.max_bullet_lines_ratio is not None
                    and scores["gopher_bullet_lines_ratio"] > self.max_bullet_lines_ratio,
                    "gopher_too_many_bullets",
                ),
                (
                    self.max_ellipsis_lines_ratio is not None
                    and scores["gopher_end_ellipsis_lines_ratio"] > self.max_ellipsis_lines_ratio,
                    "gopher_too_many_end_ellipsis",
                ),
                (
                    self.max_non_alpha_words_ratio is not None
                    and scores["gopher_alpha_words_ratio"] < self.max_non_alpha_words_ratio,
                    "gopher_below_alpha_threshold",
                ),
                (
                    stop is not None
                    and self.min_stop_words is not None
                    and stop < self.min_stop_words,
                    "gopher_few_stop_words",
                ),
            ],
        )

    def check(self, text: str, language: str | None = None) -> FilterResult:
        return self.decide(self.measure(text, language))


_PARAGRAPH_SPLIT = re.compile(r"\n{2,}")
_LINE_SPLIT = re.compile(r"\n+")


def duplicate_stats(items: list[str]) -> tuple[int, int]:
    """(number of items equal to an earlier item, total characters of those items)."""
    seen: set[str] = set()
    n_dup = chars = 0
    for item in items:
        if item in seen:
            n_dup += 1
            chars += len(item)
        else:
            seen.add(item)
    return n_dup, chars


def _ngram_span_length(gram: tuple[str, ...], cjk: tuple[bool, ...]) -> int:
    seps = sum(1 for a, b in zip(cjk, cjk[1:], strict=False) if not (a or b))
    return sum(len(w) for w in gram) + seps


def top_ngram_chars(words: list[str], n: int) -> int:
    """Characters covered by all occurrences of the most frequent word ``n``-gram (0 if none)."""
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0
    gram, count = Counter(grams).most_common(1)[0]
    return count * _ngram_span_length(gram, tuple(is_cjk_word(w) for w in gram))


def duplicate_ngram_chars(words: list[str], n: int) -> int:
    """Characters in repeated word ``n``-grams, greedy left-to-right (see module docstring)."""
    seen: set[tuple[str, ...]] = set()
    chars = i = 0
    while i <= len(words) - n:
        gram = tuple(words[i : i + n])
        if gram in seen:
            chars += sum(len(w) for w in gram)
            i += n
        else:
            seen.add(gram)
            i += 1
    return chars


@dataclass(frozen=True)
class GopherRepetitionFilter:
    """Gopher repetition rules; ``None`` disables a fraction rule. Defaults: table A1."""

    dup_line_frac: float | None = 0.3
    dup_para_frac: float | None = 0.3
    dup_line_char_frac: float | None = 0.2
    dup_para_char_frac: float | None = 0.2
    top_n_grams: tuple[tuple[int, float], ...] = ((2, 0.20), (3, 0.18), (4, 0.16))
    dup_n_grams: tuple[tuple[int, float], ...] = (
        (5, 0.15),
        (6, 0.14),
        (7, 0.13),
        (8, 0.12),
        (9, 0.11),
        (10, 0.10),
    )

    REASONS: ClassVar[tuple[str, ...]] = (
        "gopher_rep_empty",
        "gopher_dup_para_frac",
        "gopher_dup_para_char_frac",
        "gopher_dup_line_frac",
        "gopher_dup_line_char_frac",
        *(f"gopher_top_{n}gram_char_frac" for n in (2, 3, 4)),
        *(f"gopher_dup_{n}gram_char_frac" for n in range(5, 11)),
    )

    def measure(self, text: str, language: str | None = None) -> dict[str, float]:
        """Repetition fractions of ``text``; score keys equal the reason they can trigger."""
        size = len(text)
        paragraphs = _PARAGRAPH_SPLIT.split(text.strip())
        lines = _LINE_SPLIT.split(text)
        para_dup, para_chars = duplicate_stats(paragraphs)
        line_dup, line_chars = duplicate_stats(lines)
        scores: dict[str, float] = {
            "gopher_rep_chars": float(size),
            "gopher_dup_para_frac": ratio(para_dup, len(paragraphs)),
            "gopher_dup_para_char_frac": ratio(para_chars, size),
            "gopher_dup_line_frac": ratio(line_dup, len(lines)),
            "gopher_dup_line_char_frac": ratio(line_chars, size),
        }
        words = split_words(text)
        for n, _ in self.top_n_grams:
            scores[f"gopher_top_{n}gram_char_frac"] = ratio(top_ngram_chars(words, n), size)
        for n, _ in self.dup_n_grams:
            scores[f"gopher_dup_{n}gram_char_frac"] = ratio(duplicate_ngram_chars(words, n), size)
        return scores

    def decide(self, scores: Mapping[str, float]) -> FilterResult:
        """Apply this config's thresholds to ``scores`` from :meth:`measure`."""
        rules: list[tuple[bool, str]] = [(scores["gopher_rep_chars"] == 0, "gopher_rep_empty")]
        for key, thr in (
            ("gopher_dup_para_frac", self.dup_para_frac),
            ("gopher_dup_para_char_frac", self.dup_para_char_frac),
            ("gopher_dup_line_frac", self.dup_line_frac),
            ("gopher_dup_line_char_frac", self.dup_line_char_frac),
            *((f"gopher_top_{n}gram_char_frac", t) for n, t in self.top_n_grams),
            *((f"gopher_dup_{n}gram_char_frac", t) for n, t in self.dup_n_grams),
        ):
            value = scores.get(key)  # an n-gram size that was not measured is skipped
            rules.append((thr is not None and value is not None and value > thr, key))
        return verdict(scores, rules)

    def check(self, text: str, language: str | None = None) -> FilterResult:
        return self.decide(self.measure(text, language))
