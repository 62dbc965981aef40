"""vla-model: model config + presets, Qwen3-style dense/MoE reference model, transformers parity,
parameter/FLOP/memory accounting."""

from vla_model.accounting import (
    FlopsPerToken,
    LayoutError,
    MemoryEstimate,
    ParallelLayout,
    ParamCounts,
    count_parameters,
    describe,
    flops_per_token,
    memory_per_gpu,
)
from vla_model.config import (
    ConfigError,
    ModelConfig,
    MoEConfig,
    VLAExtrasConfig,
    vocab_size_from_layout,
)
from vla_model.kv_cache import KVCache
from vla_model.model import ModelOutput, VLAModel
from vla_model.presets import get_preset, preset_names, resolve_config

__version__ = "0.1.0"
__all__ = [
    "ConfigError",
    "FlopsPerToken",
    "KVCache",
    "LayoutError",
    "MemoryEstimate",
    "MoEConfig",
    "ModelConfig",
    "ModelOutput",
    "ParallelLayout",
    "ParamCounts",
    "VLAExtrasConfig",
    "VLAModel",
    "count_parameters",
    "describe",
    "flops_per_token",
    "get_preset",
    "memory_per_gpu",
    "preset_names",
    "resolve_config",
    "vocab_size_from_layout",
]
