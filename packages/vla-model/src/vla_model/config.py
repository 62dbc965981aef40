"""`ModelConfig`: the validated description of one model, stored on disk as `config.json`."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_AUX_LOSS_COEFF = 1e-3


class ConfigError(ValueError):
    """A config (or a file holding one) is invalid; the message names the file and the field."""


def format_validation_error(err: ValidationError) -> str:
    """Condense a pydantic error into one line: `field.path: message; ...`."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "config"
        msg = e["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MoEConfig(_Strict):
    """Mixture-of-experts options of the feed-forward blocks.

    `moe_layer_freq` follows megatron-core: an int k makes layers 0, k, 2k, ... MoE layers
    (k=1: all of them); a list gives 1 (MoE) or 0 (dense SwiGLU of `ffn_hidden_size`) per layer.
    """

    num_experts: int = Field(ge=1)
    top_k: int = Field(ge=1)
    expert_ffn_hidden_size: int = Field(ge=1)
    shared_expert_ffn_hidden_size: int = Field(default=0, ge=0, description="0 = no shared expert")
    shared_expert_gate: bool = Field(default=False, description="sigmoid gate on the shared expert")
    score_function: Literal["softmax", "sigmoid"] = "softmax"
    normalize_topk: bool = Field(default=True, description="renormalise the k weights to sum 1")
    load_balancing: Literal["aux", "seq_aux", "none"] = "aux"
    aux_loss_coeff: float = Field(default=DEFAULT_AUX_LOSS_COEFF, ge=0)
    expert_bias: bool = Field(default=False, description="aux-loss-free balancing (DeepSeek-V3)")
    expert_bias_update_rate: float = Field(default=1e-3, ge=0)
    z_loss_coeff: float = Field(default=0.0, ge=0)
    dropless: bool = True
    capacity_factor: float | None = Field(default=None, gt=0)
    drop_policy: Literal["probs", "position"] = "probs"
    moe_layer_freq: int | list[int] = 1

    @model_validator(mode="before")
    @classmethod
    def _no_coeff_without_balancing(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("load_balancing") == "none":
            data = {"aux_loss_coeff": 0.0, **data}
        return data

    @field_validator("moe_layer_freq")
    @classmethod
    def _check_freq(cls, v: int | list[int]) -> int | list[int]:
        if isinstance(v, int):
            if v < 1:
                raise ValueError(f"moe_layer_freq must be >= 1 (got {v})")
        elif any(x not in (0, 1) for x in v):
            raise ValueError(f"moe_layer_freq as a list holds only 0 and 1 (got {v})")
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> MoEConfig:
        errors = []
        if self.top_k > self.num_experts:
            errors.append(f"top_k ({self.top_k}) must be <= num_experts ({self.num_experts})")
        if self.shared_expert_gate and self.shared_expert_ffn_hidden_size == 0:
            errors.append(
                "shared_expert_gate needs a shared expert (shared_expert_ffn_hidden_size > 0)"
            )
        if self.load_balancing == "none" and self.aux_loss_coeff > 0:
            errors.append(
                f"aux_loss_coeff is {self.aux_loss_coeff} but load_balancing is 'none'; "
                "set it to 0 or pick 'aux' / 'seq_aux'"
            )
        if self.load_balancing != "none" and self.aux_loss_coeff == 0:
            errors.append(f"load_balancing '{self.load_balancing}' needs aux_loss_coeff > 0")
        if self.expert_bias and self.expert_bias_update_rate <= 0:
            errors.append("expert_bias needs expert_bias_update_rate > 0")
        if self.dropless and self.capacity_factor is not None:
            errors.append("capacity_factor is set but dropless is true; set dropless=false to drop")
        if not self.dropless and self.capacity_factor is None:
            errors.append("dropless=false needs a capacity_factor")
        if errors:
            raise ValueError("; ".join(errors))
        return self

    def layer_pattern(self, num_layers: int) -> list[bool]:
        """True for each layer that is an MoE layer."""
        if isinstance(self.moe_layer_freq, int):
            return [i % self.moe_layer_freq == 0 for i in range(num_layers)]
        return [bool(x) for x in self.moe_layer_freq]


class VLAExtrasConfig(_Strict):
    """Optional VLA inputs/outputs; all off (0) by default so the backbone is a plain Qwen3.

    - `num_cameras`: learned camera embedding added where `camera_ids >= 0` (visual positions);
    - `num_time_buckets`: learned timestamp embedding added where `time_ids >= 0`;
    - `continuous_input_dim`: 2-layer MLP projecting continuous features to the hidden size;
      the projection replaces the token embedding where `continuous_mask` is true;
    - `action_dim` (x `action_horizon`): linear action-regression head on the final hidden states.
    """

    num_cameras: int = Field(default=0, ge=0)
    num_time_buckets: int = Field(default=0, ge=0)
    continuous_input_dim: int = Field(default=0, ge=0)
    action_dim: int = Field(default=0, ge=0)
    action_horizon: int = Field(default=1, ge=1)

    @property
    def enabled(self) -> list[str]:
        """Names of the extras that are switched on."""
        names = ("num_cameras", "num_time_buckets", "continuous_input_dim", "action_dim")
        return [n for n in names if getattr(self, n) > 0]


class ModelConfig(_Strict):
    """A Qwen3-style decoder (dense or MoE), validated; `save`/`load` as `config.json`."""

    name: str = "custom"
    vocab_size: int = Field(ge=1)
    num_layers: int = Field(ge=1)
    hidden_size: int = Field(ge=1)
    num_attention_heads: int = Field(ge=1)
    num_kv_heads: int = Field(ge=1)
    head_dim: int = Field(ge=2)
    ffn_hidden_size: int = Field(ge=1)
    rope_theta: float = Field(default=1_000_000.0, gt=0)
    max_position_embeddings: int = Field(default=4096, ge=1)
    qk_norm: bool = True
    tie_embeddings: bool = False
    norm_eps: float = Field(default=1e-6, gt=0)
    init_std: float = Field(default=0.02, gt=0)
    moe: MoEConfig | None = None
    extras: VLAExtrasConfig = Field(default_factory=VLAExtrasConfig)

    @model_validator(mode="after")
    def _cross_checks(self) -> ModelConfig:
        errors = []
        if self.num_attention_heads % self.num_kv_heads:
            errors.append(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_kv_heads ({self.num_kv_heads})"
            )
        if self.head_dim % 2:
            errors.append(f"head_dim ({self.head_dim}) must be even for RoPE")
        if self.moe is not None:
            freq = self.moe.moe_layer_freq
            if isinstance(freq, list) and len(freq) != self.num_layers:
                errors.append(
                    f"moe.moe_layer_freq lists {len(freq)} layers "
                    f"but num_layers is {self.num_layers}"
                )
            elif not any(self.moe.layer_pattern(self.num_layers)):
                errors.append("moe is set but moe.moe_layer_freq makes no layer an MoE layer")
        if errors:
            raise ValueError("; ".join(errors))
        return self

    # ----- derived shapes -----
    @property
    def is_moe(self) -> bool:
        return self.moe is not None

    @property
    def moe_layers(self) -> list[bool]:
        """True for each layer whose feed-forward block is an MoE block."""
        if self.moe is None:
            return [False] * self.num_layers
        return self.moe.layer_pattern(self.num_layers)

    @property
    def q_size(self) -> int:
        return self.num_attention_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim

    # ----- construction / IO -----
    def replace(self, **changes: Any) -> ModelConfig:
        """A validated copy with some fields changed (nested configs accept dicts)."""
        data = self.model_dump()
        data.update(changes)
        return ModelConfig.model_validate(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> ModelConfig:
        """Validate a dict; errors become `ConfigError` naming `source` and the fields."""
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise ConfigError(f"{source}: {format_validation_error(err)}") from None

    @classmethod
    def load(cls, path: str | os.PathLike) -> ModelConfig:
        """Read and validate a `config.json`."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"{path}: cannot read config: {err}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object, got {type(data).__name__}")
        return cls.from_dict(data, source=str(path))

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2) + "\n"

    def save(self, path: str | os.PathLike) -> Path:
        """Write `config.json` atomically (temporary file, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(self.to_json())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def from_vocab_layout(
        cls, path: str | os.PathLike, pad_to_multiple: int = 1, **fields: Any
    ) -> ModelConfig:
        """A config whose `vocab_size` is read from a `vocab_layout.json`."""
        return cls.from_dict(
            {**fields, "vocab_size": vocab_size_from_layout(path, pad_to_multiple)},
            source=str(path),
        )

    def with_vocab_layout(self, path: str | os.PathLike, pad_to_multiple: int = 1) -> ModelConfig:
        """This config with `vocab_size` taken from a `vocab_layout.json`."""
        return self.replace(vocab_size=vocab_size_from_layout(path, pad_to_multiple))


def vocab_size_from_layout(path: str | os.PathLike, pad_to_multiple: int = 1) -> int:
    """The total vocabulary size of a `vocab_layout.json` (top-level int `vocab_size`),
    optionally rounded up to a multiple (megatron pads the embedding to e.g. 128)."""
    path = Path(path)
    if pad_to_multiple < 1:
        raise ConfigError(f"pad_to_multiple must be >= 1 (got {pad_to_multiple})")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path}: cannot read vocab layout: {err}") from None
    size = data.get("vocab_size") if isinstance(data, dict) else None
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"{path}: needs a top-level positive int 'vocab_size' (got {size!r})")
    return math.ceil(size / pad_to_multiple) * pad_to_multiple
