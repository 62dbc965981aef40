"""`MixturePlan`: which buckets a pretraining run draws its tokens from, and how often.

A *bucket* is one source x modality slice of the token shards (`<source>__<modality>`, as
`vla-tok shards` names them). The plan holds:

- a quota table: the tokens of each bucket in the base mix (`tokens`, summing to
  `total_tokens`); the stages below re-weight it, `planned_tokens()` says what a full run
  then actually draws per bucket;
- temperature sampling: the sampling weight of bucket i is `p_i ∝ tokens_i ** (1 / T)`;
  `T = 1` reproduces the quota table exactly, `T > 1` flattens towards uniform (small buckets
  are up-sampled), `T < 1` sharpens towards the large buckets;
- a stage schedule (e.g. cold -> mid -> hot): consecutive stages, each `tokens` long, with
  its own temperature and per-bucket multipliers (keys are bucket names or `fnmatch` globs).
  The weights change when the run's token count crosses a stage boundary.

On disk: TOML (or JSON) with `[[buckets]]` and `[[stages]]` tables; `MixturePlan.load` names
the file and the offending record on bad input.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

RECIPES_DIR = Path(__file__).parent / "recipes"


class MixtureError(ValueError):
    """An invalid mixture plan; the message names the file and the record."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Bucket(_Strict):
    """One source x modality slice of the token shards and its quota."""

    name: str = Field(min_length=1, description="token-shard prefix, `<source>__<modality>`")
    modality: str = Field(min_length=1)
    language: str | None = Field(default=None, description="ISO code; None = language-neutral")
    tokens: int = Field(gt=0, description="quota: tokens of this bucket in the base mix")
    available_tokens: int | None = Field(
        default=None, gt=0, description="unique tokens on disk (for epoch counts), if known"
    )
    note: str = ""


class Stage(_Strict):
    """A contiguous part of the run with its own sampling weights."""

    name: str = Field(min_length=1)
    tokens: int = Field(gt=0, description="length of the stage in tokens")
    temperature: float | None = Field(default=None, gt=0, description="None = plan's temperature")
    multipliers: dict[str, float] = Field(
        default_factory=dict, description="bucket name or glob -> weight multiplier (>= 0)"
    )
    note: str = ""

    @model_validator(mode="after")
    def _check_multipliers(self) -> Stage:
        bad = {k: v for k, v in self.multipliers.items() if not (v >= 0 and math.isfinite(v))}
        if bad:
            raise ValueError(f"stage '{self.name}': multipliers must be finite and >= 0: {bad}")
        return self


class MixturePlan(_Strict):
    """Quota table + temperature + stage schedule; see the module docstring."""

    name: str = Field(min_length=1)
    description: str = ""
    total_tokens: int = Field(gt=0)
    temperature: float = Field(default=1.0, gt=0)
    buckets: list[Bucket] = Field(min_length=1)
    stages: list[Stage] = Field(default_factory=list)

    @model_validator(mode="after")
    def _cross_checks(self) -> MixturePlan:
        errors = []
        names = [b.name for b in self.buckets]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            errors.append(f"duplicate bucket names: {dupes}")
        quota = sum(b.tokens for b in self.buckets)
        if quota != self.total_tokens:
            errors.append(
                f"bucket quotas sum to {quota:,} but total_tokens is {self.total_tokens:,}"
            )
        if self.stages:
            staged = sum(s.tokens for s in self.stages)
            if staged != self.total_tokens:
                errors.append(
                    f"stage lengths sum to {staged:,} but total_tokens is {self.total_tokens:,}"
                )
            for stage in self.stages:
                for key in stage.multipliers:
                    if not fnmatch.filter(names, key):
                        errors.append(f"stage '{stage.name}': multiplier '{key}' matches no bucket")
                if sum(self._raw_weights(stage).values()) <= 0:
                    errors.append(f"stage '{stage.name}': every bucket has weight 0")
        if errors:
            raise ValueError("; ".join(errors))
        return self

    # ---- weights ----------------------------------------------------------------------------

    @property
    def bucket_names(self) -> list[str]:
        return [b.name for b in self.buckets]

    def _raw_weights(self, stage: Stage | None) -> dict[str, float]:
        temperature = (stage.temperature if stage else None) or self.temperature
        out = {}
        for b in self.buckets:
            w = b.tokens ** (1.0 / temperature)
            if stage is not None:
                for pattern, m in stage.multipliers.items():
                    if fnmatch.fnmatchcase(b.name, pattern):
                        w *= m
            out[b.name] = w
        return out

    def weights(self, stage: Stage | str | None = None) -> dict[str, float]:
        """Normalised sampling weights (sum 1) of every bucket, in bucket order, for `stage`
        (a `Stage`, its name, or None for the plan's base temperature without multipliers)."""
        if isinstance(stage, str):
            stage = self.stage(stage)
        raw = self._raw_weights(stage)
        total = sum(raw.values())
        return {k: v / total for k, v in raw.items()}

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(
            f"plan '{self.name}' has no stage '{name}' ({[s.name for s in self.stages]})"
        )

    def stage_boundaries(self) -> list[tuple[int, int]]:
        """`[start, end)` token counts of every stage (one implicit stage without stages)."""
        if not self.stages:
            return [(0, self.total_tokens)]
        out, start = [], 0
        for s in self.stages:
            out.append((start, start + s.tokens))
            start += s.tokens
        return out

    def stage_at(self, tokens_seen: int) -> Stage | None:
        """The stage active after `tokens_seen` tokens (the last one past the end)."""
        if not self.stages:
            return None
        for stage, (_, end) in zip(self.stages, self.stage_boundaries(), strict=True):
            if tokens_seen < end:
                return stage
        return self.stages[-1]

    def weights_at(self, tokens_seen: int) -> dict[str, float]:
        """Sampling weights in force after `tokens_seen` tokens."""
        return self.weights(self.stage_at(tokens_seen))

    def planned_tokens(self) -> dict[str, float]:
        """Tokens every bucket will contribute when the whole schedule runs."""
        out = dict.fromkeys(self.bucket_names, 0.0)
        stages = self.stages or [None]
        lengths = [s.tokens for s in self.stages] or [self.total_tokens]
        for stage, length in zip(stages, lengths, strict=True):
            for k, w in self.weights(stage).items():
                out[k] += w * length
        return out

    def epochs(self) -> dict[str, float]:
        """Planned passes over every bucket whose `available_tokens` is known."""
        planned = self.planned_tokens()
        return {
            b.name: planned[b.name] / b.available_tokens
            for b in self.buckets
            if b.available_tokens is not None
        }

    def share(self, *, field: str, values: set[str | None]) -> float:
        """Quota share of the buckets whose `field` (modality, language) is in `values`."""
        hit = sum(b.tokens for b in self.buckets if getattr(b, field) in values)
        return hit / self.total_tokens

    def scaled(self, total_tokens: int) -> MixturePlan:
        """The same plan at another scale (quotas and stage lengths scaled, rounded so the sums
        hold exactly): e.g. the 30T recipe's shape for a few-million-token test run."""
        f = total_tokens / self.total_tokens

        def spread(values: list[int]) -> list[int]:
            scaled = [max(1, math.floor(v * f)) for v in values]
            scaled[int(max(range(len(values)), key=values.__getitem__))] += total_tokens - sum(
                scaled
            )
            return scaled

        buckets = [
            b.model_copy(update={"tokens": t})
            for b, t in zip(self.buckets, spread([b.tokens for b in self.buckets]), strict=True)
        ]
        stages = (
            [
                s.model_copy(update={"tokens": t})
                for s, t in zip(self.stages, spread([s.tokens for s in self.stages]), strict=True)
            ]
            if self.stages
            else []
        )
        return MixturePlan.model_validate(
            {
                **self.model_dump(),
                "total_tokens": total_tokens,
                "buckets": [b.model_dump() for b in buckets],
                "stages": [s.model_dump() for s in stages],
            }
        )

    # ---- disk -------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "mixture") -> MixturePlan:
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            parts = []
            for err in e.errors():
                loc = err["loc"]
                where = ".".join(str(p) for p in loc) or "plan"
                if len(loc) >= 2 and loc[0] in ("buckets", "stages") and isinstance(loc[1], int):
                    rec = data.get(loc[0], [])[loc[1]]
                    if isinstance(rec, dict) and "name" in rec:
                        where += f" ('{rec['name']}')"
                parts.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
            raise MixtureError(f"{source}: invalid mixture plan: {'; '.join(parts)}") from None

    @classmethod
    def load(cls, path: str | os.PathLike) -> MixturePlan:
        """Read a `.toml` or `.json` plan."""
        path = Path(path)
        try:
            raw = path.read_bytes()
            data = json.loads(raw) if path.suffix == ".json" else tomllib.loads(raw.decode())
        except (OSError, ValueError) as e:
            raise MixtureError(f"{path}: cannot read mixture plan: {e}") from None
        return cls.from_dict(data, str(path))

    @classmethod
    def recipe(cls, name: str) -> MixturePlan:
        """A plan shipped with vla-data (`recipes/<name>.toml`), e.g. `seeds-30t-mixture`."""
        path = RECIPES_DIR / f"{name}.toml"
        if not path.is_file():
            known = sorted(p.stem for p in RECIPES_DIR.glob("*mixture*.toml"))
            raise MixtureError(f"no mixture recipe '{name}' (known: {known})")
        return cls.load(path)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=1) + "\n"

    def save(self, path: str | os.PathLike) -> Path:
        """Write as JSON, atomically."""
        from vla_data.dataset import write_atomic

        write_atomic(path, self.to_json().encode())
        return Path(path)

    def table(self) -> list[dict[str, Any]]:
        """One row per bucket: quota, share, weight per stage, planned tokens."""
        planned = self.planned_tokens()
        stage_w = {s.name: self.weights(s) for s in self.stages}
        rows = []
        for b in self.buckets:
            row: dict[str, Any] = {
                "bucket": b.name,
                "modality": b.modality,
                "language": b.language,
                "quota_tokens": b.tokens,
                "quota_share": b.tokens / self.total_tokens,
                "planned_tokens": planned[b.name],
            }
            for s, w in stage_w.items():
                row[f"weight_{s}"] = w[b.name]
            rows.append(row)
        return rows
