"""`TrainConfig`: one validated TOML file describes a training run.

```toml
out_dir = "runs/tiny"            # checkpoints/, metrics.jsonl, tensorboard/ go here
engine = "torch"                 # "megatron" is reserved (GPU engine, another issue)
seed = 0
seq_length = 128
micro_batch_size = 4
global_batch_size = 8            # = micro x accumulation x data-parallel ranks
precision = "auto"               # auto: bf16 autocast on CUDA, fp32 on CPU

[model]
preset = "tiny-dense"            # or config = "path/to/config.json"; overrides = {...}

[data]
shards = "tokens/"               # folder of <bucket>.bin/.idx (vla-tok shards output)
mixture = "mix.toml"             # vla_data MixturePlan; or weights = {bucket = w}; or neither
vocab_layout = "bundle/vocab_layout.json"   # modality of every id; optional (all "text")
eod_id = 0                       # optional when vocab_layout has <|endoftext|>

[optimizer]   lr, min_lr, betas, eps, weight_decay, grad_clip, fused
[schedule]    train_steps, warmup_steps
[loss]        modality_weights = {vision = 0.5}
[checkpoint]  every, keep_last
[logging]     every, tensorboard, progress, peak_tflops
[guards]      max_skipped_steps, spike_factor, spike_window
```
Relative paths are resolved against the TOML file's folder.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vla_model import ModelConfig, resolve_config


class TrainConfigError(ValueError):
    """An invalid training config; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSection(_Strict):
    """A preset name or a `config.json` path, plus field overrides."""

    preset: str | None = None
    config: Path | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_source(self) -> ModelSection:
        if (self.preset is None) == (self.config is None):
            raise ValueError("give exactly one of model.preset and model.config")
        return self

    def resolve(self) -> ModelConfig:
        base = resolve_config(self.preset if self.preset is not None else str(self.config))
        return base.replace(**self.overrides) if self.overrides else base


class DataSection(_Strict):
    """Token shards and how to mix them."""

    shards: Path
    mixture: Path | None = Field(default=None, description="vla_data MixturePlan TOML/JSON")
    weights: dict[str, float] | None = Field(default=None, description="bucket -> weight")
    buckets: list[str] | None = Field(
        default=None, description="restrict to these buckets (default: every bucket in shards)"
    )
    vocab_layout: Path | None = None
    eod_id: int | None = Field(default=None, ge=0)
    reset_position_ids: bool = Field(default=True, description="positions restart per document")
    eod_mask_loss: bool = Field(default=False, description="no loss on predicting EOD tokens")
    document_mask: bool = Field(
        default=True,
        description="packed documents attend only within themselves (boundaries where positions "
        "restart; needs reset_position_ids)",
    )
    loss_mask_spans: list[tuple[int | str, int | str]] = Field(
        default_factory=list,
        description="(start, end) marker ids or token strings: no loss on the tokens between",
    )
    cache_dir: Path | None = Field(default=None, description="index cache; default out_dir/cache")
    prefetch: bool = Field(default=True, description="fetch the next step's batches in a thread")

    @model_validator(mode="after")
    def _mixture_or_weights(self) -> DataSection:
        if self.mixture is not None and self.weights is not None:
            raise ValueError("give data.mixture or data.weights, not both")
        if self.weights is not None and any(w < 0 for w in self.weights.values()):
            raise ValueError("data.weights must be >= 0")
        return self


class OptimizerSection(_Strict):
    lr: float = Field(default=3e-4, gt=0)
    min_lr: float = Field(default=3e-5, ge=0)
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = Field(default=1e-8, gt=0)
    weight_decay: float = Field(default=0.1, ge=0)
    grad_clip: float = Field(default=1.0, ge=0, description="0 = no clipping")
    fused: bool | None = Field(default=None, description="None: fused AdamW where available")

    @model_validator(mode="after")
    def _lr_order(self) -> OptimizerSection:
        if self.min_lr > self.lr:
            raise ValueError(f"optimizer.min_lr ({self.min_lr}) exceeds optimizer.lr ({self.lr})")
        return self


class ScheduleSection(_Strict):
    """Linear warmup to `lr`, then cosine decay to `min_lr` at `train_steps`."""

    train_steps: int = Field(ge=1)
    warmup_steps: int = Field(default=0, ge=0)
    decay: Literal["cosine", "constant"] = "cosine"


class LossSection(_Strict):
    modality_weights: dict[str, float] = Field(
        default_factory=dict, description="modality -> loss weight (default 1.0), e.g. vision 0.5"
    )


class CheckpointSection(_Strict):
    every: int = Field(default=100, ge=1, description="save every N optimizer steps")
    keep_last: int = Field(default=3, ge=1)
    save_final: bool = True


class LoggingSection(_Strict):
    every: int = Field(default=1, ge=1)
    tensorboard: bool = True
    progress: bool = True
    peak_tflops: float | None = Field(
        default=None, gt=0, description="per-device peak for MFU; default 989 on CUDA, none on CPU"
    )


class GuardSection(_Strict):
    """Skip steps with a non-finite loss/grad norm or a loss spike; stop after too many."""

    max_skipped_steps: int = Field(default=10, ge=0)
    spike_factor: float = Field(default=3.0, gt=1, description="skip if loss > factor x mean")
    spike_window: int = Field(default=20, ge=1, description="mean over the last N good steps")
    spike_min_history: int = Field(default=10, ge=1)


class TrainConfig(_Strict):
    """The whole run; `TrainConfig.load(path)` reads and validates a TOML file."""

    out_dir: Path
    engine: Literal["torch", "megatron"] = "torch"
    seed: int = 0
    seq_length: int = Field(ge=2)
    micro_batch_size: int = Field(ge=1)
    global_batch_size: int = Field(ge=1)
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    model: ModelSection
    data: DataSection
    optimizer: OptimizerSection = Field(default_factory=OptimizerSection)
    schedule: ScheduleSection
    loss: LossSection = Field(default_factory=LossSection)
    checkpoint: CheckpointSection = Field(default_factory=CheckpointSection)
    logging: LoggingSection = Field(default_factory=LoggingSection)
    guards: GuardSection = Field(default_factory=GuardSection)

    @model_validator(mode="after")
    def _batch(self) -> TrainConfig:
        if self.global_batch_size % self.micro_batch_size:
            raise ValueError(
                f"global_batch_size ({self.global_batch_size}) must be a multiple of "
                f"micro_batch_size ({self.micro_batch_size})"
            )
        if self.schedule.warmup_steps > self.schedule.train_steps:
            raise ValueError("schedule.warmup_steps exceeds schedule.train_steps")
        return self

    def accumulation_steps(self, world_size: int) -> int:
        """Micro-batches per optimizer step on each rank."""
        per_rank = self.global_batch_size // self.micro_batch_size
        if per_rank % world_size:
            raise TrainConfigError(
                f"global_batch_size / micro_batch_size ({per_rank}) is not divisible by the "
                f"{world_size} data-parallel ranks"
            )
        return per_rank // world_size

    @property
    def tokens_per_step(self) -> int:
        return self.global_batch_size * self.seq_length

    def resolve_model(self) -> ModelConfig:
        cfg = self.model.resolve()
        if self.seq_length > cfg.max_position_embeddings:
            raise TrainConfigError(
                f"seq_length ({self.seq_length}) exceeds the model's max_position_embeddings "
                f"({cfg.max_position_embeddings})"
            )
        return cfg

    # ---- disk -------------------------------------------------------------------------------

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], source: str = "config", base_dir: Path | None = None
    ) -> TrainConfig:
        """Validate `data`; relative paths resolve against `base_dir` (if given)."""
        try:
            cfg = cls.model_validate(data)
        except ValidationError as e:
            parts = []
            for err in e.errors():
                loc = ".".join(str(p) for p in err["loc"]) or "config"
                parts.append(f"{loc}: {err['msg'].removeprefix('Value error, ')}")
            raise TrainConfigError(f"{source}: invalid train config: {'; '.join(parts)}") from None
        return cfg._resolved(base_dir) if base_dir is not None else cfg

    def _resolved(self, base: Path) -> TrainConfig:
        def fix(p: Path | None) -> Path | None:
            return None if p is None or p.is_absolute() else base / p

        data = self.data.model_copy(
            update={
                k: fix(getattr(self.data, k))
                for k in ("shards", "mixture", "vocab_layout", "cache_dir")
                if getattr(self.data, k) is not None and not getattr(self.data, k).is_absolute()
            }
        )
        model = self.model
        if model.config is not None and not model.config.is_absolute():
            model = model.model_copy(update={"config": fix(model.config)})
        out = self.out_dir if self.out_dir.is_absolute() else base / self.out_dir
        return self.model_copy(update={"data": data, "model": model, "out_dir": out})

    @classmethod
    def load(cls, path: str | os.PathLike) -> TrainConfig:
        """Read a TOML (or JSON) config file."""
        path = Path(path)
        try:
            raw = path.read_bytes()
            data = json.loads(raw) if path.suffix == ".json" else tomllib.loads(raw.decode())
        except (OSError, ValueError) as e:
            raise TrainConfigError(f"{path}: cannot read train config: {e}") from None
        return cls.from_dict(data, str(path), path.resolve().parent)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=1) + "\n"
