"""FineWeb quality filter (Penedo et al. 2024), defaults of datatrove's ``FineWebQualityFilter``.

Lines are the non-blank pieces of ``text.split("\\n")``, right-stripped (so CRLF text and
trailing blanks do not hide a final full stop; datatrove does not strip). Rules, in order:

* ``line_punct_ratio``: share of lines ending in terminal punctuation must be at least
  ``line_punct_thr`` (unless the share is 0 and ``line_punct_exclude_zero``). Terminal
  punctuation is :data:`~vla_data.textfilters.words.TERMINAL_PUNCTUATION`, which includes the
  CJK terminators 。！？ and the ellipsis …, and a terminator may be followed by closing quotes
  or brackets (``好。”``); ``closing_chars=""`` checks the last character only, as datatrove.
* ``short_line_ratio``: share of lines of at most ``short_line_length`` characters must not
  exceed ``short_line_thr``.
* ``char_dup_ratio``: characters in lines equal to an earlier line, over the characters of the
  text without newlines, must not exceed ``char_duplicates_ratio``.
* ``list_ratio``: newlines per word must not exceed ``new_line_ratio`` (CJK-aware word count,
  one word per CJK character, so Chinese is not mistaken for a list).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from vla_data.textfilters.base import FilterResult, ratio, verdict
from vla_data.textfilters.gopher import duplicate_stats
from vla_data.textfilters.words import (
    CLOSING_PUNCTUATION,
    TERMINAL_PUNCTUATION,
    count_words,
    ends_with_terminal,
)


@dataclass(frozen=True)
class FineWebQualityFilter:
    """FineWeb line-level quality rules; ``None`` disables a threshold."""

    line_punct_thr: float | None = 0.12
    line_punct_exclude_zero: bool = False
    short_line_thr: float | None = 0.67
    short_line_length: int = 30
    char_duplicates_ratio: float | None = 0.01
    new_line_ratio: float | None = 0.3
    stop_chars: frozenset[str] = TERMINAL_PUNCTUATION
    closing_chars: str = CLOSING_PUNCTUATION

    REASONS: ClassVar[tuple[str, ...]] = (
        "fineweb_empty",
        "fineweb_line_punct_ratio",
        "fineweb_short_line_ratio",
        "fineweb_char_dup_ratio",
        "fineweb_list_ratio",
    )

    def measure(self, text: str, language: str | None = None) -> dict[str, float]:
        """Line and newline ratios of ``text``."""
        lines = [ln.rstrip() for ln in text.split("\n")]
        lines = [ln for ln in lines if ln]
        n = len(lines)
        punct = sum(ends_with_terminal(ln, self.stop_chars, self.closing_chars) for ln in lines)
        short = sum(len(ln) <= self.short_line_length for ln in lines)
        return {
            "fineweb_lines": float(n),
            "fineweb_line_punct_ratio": ratio(punct, n),
            "fineweb_short_line_ratio": ratio(short, n),
            "fineweb_char_dup_ratio": ratio(
                duplicate_stats(lines)[1], len(text) - text.count("\n")
            ),
            "fineweb_new_line_ratio": text.count("\n") / max(count_words(text), 1),
        }

    def decide(self, scores: Mapping[str, float]) -> FilterResult:
        """Apply this config's thresholds to ``scores`` from :meth:`measure`."""
        punct = scores["fineweb_line_punct_ratio"]
        return verdict(
            scores,
            [
                (scores["fineweb_lines"] == 0, "fineweb_empty"),
                (
                    self.line_punct_thr is not None
                    and punct < self.line_punct_thr
                    and not (punct == 0 and self.line_punct_exclude_zero),
                    "fineweb_line_punct_ratio",
                ),
                (
                    self.short_line_thr is not None
                    and scores["fineweb_short_line_ratio"] > self.short_line_thr,
                    "fineweb_short_line_ratio",
                ),
                (
                    self.char_duplicates_ratio is not None
                    and scores["fineweb_char_dup_ratio"] > self.char_duplicates_ratio,
                    "fineweb_char_dup_ratio",
                ),
                (
                    self.new_line_ratio is not None
                    and scores["fineweb_new_line_ratio"] > self.new_line_ratio,
                    "fineweb_list_ratio",
                ),
            ],
        )

    def check(self, text: str, language: str | None = None) -> FilterResult:
        return self.decide(self.measure(text, language))
