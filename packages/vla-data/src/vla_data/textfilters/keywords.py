"""Keyword and phrase list matching: ad/spam phrases, block lists, C4 "bad words".

A term matches case-insensitively (by default) as one compiled regex alternation, longest terms
first, scanning left to right without overlaps. Whitespace inside a term matches any run of
whitespace. With ``word_boundaries`` each *edge* of a term that is a non-CJK word character must
not touch another non-CJK word character (so ``"buy now"`` does not hit ``"buy nowhere"``, but
does hit ``"立即buy now"``); an edge that is a CJK character or punctuation is matched as a plain
substring, so Chinese/Japanese terms hit inside running text. ``word_boundaries=False`` makes
every term a substring match (what C4 does for ja/th/zh).

Term files are UTF-8 text, one term per line; blank lines and lines whose first non-blank
character is ``#`` are ignored, as is anything after whitespace followed by ``#``.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from vla_data.textfilters.base import FilterResult, verdict
from vla_data.textfilters.gopher import normalize_language
from vla_data.textfilters.words import (
    CJK_CHAR_CLASS,
    MARK_CHAR_CLASS,
    count_words,
    is_cjk_char,
)

#: Illustrative ad / spam phrases (English, Chinese, Japanese); not a published list.
DEFAULT_AD_SPAM_TERMS: tuple[str, ...] = (
    "click here",
    "buy now",
    "order now",
    "shop now",
    "add to cart",
    "limited time offer",
    "act now",
    "free shipping",
    "lowest price",
    "best price guaranteed",
    "subscribe now",
    "sign up now",
    "coupon code",
    "promo code",
    "discount code",
    "100% free",
    "限时优惠",
    "立即购买",
    "点击这里",
    "点击进入",
    "免费领取",
    "扫码关注",
    "加微信",
    "优惠券",
    "全场包邮",
    "秒杀",
    "今すぐ購入",
    "送料無料",
)
#: Neutral stand-in for a toxicity / block list; real lists are loaded with :func:`load_terms`.
PLACEHOLDER_BLOCKLIST: tuple[str, ...] = ("blockedterm", "forbidden example phrase", "禁用词示例")
#: TFDS C4 allow-list: bad-word entries that are common sub-words in ja / zh text.
C4_BADWORDS_ALLOWLIST: Mapping[str, frozenset[str]] = {
    "ja": frozenset({"sm", "グロ", "女の子"}),
    "zh": frozenset({"性"}),
}
#: Languages for which C4 matches bad words as plain substrings.
C4_SUBSTRING_LANGUAGES: frozenset[str] = frozenset({"ja", "th", "zh"})

_INLINE_COMMENT = re.compile(r"\s#.*$")
_LEFT_EDGE = f"(?<![^\\W{CJK_CHAR_CLASS}])"
_RIGHT_EDGE = f"(?![^\\W{CJK_CHAR_CLASS}]|[{MARK_CHAR_CLASS}])"


def parse_terms(lines: Iterable[str]) -> tuple[str, ...]:
    """Terms from lines in the term-file format (comments and blanks dropped, order kept)."""
    out: list[str] = []
    for line in lines:
        line = _INLINE_COMMENT.sub("", line).strip()
        if line and not line.startswith("#"):
            out.append(" ".join(line.split()))
    return tuple(out)


def load_terms(*paths: str | os.PathLike[str]) -> tuple[str, ...]:
    """Terms of one or more term files, in file order."""
    terms: list[str] = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            terms.extend(parse_terms(f))
    return tuple(terms)


def _edge_is_word(ch: str) -> bool:
    return (ch.isalnum() or ch == "_") and not is_cjk_char(ch)


@dataclass(frozen=True)
class KeywordMatcher:
    """Compiled matcher for ``terms`` (see module docstring for the matching rules)."""

    terms: tuple[str, ...]
    word_boundaries: bool = True
    case_sensitive: bool = False
    _pattern: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _canonical: dict[str, str] = field(init=False, repr=False, compare=False)

    def _key(self, s: str) -> str:
        s = " ".join(s.split())
        return s if self.case_sensitive else s.lower()

    def __post_init__(self) -> None:
        canonical: dict[str, str] = {}
        for term in self.terms:
            term = " ".join(term.split())
            if term:
                canonical.setdefault(self._key(term), term)
        parts = []
        for term in sorted(canonical.values(), key=lambda t: (-len(t), t)):
            body = r"\s+".join(re.escape(tok) for tok in term.split())
            if self.word_boundaries:
                body = (
                    (_LEFT_EDGE if _edge_is_word(term[0]) else "")
                    + body
                    + (_RIGHT_EDGE if _edge_is_word(term[-1]) else "")
                )
            parts.append(body)
        flags = 0 if self.case_sensitive else re.IGNORECASE
        pattern = re.compile("|".join(parts), flags) if parts else None
        object.__setattr__(self, "_pattern", pattern)
        object.__setattr__(self, "_canonical", canonical)

    def finditer(self, text: str) -> Iterator[tuple[int, int, str]]:
        """``(start, end, term)`` of each non-overlapping hit, left to right."""
        if self._pattern is None:
            return
        for m in self._pattern.finditer(text):
            yield m.start(), m.end(), self._canonical.get(self._key(m.group()), m.group())

    def counts(self, text: str) -> Counter[str]:
        """Hits per term."""
        return Counter(term for _, _, term in self.finditer(text))


@dataclass(frozen=True)
class KeywordFilter:
    """Drops a document with more than ``max_hits`` hits or a hit density above
    ``max_hits_per_1k_words`` (per 1000 CJK-aware words); ``None`` disables a threshold.

    The defaults (ad/spam list, 5 hits per 1000 words) are illustrative, not published values.
    """

    terms: tuple[str, ...] = DEFAULT_AD_SPAM_TERMS
    name: str = "ads"
    max_hits: int | None = None
    max_hits_per_1k_words: float | None = 5.0
    word_boundaries: bool = True
    case_sensitive: bool = False
    matcher: KeywordMatcher = field(init=False, repr=False, compare=False)

    REASON_SUFFIXES: ClassVar[tuple[str, ...]] = ("_hits", "_density")

    def __post_init__(self) -> None:
        matcher = KeywordMatcher(self.terms, self.word_boundaries, self.case_sensitive)
        object.__setattr__(self, "matcher", matcher)

    @classmethod
    def from_files(cls, *paths: str | os.PathLike[str], **config: Any) -> KeywordFilter:
        """Filter over the terms of the given term files (other fields as keywords)."""
        return cls(terms=load_terms(*paths), **config)

    def hits(self, text: str) -> Counter[str]:
        """Hits per term in ``text``."""
        return self.matcher.counts(text)

    def measure(self, text: str, language: str | None = None) -> dict[str, float]:
        """``<name>_hits``, ``<name>_hits_per_1k_words`` and ``<name>_distinct_terms``."""
        counts = self.hits(text)
        total = sum(counts.values())
        n_words = count_words(text)
        return {
            f"{self.name}_hits": float(total),
            f"{self.name}_hits_per_1k_words": 1000.0 * total / n_words if n_words else 0.0,
            f"{self.name}_distinct_terms": float(len(counts)),
        }

    def decide(self, scores: Mapping[str, float]) -> FilterResult:
        """Reason ``<name>_hits`` (count rule) or ``<name>_density`` (per-1000-words rule)."""
        hits = scores[f"{self.name}_hits"]
        density = scores[f"{self.name}_hits_per_1k_words"]
        return verdict(
            scores,
            [
                (self.max_hits is not None and hits > self.max_hits, f"{self.name}_hits"),
                (
                    self.max_hits_per_1k_words is not None and density > self.max_hits_per_1k_words,
                    f"{self.name}_density",
                ),
            ],
        )

    def check(self, text: str, language: str | None = None) -> FilterResult:
        return self.decide(self.measure(text, language))


def c4_badwords_filter(terms: Iterable[str], language: str = "en") -> KeywordFilter:
    """C4-style bad-words rule over a caller-supplied list (e.g. LDNOOBW's file for
    ``language``): any hit drops the page (reason ``c4_badwords_hits``); the TFDS allow-list is
    removed and ja/th/zh terms match as substrings."""
    lang = normalize_language(language) or "en"
    allow = C4_BADWORDS_ALLOWLIST.get(lang, frozenset())
    kept = tuple(t for t in terms if t.strip() and t.strip() not in allow)
    return KeywordFilter(
        terms=kept,
        name="c4_badwords",
        max_hits=0,
        max_hits_per_1k_words=None,
        word_boundaries=lang not in C4_SUBSTRING_LANGUAGES,
    )
