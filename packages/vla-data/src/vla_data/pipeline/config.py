"""`PipelineConfig`: a cascade of stages declared in TOML.

```toml
name = "web-quality"
seed = 0
score_all = false        # true: score every stage even after a drop (for replay on real data)

[[stages]]
type = "gopher_quality"  # a registered stage type
name = "gopher"          # optional; defaults to the type
[stages.params]
min_doc_words = 50
```
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vla_data.pipeline.stage import Stage, build_stage

RECIPES = ("web-text", "sample-corpus")  # shipped in vla_data/recipes/<name>.toml


class StageSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str = Field(min_length=1)
    name: str | None = Field(None, pattern=r"^[a-z0-9_]+$")
    params: dict[str, Any] = Field(default_factory=dict)

    @property
    def stage_name(self) -> str:
        return self.name or self.type


class PipelineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("pipeline", pattern=r"^[A-Za-z0-9_\-]+$")
    seed: int = 0
    score_all: bool = False
    max_shard_count: int = Field(10_000, ge=1)
    max_shard_bytes: int = Field(1 << 30, ge=1)
    stages: list[StageSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> PipelineConfig:
        names = [s.stage_name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique; got {names}")
        return self

    def build(self) -> list[Stage]:
        """Instantiate the stages (each gets its own seed derived from the pipeline's)."""
        return [
            build_stage(s.type, s.stage_name, self.seed * 1_000_003 + i, s.params)
            for i, s in enumerate(self.stages)
        ]

    @classmethod
    def load(cls, path: str | Path) -> PipelineConfig:
        """Read and validate a TOML config, or a shipped recipe by name (`RECIPES`).

        Errors name the file and the field.
        """
        if Path(path).is_file():
            path = Path(path)
        elif str(path) in RECIPES:
            path = resources.files("vla_data").joinpath("recipes", f"{path}.toml")
        else:
            raise ValueError(f"{path}: no such file (shipped recipes: {', '.join(RECIPES)})")
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{path}: invalid TOML: {e}") from None
        try:
            config = cls.model_validate(data)
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(x) for x in err["loc"])
            raise ValueError(f"{path}: {loc}: {err['msg']}") from None
        config.build()  # fail early on unknown types or bad parameters
        return config
