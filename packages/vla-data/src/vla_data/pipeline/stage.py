"""The shape every pipeline stage shares, and the registry that builds stages from config.

A stage sees one `Sample` and returns an `Outcome`: keep or drop (with a short, stable reason),
the scores it measured (recorded in the ledger, so thresholds can be replayed later without
re-running), counters for the stage's stats, and optionally a transformed sample.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from vla_data.sample import Sample

Direction = Literal["min", "max"]


@dataclass(frozen=True)
class Threshold:
    """How a score decides: keep when score >= value ("min") or score <= value ("max")."""

    score: str
    param: str
    direction: Direction

    def keeps(self, score: float, value: float) -> bool:
        return score >= value if self.direction == "min" else score <= value


@dataclass
class Outcome:
    keep: bool
    reason: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    sample: Sample | None = None
    cluster: str | None = None

    @classmethod
    def kept(cls, scores=None, counters=None, sample=None, cluster=None) -> Outcome:
        return cls(True, None, scores or {}, counters or {}, sample, cluster)

    @classmethod
    def dropped(cls, reason: str, scores=None, counters=None, cluster=None) -> Outcome:
        return cls(False, reason, scores or {}, counters or {}, None, cluster)


class Stage(ABC):
    """A pipeline step. Subclasses set `type`, `modalities` and `thresholds`, and implement
    `apply`. Samples of other modalities pass through untouched."""

    type: ClassVar[str]
    modalities: ClassVar[frozenset[str]] = frozenset({"text"})
    thresholds: ClassVar[tuple[Threshold, ...]] = ()

    def __init__(self, name: str, seed: int = 0):
        self.name, self.seed = name, seed

    def begin_shard(self, path: Path) -> None:  # noqa: B027 - an optional hook
        """Called before the samples of each input shard (stages with per-shard state)."""

    def applies_to(self, sample: Sample) -> bool:
        return sample.modality.value in self.modalities

    @abstractmethod
    def apply(self, sample: Sample) -> Outcome:
        """Decide on one sample."""

    def param_value(self, param: str):
        """Current value of a threshold parameter (for replay)."""
        return getattr(self, param, None)

    def threshold(self, score: str) -> Threshold:
        for t in self.thresholds:
            if t.score == score:
                return t
        known = ", ".join(t.score for t in self.thresholds) or "none"
        raise KeyError(f"stage {self.name!r} has no threshold on score {score!r} (has: {known})")


STAGES: dict[str, Callable[..., Stage]] = {}


def register(cls: type[Stage]) -> type[Stage]:
    """Class decorator: make a stage type available to pipeline configs."""
    STAGES[cls.type] = cls
    return cls


def build_stage(type_: str, name: str, seed: int, params: dict[str, Any]) -> Stage:
    if type_ not in STAGES:
        raise ValueError(f"unknown stage type {type_!r} (known: {', '.join(sorted(STAGES))})")
    try:
        return STAGES[type_](name=name, seed=seed, **params)
    except TypeError as e:
        raise ValueError(f"stage {name!r} ({type_}): bad parameters: {e}") from None


def sample_text(sample: Sample) -> str:
    return sample.payloads["txt"].decode("utf-8")


def replace_text(sample: Sample, text: str, op: str) -> Sample:
    """A copy of a text sample with new text and `op:<stage>` appended to its lineage."""
    meta = sample.meta.model_copy(update={"chars": len(text)})
    return sample.with_payloads({"txt": text.encode()}, meta=meta, lineage=[*sample.lineage, op])
