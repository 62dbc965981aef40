"""The result type and protocol shared by every text filter.

Each filter is a frozen dataclass whose fields are its thresholds (published defaults) and
which offers three methods:

* ``measure(text, language=None) -> dict[str, float]`` computes every score, never stopping at
  the first failed rule, so that a stored score dict can be re-judged later;
* ``decide(scores) -> FilterResult`` applies the thresholds to scores (threshold replay);
* ``check(text, language=None) -> FilterResult`` is ``decide(measure(text, language))``.

A score that is absent from the dict means "rule not applicable to this document" (for example
the stop-word rule for a language without a list); ``decide`` then skips that rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class FilterResult:
    """Verdict of one filter: ``keep``, the stable ``reason`` of the first failed rule, scores."""

    keep: bool
    reason: str | None = None
    scores: dict[str, float] = field(default_factory=dict)

    @classmethod
    def passed(cls, scores: Mapping[str, float]) -> FilterResult:
        return cls(True, None, dict(scores))

    @classmethod
    def dropped(cls, reason: str, scores: Mapping[str, float]) -> FilterResult:
        return cls(False, reason, dict(scores))


@runtime_checkable
class TextFilter(Protocol):
    """What a pipeline stage may rely on."""

    def measure(self, text: str, language: str | None = None) -> dict[str, float]: ...

    def decide(self, scores: Mapping[str, float]) -> FilterResult: ...

    def check(self, text: str, language: str | None = None) -> FilterResult: ...


def ratio(num: float, den: float) -> float:
    """``num / den`` with 0.0 for an empty denominator (scores stay finite, JSON-safe)."""
    return num / den if den else 0.0


def verdict(scores: Mapping[str, float], failures: list[tuple[bool, str]]) -> FilterResult:
    """First reason whose condition holds, in the given (published) rule order."""
    for failed, reason in failures:
        if failed:
            return FilterResult.dropped(reason, scores)
    return FilterResult.passed(scores)
