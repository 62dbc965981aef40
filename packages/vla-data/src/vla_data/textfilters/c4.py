"""C4 line cleaning and page rules (Raffel et al. 2020, section 2.2; TFDS ``c4_utils``).

Rules follow datatrove's ``C4QualityFilter`` defaults and order. Per stripped line: drop it if a
whitespace token is longer than ``max_word_length``; remove Wikipedia citation marks; drop it
if it does not end in a terminal mark or ends in ``...``; drop it if it has fewer than
``min_words_per_line`` words; "lorem ipsum" drops the page; drop it if it mentions
"javascript"; a curly bracket drops the page; drop it if it has a cookie/terms/privacy phrase.
Kept lines' sentences are summed and the page needs ``min_num_sentences``. As in the reference,
the page-level checks only look at lines that survived the earlier line rules.

CJK differences from the reference: words per line are counted with
:func:`~vla_data.textfilters.words.count_words` (one word per CJK character; the reference
splits on whitespace), sentences with :func:`~vla_data.textfilters.words.count_sentences`
(knows 。！？; the reference uses NLTK punkt), a "word" for the length rule is a whitespace
token with CJK characters acting as separators, and the terminal marks add 。！？ and the
closing quotes ” ’ 」 』 (``end_marks=C4_END_MARKS`` restores the original five).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

from vla_data.textfilters.base import FilterResult, verdict
from vla_data.textfilters.words import CJK_CHAR_CLASS, count_sentences, count_words

C4_END_MARKS: tuple[str, ...] = (".", "?", "!", '"', "'")
CJK_END_MARKS: tuple[str, ...] = ("。", "！", "？", "”", "’", "」", "』")
POLICY_SUBSTRINGS: tuple[str, ...] = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)
_CITATION_RE = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
_TOKEN_SPLIT_RE = re.compile(f"[\\s{CJK_CHAR_CLASS}]+")

LINE_REASONS: tuple[str, ...] = (
    "c4_too_long_word",
    "c4_no_terminal_punct",
    "c4_too_few_words",
    "c4_lorem_ipsum",
    "c4_javascript",
    "c4_curly_bracket",
    "c4_policy",
)


class C4Cleaned(NamedTuple):
    """Output of :meth:`C4QualityFilter.clean`."""

    text: str
    """Kept lines joined with newlines (returned even when the page is dropped)."""
    result: FilterResult
    removed: tuple[tuple[int, str], ...]
    """(0-based line index in ``text.splitlines()``, line reason) for every removed line."""


@dataclass(frozen=True)
class C4QualityFilter:
    """C4 line filter + page filter. ``None`` disables a numeric rule, ``False`` a flag rule."""

    remove_citations: bool = True
    filter_no_terminal_punct: bool = True
    end_marks: tuple[str, ...] = C4_END_MARKS + CJK_END_MARKS
    min_num_sentences: int | None = 5
    min_words_per_line: int | None = 3
    max_word_length: int | None = 1000
    filter_lorem_ipsum: bool = True
    filter_javascript: bool = True
    filter_curly_bracket: bool = True
    filter_policy: bool = True
    policy_substrings: tuple[str, ...] = POLICY_SUBSTRINGS

    REASONS: ClassVar[tuple[str, ...]] = (
        "c4_lorem_ipsum",
        "c4_curly_bracket",
        "c4_too_few_sentences",
    )

    def _line_reason(self, line: str) -> tuple[str | None, str]:
        """(reason to remove ``line`` or None, line after citation removal)."""
        if self.max_word_length is not None and any(
            len(tok) > self.max_word_length for tok in _TOKEN_SPLIT_RE.split(line)
        ):
            return "c4_too_long_word", line
        if self.remove_citations:
            line = _CITATION_RE.sub("", line)
        if self.filter_no_terminal_punct and (
            not line.endswith(self.end_marks) or line.endswith("...")
        ):
            return "c4_no_terminal_punct", line
        if self.min_words_per_line is not None and count_words(line) < self.min_words_per_line:
            return "c4_too_few_words", line
        lower = line.lower()
        if self.filter_lorem_ipsum and "lorem ipsum" in lower:
            return "c4_lorem_ipsum", line
        if self.filter_javascript and "javascript" in lower:
            return "c4_javascript", line
        if self.filter_curly_bracket and "{" in line:
            return "c4_curly_bracket", line
        if self.filter_policy and any(p in lower for p in self.policy_substrings):
            return "c4_policy", line
        return None, line

    def clean(self, text: str, language: str | None = None) -> C4Cleaned:
        """Remove bad lines (line-removing transform) and judge the page on what is left."""
        kept: list[str] = []
        removed: list[tuple[int, str]] = []
        sentences = 0
        lines = text.splitlines()
        for i, raw in enumerate(lines):
            reason, line = self._line_reason(raw.strip())
            if reason is None:
                kept.append(line)
                sentences += count_sentences(line)
            else:
                removed.append((i, reason))
        per_reason = Counter(r for _, r in removed)
        scores: dict[str, float] = {
            "c4_lines": float(len(lines)),
            "c4_lines_kept": float(len(kept)),
            "c4_sentences": float(sentences),
            **{f"c4_lines_{r.removeprefix('c4_')}": float(per_reason[r]) for r in LINE_REASONS},
        }
        cleaned = "\n".join(kept).strip()
        return C4Cleaned(cleaned, self.decide(scores), tuple(removed))

    def measure(self, text: str, language: str | None = None) -> dict[str, float]:
        """Line counts per removal reason and the sentence count of the kept lines."""
        return self.clean(text, language).result.scores

    def decide(self, scores: Mapping[str, float]) -> FilterResult:
        """Page verdict from :meth:`measure` scores ("lorem ipsum" before curly bracket)."""
        return verdict(
            scores,
            [
                (
                    self.filter_lorem_ipsum and scores["c4_lines_lorem_ipsum"] > 0,
                    "c4_lorem_ipsum",
                ),
                (
                    self.filter_curly_bracket and scores["c4_lines_curly_bracket"] > 0,
                    "c4_curly_bracket",
                ),
                (
                    self.min_num_sentences is not None
                    and scores["c4_sentences"] < self.min_num_sentences,
                    "c4_too_few_sentences",
                ),
            ],
        )

    def check(self, text: str, language: str | None = None) -> FilterResult:
        return self.clean(text, language).result
