"""`TrainConfig`: one validated TOML file describes a training run.

```toml
out_dir = "runs/tiny"            # checkpoints/, metrics.jsonl, tensorboard/ go here
engine = "torch"                 # or "megatron" (GPUs: TP/PP/CP/EP/DP, FP8; [parallel], [fp8])
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
[checkpoint]  every, keep_last, save_final, optimizer_format, gather_optimizer_to_one_rank,
              async_save
[logging]     every, tensorboard, progress, peak_tflops
[guards]      max_skipped_steps, spike_factor, spike_window
[parallel]    megatron engine: tensor/pipeline/virtual/context/expert parallel sizes,
              sequence_parallel, use_distributed_optimizer, overlap_grad_reduce, ...
[fp8]         megatron engine: recipe = "none" | "delayed" | "current", first_last_layers_bf16,
              attention, primary_weights
[megatron]    megatron engine: spec, recompute, fusions, MoE token dispatcher
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
    optimizer_format: Literal["dp_reshardable", "fully_reshardable"] = Field(
        default="dp_reshardable",
        description="megatron engine, distributed optimizer state: dp_reshardable = each rank "
        "writes its own shard (no gather; resumes at the same tensor/pipeline/expert split, "
        "any data-parallel size); fully_reshardable = gathered over data parallel into the "
        "model's own shapes at save time (every rank then holds its model partition's FP32 "
        "master weights and Adam moments in CPU memory, 12 bytes per parameter, during the "
        "save), resumes at another tensor/pipeline split and expert split above 1 too",
    )
    gather_optimizer_to_one_rank: bool = Field(
        default=False,
        description="fully_reshardable only (megatron's "
        "distrib_optim_fully_reshardable_mem_efficient): gather the optimizer state over gloo "
        "to data-parallel rank 0 alone, which writes it; the other ranks of each model "
        "partition hold none of it in CPU memory, at the cost of a slower, unparallel write",
    )

    async_save: bool = Field(
        default=False,
        description="megatron engine: write the torch_dist shards in a background process "
        "(megatron's async save): training continues once the state is copied to host memory; "
        "the checkpoint appears (manifest written, folder renamed) when every rank's writer has "
        "finished, checked after each step and at the end of the run",
    )

    @model_validator(mode="after")
    def _gather_needs_fully_reshardable(self) -> CheckpointSection:
        if self.gather_optimizer_to_one_rank and self.optimizer_format != "fully_reshardable":
            raise ValueError(
                "checkpoint.gather_optimizer_to_one_rank needs "
                "checkpoint.optimizer_format = 'fully_reshardable'"
            )
        return self


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


class ParallelSection(_Strict):
    """megatron engine: how the model and the batch are split over `WORLD_SIZE` GPUs
    (data-parallel size = world / (tensor x pipeline x context))."""

    tensor_model_parallel_size: int = Field(default=1, ge=1)
    pipeline_model_parallel_size: int = Field(default=1, ge=1)
    virtual_pipeline_model_parallel_size: int | None = Field(default=None, ge=1)
    context_parallel_size: int = Field(default=1, ge=1)
    expert_model_parallel_size: int = Field(default=1, ge=1)
    expert_tensor_parallel_size: int | None = Field(
        default=None, ge=1, description="default: tensor_model_parallel_size"
    )
    sequence_parallel: bool = Field(default=False, description="needs tensor parallel > 1")
    use_distributed_optimizer: bool = Field(
        default=True, description="shard FP32 master weights and Adam state over data parallel"
    )
    overlap_grad_reduce: bool = False
    overlap_param_gather: bool = False
    grad_reduce_in_fp32: bool = True
    adam_state_dtype: Literal["fp32", "bf16"] = Field(
        default="fp32",
        description="Adam moments in BF16 (needs the precision-aware optimizer): "
        "16 -> 12 bytes per parameter",
    )
    precision_aware_optimizer: bool = Field(
        default=False,
        description="megatron's precision-aware optimizer (needs TE): TE's FusedAdam keeps the "
        "FP32 master weights as 16-bit remainders of the BF16 params (bit-exact FP32) and "
        "writes the BF16 params in the same kernel: 18 -> 16 bytes per parameter",
    )
    recompute_granularity: Literal["none", "selective", "full"] = "none"

    @model_validator(mode="after")
    def _consistent(self) -> ParallelSection:
        if self.sequence_parallel and self.tensor_model_parallel_size == 1:
            raise ValueError("parallel.sequence_parallel needs tensor_model_parallel_size > 1")
        if self.virtual_pipeline_model_parallel_size and self.pipeline_model_parallel_size == 1:
            raise ValueError(
                "parallel.virtual_pipeline_model_parallel_size needs pipeline_model_parallel_size > 1"
            )
        if self.overlap_param_gather and not self.use_distributed_optimizer:
            raise ValueError("parallel.overlap_param_gather needs use_distributed_optimizer")
        if self.precision_aware_optimizer and not self.use_distributed_optimizer:
            raise ValueError("parallel.precision_aware_optimizer needs use_distributed_optimizer")
        if self.adam_state_dtype == "bf16" and not self.use_distributed_optimizer:
            raise ValueError("parallel.adam_state_dtype = 'bf16' needs use_distributed_optimizer")
        return self

    @property
    def uses_precision_aware_optimizer(self) -> bool:
        """Whether the run uses megatron's precision-aware optimizer (BF16 moments need it)."""
        return self.precision_aware_optimizer or self.adam_state_dtype == "bf16"

    def optimizer_bytes_per_param(self, *, bf16: bool) -> int:
        """Optimizer state per parameter (sharded over data parallel by the distributed
        optimizer): FP32 master weights (2 bytes as remainders of BF16 params with the
        precision-aware optimizer) + Adam moments."""
        master = 2 if (self.uses_precision_aware_optimizer and bf16) else 4
        return master + (4 if self.adam_state_dtype == "bf16" else 8)

    @property
    def sizes(self) -> tuple[int, int, int, int]:
        """(tensor, pipeline, expert, context) parallel sizes."""
        return (
            self.tensor_model_parallel_size,
            self.pipeline_model_parallel_size,
            self.expert_model_parallel_size,
            self.context_parallel_size,
        )

    @property
    def model_parallel_size(self) -> int:
        return (
            self.tensor_model_parallel_size
            * self.pipeline_model_parallel_size
            * self.context_parallel_size
        )


class FP8Section(_Strict):
    """megatron engine: FP8 GEMMs through Transformer Engine (`recipe = "none"`: BF16).
    `delayed` = delayed scaling (amax history), `current` = per-tensor current scaling."""

    recipe: Literal["none", "delayed", "current"] = "none"
    format: Literal["hybrid", "e4m3"] = Field(
        default="hybrid", description="hybrid: E4M3 forward, E5M2 gradients"
    )
    amax_history_len: int = Field(default=1024, ge=1)
    amax_compute_algo: Literal["max", "most_recent"] = "max"
    first_last_layers_bf16: bool = Field(
        default=False, description="current scaling only (megatron refuses it with delayed)"
    )
    num_layers_at_start_in_bf16: int = Field(default=1, ge=0)
    num_layers_at_end_in_bf16: int = Field(default=1, ge=0)
    attention: bool = Field(
        default=False,
        description="FP8 dot-product attention too (TE/cuDNN fused attention; megatron's "
        "fp8_dot_product_attention): faster attention, coarser softmax inputs. Measured "
        "2026-12-07 (H100, TE 2.11, cuDNN 9.19): no backend for head_dim 64 with GQA, so "
        "vla-1b-dense cannot use it there",
    )
    primary_weights: bool = Field(
        default=False,
        description="keep the BF16 model weights in FP8 (megatron's fp8_param): no per-step "
        "weight cast, half the bytes in the distributed optimizer's param all-gather; the FP32 "
        "master weights stay in the optimizer. Needs use_distributed_optimizer",
    )

    @model_validator(mode="after")
    def _supported(self) -> FP8Section:
        if self.recipe == "delayed" and self.first_last_layers_bf16:
            raise ValueError(
                "first_last_layers_bf16 works with recipe 'current' only: megatron-core "
                "refuses BF16 first/last layers under delayed scaling (one amax reduction spans "
                "the whole model)"
            )
        for name in ("primary_weights", "attention"):
            if getattr(self, name) and self.recipe == "none":
                raise ValueError(f"{name} needs a recipe ('delayed' or 'current')")
        return self


class MegatronSection(_Strict):
    """megatron engine: layer implementation and kernel choices."""

    spec: Literal["auto", "te", "local"] = Field(
        default="auto", description="auto: Transformer Engine layers when TE imports"
    )
    cross_entropy_fusion: bool = Field(default=True, description="fused vocab-parallel CE")
    bias_activation_fusion: bool = Field(
        default=True, description="fused SwiGLU kernel in the MLPs (megatron's bias_swiglu)"
    )
    gradient_accumulation_fusion: bool | None = Field(
        default=None,
        description="weight gradients accumulate straight into the FP32 main-grad buffer; "
        "default: on with the TE spec (TE's kernel in the TE layers; megatron's output layer "
        "too where APEX's kernel imports). true forces megatron's flag (needs APEX)",
    )
    cuda_graph_impl: Literal["none", "local"] = Field(
        default="none",
        description="local: megatron-core's per-layer CUDA graphs (captured after "
        "cuda_graph_warmup_steps calls): the layers replay without per-kernel CPU launch cost, "
        "which leaves the GPU idle at small micro-batches. Needs fixed shapes (no THD document "
        "masking) and no full recompute",
    )
    cuda_graph_warmup_steps: int = Field(default=3, ge=1)
    te_op_fuser: bool = Field(
        default=False,
        description="dense MLPs through TE's operation fuser (megatron's TEFusedMLP): RMSNorm, "
        "FC1, SwiGLU and FC2 as one te.ops.Sequential whose kernels write the SwiGLU output "
        "straight in FC2's FP8 input format. TE spec only; same weights and checkpoint keys. "
        "Not usable yet: on an H100 with TE 2.11 and megatron-core 0.16.1 every step's gradient "
        "norm came out non-finite and the guards skipped it (gpu/RESULTS.md, fifth round)",
    )
    te_activation: bool = Field(
        default=False,
        description="the MLPs' SwiGLU from TE (megatron's use_te_activation_func) instead of "
        "megatron's fused bias_swiglu kernel; replaces bias_activation_fusion. TE spec only",
    )
    moe_token_dispatcher: Literal["alltoall", "allgather"] = "alltoall"
    moe_grouped_gemm: bool = Field(default=True, description="grouped GEMM experts (TE spec)")
    moe_fusions: bool | None = Field(
        default=None,
        description="TE's fused MoE kernels: token permute/unpermute and top-k routing with its "
        "aux-loss scores (megatron's moe_permute_fusion, moe_router_fusion); default: on with "
        "the TE spec",
    )
    manual_gc_interval: int = Field(
        default=0, ge=0, description="run gc.collect() every N steps with automatic gc off (0: off)"
    )


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
    parallel: ParallelSection = Field(default_factory=ParallelSection)
    fp8: FP8Section = Field(default_factory=FP8Section)
    megatron: MegatronSection = Field(default_factory=MegatronSection)

    @model_validator(mode="after")
    def _batch(self) -> TrainConfig:
        if self.global_batch_size % self.micro_batch_size:
            raise ValueError(
                f"global_batch_size ({self.global_batch_size}) must be a multiple of "
                f"micro_batch_size ({self.micro_batch_size})"
            )
        if self.schedule.warmup_steps > self.schedule.train_steps:
            raise ValueError("schedule.warmup_steps exceeds schedule.train_steps")
        if self.engine == "torch":
            megatron_only = [
                name
                for name, section in (("parallel", self.parallel), ("fp8", self.fp8))
                if section != type(section)()
            ]
            if megatron_only:
                raise ValueError(
                    f"[{'], ['.join(megatron_only)}] need engine = 'megatron' (the torch engine "
                    "is data-parallel only, in BF16 autocast or FP32)"
                )
        if self.engine == "torch" and self.checkpoint.async_save:
            raise ValueError(
                "checkpoint.async_save needs engine = 'megatron' (the torch engine writes its "
                "safetensors checkpoints synchronously)"
            )
        if self.engine == "megatron" and self.fp8.recipe != "none" and self.precision == "fp32":
            raise ValueError("fp8 needs precision 'auto' or 'bf16' (FP8 GEMMs, BF16 elsewhere)")
        if self.fp8.primary_weights and not self.parallel.use_distributed_optimizer:
            raise ValueError(
                "fp8.primary_weights needs parallel.use_distributed_optimizer (its FP32 master "
                "weights are cast into the FP8 weights after each step)"
            )
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
