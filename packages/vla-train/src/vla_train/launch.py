"""`vla-train launch`: launch scripts and a parallel/memory/throughput plan for a GPU cluster.

```bash
vla-train launch --config run.toml --nodes 32 --gpus-per-node 8 \
    --partition gpu --account proj --time 24:00:00 [--container IMAGE] [--out DIR]
vla-train launch --recipe vla-10b-moe-256xh100 --nodes 32     # a bundled recipe (copied to DIR)
vla-train launch --list-recipes
```

writes into `--out` (default `launch/<name>`):

- `torchrun.sh` -- run the same script once on every node (`MASTER_ADDR` = the first node);
  torchrun's c10d rendezvous assigns the node ranks, so no per-node edits are needed;
- `launch.sbatch` (`--scheduler slurm`, the default) -- one task per node, `srun` runs
  `torchrun.sh` on every node with `MASTER_ADDR` from `scontrol show hostnames`;
- `plan.json` -- the layout (TP, PP, EP, CP, DP = world / (TP x PP x CP)), checked against the
  model and the batch; memory per GPU (`vla_model.accounting.memory_per_gpu`) against the 80 GB
  H100 budget; step time and tokens/s at an assumed MFU of the 989 TFLOP/s BF16 peak.

The config is validated by `vla_train.config.TrainConfig` (the schema the engines run), its
`[parallel]`/`[fp8]`/`[megatron]` sections included, and the layout by the megatron engine's
own `check_layout` plus a few checks of launch's (vocabulary, FFN and expert FFN sizes over TP,
sequence parallel for MoE with TP and with CP):

```toml
engine = "megatron"
[parallel]
tensor_model_parallel_size = 1
pipeline_model_parallel_size = 1
expert_model_parallel_size = 8
context_parallel_size = 1
sequence_parallel = false                      # needs tensor_model_parallel_size > 1
# virtual_pipeline_model_parallel_size = 2     # optional (interleaved 1F1B)
use_distributed_optimizer = true
# expert_tensor_parallel_size = 1              # optional; default = tensor_model_parallel_size
# recompute_granularity = "selective"          # "none" (default) | "selective" | "full"
[fp8]
recipe = "none"                # "none" | "delayed" | "current" (megatron's "tensorwise")
first_last_layers_bf16 = true  # used by "current"; set false for "delayed"
```

Memory model (what `memory_per_gpu` assumes, and how CP is folded in): BF16 weights, FP32
grads, FP32 master + Adam sharded over the data-parallel group (megatron's distributed
optimizer shards over DP x CP, so the layout passed on has `dp = DP x CP`); activations of
`seq_length / CP` tokens per rank; without the distributed optimizer the 12 optimizer bytes
per parameter are not sharded. Flash attention (no stored s^2 scores) is the `selective` case:
`recompute_granularity = "none"` is estimated as `selective` unless `megatron.spec = "local"`
(unfused attention keeps the scores), `"full"` as `full` (see `memory_recompute`).
The estimate leaves out the CUDA context, NCCL buffers, MoE dispatch buffers and allocator
fragmentation: above 90 % of the budget is a warning, above it an error (`--allow-over-budget`).
"""

from __future__ import annotations

import importlib.resources
import json
import math
import os
import re
import shlex
import stat
import sys
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from vla_train.config import TrainConfig

H100_BF16_PEAK_TFLOPS = 989.0  # dense BF16 tensor-core peak of an H100 SXM
H100_MEMORY_GB = 80.0  # nominal HBM of an H100 80GB (GB = 1e9 bytes: conservative)
WARN_MEMORY_FRACTION = 0.9
# NCCL bus bandwidth per GPU for data-parallel collectives: across nodes (400 Gb/s NDR
# InfiniBand per GPU, ~80% reached) and inside a node (NVLink 4)
NETWORK_GB_PER_S = 40.0
NVLINK_GB_PER_S = 350.0
WARN_EXPOSED_COMM_FRACTION = 0.1
STORAGE_GB_PER_S = 10.0  # aggregate write bandwidth of the cluster file system (assumed)
HOST_COPY_GB_PER_S = 20.0  # device-to-host copy per GPU before a background checkpoint write
WARN_CHECKPOINT_STALL_FRACTION = 0.05
DEFAULT_MASTER_PORT = 29500
RECIPES_PACKAGE = "vla_train.recipes"
FP8_HINTS = {  # fp8.recipe values TrainConfig rejects that people may write
    "mxfp8": "'mxfp8' needs Blackwell GPUs; on H100 use 'delayed' or 'current'",
    "tensorwise": "megatron's 'tensorwise' is recipe = 'current' here",
}


class LaunchError(ValueError):
    """A config, layout or cluster that cannot be launched; the message names the field."""


# ---- reading configs and recipes -------------------------------------------------------------


def recipe_names() -> list[str]:
    """Names of the bundled recipes (`vla_train/recipes/*.toml`, without `.toml`)."""
    root = importlib.resources.files(RECIPES_PACKAGE)
    return sorted(p.name[: -len(".toml")] for p in root.iterdir() if p.name.endswith(".toml"))


def recipe_text(name: str) -> str:
    """The TOML text of a bundled recipe (`name` with or without `.toml`)."""
    name = name.removesuffix(".toml")
    known = recipe_names()
    if name not in known:
        raise LaunchError(f"unknown recipe '{name}' (known: {', '.join(known)})")
    return (importlib.resources.files(RECIPES_PACKAGE) / f"{name}.toml").read_text()


def load_raw(path: str | os.PathLike) -> dict[str, Any]:
    """A TOML (or JSON) train config as a plain dict."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        data = json.loads(raw) if path.suffix == ".json" else tomllib.loads(raw.decode())
    except (OSError, ValueError) as e:
        raise LaunchError(f"{path}: cannot read train config: {e}") from None
    if not isinstance(data, dict):
        raise LaunchError(f"{path}: expected a table at the top level")
    return data


def train_config(
    config: dict[str, Any] | TrainConfig, source: str = "config", base_dir: Path | None = None
) -> TrainConfig:
    """`config` validated by `TrainConfig` (all sections, `[parallel]`/`[fp8]`/`[megatron]`
    included); relative paths resolve against `base_dir`. Raises `LaunchError` naming the field."""
    from vla_train.config import TrainConfig, TrainConfigError

    if isinstance(config, TrainConfig):
        return config
    try:
        return TrainConfig.from_dict(config, source, base_dir)
    except TrainConfigError as e:
        msg = str(e)
        fp8 = config.get("fp8")
        recipe = fp8.get("recipe") if isinstance(fp8, dict) else None
        if isinstance(recipe, str) and recipe in FP8_HINTS:
            msg += f" ({FP8_HINTS[recipe]})"
        raise LaunchError(msg) from None


def check_train_config(raw: dict[str, Any], source: str, base_dir: Path | None) -> str | None:
    """Validate `raw` with `TrainConfig`. Returns the error message, or None."""
    try:
        train_config(raw, source, base_dir)
    except LaunchError as e:
        return str(e)
    return None


# ---- the plan ---------------------------------------------------------------------------------


def _gb(x: float) -> float:
    return round(x / 1e9, 2)


def memory_recompute(cfg: TrainConfig) -> str:
    """The `vla_model.accounting` recompute case of a run: `full` as configured; `selective` for
    `selective`, and for `none` with fused/flash attention (Transformer Engine, which stores no
    s^2 scores either); `none` only with `megatron.spec = "local"` (unfused attention)."""
    g = cfg.parallel.recompute_granularity
    if g == "none" and cfg.megatron.spec == "local":
        return "none"
    return "full" if g == "full" else "selective"


def data_parallel_bytes(
    params: float,
    group: int,
    *,
    grad_bytes: int,
    distributed_optimizer: bool,
    param_bytes: float = 2.0,
) -> float:
    """Bytes one GPU sends per optimizer step to keep `params` (its share of the model)
    in sync over a data-parallel group of `group` ranks with ring collectives: reduce-scatter
    of the gradients + all-gather of the params (distributed optimizer; `param_bytes` each:
    2 for BF16, less where weights are kept in FP8), or an all-reduce of the gradients (2x a
    reduce-scatter)."""
    if group <= 1:
        return 0.0
    ring = (group - 1) / group
    if distributed_optimizer:
        return ring * params * (grad_bytes + param_bytes)
    return 2 * ring * params * grad_bytes


def fp8_weight_param_bytes(mcfg: Any, mem: Any, tp: int, pp: int) -> float:
    """Mean bytes per dense param in the all-gather with `fp8.primary_weights`: the layers'
    GEMM weights travel in FP8 (1 byte), the embedding and output layer of the most loaded
    stage stay BF16 (norms and other small tables are counted as FP8)."""
    vocab_shard = math.ceil(mcfg.vocab_size / tp) * mcfg.hidden_size
    tables = (mem.stage == 0) + (mem.stage == pp - 1 and (not mcfg.tie_embeddings or pp > 1))
    bf16 = min(vocab_shard * tables, mem.dense_params)
    return (2 * bf16 + (mem.dense_params - bf16)) / max(mem.dense_params, 1)


def checkpoint_cost(
    cfg: TrainConfig,
    params: int,
    world: int,
    step_time: float,
    storage_gb_per_s: float,
    warnings: list[str],
) -> dict[str, Any]:
    """Size of one checkpoint (weights + optimizer state), its write time at the file system's
    aggregate bandwidth, and how long training stalls for it every `checkpoint.every` steps:
    the whole write when synchronous, the device-to-host copy with `async_save`. Appends a
    warning when the stall exceeds 5% of the interval or a background write outlasts it."""
    bf16 = cfg.precision in ("auto", "bf16")
    weight_bytes = 2.0 if bf16 else 4.0
    opt_bytes = cfg.parallel.optimizer_bytes_per_param(bf16=bf16)
    total = params * (weight_bytes + opt_bytes)
    write_s = total / (storage_gb_per_s * 1e9)
    async_save = cfg.engine == "megatron" and cfg.checkpoint.async_save
    stall_s = total / world / (HOST_COPY_GB_PER_S * 1e9) if async_save else write_s
    interval_s = cfg.checkpoint.every * step_time
    every = cfg.checkpoint.every
    if stall_s > WARN_CHECKPOINT_STALL_FRACTION * interval_s:
        fix = "raise checkpoint.every" + (
            "" if async_save or cfg.engine != "megatron" else " or set checkpoint.async_save = true"
        )
        warnings.append(
            f"each checkpoint ({total / 1e9:.0f} GB) stalls training ~{stall_s:.0f} s, "
            f"{stall_s / interval_s:.0%} of the {interval_s:.0f} s between saves (every {every} "
            f"steps, {storage_gb_per_s:g} GB/s storage): {fix}"
        )
    if async_save and write_s > interval_s:
        warnings.append(
            f"a background checkpoint write (~{write_s:.0f} s at {storage_gb_per_s:g} GB/s) "
            f"outlasts the {interval_s:.0f} s between saves: writes would pile up in host "
            "memory; raise checkpoint.every"
        )
    return {
        "bytes": round(total),
        "bytes_per_gpu": round(total / world),
        "storage_gb_per_s_assumed": storage_gb_per_s,
        "write_time_s": round(write_s, 1),
        "async_save": async_save,
        "stall_s": round(stall_s, 2),
        "interval_s": round(interval_s, 1),
        "stall_fraction": round(stall_s / interval_s, 4),
    }


def make_plan(
    config: dict[str, Any] | TrainConfig,
    nodes: int,
    gpus_per_node: int,
    *,
    base_dir: Path | None = None,
    source: str = "config",
    assume_mfu: float = 0.45,
    peak_tflops: float = H100_BF16_PEAK_TFLOPS,
    gpu_memory_gb: float = H100_MEMORY_GB,
    network_gb_per_s: float = NETWORK_GB_PER_S,
    storage_gb_per_s: float = STORAGE_GB_PER_S,
    allow_over_budget: bool = False,
) -> dict[str, Any]:
    """Check the layout of `config` (a raw TOML dict, validated by `TrainConfig`, or a
    `TrainConfig`) on `nodes` x `gpus_per_node` GPUs and estimate memory and speed.

    Raises `LaunchError` listing every problem (each names its field); returns a JSON-ready dict.
    """
    from vla_model.accounting import (
        LayoutError,
        ParallelLayout,
        count_parameters,
        flops_per_token,
        memory_per_gpu,
    )
    from vla_train.config import TrainConfigError
    from vla_train.megatron_engine import check_layout

    errors: list[str] = []
    warnings: list[str] = []
    if nodes < 1:
        errors.append(f"--nodes must be >= 1 (got {nodes})")
    if gpus_per_node < 1:
        errors.append(f"--gpus-per-node must be >= 1 (got {gpus_per_node})")
    if not 0 < assume_mfu <= 1:
        errors.append(f"--assume-mfu must be in (0, 1] (got {assume_mfu})")
    if network_gb_per_s <= 0:
        errors.append(f"--network-gb-per-s must be > 0 (got {network_gb_per_s})")
    if storage_gb_per_s <= 0:
        errors.append(f"--storage-gb-per-s must be > 0 (got {storage_gb_per_s})")
    if errors:
        raise LaunchError(f"{source}: " + "; ".join(errors))
    world = nodes * gpus_per_node

    cfg = train_config(config, source, base_dir)
    try:
        mcfg = cfg.resolve_model()
    except TrainConfigError as e:  # seq_length over max_position_embeddings
        raise LaunchError(f"{source}: {e}") from None
    except ValueError as e:  # vla_model.ConfigError: unknown preset, bad config.json/overrides
        raise LaunchError(f"{source}: model: {e}".replace("\n", " ")) from None

    p = cfg.parallel
    tp, pp, ep, cp = p.sizes
    vpp = p.virtual_pipeline_model_parallel_size
    etp = p.expert_tensor_parallel_size or tp
    seq, micro, gbs = cfg.seq_length, cfg.micro_batch_size, cfg.global_batch_size

    # the layout: the engine's own check, so launch refuses exactly what a run would refuse
    dp = 0
    try:
        dp = check_layout(cfg, world)
    except TrainConfigError as e:
        errors.append(str(e))
    if errors:
        raise LaunchError(
            f"{source}: "
            + "; ".join(errors)
            + f" [world size {world} = --nodes {nodes} x --gpus-per-node {gpus_per_node}]"
        )

    # warnings: legal but probably slow or surprising
    if tp > gpus_per_node:
        warnings.append(
            f"tensor parallel size {tp} spans nodes ({gpus_per_node} GPUs each): TP "
            "all-reduces would cross the network"
        )
    if mcfg.moe is not None and ep * etp > gpus_per_node:
        warnings.append(
            f"expert x expert-tensor parallel ({ep * etp}) spans nodes: the MoE all-to-all "
            "crosses the network"
        )
    num_micro = gbs // (micro * dp)
    if pp > 1 and num_micro < pp:
        warnings.append(
            f"{num_micro} micro-batches per step < {pp} pipeline stages: a large pipeline bubble"
        )
    if cfg.engine == "megatron" and not p.use_distributed_optimizer and dp > 1:
        warnings.append(
            "parallel.use_distributed_optimizer is false: the optimizer state is replicated on "
            "every data-parallel rank (12 bytes/param)"
        )

    # memory
    sp = p.sequence_parallel  # ParallelSection: needs tp > 1
    recompute = memory_recompute(cfg)
    layout = ParallelLayout(
        tp=tp, pp=pp, dp=dp * cp, ep=ep, etp=p.expert_tensor_parallel_size if mcfg.moe else None
    )
    try:
        opt_bytes = p.optimizer_bytes_per_param(bf16=cfg.precision in ("auto", "bf16"))
        mem = memory_per_gpu(mcfg, layout, seq // cp, micro, sp, recompute, opt_bytes)
    except LayoutError as e:  # backstop: the checks above should have caught it
        raise LaunchError(f"{source}: parallel layout: {e}") from None
    params_here = mem.dense_params + mem.expert_params
    if cfg.engine == "torch":  # fp32 weights + grads + unsharded AdamW (bf16 autocast)
        mem = replace(
            mem, weights=4.0 * params_here, grads=4.0 * params_here, optimizer=8.0 * params_here
        )
        mem_model = "torch DDP: fp32 weights + grads + AdamW state (16 bytes/param), unsharded"
    elif not p.use_distributed_optimizer:
        mem = replace(mem, optimizer=opt_bytes * params_here)
        mem_model = f"megatron, plain optimizer: {6 + opt_bytes} bytes/param (not sharded)"
    else:
        mem_model = f"megatron distributed optimizer: 6 + {opt_bytes}/DP bytes/param"
    budget = gpu_memory_gb * 1e9
    fraction = mem.total / budget
    memory = {
        "model": mem_model,
        "bytes": mem.as_dict(),
        "gb": {k: _gb(v) for k, v in mem.as_dict().items() if k not in ("stage",)},
        "total_gb": _gb(mem.total),
        "budget_gb": gpu_memory_gb,
        "fraction_of_budget": round(fraction, 3),
        "most_loaded_stage": mem.stage,
        "recompute": recompute,
        "recompute_granularity": p.recompute_granularity,
        "not_included": "CUDA context, NCCL buffers, MoE dispatch buffers, fragmentation",
    }
    if fraction > 1:
        msg = (
            f"estimated memory per GPU {mem.total / 1e9:.1f} GB exceeds the {gpu_memory_gb:g} GB "
            f"budget (weights {mem.weights / 1e9:.1f}, grads {mem.grads / 1e9:.1f}, optimizer "
            f"{mem.optimizer / 1e9:.1f}, activations {mem.activations / 1e9:.1f} GB): raise "
            "parallel sizes (TP/PP/EP/CP), lower micro_batch_size, enable "
            'use_distributed_optimizer, or set parallel.recompute_granularity = "full"'
        )
        if not allow_over_budget:
            raise LaunchError(f"{source}: {msg}")
        warnings.append(msg)
    elif fraction > WARN_MEMORY_FRACTION:
        warnings.append(
            f"estimated memory per GPU {mem.total / 1e9:.1f} GB is over "
            f"{WARN_MEMORY_FRACTION:.0%} of the {gpu_memory_gb:g} GB budget; the estimate leaves "
            "out the CUDA context, NCCL buffers and fragmentation"
        )

    # throughput at the assumed MFU
    counts = count_parameters(mcfg)
    fpt = flops_per_token(mcfg, seq)
    tokens_per_step = gbs * seq
    flops_per_step = fpt.total * tokens_per_step
    step_time = flops_per_step / (world * peak_tflops * 1e12 * assume_mfu)
    train_steps = cfg.schedule.train_steps
    throughput: dict[str, Any] = {
        "assume_mfu": assume_mfu,
        "peak_tflops_per_gpu": peak_tflops,
        "flops_per_token": fpt.total,
        "flops_per_step": flops_per_step,
        "tokens_per_step": tokens_per_step,
        "step_time_s": round(step_time, 4),
        "tokens_per_s": round(tokens_per_step / step_time),
        "tokens_per_s_per_gpu": round(tokens_per_step / step_time / world),
        "pipeline_bubble_fraction": round((pp - 1) / ((vpp or 1) * num_micro), 4),
        "train_steps": train_steps,
        "train_tokens": train_steps * tokens_per_step,
        "train_time_h": round(train_steps * step_time / 3600, 2),
        "gpu_hours": round(train_steps * step_time * world / 3600),
    }

    # data-parallel traffic per GPU and step (dense params over DP x CP, experts over expert DP)
    if cfg.engine == "megatron":
        grad_bytes = 4 if p.grad_reduce_in_fp32 else 2
        dist_opt = p.use_distributed_optimizer
    else:  # torch DDP: fp32 gradients all-reduced
        grad_bytes, dist_opt = 4, False
    fp8_weights = cfg.engine == "megatron" and cfg.fp8.primary_weights
    traffic = data_parallel_bytes(
        mem.dense_params,
        dp * cp,
        grad_bytes=grad_bytes,
        distributed_optimizer=dist_opt,
        param_bytes=fp8_weight_param_bytes(mcfg, mem, tp, pp) if fp8_weights else 2.0,
    ) + data_parallel_bytes(
        mem.expert_params,
        layout.expert_dp,
        grad_bytes=grad_bytes,
        distributed_optimizer=dist_opt,
        param_bytes=1.0 if fp8_weights else 2.0,
    )
    crosses_nodes = tp * cp * dp > gpus_per_node
    bandwidth = network_gb_per_s if crosses_nodes else NVLINK_GB_PER_S
    comm_time = traffic / (bandwidth * 1e9)
    overlapped = (
        cfg.engine == "megatron"
        and p.overlap_grad_reduce
        and (p.overlap_param_gather or not dist_opt)
    )
    throughput["data_parallel"] = {
        "bytes_per_gpu_per_step": round(traffic),
        "gb_per_s_assumed": bandwidth,
        "over": "network" if crosses_nodes else "nvlink",
        "time_s": round(comm_time, 4),
        "overlapped_with_compute": overlapped,
    }
    if overlapped and comm_time > step_time:
        warnings.append(
            f"data-parallel sync (~{comm_time:.2f} s at {bandwidth:g} GB/s) takes longer than "
            f"the {step_time:.2f} s step it overlaps: raise micro-batches per step or model "
            "parallelism, or set parallel.grad_reduce_in_fp32 = false"
        )
    if not overlapped and comm_time > WARN_EXPOSED_COMM_FRACTION * step_time:
        knobs = (
            "set parallel.overlap_grad_reduce"
            + (" and overlap_param_gather" if dist_opt else "")
            + " = true"
            if cfg.engine == "megatron"
            else "use the megatron engine"
        )
        warnings.append(
            f"data-parallel gradient/parameter sync moves {traffic / 1e9:.1f} GB per GPU per "
            f"step (~{comm_time:.2f} s at {bandwidth:g} GB/s, {comm_time / step_time:.0%} of "
            f"the {step_time:.2f} s step) without overlap: {knobs}"
        )

    throughput["checkpoint"] = checkpoint_cost(
        cfg, counts.total, world, step_time, storage_gb_per_s, warnings
    )

    return {
        "source": source,
        "engine": cfg.engine,
        "model": {
            "name": mcfg.name,
            "kind": "moe" if mcfg.is_moe else "dense",
            "params_total": counts.total,
            "params_active": counts.active,
            "num_layers": mcfg.num_layers,
            "num_attention_heads": mcfg.num_attention_heads,
            "num_kv_heads": mcfg.num_kv_heads,
            "num_experts": mcfg.moe.num_experts if mcfg.moe else 0,
        },
        "cluster": {
            "nodes": nodes,
            "gpus_per_node": gpus_per_node,
            "world_size": world,
            "gpu": f"H100 {gpu_memory_gb:g} GB",
        },
        "layout": {
            "tp": tp,
            "pp": pp,
            "vpp": vpp,
            "ep": ep,
            "etp": etp,
            "cp": cp,
            "dp": dp,
            "expert_dp": layout.expert_dp,
            "sequence_parallel": sp,
            "use_distributed_optimizer": p.use_distributed_optimizer,
        },
        "batch": {
            "seq_length": seq,
            "micro_batch_size": micro,
            "global_batch_size": gbs,
            "micro_batches_per_step": num_micro,
            "tokens_per_step": tokens_per_step,
        },
        "fp8": cfg.fp8.model_dump(mode="json"),
        "memory": memory,
        "throughput": throughput,
        "warnings": warnings,
    }


def format_plan(plan: dict[str, Any]) -> str:
    """A few lines for humans."""
    lay, mem, thr, b, c = (
        plan["layout"],
        plan["memory"],
        plan["throughput"],
        plan["batch"],
        plan["cluster"],
    )
    m = plan["model"]
    lines = [
        f"{plan['source']}: {m['name']} ({m['params_total'] / 1e9:.2f}B params, "
        f"{m['params_active'] / 1e9:.2f}B active), engine {plan['engine']}",
        f"cluster: {c['nodes']} nodes x {c['gpus_per_node']} GPUs = {c['world_size']} ranks",
        f"layout: TP {lay['tp']} PP {lay['pp']}"
        + (f" (VPP {lay['vpp']})" if lay["vpp"] else "")
        + f" EP {lay['ep']} CP {lay['cp']} DP {lay['dp']} (expert DP {lay['expert_dp']}), "
        f"SP {'on' if lay['sequence_parallel'] else 'off'}, distributed optimizer "
        f"{'on' if lay['use_distributed_optimizer'] else 'off'}, fp8 {plan['fp8']['recipe']}",
        f"batch: {b['global_batch_size']} x {b['seq_length']} tokens = "
        f"{b['tokens_per_step'] / 1e6:.2f}M tokens/step, micro {b['micro_batch_size']} x "
        f"{b['micro_batches_per_step']} accumulation per DP rank",
        f"memory/GPU: {mem['total_gb']:.1f} GB of {mem['budget_gb']:g} GB "
        f"({mem['fraction_of_budget']:.0%}): weights {mem['gb']['weights']:.1f}, grads "
        f"{mem['gb']['grads']:.1f}, optimizer {mem['gb']['optimizer']:.1f}, activations "
        f"{mem['gb']['activations']:.1f}",
        f"at MFU {thr['assume_mfu']:.2f} of {thr['peak_tflops_per_gpu']:g} TFLOP/s: "
        f"{thr['step_time_s']:.3f} s/step, {thr['tokens_per_s'] / 1e6:.2f}M tokens/s "
        f"({thr['tokens_per_s_per_gpu']:,} per GPU)",
    ]
    if thr.get("data_parallel", {}).get("bytes_per_gpu_per_step"):
        d = thr["data_parallel"]
        lines.append(
            f"data-parallel sync: {d['bytes_per_gpu_per_step'] / 1e9:.1f} GB/GPU/step, "
            f"~{d['time_s']:.2f} s over {d['over']} at {d['gb_per_s_assumed']:g} GB/s, "
            + ("overlapped with compute" if d["overlapped_with_compute"] else "NOT overlapped")
        )
    ck = thr["checkpoint"]
    lines.append(
        f"checkpoint: {ck['bytes'] / 1e9:.0f} GB, written in ~{ck['write_time_s']:.0f} s at "
        f"{ck['storage_gb_per_s_assumed']:g} GB/s "
        + ("in the background" if ck["async_save"] else "synchronously")
        + f"; training stalls ~{ck['stall_s']:.1f} s every {ck['interval_s']:.0f} s "
        f"({ck['stall_fraction']:.1%})"
    )
    if "train_steps" in thr:
        lines.append(
            f"schedule: {thr['train_steps']:,} steps = {thr['train_tokens'] / 1e9:.1f}B tokens "
            f"in {thr['train_time_h']:.1f} h ({thr['gpu_hours']:,} GPU-hours)"
        )
    lines += [f"warning: {w}" for w in plan["warnings"]]
    return "\n".join(lines)


# ---- scripts ---------------------------------------------------------------------------------

_SBATCH_SAFE = re.compile(r"^[A-Za-z0-9._/+@:,%-]+$")
_NAME_SAFE = re.compile(r"^[A-Za-z0-9._-]+$")
_TIME = re.compile(r"^(\d+-)?\d{1,3}:\d{2}:\d{2}$|^\d+-\d{1,2}$|^\d+$")


def _env_block(gpus_per_node: int) -> str:
    return f"""\
# ---- GPU / NCCL environment (H100) -----------------------------------------------------------
export CUDA_DEVICE_MAX_CONNECTIONS=1  # megatron TP/SP communication overlap needs ordered launches
export TORCH_NCCL_ASYNC_ERROR_HANDLING="${{TORCH_NCCL_ASYNC_ERROR_HANDLING:-1}}"  # fail, don't hang
export TORCH_NCCL_AVOID_RECORD_STREAMS="${{TORCH_NCCL_AVOID_RECORD_STREAMS:-1}}"  # free comm buffers early
export NCCL_DEBUG="${{NCCL_DEBUG:-WARN}}"
export PYTHONUNBUFFERED=1
if [[ -z "${{OMP_NUM_THREADS:-}}" ]]; then  # CPU threads per rank: cores / local ranks
  OMP_NUM_THREADS=$(( $(nproc) / {gpus_per_node} ))
  (( OMP_NUM_THREADS >= 1 )) || OMP_NUM_THREADS=1
  export OMP_NUM_THREADS
fi
# Site-specific network settings (ask your cluster admins; uncomment and adjust):
# export NCCL_IB_HCA=mlx5_0,mlx5_1,mlx5_2,mlx5_3,mlx5_4,mlx5_5,mlx5_6,mlx5_7  # InfiniBand HCAs
# export NCCL_SOCKET_IFNAME=eth0            # bootstrap (out-of-band) interface
# export NCCL_IB_GID_INDEX=3                # RoCE clusters
# export NCCL_IB_TIMEOUT=22
# export NCCL_IB_QPS_PER_CONNECTION=2
# export NCCL_NET_GDR_LEVEL=PHB             # GPUDirect RDMA distance
# export NCCL_NVLS_ENABLE=0                 # if NVLink SHARP (NVSwitch multicast) misbehaves
"""


def _source(plan: dict[str, Any]) -> str:
    return " ".join(str(plan["source"]).split())  # one comment line, whatever the path holds


def _layout_line(plan: dict[str, Any]) -> str:
    lay, c = plan["layout"], plan["cluster"]
    return (
        f"{c['nodes']} node(s) x {c['gpus_per_node']} GPU(s) = {c['world_size']} ranks; "
        f"TP {lay['tp']} PP {lay['pp']} EP {lay['ep']} CP {lay['cp']} DP {lay['dp']}; "
        f"memory/GPU ~{plan['memory']['total_gb']:.1f} GB"
    )


def torchrun_script(plan: dict[str, Any], config: Path, master_port: int) -> str:
    """`torchrun.sh`: the same script on every node; c10d rendezvous at MASTER_ADDR:MASTER_PORT."""
    c = plan["cluster"]
    nodes, gpus = c["nodes"], c["gpus_per_node"]
    master = (
        'MASTER_ADDR="${MASTER_ADDR:-localhost}"'
        if nodes == 1
        else ': "${MASTER_ADDR:?set MASTER_ADDR to the address of the first node}"'
    )
    return f"""\
#!/usr/bin/env bash
# Generated by `vla-train launch` from {_source(plan)}
# {_layout_line(plan)}
# Run this same script once on each of the {nodes} node(s) (torchrun's c10d rendezvous assigns the
# node ranks):  MASTER_ADDR=<first node> ./torchrun.sh [extra `vla-train run` options]
set -euo pipefail

NNODES={nodes}
NPROC_PER_NODE={gpus}
CONFIG={shlex.quote(str(config))}
{master}
MASTER_PORT="${{MASTER_PORT:-{master_port}}}"
RDZV_ID="${{RDZV_ID:-${{SLURM_JOB_ID:-vla-train}}}}"

{_env_block(gpus)}
exec "${{TORCHRUN:-torchrun}}" \\
  --nnodes "$NNODES" \\
  --nproc_per_node "$NPROC_PER_NODE" \\
  --rdzv_backend c10d \\
  --rdzv_endpoint "$MASTER_ADDR:$MASTER_PORT" \\
  --rdzv_id "$RDZV_ID" \\
  --max_restarts 0 \\
  -m vla_train run --config "$CONFIG" "$@"
"""


def sbatch_script(
    plan: dict[str, Any],
    launch_dir: Path,
    config: Path,
    *,
    job_name: str,
    master_port: int,
    partition: str | None = None,
    account: str | None = None,
    time: str | None = None,
    container: str | None = None,
) -> str:
    """`launch.sbatch`: one task per node, srun runs `torchrun.sh` on every node."""
    c = plan["cluster"]
    nodes, gpus = c["nodes"], c["gpus_per_node"]
    directives = [
        f"#SBATCH --job-name={job_name}",
        f"#SBATCH --nodes={nodes}",
        "#SBATCH --ntasks-per-node=1",
        f"#SBATCH --gpus-per-node={gpus}",
        "#SBATCH --exclusive",
        "#SBATCH --mem=0",
    ]
    if time:
        directives.append(f"#SBATCH --time={time}")
    if partition:
        directives.append(f"#SBATCH --partition={partition}")
    if account:
        directives.append(f"#SBATCH --account={account}")
    log = f"{launch_dir}/logs/%x-%j.out"
    if _SBATCH_SAFE.match(log):
        directives.append(f"#SBATCH --output={log}")
    else:
        directives.append("# (no --output: the launch folder's path has unusual characters)")
    srun = [
        "srun",
        f"--nodes={nodes}",
        "--ntasks-per-node=1",
        "--kill-on-bad-exit=1",
        "--cpu-bind=none",
    ]
    container_lines = ""
    if container:
        mounts = ",".join(f"{d}:{d}" for d in sorted({str(launch_dir), str(config.parent)}))
        container_lines = (
            "# pyxis/enroot: the image must have vla-train installed; add your data and out_dir\n"
            "# folders to CONTAINER_MOUNTS (src:dst,...)\n"
            f"CONTAINER_IMAGE={shlex.quote(container)}\n"
            f'CONTAINER_MOUNTS="${{CONTAINER_MOUNTS:-{mounts}}}"\n'
        )
        srun += [
            '--container-image="$CONTAINER_IMAGE"',
            '--container-mounts="$CONTAINER_MOUNTS"',
            '--container-workdir="$LAUNCH_DIR"',
        ]
    srun_cmd = " \\\n  ".join([*srun, 'bash "$LAUNCH_DIR/torchrun.sh" "$@"'])
    return f"""\
#!/usr/bin/env bash
{chr(10).join(directives)}
# Generated by `vla-train launch` from {_source(plan)}
# {_layout_line(plan)}
# Submit: sbatch launch.sbatch [extra `vla-train run` options]
set -euo pipefail

LAUNCH_DIR={shlex.quote(str(launch_dir))}
# (sed reads the whole list: `head -n 1` can SIGPIPE scontrol, fatal under pipefail)
MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | sed -n 1p)"
MASTER_PORT="${{MASTER_PORT:-{master_port}}}"
RDZV_ID="$SLURM_JOB_ID"
export MASTER_ADDR MASTER_PORT RDZV_ID

{_env_block(gpus)}
{container_lines}
echo "job $SLURM_JOB_ID: $SLURM_JOB_NUM_NODES nodes, rendezvous at $MASTER_ADDR:$MASTER_PORT"
{srun_cmd}
"""


def _write(path: Path, text: str, executable: bool = False) -> Path:
    path.write_text(text)
    if executable:
        mode = path.stat().st_mode
        path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def write_launch(
    plan: dict[str, Any],
    out: Path,
    config: Path,
    *,
    scheduler: str = "slurm",
    job_name: str = "vla-train",
    master_port: int = DEFAULT_MASTER_PORT,
    partition: str | None = None,
    account: str | None = None,
    time: str | None = None,
    container: str | None = None,
) -> dict[str, Path]:
    """Write `torchrun.sh`, (slurm) `launch.sbatch` + `logs/`, and `plan.json` into `out`."""
    if not _NAME_SAFE.match(job_name):
        raise LaunchError(f"--job-name: use letters, digits, '.', '_', '-' (got {job_name!r})")
    for opt, v in (("--partition", partition), ("--account", account)):
        if v is not None and not re.match(r"^[A-Za-z0-9._,-]+$", v):
            raise LaunchError(f"{opt}: not a valid Slurm name ({v!r})")
    if time is not None and not _TIME.match(time):
        raise LaunchError(f"--time: expected HH:MM:SS or D-HH:MM:SS (got {time!r})")
    if scheduler not in ("slurm", "torchrun"):
        raise LaunchError(f"--scheduler: 'slurm' or 'torchrun' (got {scheduler!r})")
    out = out.resolve()
    config = config.resolve()
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "torchrun": _write(out / "torchrun.sh", torchrun_script(plan, config, master_port), True)
    }
    if scheduler == "slurm":
        (out / "logs").mkdir(exist_ok=True)
        text = sbatch_script(
            plan,
            out,
            config,
            job_name=job_name,
            master_port=master_port,
            partition=partition,
            account=account,
            time=time,
            container=container,
        )
        files["sbatch"] = _write(out / "launch.sbatch", text, True)
    full = {**plan, "config": str(config), "files": {k: str(v) for k, v in files.items()}}
    files["plan"] = _write(out / "plan.json", json.dumps(full, indent=1) + "\n")
    return files


# ---- the click command ------------------------------------------------------------------------


def _list_recipes(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo("\n".join(recipe_names()))
        ctx.exit(0)


@click.command(name="launch")
@click.option(
    "--config",
    "config",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help='a train config TOML (engine = "megatron", [parallel], [fp8])',
)
@click.option(
    "--recipe", default=None, help="a bundled recipe instead of --config (copied to --out)"
)
@click.option("--nodes", type=int, required=True)
@click.option("--gpus-per-node", type=int, default=8, show_default=True)
@click.option(
    "--scheduler",
    type=click.Choice(["slurm", "torchrun"]),
    default="slurm",
    show_default=True,
    help="slurm: torchrun.sh + launch.sbatch; torchrun: torchrun.sh only",
)
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="output folder (default: launch/<config or recipe name>)",
)
@click.option("--partition", default=None)
@click.option("--account", default=None)
@click.option("--time", "time_", default=None, help="Slurm time limit, HH:MM:SS or D-HH:MM:SS")
@click.option("--container", default=None, help="container image for srun (pyxis/enroot)")
@click.option("--job-name", default=None, help="Slurm job name (default: the config's name)")
@click.option("--master-port", type=int, default=DEFAULT_MASTER_PORT, show_default=True)
@click.option("--assume-mfu", type=float, default=0.45, show_default=True)
@click.option(
    "--peak-tflops",
    type=float,
    default=H100_BF16_PEAK_TFLOPS,
    show_default=True,
    help="per-GPU BF16 dense peak",
)
@click.option("--gpu-memory-gb", type=float, default=H100_MEMORY_GB, show_default=True)
@click.option(
    "--network-gb-per-s",
    type=float,
    default=NETWORK_GB_PER_S,
    show_default=True,
    help="inter-node NCCL bus bandwidth per GPU, for the data-parallel sync estimate",
)
@click.option(
    "--storage-gb-per-s",
    type=float,
    default=STORAGE_GB_PER_S,
    show_default=True,
    help="aggregate file-system write bandwidth, for the checkpoint estimate",
)
@click.option("--allow-over-budget", is_flag=True, help="write scripts even if memory is over")
@click.option("--plan-only", is_flag=True, help="print the plan; write nothing")
@click.option("--json", "as_json", is_flag=True, help="print the plan as JSON")
@click.option(
    "--list-recipes",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_list_recipes,
    help="list the bundled recipes and exit",
)
def launch_command(
    config: Path | None,
    recipe: str | None,
    nodes: int,
    gpus_per_node: int,
    scheduler: str,
    out: Path | None,
    partition: str | None,
    account: str | None,
    time_: str | None,
    container: str | None,
    job_name: str | None,
    master_port: int,
    assume_mfu: float,
    peak_tflops: float,
    gpu_memory_gb: float,
    network_gb_per_s: float,
    storage_gb_per_s: float,
    allow_over_budget: bool,
    plan_only: bool,
    as_json: bool,
) -> None:
    """Check a parallel layout and write torchrun/Slurm launch scripts and plan.json."""

    def fail(msg: str) -> None:
        click.echo(f"error: {msg}", err=True)
        sys.exit(2)

    if (config is None) == (recipe is None):
        fail("give --config or --recipe")
    if scheduler == "torchrun" and any(
        v is not None for v in (partition, account, time_, container)
    ):
        fail("--partition/--account/--time/--container need --scheduler slurm")
    try:
        if recipe is not None:
            name = recipe.removesuffix(".toml")
            text = recipe_text(name)
            raw = tomllib.loads(text)
            source = f"recipe {name}"
            base_dir = None
        else:
            name = config.stem
            raw = load_raw(config)
            source = str(config)
            base_dir = config.resolve().parent
        plan = make_plan(
            raw,
            nodes,
            gpus_per_node,
            base_dir=base_dir,
            source=source,
            assume_mfu=assume_mfu,
            peak_tflops=peak_tflops,
            gpu_memory_gb=gpu_memory_gb,
            network_gb_per_s=network_gb_per_s,
            storage_gb_per_s=storage_gb_per_s,
            allow_over_budget=allow_over_budget,
        )
        if plan_only:
            click.echo(json.dumps(plan, indent=1) if as_json else format_plan(plan))
            return
        out = out if out is not None else Path("launch") / name
        if recipe is not None:
            out.mkdir(parents=True, exist_ok=True)
            config = out / "run.toml"
            if config.exists() and config.read_text() != text:
                fail(f"{config} exists and differs from recipe {name}; remove it or pick --out")
            config.write_text(text)
        files = write_launch(
            plan,
            out,
            config,
            scheduler=scheduler,
            job_name=job_name or name.replace(" ", "-"),
            master_port=master_port,
            partition=partition,
            account=account,
            time=time_,
            container=container,
        )
    except LaunchError as e:
        fail(str(e))
    if as_json:
        click.echo(json.dumps({**plan, "files": {k: str(v) for k, v in files.items()}}, indent=1))
        return
    click.echo(format_plan(plan))
    for kind, path in files.items():
        click.echo(f"wrote {kind}: {path}")
    if recipe is not None:
        click.echo(f"set [data] paths (relative to {config.resolve()}) before submitting")
    if "sbatch" in files:
        click.echo(f"submit: sbatch {shlex.quote(str(files['sbatch']))}")
    else:
        click.echo(f"on each node: MASTER_ADDR=<first node> {shlex.quote(str(files['torchrun']))}")


__all__ = [
    "H100_BF16_PEAK_TFLOPS",
    "H100_MEMORY_GB",
    "LaunchError",
    "check_train_config",
    "format_plan",
    "launch_command",
    "load_raw",
    "make_plan",
    "memory_recompute",
    "recipe_names",
    "recipe_text",
    "sbatch_script",
    "torchrun_script",
    "train_config",
    "write_launch",
]
