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

The config is read as a raw TOML dict, so the megatron sections need no schema here:

```toml
engine = "megatron"
[parallel]
tensor_model_parallel_size = 1
pipeline_model_parallel_size = 1
expert_model_parallel_size = 8
context_parallel_size = 1
sequence_parallel = false
# virtual_pipeline_model_parallel_size = 2     # optional (interleaved 1F1B)
use_distributed_optimizer = true
# expert_tensor_parallel_size = 1              # optional; default = tensor_model_parallel_size
# recompute_granularity = "selective"          # optional: "selective" (default) | "full"
[fp8]
recipe = "none"                # "none" | "delayed" | "current" ("tensorwise" = "current")
first_last_layers_bf16 = true
```

Memory model (what `memory_per_gpu` assumes, and how CP is folded in): BF16 weights, FP32
grads, FP32 master + Adam sharded over the data-parallel group (megatron's distributed
optimizer shards over DP x CP, so the layout passed on has `dp = DP x CP`); activations of
`seq_length / CP` tokens per rank; without the distributed optimizer the 12 optimizer bytes
per parameter are not sharded. Flash attention (no stored s^2 scores) is the `selective` case.
The estimate leaves out the CUDA context, NCCL buffers, MoE dispatch buffers and allocator
fragmentation: above 90 % of the budget is a warning, above it an error (`--allow-over-budget`).
"""

from __future__ import annotations

import importlib.resources
import json
import os
import re
import shlex
import stat
import sys
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click

H100_BF16_PEAK_TFLOPS = 989.0  # dense BF16 tensor-core peak of an H100 SXM
H100_MEMORY_GB = 80.0  # nominal HBM of an H100 80GB (GB = 1e9 bytes: conservative)
WARN_MEMORY_FRACTION = 0.9
DEFAULT_MASTER_PORT = 29500
RECIPES_PACKAGE = "vla_train.recipes"
FP8_RECIPES = {"none": "none", "delayed": "delayed", "current": "current", "tensorwise": "current"}
RECOMPUTE = {"selective": "selective", "full": "full"}


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


def check_train_config(raw: dict[str, Any], source: str, base_dir: Path | None) -> str | None:
    """Validate `raw` with `TrainConfig`; the `[parallel]`/`[fp8]` sections are tolerated even
    when this TrainConfig does not know them yet. Returns the error message, or None."""
    from vla_train.config import TrainConfig, TrainConfigError

    try:
        TrainConfig.from_dict(raw, source, base_dir)
        return None
    except TrainConfigError:
        pass
    # [parallel]/[fp8] are checked by `make_plan`; report what the rest of the config gets wrong
    stripped = {k: v for k, v in raw.items() if k not in ("parallel", "fp8")}
    try:
        TrainConfig.from_dict(stripped, source, base_dir)
        return None
    except TrainConfigError as e:
        return str(e)


# ---- the [parallel] and [fp8] sections -------------------------------------------------------


@dataclass(frozen=True)
class ParallelSettings:
    tp: int = 1
    pp: int = 1
    ep: int = 1
    cp: int = 1
    etp: int | None = None
    vpp: int | None = None
    sequence_parallel: bool = False
    distributed_optimizer: bool = True
    recompute: str = "selective"

    @property
    def expert_tp(self) -> int:
        return self.etp or self.tp


_INT_FIELDS = {
    "tensor_model_parallel_size": "tp",
    "pipeline_model_parallel_size": "pp",
    "expert_model_parallel_size": "ep",
    "context_parallel_size": "cp",
    "expert_tensor_parallel_size": "etp",
    "virtual_pipeline_model_parallel_size": "vpp",
}
_BOOL_FIELDS = {
    "sequence_parallel": "sequence_parallel",
    "use_distributed_optimizer": "distributed_optimizer",
}


def parse_parallel(raw: dict[str, Any], errors: list[str]) -> ParallelSettings:
    """`[parallel]` of a raw config (absent: all 1, distributed optimizer on)."""
    sec = raw.get("parallel", {})
    if not isinstance(sec, dict):
        errors.append("parallel: must be a table")
        return ParallelSettings()
    known = set(_INT_FIELDS) | set(_BOOL_FIELDS) | {"recompute_granularity"}
    for k in sorted(set(sec) - known):
        errors.append(f"parallel.{k}: unknown field (known: {', '.join(sorted(known))})")
    vals: dict[str, Any] = {}
    for field, attr in _INT_FIELDS.items():
        if field not in sec:
            continue
        v = sec[field]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            errors.append(f"parallel.{field}: must be an integer >= 1 (got {v!r})")
        else:
            vals[attr] = v
    for field, attr in _BOOL_FIELDS.items():
        if field in sec:
            if isinstance(sec[field], bool):
                vals[attr] = sec[field]
            else:
                errors.append(f"parallel.{field}: must be true or false (got {sec[field]!r})")
    if "recompute_granularity" in sec:
        r = sec["recompute_granularity"]
        if r in RECOMPUTE:
            vals["recompute"] = RECOMPUTE[r]
        else:
            errors.append(
                f"parallel.recompute_granularity: must be one of {sorted(RECOMPUTE)} (got {r!r})"
            )
    return ParallelSettings(**vals)


def parse_fp8(raw: dict[str, Any], errors: list[str]) -> dict[str, Any]:
    """`[fp8]` of a raw config: {'recipe': none|delayed|current, 'first_last_layers_bf16'}."""
    sec = raw.get("fp8", {})
    if not isinstance(sec, dict):
        errors.append("fp8: must be a table")
        return {"recipe": "none", "first_last_layers_bf16": False}
    for k in sorted(set(sec) - {"recipe", "first_last_layers_bf16"}):
        errors.append(f"fp8.{k}: unknown field (known: first_last_layers_bf16, recipe)")
    recipe = sec.get("recipe", "none")
    if recipe == "mxfp8":
        errors.append(
            "fp8.recipe: 'mxfp8' needs Blackwell GPUs; on H100 use 'delayed' or 'current'"
        )
        recipe = "none"
    elif recipe not in FP8_RECIPES:
        errors.append(f"fp8.recipe: must be one of none, delayed, current (got {recipe!r})")
        recipe = "none"
    bf16_ends = sec.get("first_last_layers_bf16", False)
    if not isinstance(bf16_ends, bool):
        errors.append(f"fp8.first_last_layers_bf16: must be true or false (got {bf16_ends!r})")
        bf16_ends = False
    return {"recipe": FP8_RECIPES[recipe], "first_last_layers_bf16": bf16_ends}


def _int_field(raw: dict[str, Any], name: str, errors: list[str], minimum: int = 1) -> int | None:
    v = raw.get(name)
    if v is None:
        errors.append(f"{name}: missing")
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        errors.append(f"{name}: must be an integer >= {minimum} (got {v!r})")
        return None
    return v


def _resolve_model(raw: dict[str, Any], base_dir: Path | None, errors: list[str]):
    from vla_train.config import ModelSection

    sec = raw.get("model")
    if not isinstance(sec, dict):
        errors.append("model: missing (give model.preset or model.config)")
        return None
    try:
        model = ModelSection.model_validate(sec)
        if model.config is not None and not model.config.is_absolute() and base_dir is not None:
            model = model.model_copy(update={"config": base_dir / model.config})
        return model.resolve()
    except ValueError as e:  # pydantic ValidationError and vla_model.ConfigError
        errors.append(f"model: {e}".replace("\n", " "))
        return None


# ---- the plan ---------------------------------------------------------------------------------


def _gb(x: float) -> float:
    return round(x / 1e9, 2)


def make_plan(
    raw: dict[str, Any],
    nodes: int,
    gpus_per_node: int,
    *,
    base_dir: Path | None = None,
    source: str = "config",
    assume_mfu: float = 0.45,
    peak_tflops: float = H100_BF16_PEAK_TFLOPS,
    gpu_memory_gb: float = H100_MEMORY_GB,
    allow_over_budget: bool = False,
) -> dict[str, Any]:
    """Check the layout of `raw` on `nodes` x `gpus_per_node` GPUs and estimate memory and speed.

    Raises `LaunchError` listing every problem (each names its field); returns a JSON-ready dict.
    """
    from vla_model.accounting import (
        LayoutError,
        ParallelLayout,
        count_parameters,
        flops_per_token,
        memory_per_gpu,
    )

    errors: list[str] = []
    warnings: list[str] = []
    if nodes < 1:
        errors.append(f"--nodes must be >= 1 (got {nodes})")
    if gpus_per_node < 1:
        errors.append(f"--gpus-per-node must be >= 1 (got {gpus_per_node})")
    if not 0 < assume_mfu <= 1:
        errors.append(f"--assume-mfu must be in (0, 1] (got {assume_mfu})")
    if errors:
        raise LaunchError(f"{source}: " + "; ".join(errors))
    world = nodes * gpus_per_node

    engine = raw.get("engine", "torch")
    if engine not in ("torch", "megatron"):
        errors.append(f"engine: must be 'torch' or 'megatron' (got {engine!r})")
    par = parse_parallel(raw, errors)
    fp8 = parse_fp8(raw, errors)
    seq = _int_field(raw, "seq_length", errors, minimum=2)
    micro = _int_field(raw, "micro_batch_size", errors)
    gbs = _int_field(raw, "global_batch_size", errors)
    cfg = _resolve_model(raw, base_dir, errors)
    if errors:
        raise LaunchError(f"{source}: " + "; ".join(errors))

    tp, pp, ep, cp, etp = par.tp, par.pp, par.ep, par.cp, par.expert_tp
    if engine == "torch":
        for field, attr in _INT_FIELDS.items():
            if (getattr(par, attr) or 1) > 1:
                errors.append(
                    f"parallel.{field} ({getattr(par, attr)}): the torch engine is data-parallel "
                    'only; set engine = "megatron"'
                )
        if fp8["recipe"] != "none":
            errors.append(f'fp8.recipe ({fp8["recipe"]!r}) needs engine = "megatron"')
    elif cfg.extras.enabled or cfg.moe is not None:
        from vla_model.megatron import unsupported_options

        for problem in unsupported_options(cfg):
            errors.append(f"model: megatron-core cannot express {problem}")

    # world size and the layout
    model_parallel = tp * pp * cp
    if world % model_parallel:
        errors.append(
            f"world size {world} (--nodes {nodes} x --gpus-per-node {gpus_per_node}) is not "
            f"divisible by parallel.tensor_model_parallel_size ({tp}) x "
            f"parallel.pipeline_model_parallel_size ({pp}) x "
            f"parallel.context_parallel_size ({cp}) = {model_parallel}"
        )
    dp = world // model_parallel if world % model_parallel == 0 else 0

    # the model against the layout
    for value, what in (
        (cfg.num_attention_heads, "num_attention_heads"),
        (cfg.num_kv_heads, "num_kv_heads"),
    ):
        if value % tp:
            errors.append(
                f"parallel.tensor_model_parallel_size ({tp}) must divide the model's {what} "
                f"({value})"
            )
    if not all(cfg.moe_layers) and cfg.ffn_hidden_size % tp:
        errors.append(
            f"parallel.tensor_model_parallel_size ({tp}) must divide the model's "
            f"ffn_hidden_size ({cfg.ffn_hidden_size})"
        )
    if cfg.num_layers % pp:
        errors.append(
            f"parallel.pipeline_model_parallel_size ({pp}) must divide the model's num_layers "
            f"({cfg.num_layers})"
        )
    if par.vpp is not None:
        if pp == 1:
            errors.append(
                "parallel.virtual_pipeline_model_parallel_size needs "
                "parallel.pipeline_model_parallel_size > 1"
            )
        elif cfg.num_layers % (pp * par.vpp):
            errors.append(
                f"parallel.pipeline_model_parallel_size ({pp}) x "
                f"parallel.virtual_pipeline_model_parallel_size ({par.vpp}) must divide the "
                f"model's num_layers ({cfg.num_layers})"
            )
    if cfg.moe is None:
        if ep > 1:
            errors.append(
                f"parallel.expert_model_parallel_size ({ep}) > 1 needs an MoE model "
                f"('{cfg.name}' is dense)"
            )
        if par.etp not in (None, tp):
            errors.append("parallel.expert_tensor_parallel_size needs an MoE model")
    else:
        if cfg.moe.num_experts % ep:
            errors.append(
                f"parallel.expert_model_parallel_size ({ep}) must divide the model's "
                f"moe.num_experts ({cfg.moe.num_experts})"
            )
        if cfg.moe.expert_ffn_hidden_size % etp:
            errors.append(
                f"expert tensor parallel size ({etp}) must divide the model's "
                f"moe.expert_ffn_hidden_size ({cfg.moe.expert_ffn_hidden_size})"
            )
        if dp and (tp * cp * dp) % (ep * etp):
            errors.append(
                f"parallel.expert_model_parallel_size ({ep}) x expert tensor parallel size "
                f"({etp}) must divide tensor x context x data parallel ({tp * cp * dp})"
            )
        if ep > 1 and tp > 1 and not par.sequence_parallel:
            errors.append(
                "parallel.sequence_parallel must be true with expert parallelism and tensor "
                "parallelism (megatron-core requires it)"
            )

    # sequence and batch
    if seq > cfg.max_position_embeddings:
        errors.append(
            f"seq_length ({seq}) exceeds the model's max_position_embeddings "
            f"({cfg.max_position_embeddings})"
        )
    if cp > 1 and seq % (2 * cp):
        errors.append(
            f"seq_length ({seq}) must be divisible by 2 x parallel.context_parallel_size "
            f"({2 * cp}) (load-balanced causal context parallelism)"
        )
    if par.sequence_parallel and tp > 1 and (seq // cp) % tp:
        errors.append(
            f"seq_length / parallel.context_parallel_size ({seq // cp}) must be divisible by "
            f"parallel.tensor_model_parallel_size ({tp}) with sequence_parallel"
        )
    if dp and gbs % (micro * dp):
        errors.append(
            f"global_batch_size ({gbs}) must be divisible by micro_batch_size ({micro}) x "
            f"data-parallel size ({dp}) = {micro * dp}"
        )
    if errors:
        raise LaunchError(f"{source}: " + "; ".join(errors))

    # warnings: legal but probably slow or surprising
    if par.sequence_parallel and tp == 1:
        warnings.append("parallel.sequence_parallel has no effect with tensor parallel size 1")
    if tp > gpus_per_node:
        warnings.append(
            f"tensor parallel size {tp} spans nodes ({gpus_per_node} GPUs each): TP "
            "all-reduces would cross the network"
        )
    if cfg.moe is not None and ep * etp > gpus_per_node:
        warnings.append(
            f"expert x expert-tensor parallel ({ep * etp}) spans nodes: the MoE all-to-all "
            "crosses the network"
        )
    num_micro = gbs // (micro * dp)
    if pp > 1 and num_micro < pp:
        warnings.append(
            f"{num_micro} micro-batches per step < {pp} pipeline stages: a large pipeline bubble"
        )
    if par.vpp is not None and num_micro % pp:
        warnings.append(
            f"{num_micro} micro-batches per step is not a multiple of the {pp} pipeline stages "
            "(older megatron-core interleaved schedules require it)"
        )
    if engine == "megatron" and not par.distributed_optimizer and dp > 1:
        warnings.append(
            "parallel.use_distributed_optimizer is false: the optimizer state is replicated on "
            "every data-parallel rank (12 bytes/param)"
        )

    # memory
    sp = par.sequence_parallel and tp > 1
    layout = ParallelLayout(tp=tp, pp=pp, dp=dp * cp, ep=ep, etp=par.etp if cfg.moe else None)
    try:
        mem = memory_per_gpu(cfg, layout, seq // cp, micro, sp, par.recompute)
    except LayoutError as e:  # backstop: the checks above should have caught it
        raise LaunchError(f"{source}: parallel layout: {e}") from None
    params_here = mem.dense_params + mem.expert_params
    if engine == "torch":  # fp32 weights + grads + unsharded AdamW (bf16 autocast)
        mem = replace(
            mem, weights=4.0 * params_here, grads=4.0 * params_here, optimizer=8.0 * params_here
        )
        mem_model = "torch DDP: fp32 weights + grads + AdamW state (16 bytes/param), unsharded"
    elif not par.distributed_optimizer:
        mem = replace(mem, optimizer=12.0 * params_here)
        mem_model = "megatron, plain optimizer: 18 bytes/param (not sharded)"
    else:
        mem_model = "megatron distributed optimizer: 6 + 12/DP bytes/param"
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
        "recompute": par.recompute,
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
    counts = count_parameters(cfg)
    fpt = flops_per_token(cfg, seq)
    tokens_per_step = gbs * seq
    flops_per_step = fpt.total * tokens_per_step
    step_time = flops_per_step / (world * peak_tflops * 1e12 * assume_mfu)
    sched = raw.get("schedule", {})
    train_steps = sched.get("train_steps") if isinstance(sched, dict) else None
    throughput: dict[str, Any] = {
        "assume_mfu": assume_mfu,
        "peak_tflops_per_gpu": peak_tflops,
        "flops_per_token": fpt.total,
        "flops_per_step": flops_per_step,
        "tokens_per_step": tokens_per_step,
        "step_time_s": round(step_time, 4),
        "tokens_per_s": round(tokens_per_step / step_time),
        "tokens_per_s_per_gpu": round(tokens_per_step / step_time / world),
        "pipeline_bubble_fraction": round((pp - 1) / ((par.vpp or 1) * num_micro), 4),
    }
    if isinstance(train_steps, int) and train_steps > 0:
        throughput.update(
            train_steps=train_steps,
            train_tokens=train_steps * tokens_per_step,
            train_time_h=round(train_steps * step_time / 3600, 2),
            gpu_hours=round(train_steps * step_time * world / 3600),
        )

    return {
        "source": source,
        "engine": engine,
        "model": {
            "name": cfg.name,
            "kind": "moe" if cfg.is_moe else "dense",
            "params_total": counts.total,
            "params_active": counts.active,
            "num_layers": cfg.num_layers,
            "num_attention_heads": cfg.num_attention_heads,
            "num_kv_heads": cfg.num_kv_heads,
            "num_experts": cfg.moe.num_experts if cfg.moe else 0,
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
            "vpp": par.vpp,
            "ep": ep,
            "etp": etp,
            "cp": cp,
            "dp": dp,
            "expert_dp": layout.expert_dp,
            "sequence_parallel": sp,
            "use_distributed_optimizer": par.distributed_optimizer,
        },
        "batch": {
            "seq_length": seq,
            "micro_batch_size": micro,
            "global_batch_size": gbs,
            "micro_batches_per_step": num_micro,
            "tokens_per_step": tokens_per_step,
        },
        "fp8": fp8,
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
MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"
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
        problem = check_train_config(raw, source, base_dir)
        if problem is not None:
            fail(problem)
        plan = make_plan(
            raw,
            nodes,
            gpus_per_node,
            base_dir=base_dir,
            source=source,
            assume_mfu=assume_mfu,
            peak_tflops=peak_tflops,
            gpu_memory_gb=gpu_memory_gb,
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
    "ParallelSettings",
    "check_train_config",
    "format_plan",
    "launch_command",
    "load_raw",
    "make_plan",
    "recipe_names",
    "recipe_text",
    "sbatch_script",
    "torchrun_script",
    "write_launch",
]
