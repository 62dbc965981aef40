"""PII detection and redaction: e-mail, phone, IP, Chinese resident ID, payment card.

Detectors run in a fixed precedence order; a later detector never sees characters claimed by
an earlier one (they are masked), so matches never overlap:

1. ``EMAIL``  — ``local@domain.tld`` (ASCII; an address whose local part is a phone number is
   one e-mail).
2. ``CN_ID``  — 18-character resident ID: known province code, valid birth date
   (1900-2099), 3-digit sequence, ISO 7064 MOD 11-2 check character (0-9 or X). Runs before
   cards because an ID from Gansu (62...) can also pass Luhn + the UnionPay prefix.
3. ``CARD``   — 13-19 digits, optionally grouped by single spaces or dashes, Luhn-valid and
   with an issuer prefix/length of Visa, Mastercard, Amex, Discover, UnionPay or JCB. In a
   longer run of digit groups, spans of whole groups are tried from the left, longest first.
4. ``IP``     — IPv6 (full, compressed, IPv4-suffixed; at least two non-empty groups) and IPv4,
   both validated with :mod:`ipaddress` (octets <= 255, no leading zeros).
5. ``PHONE``  — CN mobile ``1[3-9]X XXXX XXXX`` with optional ``+86``/``0086`` prefix and
   space/dash separators; international ``+CC ...`` with 8-15 digits; North American
   ``(NXX) NXX-XXXX`` / ``NXX-NXX-XXXX`` with optional ``+1``. Bare 10-digit North American
   numbers without separators or ``+1`` are not matched (too many ordinary numbers).

Numbers glued to letters or digits on either side are never matched, but CJK characters count
as separators (``电话13812345678``). Years, prices, dates and 18-digit numbers with a wrong
check character are not PII.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import ClassVar

from vla_data.textfilters.base import FilterResult, verdict
from vla_data.textfilters.words import count_words

PII_TYPES: tuple[str, ...] = ("EMAIL", "CN_ID", "CARD", "IP", "PHONE")
"""Detected types in precedence order."""
DEFAULT_PLACEHOLDERS: Mapping[str, str] = {t: f"<{t}>" for t in PII_TYPES}

_MASK = "\x00"
_NB = "(?<![0-9A-Za-z])"  # not glued to an ASCII letter/digit on the left
_NA = "(?![0-9A-Za-z])"  # ... on the right

_EMAIL_RE = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![A-Za-z0-9-])"
)
_CN_ID_RE = re.compile(
    _NB + r"\d{6}(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx]" + _NA
)
_DIGIT_RUN_RE = re.compile(r"(?<![0-9A-Za-z+])(?<!\d[.,])\d+(?:[ -]\d+)*(?![0-9A-Za-z]|[.,]\d)")
_DIGIT_GROUP_RE = re.compile(r"\d+")
_IPV4_RE = re.compile(r"(?<![0-9A-Za-z.])(?:\d{1,3}\.){3}\d{1,3}(?![0-9A-Za-z]|\.\d)")
_IPV6_RE = re.compile(
    r"(?<![0-9A-Za-z:.])(?:[0-9A-Fa-f]{0,4}:){2,7}"
    r"(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{0,4})(?![0-9A-Za-z:]|\.\d)"
)
_PHONE_RES: tuple[re.Pattern[str], ...] = (
    # CN mobile, optional +86 / 0086 / (+86) prefix
    re.compile(r"(?<![0-9A-Za-z+])(?:(?:\+|00)86[ -]?|\(\+86\) ?)?1[3-9]\d(?:[ -]?\d{4}){2}" + _NA),
    # international, leading + and country code
    re.compile(r"(?<![0-9A-Za-z+])\+[1-9]\d{0,2}(?:[ .-]?(?:\(\d{1,4}\)|\d{1,4})){2,6}" + _NA),
    # North American, separators or +1 required
    re.compile(
        r"(?<![0-9A-Za-z+])(?:(?:\+?1[ .-]?)?(?:\([2-9]\d{2}\) ?|[2-9]\d{2}[ .-])[2-9]\d{2}[ .-]\d{4}"
        r"|\+1[2-9]\d{2}[2-9]\d{6})" + _NA
    ),
)

# GB/T 2260 province codes, plus 83 (Taiwan residence permit) and 91 (foreigner permanent ID)
_CN_PROVINCES = frozenset(
    {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46}
    | {50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83, 91}
)
_CN_ID_WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))


def cn_id_check_char(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character for the first 17 digits of a CN resident ID."""
    total = sum(int(d) * w for d, w in zip(first17, _CN_ID_WEIGHTS, strict=True))
    value = (12 - total % 11) % 11
    return "X" if value == 10 else str(value)


def is_valid_cn_id(s: str) -> bool:
    """18-character CN resident ID with province code, real birth date and valid check char."""
    if len(s) != 18 or not s[:17].isdigit() or int(s[:2]) not in _CN_PROVINCES:
        return False
    try:
        born = date(int(s[6:10]), int(s[10:12]), int(s[12:14]))
    except ValueError:
        return False
    return 1900 <= born.year <= 2099 and cn_id_check_char(s[:17]) == s[17].upper()


def luhn_valid(digits: str) -> bool:
    """Luhn (mod 10) check of a digit string."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def card_brand(digits: str) -> str | None:
    """Issuer whose prefix and length fit ``digits`` (Luhn not checked), else None."""
    n = len(digits)
    if n < 13 or n > 19 or not digits.isdigit():
        return None
    p2, p3, p4, p6 = (int(digits[:k]) for k in (2, 3, 4, 6))
    if digits[0] == "4" and n in (13, 16, 19):
        return "visa"
    if (51 <= p2 <= 55 or 2221 <= p4 <= 2720) and n == 16:
        return "mastercard"
    if p2 in (34, 37) and n == 15:
        return "amex"
    if n >= 16 and (p4 == 6011 or 644 <= p3 <= 649 or p2 == 65 or 622126 <= p6 <= 622925):
        return "discover"
    if n >= 16 and p2 == 62:
        return "unionpay"
    if n >= 16 and 3528 <= p4 <= 3589:
        return "jcb"
    return None


def is_valid_card(digits: str) -> bool:
    """Luhn-valid number with a known issuer prefix and length."""
    return card_brand(digits) is not None and luhn_valid(digits)


@dataclass(frozen=True)
class PiiMatch:
    """One detected span ``text[start:end]`` of PII type ``kind``."""

    kind: str
    start: int
    end: int
    text: str


def _regex_spans(
    pattern: re.Pattern[str], valid: Callable[[str], bool] | None = None
) -> Callable[[str], Iterator[tuple[int, int]]]:
    def spans(masked: str) -> Iterator[tuple[int, int]]:
        for m in pattern.finditer(masked):
            if valid is None or valid(m.group()):
                yield m.span()

    return spans


def _card_spans(masked: str) -> Iterator[tuple[int, int]]:
    for run in _DIGIT_RUN_RE.finditer(masked):
        groups = [(g.start(), g.end()) for g in _DIGIT_GROUP_RE.finditer(masked, *run.span())]
        i = 0
        while i < len(groups):
            digits = ""
            best = None
            for j in range(i, len(groups)):
                digits += masked[groups[j][0] : groups[j][1]]
                if len(digits) > 19:
                    break
                if len(digits) >= 13 and is_valid_card(digits):
                    best = j  # keep extending: the longest valid span wins
            if best is not None:
                yield groups[i][0], groups[best][1]
                i = best
            i += 1


def _valid_ipv4(s: str) -> bool:
    try:
        ipaddress.IPv4Address(s)
    except ValueError:
        return False
    return True


def _valid_ipv6(s: str) -> bool:
    if sum(1 for part in re.split(r"[:.]", s) if part) < 2:
        return False
    try:
        ipaddress.IPv6Address(s)
    except ValueError:
        return False
    return True


def _valid_phone(s: str) -> bool:
    return 8 <= sum(ch.isdigit() for ch in s) <= 15


_DETECTORS: Mapping[str, tuple[Callable[[str], Iterator[tuple[int, int]]], ...]] = {
    "EMAIL": (_regex_spans(_EMAIL_RE),),
    "CN_ID": (_regex_spans(_CN_ID_RE, is_valid_cn_id),),
    "CARD": (_card_spans,),
    "IP": (_regex_spans(_IPV6_RE, _valid_ipv6), _regex_spans(_IPV4_RE, _valid_ipv4)),
    "PHONE": tuple(_regex_spans(p, _valid_phone) for p in _PHONE_RES),
}


@dataclass(frozen=True)
class PiiRedactor:
    """Detect / redact the enabled ``types`` (precedence is always that of :data:`PII_TYPES`).

    ``check`` reports counts per type (``pii_<type>`` scores) and drops a document only when
    ``max_matches_per_1k_words`` is set and exceeded (reason ``pii_density``).
    """

    types: tuple[str, ...] = PII_TYPES
    placeholders: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_PLACEHOLDERS))
    max_matches_per_1k_words: float | None = None

    REASONS: ClassVar[tuple[str, ...]] = ("pii_density",)

    def __post_init__(self) -> None:
        unknown = set(self.types) - set(PII_TYPES)
        if unknown:
            raise ValueError(f"unknown PII types {sorted(unknown)}; known: {PII_TYPES}")

    def detect(self, text: str) -> list[PiiMatch]:
        """Non-overlapping matches sorted by position."""
        masked = text
        found: list[PiiMatch] = []
        for kind in PII_TYPES:
            if kind not in self.types:
                continue
            for detector in _DETECTORS[kind]:
                spans = list(detector(masked))
                if not spans:
                    continue
                parts: list[str] = []
                pos = 0
                for a, b in spans:
                    found.append(PiiMatch(kind, a, b, text[a:b]))
                    parts += [masked[pos:a], _MASK * (b - a)]
                    pos = b
                masked = "".join(parts) + masked[pos:]
        return sorted(found, key=lambda m: m.start)

    def redact(self, text: str) -> tuple[str, dict[str, int]]:
        """``text`` with every match replaced by its placeholder, and counts for every type."""
        matches = self.detect(text)
        counts = {kind: 0 for kind in self.types}
        parts: list[str] = []
        pos = 0
        for m in matches:
            parts.append(text[pos : m.start])
            parts.append(self.placeholders.get(m.kind, f"<{m.kind}>"))
            counts[m.kind] += 1
            pos = m.end
        parts.append(text[pos:])
        return "".join(parts), counts

    def measure(self, text: str, language: str | None = None) -> dict[str, float]:
        """``pii_<type>`` counts, ``pii_total`` and ``pii_per_1k_words``."""
        counts = {kind: 0 for kind in self.types}
        for m in self.detect(text):
            counts[m.kind] += 1
        total = sum(counts.values())
        n_words = count_words(text)
        scores = {f"pii_{kind.lower()}": float(n) for kind, n in counts.items()}
        scores["pii_total"] = float(total)
        scores["pii_per_1k_words"] = 1000.0 * total / n_words if n_words else 0.0
        return scores

    def decide(self, scores: Mapping[str, float]) -> FilterResult:
        limit = self.max_matches_per_1k_words
        return verdict(
            scores,
            [(limit is not None and scores["pii_per_1k_words"] > limit, "pii_density")],
        )

    def check(self, text: str, language: str | None = None) -> FilterResult:
        return self.decide(self.measure(text, language))


_DEFAULT = PiiRedactor()


def detect_pii(text: str) -> list[PiiMatch]:
    """:meth:`PiiRedactor.detect` with all types enabled."""
    return _DEFAULT.detect(text)


def redact(text: str) -> tuple[str, dict[str, int]]:
    """:meth:`PiiRedactor.redact` with all types and the ``<TYPE>`` placeholders."""
    return _DEFAULT.redact(text)
