"""The megatron engine: megatron-core on GPUs — TP/PP/CP/EP/DP, distributed optimizer, FP8.

The same `TrainConfig`, data stream, schedule, loss and guards as the torch engine
(`vla_train.engine`), realised with megatron-core 0.16:

- `parallel_state.initialize_model_parallel` from `[parallel]`; one `GPTModel` per (virtual)
  pipeline stage built by `vla_model.megatron.build_gpt_model` (TE layer spec when Transformer
  Engine imports), wrapped in `Float16Module` (BF16) and megatron-core `DistributedDataParallel`;
- megatron-core's optimizer (`get_megatron_optimizer`: Adam with decoupled weight decay on
  matrices, FP32 master weights, the distributed optimizer by default) driven by our LR schedule;
- `get_forward_backward_func()` over `accumulation` micro-batches per data-parallel rank, with
  per-token loss (`calculate_per_token_loss`): the loss is the modality-weighted CE sum over the
  global batch divided by its loss tokens, as in the torch engine; MoE aux/z losses and the
  aux-loss-free expert bias are megatron's own (configured from the same `ModelConfig`);
- packed documents stay apart (`data.document_mask`): THD packed sequences (cu_seqlens) with
  the TE spec, an explicit block-causal mask with the local spec; not with context parallelism
  (refused: TE would need every document padded to a multiple of 2 x CP);
- FP8 from `[fp8]` (delayed or current scaling; first/last layers optionally BF16);
- checkpoints with megatron-core `dist_checkpointing` (torch_dist; model and optimizer are
  sharded state dicts, so a checkpoint saved at one TP/PP size loads at another) in the same
  atomic `step-N/` folders as the torch engine, plus per-rank RNG files and a manifest.

Run under torchrun (`torchrun --nproc_per_node 8 -m vla_train run --config run.toml`); one
process is one GPU. Needs CUDA.
"""

from __future__ import annotations

import functools
import gc
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from vla_model import flops_per_token
from vla_train.checkpoint import (
    MANIFEST,
    CheckpointError,
    CheckpointManifest,
    _fsync,
    _sha256,
    digest_of,
    latest_checkpoint,
    list_checkpoints,
    remove_partial,
    step_dir,
)
from vla_train.checkpoint import (
    read_manifest as read_checkpoint_manifest,
)
from vla_train.config import TrainConfig, TrainConfigError
from vla_train.data import Batch, MixtureStream, micro_batch_indices
from vla_train.engine import CUDA_PEAK_TFLOPS, TrainResult, _dist_env
from vla_train.modalities import TokenModalities
from vla_train.monitor import MetricsLog, Progress, StepGuard, TrainingStopped, memory_stats
from vla_train.schedule import lr_at

DIST_DIR = "dist"  # megatron dist_checkpointing folder inside step-N/
OLD_OPTIMIZER_FORMAT = "dp_reshardable"  # checkpoints whose manifest does not name one


# ---- pure helpers (no megatron, no CUDA: unit-tested on CPU) -----------------------------------


def optimizer_precision_options(
    adam_state_dtype: str, *, precision_aware: bool, bf16: bool
) -> dict[str, Any]:
    """`OptimizerConfig` fields for megatron's precision-aware optimizer (TE's FusedAdam keeps
    the FP32 master weights, as BF16 param + 16-bit remainder when the params are BF16) and the
    Adam moments' dtype."""
    if not precision_aware:
        return {}
    moments = torch.bfloat16 if adam_state_dtype == "bf16" else torch.float32
    return dict(
        use_precision_aware_optimizer=True,
        main_params_dtype=torch.float32,
        exp_avg_dtype=moments,
        exp_avg_sq_dtype=moments,
        store_param_remainders=bf16,
    )


def have_apex_wgrad_kernel() -> bool:
    """APEX's `fused_weight_gradient_mlp_cuda` (weight-grad accumulation in megatron's layers)."""
    import importlib.util

    return importlib.util.find_spec("fused_weight_gradient_mlp_cuda") is not None


def rng_tracker_options(cfg: TrainConfig, *, have_te: bool) -> dict[str, bool]:
    """How megatron's CUDA RNG tracker is built (`model_parallel_cuda_manual_seed` keywords).
    CUDA graphs capture the dropout RNG, so they need graph-safe generator states: TE's tracker
    where TE imports (TE's attention accepts no other while a graph is captured), else
    megatron's cudagraphable one."""
    graphs = cfg.megatron.cuda_graph_impl != "none"
    return {"te_rng_tracker": graphs and have_te, "use_cudagraphable_rng": graphs}


def stage_seed(seed: int, pipeline_rank: int) -> int:
    """The seed of a pipeline stage's weight init and RNG (Megatron-LM's convention): without the
    offset every stage would draw its layers from the same stream, so the first layers of each
    stage would start identical. Pipeline rank 0 (and every run without pipelining) keeps `seed`."""
    return seed + 100 * pipeline_rank


def transformer_overrides(
    cfg: TrainConfig, *, have_te: bool, te_layers: bool | None = None
) -> dict[str, Any]:
    """`TransformerConfig` fields the run sets on top of the model's own (vla-model).
    `te_layers`: the model uses the TE layer spec (default: `have_te`)."""
    p, f, m = cfg.parallel, cfg.fp8, cfg.megatron
    te_layers = have_te if te_layers is None else te_layers
    # megatron's own output layer (ColumnParallelLinear) needs APEX's kernel; without APEX the
    # TE layers get TE's own fused accumulation after construction (`fuse_te_wgrad_accumulation`)
    grad_fusion = (
        te_layers and have_apex_wgrad_kernel()
        if m.gradient_accumulation_fusion is None
        else m.gradient_accumulation_fusion
    )
    bf16 = cfg.precision in ("auto", "bf16")
    kw: dict[str, Any] = dict(
        tensor_model_parallel_size=p.tensor_model_parallel_size,
        pipeline_model_parallel_size=p.pipeline_model_parallel_size,
        virtual_pipeline_model_parallel_size=p.virtual_pipeline_model_parallel_size,
        context_parallel_size=p.context_parallel_size,
        expert_model_parallel_size=p.expert_model_parallel_size,
        expert_tensor_parallel_size=p.expert_tensor_parallel_size or p.tensor_model_parallel_size,
        sequence_parallel=p.sequence_parallel,
        pipeline_dtype=torch.bfloat16 if bf16 else torch.float32,
        calculate_per_token_loss=True,
        cross_entropy_loss_fusion=m.cross_entropy_fusion,
        cross_entropy_fusion_impl="te" if (have_te and m.cross_entropy_fusion) else "native",
        apply_rope_fusion=have_te,
        bias_dropout_fusion=True,
        bias_activation_fusion=m.bias_activation_fusion and not m.te_activation,
        use_te_activation_func=m.te_activation,
        masked_softmax_fusion=False,
        gradient_accumulation_fusion=grad_fusion,
        deterministic_mode=False,
    )
    if m.cuda_graph_impl != "none":
        kw.update(
            cuda_graph_impl=m.cuda_graph_impl,
            cuda_graph_warmup_steps=m.cuda_graph_warmup_steps,
            use_te_rng_tracker=have_te,
        )
    if p.recompute_granularity != "none":
        kw["recompute_granularity"] = p.recompute_granularity
        if p.recompute_granularity == "full":
            kw.update(recompute_method="uniform", recompute_num_layers=1)
    if f.recipe != "none":
        kw.update(
            fp8=f.format,
            fp8_recipe={"delayed": "delayed", "current": "tensorwise"}[f.recipe],
            fp8_amax_history_len=f.amax_history_len,
            fp8_amax_compute_algo=f.amax_compute_algo,
            first_last_layers_bf16=f.first_last_layers_bf16,
            num_layers_at_start_in_bf16=f.num_layers_at_start_in_bf16,
            num_layers_at_end_in_bf16=f.num_layers_at_end_in_bf16,
            fp8_param=f.primary_weights,
            fp8_dot_product_attention=f.attention,
        )
    return kw


def moe_fusion_overrides(cfg: TrainConfig, *, te_layers: bool) -> dict[str, bool]:
    """`TransformerConfig` fields of an MoE model's fused kernels: TE's token permute/unpermute
    and its fused top-k router (same routing and aux-loss scores, fewer kernels and host syncs).
    On by default with the TE spec; asking for them without TE layers is an error."""
    want = cfg.megatron.moe_fusions
    if want and not te_layers:
        raise TrainConfigError(
            "megatron.moe_fusions needs Transformer Engine layers (spec 'te'); they are not used "
            "here — leave it unset or set it to false"
        )
    on = te_layers if want is None else want
    return {"moe_permute_fusion": on, "moe_router_fusion": on}


def wants_te_only_wgrad_fusion(cfg: TrainConfig, *, te_layers: bool) -> bool:
    """Weight-gradient accumulation fused in the TE layers only: the TE spec, the option not
    switched off, and megatron's config fusion off (no APEX for the output layer)."""
    m = cfg.megatron
    return te_layers and m.gradient_accumulation_fusion is None and not have_apex_wgrad_kernel()


def fuse_te_wgrad_accumulation(model: torch.nn.Module) -> int:
    """Let every Transformer Engine layer in `model` accumulate its weight gradient straight
    into the FP32 `main_grad` buffer (TE's own GEMM epilogue, no APEX), as megatron does for the
    whole model when `gradient_accumulation_fusion` is set; returns how many layers changed.
    The model must be wrapped by megatron's DDP (which gives every parameter its `main_grad`)."""
    n = 0
    for mod in model.modules():  # TE modules are the ones with this flag (megatron's own layers
        if getattr(mod, "fuse_wgrad_accumulation", None) is False:  # call it differently)
            mod.fuse_wgrad_accumulation = True
            n += 1
    return n


def check_spec_options(cfg: TrainConfig, spec: str) -> None:
    """Refuse options that need Transformer Engine layers when the model uses `spec` ('te' or
    'local'); every such option is named in one `TrainConfigError`."""
    if spec == "te":
        return
    wanted = [
        name
        for name, on in (
            ("parallel.sequence_parallel", cfg.parallel.sequence_parallel),
            ("megatron.te_op_fuser", cfg.megatron.te_op_fuser),
            ("megatron.te_activation", cfg.megatron.te_activation),
            ("fp8", cfg.fp8.recipe != "none"),
        )
        if on
    ]
    if wanted:
        raise TrainConfigError(
            f"{', '.join(wanted)} need Transformer Engine layers (spec 'te'), but the model uses "
            f"spec '{spec}' (TE does not import, or megatron.spec = 'local'; see "
            "packages/vla-model/gpu/te_setup.sh) — switch them off"
        )


def check_layout(cfg: TrainConfig, world: int) -> int:
    """Validate `[parallel]` against the world size and the model; return the data-parallel
    size. Every problem is named in one `TrainConfigError`."""
    p, mcfg = cfg.parallel, cfg.resolve_model()
    problems = []
    mp = p.model_parallel_size
    if world % mp:
        problems.append(
            f"world size {world} is not divisible by tensor x pipeline x context = {mp}"
        )
    tp = p.tensor_model_parallel_size
    if mcfg.num_attention_heads % tp or mcfg.num_kv_heads % tp:
        problems.append(
            f"tensor_model_parallel_size {tp} must divide the {mcfg.num_attention_heads} heads "
            f"and {mcfg.num_kv_heads} KV heads"
        )
    stages = p.pipeline_model_parallel_size * (p.virtual_pipeline_model_parallel_size or 1)
    if mcfg.num_layers % stages:
        problems.append(f"{mcfg.num_layers} layers do not split into {stages} pipeline stages")
    ep = p.expert_model_parallel_size
    if ep > 1:
        if not mcfg.is_moe:
            problems.append("expert_model_parallel_size > 1 needs an MoE model")
        elif mcfg.moe.num_experts % ep:
            problems.append(f"{mcfg.moe.num_experts} experts do not split over EP={ep}")
        etp = p.expert_tensor_parallel_size or tp
        if world % (etp * ep * p.pipeline_model_parallel_size):
            problems.append(
                f"world size {world} is not divisible by expert-tensor x expert x pipeline "
                f"= {etp * ep * p.pipeline_model_parallel_size}"
            )
    cp = p.context_parallel_size
    if cp > 1 and cfg.seq_length % (2 * cp):
        problems.append(f"seq_length {cfg.seq_length} must be a multiple of 2 x CP = {2 * cp}")
    if cp > 1 and cfg.data.document_mask and cfg.data.reset_position_ids:
        problems.append(
            f"context_parallel_size {cp} with data.document_mask: context parallelism splits "
            "a packed row into 2 x CP chunks, and TE keeps packed documents apart under it only "
            f"when every document is padded to a multiple of 2 x CP = {2 * cp} tokens, which "
            "this data path does not do (attention would cross documents silently); set "
            "data.document_mask = false (documents attend within the whole row, as in "
            "Megatron-LM's default pretraining) or context_parallel_size = 1"
        )
    if p.sequence_parallel and cfg.seq_length % tp:
        problems.append(f"sequence parallel: seq_length {cfg.seq_length} not divisible by TP={tp}")
    dp = max(world // mp, 1)
    per_rank = cfg.global_batch_size // cfg.micro_batch_size
    if per_rank % dp:
        problems.append(
            f"global_batch_size / micro_batch_size = {per_rank} is not divisible by the "
            f"data-parallel size {dp}"
        )
    if p.virtual_pipeline_model_parallel_size and per_rank // max(dp, 1) % (
        p.pipeline_model_parallel_size
    ):
        problems.append(
            "interleaved pipelining needs micro-batches per step divisible by the pipeline size"
        )
    if cfg.megatron.cuda_graph_impl != "none":
        if cfg.data.document_mask and cfg.data.reset_position_ids:
            problems.append(
                "megatron.cuda_graph_impl needs fixed shapes: data.document_mask packs documents "
                "into variable-length sequences (set document_mask = false)"
            )
        if p.recompute_granularity == "full":
            problems.append("megatron.cuda_graph_impl does not work with full recompute")
    problems += _split_problems(cfg, mcfg, world)
    if problems:
        raise TrainConfigError("megatron layout: " + "; ".join(problems))
    return dp


def _split_problems(cfg: TrainConfig, mcfg: Any, world: int) -> list[str]:
    """How the model's matrices split: vocabulary and FFN sizes over TP, expert FFN over expert
    TP, megatron-core's SP rule for MoE with TP, SP with CP; options megatron cannot express.
    Each problem names its field."""
    p = cfg.parallel
    tp, pp, ep, cp = p.sizes
    etp = p.expert_tensor_parallel_size or tp
    out = []
    if cfg.engine == "megatron" and (mcfg.extras.enabled or mcfg.moe is not None):
        from vla_model.megatron import unsupported_options

        out += [f"model: megatron-core cannot express {x}" for x in unsupported_options(mcfg)]
    if mcfg.vocab_size % tp:  # VocabParallelEmbedding / the output layer split the vocabulary
        out.append(
            f"parallel.tensor_model_parallel_size ({tp}) must divide the model's vocab_size "
            f"({mcfg.vocab_size})"
        )
    if not all(mcfg.moe_layers) and mcfg.ffn_hidden_size % tp:
        out.append(
            f"parallel.tensor_model_parallel_size ({tp}) must divide the model's "
            f"ffn_hidden_size ({mcfg.ffn_hidden_size})"
        )
    if mcfg.moe is None:
        if p.expert_tensor_parallel_size not in (None, tp):
            out.append("parallel.expert_tensor_parallel_size needs an MoE model")
    else:
        if mcfg.moe.expert_ffn_hidden_size % etp:
            out.append(
                f"expert tensor parallel size ({etp}) must divide the model's "
                f"moe.expert_ffn_hidden_size ({mcfg.moe.expert_ffn_hidden_size})"
            )
        if ep == 1 and world % (etp * pp):  # check_layout checks this for ep > 1 only
            out.append(
                f"world size {world} is not divisible by expert-tensor x pipeline = {etp * pp}"
            )
        if tp > 1 and not p.sequence_parallel:  # megatron-core's MoELayer raises in training
            out.append(
                "parallel.sequence_parallel must be true for an MoE model with "
                "tensor_model_parallel_size > 1 (megatron-core requires it)"
            )
    if p.sequence_parallel and cp > 1 and (cfg.seq_length // cp) % tp:
        out.append(
            f"seq_length / parallel.context_parallel_size ({cfg.seq_length // cp}) must be "
            f"divisible by parallel.tensor_model_parallel_size ({tp}) with sequence_parallel"
        )
    return out


def document_boundaries(positions: torch.Tensor) -> torch.Tensor:
    """cu_seqlens (int32) of a packed `[b, s]` batch flattened row-major: a document starts
    where positions restart at 0 and at every row start."""
    b, s = positions.shape
    starts = positions == 0
    starts[:, 0] = True
    idx = torch.nonzero(starts.reshape(-1), as_tuple=False).flatten()
    end = torch.tensor([b * s], device=positions.device, dtype=idx.dtype)
    return torch.cat([idx, end]).to(torch.int32)


def block_causal_mask(positions: torch.Tensor) -> torch.Tensor:
    """`[b, 1, s, s]` bool mask, True = masked: causal and within each packed document."""
    doc = (positions == 0).cumsum(dim=1)
    s = positions.shape[1]
    causal = torch.ones(s, s, dtype=torch.bool, device=positions.device).triu(1)
    other_doc = doc[:, :, None] != doc[:, None, :]
    return (causal[None] | other_doc)[:, None]


def loss_terms(
    token_loss: torch.Tensor,
    loss_mask: torch.Tensor,
    modality: torch.Tensor,
    weights_by_code: torch.Tensor | None,
    n_mod: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(weighted CE sum, loss-token count, report) of one micro-batch. `report` =
    `[weighted sum, count, ce sum per modality..., count per modality...]` (float64)."""
    ce = token_loss.float()
    w = loss_mask if weights_by_code is None else loss_mask * weights_by_code[modality]
    lm_sum = (ce * w).sum()
    count = loss_mask.sum()
    report = torch.zeros(2 + 2 * n_mod, dtype=torch.float64, device=ce.device)
    report[0] = lm_sum.detach().double()
    report[1] = count.double()
    sel = loss_mask.reshape(-1) > 0
    mod = modality.reshape(-1)[sel]
    report[2 : 2 + n_mod] = torch.bincount(
        mod, weights=ce.detach().reshape(-1)[sel].double(), minlength=n_mod
    )[:n_mod]
    report[2 + n_mod :] = torch.bincount(mod, minlength=n_mod)[:n_mod].double()
    return lm_sum, count, report


# ---- the engine --------------------------------------------------------------------------------


class MegatronTrainer:
    """Runs `cfg` (engine = "megatron") on this process's GPU, resuming from the latest
    checkpoint in `out_dir/checkpoints` unless `resume=False`."""

    def __init__(self, cfg: TrainConfig, *, resume: bool = True) -> None:
        if cfg.engine != "megatron":
            raise TrainConfigError(f"MegatronTrainer runs engine = 'megatron', not '{cfg.engine}'")
        from vla_model.megatron import cpu_forward_enabled

        on_gpu = torch.cuda.is_available()
        if not on_gpu and not cpu_forward_enabled():  # tests run it on CPU under gloo
            raise TrainConfigError(
                "the megatron engine needs CUDA GPUs (megatron-core's DDP, optimizer and "
                "schedules allocate on CUDA); use engine = 'torch' on CPU"
            )
        from megatron.core import parallel_state as ps
        from megatron.core.tensor_parallel.random import model_parallel_cuda_manual_seed

        from vla_model.megatron import have_transformer_engine, resolve_spec

        self.cfg = cfg
        self.rank, self.world, self.local_rank = _dist_env()
        if on_gpu:
            torch.cuda.set_device(self.local_rank)
        self.device = torch.device("cuda", self.local_rank) if on_gpu else torch.device("cpu")
        if not dist.is_initialized():
            if self.world == 1:
                os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
                os.environ.setdefault("MASTER_PORT", str(_free_port()))
            backend = "nccl" if on_gpu else "gloo"
            dist.init_process_group(backend, rank=self.rank, world_size=self.world)
        self.is_main = self.rank == 0
        self.dp = check_layout(cfg, self.world)
        p = cfg.parallel
        if not ps.model_parallel_is_initialized():
            ps.initialize_model_parallel(
                tensor_model_parallel_size=p.tensor_model_parallel_size,
                pipeline_model_parallel_size=p.pipeline_model_parallel_size,
                virtual_pipeline_model_parallel_size=p.virtual_pipeline_model_parallel_size,
                context_parallel_size=p.context_parallel_size,
                expert_model_parallel_size=p.expert_model_parallel_size,
                expert_tensor_parallel_size=p.expert_tensor_parallel_size,
            )
        self.ps = ps
        seed = stage_seed(cfg.seed, ps.get_pipeline_model_parallel_rank())
        torch.manual_seed(seed)
        self.have_te = have_transformer_engine()
        model_parallel_cuda_manual_seed(seed, **rng_tracker_options(cfg, have_te=self.have_te))
        self.dp_rank = ps.get_data_parallel_rank()
        self.accum = cfg.accumulation_steps(self.dp)
        self.bf16 = cfg.precision in ("auto", "bf16")
        self.spec = resolve_spec(cfg.megatron.spec)
        self.precision_aware = cfg.parallel.uses_precision_aware_optimizer
        if self.precision_aware and not self.have_te:
            raise TrainConfigError(
                "parallel.precision_aware_optimizer / adam_state_dtype = 'bf16' need Transformer "
                "Engine (its FusedAdam); it does not import here"
            )
        check_spec_options(cfg, self.spec)
        self.mcfg = cfg.resolve_model()
        self.modalities = TokenModalities.from_path(cfg.data.vocab_layout)
        self.n_mod = len(self.modalities.names)
        weights = torch.ones(self.n_mod, device=self.device)
        for name, w in cfg.loss.modality_weights.items():
            weights[self.modalities.code(name)] = w
        self.weights_by_code = None if bool((weights == 1).all()) else weights
        self.document_mask = cfg.data.document_mask and cfg.data.reset_position_ids
        if self.document_mask and p.context_parallel_size > 1:
            raise TrainConfigError(
                "data.document_mask with context parallelism is not supported: set "
                "data.document_mask = false or context_parallel_size = 1"
            )

        self.chunks = self._build_model()
        from megatron.core.utils import get_model_config

        self.model_config = get_model_config(self.chunks[0])
        self.optimizer = self._build_optimizer()
        self._wire_model_config()

        self.stream = MixtureStream(cfg, self.modalities)
        if self.stream.eod >= self.mcfg.vocab_size:
            raise TrainConfigError(f"EOD id {self.stream.eod} >= vocab_size {self.mcfg.vocab_size}")
        self.guard = StepGuard(
            cfg.guards.max_skipped_steps,
            cfg.guards.spike_factor,
            cfg.guards.spike_window,
            cfg.guards.spike_min_history,
        )
        self.ckpt_root = cfg.out_dir / "checkpoints"
        self.async_saves = None  # megatron's queue of background checkpoint writes
        if cfg.checkpoint.async_save:
            from megatron.core.dist_checkpointing.strategies.async_utils import AsyncCallsQueue

            self.async_saves = AsyncCallsQueue()
        self.step = 0
        self.resumed_from: Path | None = None
        if resume:
            self._maybe_resume()
        self.metrics = MetricsLog(cfg.out_dir, cfg.logging.tensorboard, enabled=self.is_main)
        if self.is_main:
            self.metrics.truncate_after(self.step)
            (cfg.out_dir / "train_config.json").write_text(cfg.to_json())
        self.flops_per_token = flops_per_token(self.mcfg, cfg.seq_length).total
        peak = cfg.logging.peak_tflops or CUDA_PEAK_TFLOPS
        self.peak_flops = peak * 1e12

    # ---- construction -------------------------------------------------------------------------

    def _build_model(self) -> list[torch.nn.Module]:
        from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
        from megatron.core.transformer.module import Float16Module

        from vla_model.megatron import build_gpt_model

        cfg, ps = self.cfg, self.ps
        p = cfg.parallel
        overrides = transformer_overrides(cfg, have_te=self.have_te, te_layers=self.spec == "te")
        experts = None
        if self.mcfg.is_moe:
            experts = (
                "grouped"
                if (self.spec == "te" and cfg.megatron.moe_grouped_gemm)
                else ("sequential")
            )
            overrides.update(moe_fusion_overrides(cfg, te_layers=self.spec == "te"))
        vpp = p.virtual_pipeline_model_parallel_size
        chunks = []
        for vp in range(vpp or 1):
            vp_stage = vp if vpp else None
            model = build_gpt_model(
                self.mcfg,
                self.spec,
                params_dtype=torch.bfloat16 if self.bf16 else torch.float32,
                experts=experts,
                use_cpu_initialization=self.device.type == "cpu",
                pre_process=ps.is_pipeline_first_stage(ignore_virtual=False, vp_stage=vp_stage),
                post_process=ps.is_pipeline_last_stage(ignore_virtual=False, vp_stage=vp_stage),
                vp_stage=vp_stage,
                te_op_fuser=cfg.megatron.te_op_fuser,
                token_dispatcher=cfg.megatron.moe_token_dispatcher
                if p.expert_model_parallel_size > 1
                else "allgather",
                **overrides,
            )
            model.to(self.device)
            if self.bf16:
                model = Float16Module(model.config, model)
            chunks.append(model)
        ddp_config = DistributedDataParallelConfig(
            grad_reduce_in_fp32=p.grad_reduce_in_fp32,
            overlap_grad_reduce=p.overlap_grad_reduce,
            overlap_param_gather=p.overlap_param_gather,
            use_distributed_optimizer=p.use_distributed_optimizer,
            fp8_param_gather=cfg.fp8.primary_weights,
            check_for_nan_in_grad=False,
            bucket_size=None if not p.overlap_grad_reduce else 40_000_000,
        )
        inner = chunks[0].module if self.bf16 else chunks[0]
        wrapped = [
            DistributedDataParallel(
                config=inner.config, ddp_config=ddp_config, module=c, disable_bucketing=i > 0
            )
            for i, c in enumerate(chunks)
        ]
        for w in wrapped:
            w.broadcast_params()
        self.te_wgrad_fused_layers = 0
        if wants_te_only_wgrad_fusion(cfg, te_layers=self.spec == "te"):
            self.te_wgrad_fused_layers = sum(fuse_te_wgrad_accumulation(w) for w in wrapped)
            # the output layer read the flag at construction (off: no APEX); what reads it from
            # now on (megatron's CUDA-graph runner, which then restores `grad_added_to_main_grad`
            # after a backward replay) must see the fused TE layers
            for w in wrapped:
                unwrap_chunk(w).config.gradient_accumulation_fusion = True
        return wrapped

    def _build_optimizer(self):
        from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer

        o, p = self.cfg.optimizer, self.cfg.parallel
        config = OptimizerConfig(
            optimizer="adam",
            lr=o.lr,
            min_lr=o.min_lr,
            weight_decay=o.weight_decay,
            adam_beta1=o.betas[0],
            adam_beta2=o.betas[1],
            adam_eps=o.eps,
            clip_grad=o.grad_clip,
            bf16=self.bf16,
            params_dtype=torch.bfloat16 if self.bf16 else torch.float32,
            use_distributed_optimizer=p.use_distributed_optimizer,
            overlap_param_gather=p.overlap_param_gather,
            **optimizer_precision_options(
                p.adam_state_dtype, precision_aware=self.precision_aware, bf16=self.bf16
            ),
        )
        optimizer = get_megatron_optimizer(config, self.chunks)
        keep_torch_adam_step_on_model_space_load(optimizer)
        return optimizer

    def _wire_model_config(self) -> None:
        from megatron.core.distributed import finalize_model_grads

        c, p = self.model_config, self.cfg.parallel
        c.finalize_model_grads_func = finalize_model_grads
        c.grad_scale_func = self.optimizer.scale_loss
        if p.overlap_grad_reduce:
            fns = [m.no_sync for m in self.chunks]
            c.no_sync_func = fns[0] if len(fns) == 1 else fns
        if p.overlap_param_gather:
            fns = [m.start_param_sync for m in self.chunks]
            c.param_sync_func = fns[0] if len(fns) == 1 else fns

    # ---- one step -----------------------------------------------------------------------------

    def _micro_batches(self, step: int) -> list[Batch]:
        return [
            self.stream.batch(micro_batch_indices(step, m, self.cfg, self.dp_rank, self.dp)).to(
                self.device
            )
            for m in range(self.accum)
        ]

    def _forward_step(self, data_iterator, model):
        """megatron's `forward_step_func`: one micro-batch through this stage's model chunk."""
        from megatron.core.packed_seq_params import PackedSeqParams
        from megatron.core.utils import get_batch_on_this_cp_rank

        b: Batch = next(data_iterator)
        tokens, labels, positions = b.tokens, b.labels, b.positions
        loss_mask, modality = b.loss_mask, b.modality
        mask, packed = None, None
        if self.document_mask and self.spec == "te":
            cu = document_boundaries(positions)
            n = tokens.numel()
            packed = PackedSeqParams(
                qkv_format="thd",
                cu_seqlens_q=cu,
                cu_seqlens_kv=cu,
                max_seqlen_q=int((cu[1:] - cu[:-1]).max()),
                max_seqlen_kv=int((cu[1:] - cu[:-1]).max()),
            )
            tokens, labels, positions = (t.reshape(1, n) for t in (tokens, labels, positions))
            loss_mask, modality = loss_mask.reshape(1, n), modality.reshape(1, n)
        elif self.document_mask:
            mask = block_causal_mask(positions)
        elif self.spec == "local":
            s = positions.shape[1]
            mask = torch.ones(s, s, dtype=torch.bool, device=self.device).triu(1)[None, None]
        if self.cfg.parallel.context_parallel_size > 1:
            parts = get_batch_on_this_cp_rank(
                {
                    "tokens": tokens,
                    "labels": labels,
                    "position_ids": positions,
                    "loss_mask": loss_mask,
                    "modality": modality,
                }
            )
            tokens, labels, positions = parts["tokens"], parts["labels"], parts["position_ids"]
            loss_mask, modality = parts["loss_mask"], parts["modality"]
        out = model(tokens, positions, mask, labels=labels, packed_seq_params=packed)
        return out, functools.partial(self._loss, loss_mask, modality)

    def _loss(self, loss_mask, modality, token_loss):
        lm_sum, count, report = loss_terms(
            token_loss, loss_mask, modality, self.weights_by_code, self.n_mod
        )
        if self.cfg.parallel.context_parallel_size > 1:  # the loss is split over the CP ranks
            dist.all_reduce(report, group=self.ps.get_context_parallel_group())
        return lm_sum, count.to(torch.int), {"report": report}

    def _reduce_report(self, reduced: list[dict]) -> torch.Tensor:
        """Sum the micro-batch reports over the step and the data-parallel ranks; every rank
        gets the result (from the last pipeline stage)."""
        total = torch.zeros(2 + 2 * self.n_mod, dtype=torch.float64, device=self.device)
        for r in reduced:
            total += r["report"]
        ps = self.ps
        if ps.is_pipeline_last_stage(ignore_virtual=True):
            dist.all_reduce(total, group=ps.get_data_parallel_group())
        if ps.get_pipeline_model_parallel_world_size() > 1:
            src = ps.get_pipeline_model_parallel_last_rank()
            dist.broadcast(total, src=src, group=ps.get_pipeline_model_parallel_group())
        return total

    def _optimizer_step(self, step: int, loss: float) -> tuple[str | None, float]:
        """megatron's optimizer step split open so the guards see loss and grad norm first:
        prepare grads, global grad norm, guard, clip by that norm, step."""
        from megatron.core.optimizer.clip_grads import clip_grad_by_total_norm_fp32

        opt = self.optimizer
        found_inf = opt.prepare_grads()
        grad_norm = float("inf") if found_inf else float(opt.get_grad_norm())
        reason = self.guard.check(step + 1, loss, grad_norm)
        if reason is not None:
            if not math.isfinite(grad_norm):
                bad = nonfinite_grad_names([unwrap_chunk(c) for c in self.chunks])
                if bad:  # name the culprits (this rank's grad buffers) in the skip record
                    more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
                    reason += f"; non-finite gradients on rank {self.rank}: "
                    reason += ", ".join(bad[:5]) + more
                    self.guard.skipped[-1].update(reason=reason, nonfinite_grads=bad[:50])
            return reason, grad_norm
        clip = self.cfg.optimizer.grad_clip
        for sub in getattr(opt, "chained_optimizers", [opt]):
            params = sub.get_parameters()
            if clip > 0 and params:
                clip_grad_by_total_norm_fp32(
                    params,
                    max_norm=clip,
                    total_norm=grad_norm,
                    use_decoupled_grad=sub.config.use_precision_aware_optimizer_no_fp8_or_ds_fp8,
                )
        opt.step_with_ready_grads()
        return None, grad_norm

    def train_step(self, step: int) -> dict[str, Any]:
        """Forward/backward over the step's micro-batches (pipelined), guard, optimizer step."""
        from megatron.core.pipeline_parallel import get_forward_backward_func

        cfg = self.cfg
        lr = lr_at(step, cfg.optimizer, cfg.schedule)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        for c in self.chunks:
            c.zero_grad_buffer()
        self.optimizer.zero_grad()
        batches = self._micro_batches(step)
        iters = iter(batches)
        data = [iters] if len(self.chunks) == 1 else [iter(batches) for _ in self.chunks]
        # THD packing turns a [b, s] micro-batch into one [1, b*s] sequence (pipeline p2p shapes)
        packed = self.document_mask and self.spec == "te"
        seq, mbs = (cfg.seq_length, cfg.micro_batch_size)
        if packed:
            seq, mbs = cfg.seq_length * cfg.micro_batch_size, 1
        reduced = get_forward_backward_func()(
            forward_step_func=self._forward_step,
            data_iterator=data if len(self.chunks) > 1 else data[0],
            model=self.chunks,
            num_microbatches=self.accum,
            seq_length=seq,
            micro_batch_size=mbs,
            decoder_seq_length=seq,
            forward_only=False,
        )
        sums = self._reduce_report(reduced).tolist()  # one device-to-host copy
        n_tokens = max(sums[1], 1.0)
        loss = sums[0] / n_tokens
        reason, grad_norm = self._optimizer_step(step, loss)
        rec: dict[str, Any] = {"step": step + 1, "loss": loss, "grad_norm": grad_norm, "lr": lr}
        n = self.n_mod
        for c, name in enumerate(self.modalities.names):
            cnt = sums[2 + n + c]
            if cnt > 0:
                rec[f"loss_{name}"] = sums[2 + c] / cnt
        rec["loss_tokens"] = int(sums[1])
        rec.update(self._moe_metrics())
        if reason is not None:
            rec["skipped"] = reason
        return rec

    def _moe_metrics(self) -> dict[str, float]:
        """Mean over layers of megatron's tracked MoE losses (load balancing, z-loss)."""
        if not self.mcfg.is_moe:
            return {}
        try:
            from megatron.core.transformer.moe.moe_utils import (
                clear_aux_losses_tracker,
                get_moe_layer_wise_logging_tracker,
                reduce_aux_losses_tracker_across_ranks,
            )
        except ImportError:  # pragma: no cover - other megatron versions
            return {}
        reduce_aux_losses_tracker_across_ranks()
        out = {}
        for name, entry in get_moe_layer_wise_logging_tracker().items():
            values = entry["values"].float()
            layers = max(int((values != 0).sum()), 1)
            out[f"moe_{name}"] = float(values.sum()) / layers / self.accum
        clear_aux_losses_tracker()
        return out

    # ---- checkpoints --------------------------------------------------------------------------

    def _sharded_state_dict(self, optimizer_format: str, loading: bool = False) -> dict[str, Any]:
        """The model's and the optimizer's sharded state; `optimizer_format` is megatron's
        `distrib_optim_sharding_type` (`checkpoint.optimizer_format`, or the saved one on load).
        With `checkpoint.gather_optimizer_to_one_rank` a save gathers the fully_reshardable
        state on data-parallel rank 0 only (megatron leaves the other ranks' part empty)."""
        model_sd = model_sharded_state_dict(self.chunks)
        sd = dict(model_sd)
        gather_to_one = self.cfg.checkpoint.gather_optimizer_to_one_rank and not loading
        sd["optimizer"] = self.optimizer.sharded_state_dict(
            model_sd,
            is_loading=loading,
            metadata={
                "distrib_optim_sharding_type": optimizer_format,
                "distrib_optim_fully_reshardable_mem_efficient": gather_to_one,
            },
        )
        return sd

    def _rng_tensors(self) -> dict[str, torch.Tensor]:
        from megatron.core.tensor_parallel.random import get_cuda_rng_tracker

        out = {"torch_cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            out["torch_cuda"] = torch.cuda.get_rng_state()
        for name, state in tracker_state_tensors(get_cuda_rng_tracker().get_states()).items():
            out[f"tracker/{name}"] = state
        return out

    def save(self) -> Path | None:
        """Checkpoint after `self.step` optimizer steps (collective over all ranks). With
        `checkpoint.async_save` the shards are written in the background and the folder appears
        at a later `finish_saves`; the returned path is where it will be."""
        from megatron.core import dist_checkpointing
        from safetensors.torch import save_file

        root = self.ckpt_root
        final = step_dir(root, self.step)
        tmp = root / f".tmp-{final.name}"
        if self.is_main:
            root.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                shutil.rmtree(tmp)
            (tmp / DIST_DIR).mkdir(parents=True)
        dist.barrier()
        self._gather_params()
        fmt = self.cfg.checkpoint.optimizer_format
        rng_file = tmp / f"rng-rank{self.rank}.safetensors"
        save_file({k: v.contiguous() for k, v in self._rng_tensors().items()}, str(rng_file))
        _fsync(rng_file)
        manifest = self._manifest(fmt)  # the state of now, not of when the write finishes
        sd = self._sharded_state_dict(fmt)
        if self.async_saves is None:
            dist_checkpointing.save(sd, str(tmp / DIST_DIR))
            self._publish(tmp, final, manifest)
            return final
        request = dist_checkpointing.save(sd, str(tmp / DIST_DIR), async_sharded_save=True)
        request.add_finalize_fn(functools.partial(self._publish, tmp, final, manifest))
        self.async_saves.schedule_async_request(request)
        return final

    def finish_saves(self, *, wait: bool) -> None:
        """Publish the background checkpoint writes that have finished on every rank (all of
        them with `wait`); collective. A no-op without `checkpoint.async_save`."""
        if self.async_saves is not None:
            self.async_saves.maybe_finalize_async_calls(blocking=wait)

    def _manifest(self, fmt: str) -> CheckpointManifest:
        """This step's checkpoint manifest, without the file digests."""
        return CheckpointManifest(
            engine="megatron",
            step=self.step,
            consumed_samples=self.step * self.cfg.global_batch_size,
            tokens_seen=self.step * self.cfg.tokens_per_step,
            world_size=self.world,
            model=json.loads(self.mcfg.to_json()),
            param_groups=[{"lr": g["lr"]} for g in self.optimizer.param_groups[:1]],
            trainer_state={
                "guard": json.loads(json.dumps(self.guard.state())),  # a copy of now's
                "parallel": self.cfg.parallel.model_dump(mode="json"),
                "fp8": self.cfg.fp8.model_dump(mode="json"),
                "optimizer_format": fmt,
            },
            config_digest=digest_of(self.cfg.model_dump(mode="json")),
            files={},
        )

    def _publish(self, tmp: Path, final: Path, manifest: CheckpointManifest) -> None:
        """Every rank's files of `tmp` are written: digest them, write the manifest and rename
        `tmp` to `final` (rank 0), drop checkpoints beyond `keep_last`; collective."""
        dist.barrier()
        files = self._hash_files(tmp)
        if self.is_main:
            manifest = manifest.model_copy(update={"files": files})
            (tmp / MANIFEST).write_text(manifest.model_dump_json(indent=1) + "\n")
            _fsync(tmp / MANIFEST)
            if final.exists():
                shutil.rmtree(final)
            os.rename(tmp, final)
            _fsync(self.ckpt_root)
            for stale in list_checkpoints(self.ckpt_root)[: -self.cfg.checkpoint.keep_last]:
                shutil.rmtree(stale, ignore_errors=True)
        dist.barrier()

    def _hash_files(self, folder: Path) -> dict[str, str] | None:
        """SHA-256 of every file of a written checkpoint folder, spread over the ranks: each
        hashes the files it wrote (`rank_of_file`), rank 0 also those no rank claims; rank 0
        gets the whole `{relative path: digest}` map, the others None. At 256 ranks the
        manifest costs one rank's share of the bytes instead of all of them."""
        names = sorted(str(f.relative_to(folder)) for f in folder.rglob("*") if f.is_file())
        mine = {n: _sha256(folder / n) for n in names if rank_of_file(n) == self.rank}
        parts: list[dict[str, str] | None] | None = [None] * self.world if self.is_main else None
        dist.gather_object(mine, parts, dst=0)
        if not self.is_main:
            return None
        files = {k: v for part in parts for k, v in (part or {}).items()}
        files.update({n: _sha256(folder / n) for n in names if n not in files})
        return dict(sorted(files.items()))

    def _verify_files(self, folder: Path, files: dict[str, str]) -> None:
        """Check every file of a checkpoint against its manifest digest before loading, the
        files spread round-robin over the ranks; collective. Raises `CheckpointError` on every
        rank, naming the files that differ."""
        names = sorted(files)
        bad = [n for n in names[self.rank :: self.world] if _sha256(folder / n) != files[n]]
        every: list[list[str] | None] = [None] * self.world
        dist.all_gather_object(every, bad)
        bad = sorted(n for part in every for n in (part or []))
        if bad:
            raise CheckpointError(
                f"{folder}: {len(bad)} file(s) differ from their SHA-256 in {MANIFEST} (corrupt "
                f"or changed since the save): {', '.join(bad[:5])}"
            )

    def _gather_params(self) -> None:
        """With `overlap_param_gather` an optimizer step updates only this rank's shard of the
        params; the rest arrive in the next forward's pre-hooks. Gather them now, synchronously
        (before a checkpoint: dist_checkpointing writes each weight from one DP replica)."""
        p = self.cfg.parallel
        if p.overlap_param_gather and p.use_distributed_optimizer:
            for c in self.chunks:
                c.start_param_sync(force_sync=True)

    def _maybe_resume(self) -> None:
        if self.is_main and self.ckpt_root.is_dir():
            remove_partial(self.ckpt_root)
        dist.barrier()
        path = latest_checkpoint(self.ckpt_root)
        if path is None:
            return
        self.load(path, optimizer=True)
        m = read_manifest(path)
        self.guard.load_state(m.trainer_state.get("guard", {}))
        self.step = m.step
        self.resumed_from = path

    def load(self, path: Path, *, optimizer: bool = True) -> None:
        """Load a checkpoint folder (any TP/PP layout) into this run's model (and optimizer,
        and this rank's RNG when it was saved with the same world size)."""
        from megatron.core import dist_checkpointing
        from safetensors.torch import load_file

        m = read_manifest(path)
        if m.engine != "megatron":
            raise CheckpointError(f"{path}: a '{m.engine}'-engine checkpoint, not megatron")
        self._verify_files(path, m.files)
        if m.model != json.loads(self.mcfg.to_json()):
            raise TrainConfigError(f"{path}: checkpoint was made for another model config")
        fmt = m.trainer_state.get("optimizer_format", OLD_OPTIMIZER_FORMAT)
        if optimizer:
            saved = m.trainer_state.get("parallel", {})
            problem = optimizer_layout_problem(saved, self.cfg, fmt)
            if problem:
                raise CheckpointError(f"{path}: {problem}")
            init_torch_adam_state(self.optimizer)
        sd = self._sharded_state_dict(fmt, loading=True)
        if not optimizer:
            sd.pop("optimizer")
        loaded = dist_checkpointing.load(sd, str(path / DIST_DIR))
        load_model_state(self.chunks, loaded)
        if optimizer:
            self.optimizer.load_state_dict(hide_padding_flags(loaded["optimizer"]))
            restore_torch_adam_steps(self.optimizer)
        rng = path / f"rng-rank{self.rank}.safetensors"
        if m.world_size == self.world and rng.is_file():
            from megatron.core.tensor_parallel.random import get_cuda_rng_tracker

            t = load_file(str(rng))
            torch.set_rng_state(t["torch_cpu"])
            if self.device.type == "cuda" and "torch_cuda" in t:
                torch.cuda.set_rng_state(t["torch_cuda"])
            tracker = get_cuda_rng_tracker()
            saved = {
                k.removeprefix("tracker/"): v for k, v in t.items() if k.startswith("tracker/")
            }
            tracker.set_states(restore_tracker_states(tracker.get_states(), saved))

    # ---- the loop -----------------------------------------------------------------------------

    def train(self, stop_after: int | None = None) -> TrainResult:
        """Run to `schedule.train_steps` (or `stop_after` more steps); checkpoints on the way."""
        cfg = self.cfg
        total = cfg.schedule.train_steps
        end = total if stop_after is None else min(total, self.step + stop_after)
        result = TrainResult(steps_done=self.step, start_step=self.step)
        progress = Progress(total, self.step, cfg.logging.progress and self.is_main)
        for c in self.chunks:
            c.train()
        gc_every = cfg.megatron.manual_gc_interval
        if gc_every:
            gc.disable()
        elapsed, tokens = 0.0, 0
        # no device sync around a step: the host prepares the next batch and launches its first
        # kernels while the optimizer's still run; a step's time is the wall time since the
        # previous step returned (each step syncs once, on its loss and grad norm)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        try:
            while self.step < end:
                rec = self.train_step(self.step)
                now = time.perf_counter()
                dt, t0 = now - t0, now
                self.step += 1
                if gc_every and self.step % gc_every == 0:
                    gc.collect()
                elapsed += dt
                tokens += cfg.tokens_per_step
                tps = cfg.tokens_per_step / dt
                rec["tokens_per_s"] = tps
                rec["step_time_s"] = dt
                rec["tokens_seen"] = self.step * cfg.tokens_per_step
                rec["tflops_per_device"] = tps * self.flops_per_token / self.world / 1e12
                rec["mfu"] = tps * self.flops_per_token / (self.peak_flops * self.world)
                rec.update(memory_stats(self.device))
                result.losses.append(rec["loss"])
                if self.step % cfg.logging.every == 0 or "skipped" in rec:
                    self.metrics.log(rec)
                progress.update(
                    self.step, f"loss {rec['loss']:.4f} lr {rec['lr']:.2e} {tps:,.0f} tok/s"
                )
                if self.guard.must_stop:
                    report = {
                        "step": self.step,
                        "max_skipped_steps": cfg.guards.max_skipped_steps,
                        "skipped": self.guard.skipped,
                    }
                    if self.is_main:
                        (cfg.out_dir / "stop_report.json").write_text(json.dumps(report, indent=1))
                    raise TrainingStopped(
                        f"stopped at step {self.step}: {len(self.guard.skipped)} skipped steps "
                        f"exceed guards.max_skipped_steps={cfg.guards.max_skipped_steps} "
                        f"(see {cfg.out_dir / 'stop_report.json'})",
                        report,
                    )
                if self.step % cfg.checkpoint.every == 0 or (
                    self.step == total and cfg.checkpoint.save_final
                ):
                    result.final_checkpoint = self.save()
                    t0 = time.perf_counter()  # checkpoint time is not step time
                self.finish_saves(wait=False)
            self.finish_saves(wait=True)
        except TrainingStopped:
            self.finish_saves(wait=True)  # every rank stops here: the last checkpoint lands
            raise
        finally:
            if gc_every:
                gc.enable()
            progress.close()
            self.metrics.close()
        result.steps_done = self.step
        result.skipped = list(self.guard.skipped)
        result.tokens_per_s = tokens / elapsed if elapsed else 0.0
        return result

    @torch.no_grad()
    def logits(self, tokens: torch.Tensor) -> torch.Tensor | None:
        """Full-vocabulary logits `[b, s, vocab]` of a token batch (eval mode, no document
        mask; tensor parallel shards gathered). Needs pipeline size 1; every rank returns them."""
        from megatron.core.tensor_parallel import gather_from_tensor_model_parallel_region

        if self.cfg.parallel.pipeline_model_parallel_size > 1:
            raise TrainConfigError("logits() needs pipeline_model_parallel_size = 1")
        model = self.chunks[0]
        self._gather_params()
        model.eval()
        tokens = tokens.to(self.device)
        s = tokens.shape[1]
        pos = torch.arange(s, device=self.device)[None].expand(tokens.shape[0], -1)
        mask = None
        if self.spec == "local":
            mask = torch.ones(s, s, dtype=torch.bool, device=self.device).triu(1)[None, None]
        out = model(tokens, pos, mask)
        model.train()
        if self.cfg.parallel.tensor_model_parallel_size > 1:
            out = gather_from_tensor_model_parallel_region(out)
        return out[..., : self.mcfg.vocab_size].float()


def rank_of_file(name: str) -> int | None:
    """The rank that wrote a checkpoint file, from its name: torch_dist's `dist/__<rank>_<n>.distcp`
    and our `rng-rank<rank>.safetensors`; None for shared files (metadata, common state)."""
    base = Path(name).name
    if base.startswith("__") and base.endswith(".distcp"):
        head = base[2:].split("_", 1)[0]
        return int(head) if head.isdigit() else None
    if base.startswith("rng-rank") and base.endswith(".safetensors"):
        head = base[len("rng-rank") : -len(".safetensors")]
        return int(head) if head.isdigit() else None
    return None


def tracker_state_tensors(states: dict[str, Any]) -> dict[str, torch.Tensor]:
    """megatron's RNG-tracker states as tensors: the graph-safe tracker (CUDA graphs) keeps
    `torch.Generator` objects, the plain one state tensors."""
    return {
        name: s.get_state() if isinstance(s, torch.Generator) else s for name, s in states.items()
    }


def restore_tracker_states(
    current: dict[str, Any], saved: dict[str, torch.Tensor]
) -> dict[str, Any]:
    """The tracker states to set from a checkpoint's tensors: written into the tracker's own
    generators where it keeps `torch.Generator` objects (graph-safe), else the tensors."""
    out: dict[str, Any] = {}
    for name, tensor in saved.items():
        gen = current.get(name)
        if isinstance(gen, torch.Generator):
            gen.set_state(tensor)
            out[name] = gen
        else:
            out[name] = tensor
    return out


def init_torch_adam_state(optimizer: Any) -> int:
    """Give the torch Adam/AdamW inside megatron's (chained) distributed optimizer its state
    before a checkpoint is loaded into it: zero moments and step 0, exactly what its first step
    would create. Without TE or APEX, megatron-core 0.16.1 reads the Adam step from the
    per-parameter state while building the state dict to load into, and asserts when the state
    is still empty (a fresh run resuming). TE's FusedAdam keeps its step per group and is left
    alone. Returns the number of parameters given a state."""
    done = 0
    for sub in getattr(optimizer, "chained_optimizers", None) or [optimizer]:
        inner = getattr(sub, "optimizer", sub)
        if not isinstance(inner, torch.optim.Adam | torch.optim.AdamW) or len(inner.state):
            continue
        for group in inner.param_groups:
            for p in group["params"]:
                state = inner.state[p]
                on_device = group.get("capturable") or group.get("fused")
                state["step"] = torch.zeros((), device=p.device if on_device else "cpu")
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if group.get("amsgrad"):
                    state["max_exp_avg_sq"] = torch.zeros_like(p)
                done += 1
    return done


# the parallel sizes that change how the distributed optimizer's state is cut into shards
SHARDING_SIZES = (
    "tensor_model_parallel_size",
    "pipeline_model_parallel_size",
    "virtual_pipeline_model_parallel_size",
    "expert_model_parallel_size",
    "expert_tensor_parallel_size",
    "use_distributed_optimizer",
)


def optimizer_layout_problem(
    saved: dict[str, Any], cfg: TrainConfig, optimizer_format: str = "dp_reshardable"
) -> str | None:
    """Why the optimizer state of a checkpoint saved with `[parallel]` = `saved` in
    `optimizer_format` cannot be resumed at `cfg`'s layout, or None. `dp_reshardable` (the
    distributed optimizer's own shards, no gather at save time) reloads only at the same
    tensor/pipeline/expert split; `fully_reshardable` (model-shaped tensors) at any
    tensor/pipeline split and any expert split on the same side of 1 (megatron keeps an MoE
    model's expert parameters in their own optimizer only at EP > 1, so between EP = 1 and
    EP > 1 the saved keys differ). Data parallel may always change."""
    now = cfg.parallel.model_dump(mode="json")
    if optimizer_format == "fully_reshardable":
        fixed, what = ("use_distributed_optimizer",), "the same optimizer kind"
        ep_then, ep_now = (x.get("expert_model_parallel_size", 1) for x in (saved, now))
        if cfg.resolve_model().is_moe and (ep_then == 1) != (ep_now == 1):
            fixed += ("expert_model_parallel_size",)
            what = "an expert split on the same side of 1"
    else:
        fixed, what = SHARDING_SIZES, "the same tensor/pipeline/expert split"

    def size(layout: dict[str, Any], key: str) -> Any:
        if key == "expert_tensor_parallel_size" and layout.get(key) is None:
            return layout.get("tensor_model_parallel_size", 1)  # defaults to TP
        return layout.get(key)

    changed = [
        f"{k} {size(saved, k)} -> {size(now, k)}"
        for k in fixed
        if k in saved and size(saved, k) != size(now, k)
    ]
    if not changed:
        return None
    hint = (
        " (or save with checkpoint.optimizer_format = 'fully_reshardable' to change the "
        "tensor/pipeline split later)"
        if optimizer_format == "dp_reshardable"
        else ""
    )
    return (
        f"its optimizer state ({optimizer_format}) was saved at another layout "
        f"({', '.join(changed)}) and reloads only at {what} (data parallel may change): resume "
        f"with the saved [parallel] sizes{hint}"
    )


def keep_torch_adam_step_on_model_space_load(optimizer: Any) -> int:
    """Let megatron-core 0.16.1 load a `fully_reshardable` optimizer state into torch Adam/AdamW
    (no TE or APEX): `_set_main_param_and_optimizer_states` copies every key of a parameter's
    live state, `step` included, from the loaded tensors, which carry no `step` (it lives in
    the param groups) -> `KeyError: 'step'`. The patched method leaves `step` out of that copy
    (`restore_torch_adam_steps` sets it afterwards). Returns the number of optimizers patched."""
    done = 0
    for sub in getattr(optimizer, "chained_optimizers", None) or [optimizer]:
        inner = getattr(sub, "optimizer", None)
        original = getattr(sub, "_set_main_param_and_optimizer_states", None)
        if original is None or not isinstance(inner, torch.optim.Adam | torch.optim.AdamW):
            continue

        def set_states(model_param, tensors, _sub=sub, _original=original):
            group, order = _sub.model_param_group_index_map[model_param]
            state = _sub.optimizer.state[_sub.optimizer.param_groups[group]["params"][order]]
            step = state.pop("step", None)
            try:
                _original(model_param, tensors)
            finally:
                if step is not None:
                    state["step"] = step

        sub._set_main_param_and_optimizer_states = set_states
        done += 1
    return done


def restore_torch_adam_steps(optimizer: Any) -> int:
    """After a checkpoint load, give every parameter of a torch Adam/AdamW inside megatron's
    (chained) distributed optimizer its own `step` tensor holding the saved step.

    megatron-core 0.16.1 (without TE or APEX) saves that step only in the param groups; on load
    it hands one shared tensor to every parameter's state and then copies the load template's
    per-parameter `step` (the un-stepped state) over it, so the run resumed with step 0 and the
    shared counter went up once per parameter on every step: the wrong Adam bias correction
    from the first resumed step on. Returns the number of parameters set."""
    done = 0
    for sub in getattr(optimizer, "chained_optimizers", None) or [optimizer]:
        inner = getattr(sub, "optimizer", sub)
        if not isinstance(inner, torch.optim.Adam | torch.optim.AdamW):
            continue
        for group in inner.param_groups:
            if "step" not in group:
                continue
            for p in group["params"]:
                state = inner.state.get(p)
                if state is not None and "step" in state:
                    old = state["step"]
                    state["step"] = torch.full_like(old, float(group["step"]))
                    done += 1
    return done


class _PaddingFlagHidden(dict):
    """A dp_reshardable optimizer-state entry whose `padding` flag stays readable by key but is
    left out of `items()`."""

    def items(self):  # type: ignore[override]
        return [(k, v) for k, v in super().items() if k != "padding"]


def hide_padding_flags(state: Any) -> Any:
    """Work around megatron-core 0.16.1 loading a `dp_reshardable` distributed-optimizer state
    into the precision-aware optimizer: it hands every key of a parameter's entry, the boolean
    `padding` flag included, to TE's `FusedAdam.set_scaled_state` ('bool' object has no
    attribute 'dtype'; fixed upstream by Megatron-LM PR #2576). Returns `state` with every such
    entry wrapped so that iteration skips the flag; tensors are not copied."""
    if isinstance(state, dict):
        out = {k: hide_padding_flags(v) for k, v in state.items()}
        return _PaddingFlagHidden(out) if isinstance(state.get("padding"), bool) else out
    if isinstance(state, list):
        return [hide_padding_flags(v) for v in state]
    return state


def nonfinite_grad_names(models: list[torch.nn.Module]) -> list[str]:
    """Names of the parameters whose gradient (megatron's `main_grad`, else `.grad`) holds a
    NaN or inf, in parameter order; one name per tensor (the diagnosis of a skipped step)."""
    names = []
    for i, model in enumerate(models):
        prefix = f"chunk{i}." if len(models) > 1 else ""
        for name, p in model.named_parameters():
            g = getattr(p, "main_grad", None)
            g = p.grad if g is None else g
            if g is not None and not bool(torch.isfinite(g).all()):
                names.append(prefix + name)
    return names


def unwrap_chunk(chunk: torch.nn.Module) -> torch.nn.Module:
    """The model inside megatron's wrappers (DDP, FSDP, Float16Module). megatron's DDP has no
    `sharded_state_dict` of its own: the default one would prefix every key with `module.`."""
    from megatron.core.utils import unwrap_model

    return unwrap_model(chunk)


def model_sharded_state_dict(chunks: list[torch.nn.Module]) -> dict[str, Any]:
    """megatron sharded state dict of the model chunks: `{"model": ...}` (or `model0`, `model1`
    ... with virtual pipeline stages). Keys inside are the GPTModel's own, whatever the wrappers
    (DDP, Float16Module) and the TP/PP layout, so dist_checkpointing can reshard on load."""
    inner = [unwrap_chunk(c) for c in chunks]
    if len(inner) == 1:
        return {"model": inner[0].sharded_state_dict()}
    return {f"model{i}": c.sharded_state_dict() for i, c in enumerate(inner)}


def load_model_state(chunks: list[torch.nn.Module], loaded: dict[str, Any]) -> None:
    """Copy what `dist_checkpointing.load` returned into the chunks (strict)."""
    inner = [unwrap_chunk(c) for c in chunks]
    if len(inner) == 1:
        inner[0].load_state_dict(loaded["model"], strict=True)
        return
    for i, c in enumerate(inner):
        c.load_state_dict(loaded[f"model{i}"], strict=True)


def read_manifest(path: Path) -> CheckpointManifest:
    """The manifest of a checkpoint folder (files listed there must exist)."""
    m = read_checkpoint_manifest(path)
    missing = [f for f in m.files if not (Path(path) / f).is_file()]
    if missing:
        raise CheckpointError(f"{path}: missing {missing[:5]}")
    return m


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train(config: TrainConfig | str | Path, resume: bool = True) -> TrainResult:
    """Load (if a path) and run a config with the megatron engine."""
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.load(config)
    return MegatronTrainer(cfg, resume=resume).train()
