"""The `vla-model` command line (click): presets, describe, config, megatron-config."""

from __future__ import annotations

import json
from pathlib import Path

import click

from vla_model import __version__
from vla_model.accounting import (
    LayoutError,
    ParallelLayout,
    count_parameters,
    describe,
    flops_per_token,
)
from vla_model.config import ConfigError, ModelConfig
from vla_model.presets import get_preset, preset_names, resolve_config


def _load(spec: str, vocab_layout: str | None) -> ModelConfig:
    try:
        cfg = resolve_config(spec)
        return cfg.with_vocab_layout(vocab_layout) if vocab_layout else cfg
    except ConfigError as err:
        raise click.ClickException(str(err)) from None


def _si(n: float, unit: str = "") -> str:
    for div, suffix in ((1e12, "T"), (1e9, "B" if not unit else "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.2f} {suffix}{unit}"
    return f"{n:.0f} {unit}".rstrip()


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vla-model")
def main() -> None:
    """Model configs, presets and parameter/FLOP/memory accounting for the VLA backbone."""


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def presets(as_json: bool) -> None:
    """List the presets with their parameter counts and training FLOPs per token."""
    rows = []
    for name in preset_names():
        cfg = get_preset(name)
        p = count_parameters(cfg)
        rows.append(
            {
                "name": name,
                "kind": "moe" if cfg.is_moe else "dense",
                "layers": cfg.num_layers,
                "hidden": cfg.hidden_size,
                "total_params": p.total,
                "active_params": p.active,
                "flops_per_token": flops_per_token(cfg).total,
                "seq_len": cfg.max_position_embeddings,
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(
        f"{'preset':<14} {'kind':<6} {'layers':>6} {'hidden':>6} {'total':>10} {'active':>10} "
        f"{'FLOPs/token':>12} {'seq':>5}"
    )
    for r in rows:
        click.echo(
            f"{r['name']:<14} {r['kind']:<6} {r['layers']:>6} {r['hidden']:>6} "
            f"{_si(r['total_params']):>10} {_si(r['active_params']):>10} "
            f"{r['flops_per_token']:>12.3e} {r['seq_len']:>5}"
        )


@main.command("describe")
@click.argument("spec")
@click.option("--tp", default=1, show_default=True, help="Tensor-parallel size.")
@click.option("--pp", default=1, show_default=True, help="Pipeline-parallel size.")
@click.option("--ep", default=1, show_default=True, help="Expert-parallel size.")
@click.option("--etp", type=int, default=None, help="Expert tensor-parallel size [default: tp].")
@click.option("--dp", default=1, show_default=True, help="Data-parallel size.")
@click.option(
    "--seq", type=int, default=None, help="Sequence length [default: max_position_embeddings]."
)
@click.option("--micro-batch", default=1, show_default=True, help="Micro-batch size (sequences).")
@click.option(
    "--sequence-parallel/--no-sequence-parallel",
    default=True,
    show_default=True,
    help="Megatron sequence parallelism (only matters with tp > 1).",
)
@click.option(
    "--recompute",
    type=click.Choice(["none", "selective", "full"]),
    default="selective",
    show_default=True,
    help="Activation recomputation.",
)
@click.option(
    "--vocab-layout",
    type=click.Path(dir_okay=False),
    default=None,
    help="Take vocab_size from this vocab_layout.json.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def describe_cmd(
    spec, tp, pp, ep, etp, dp, seq, micro_batch, sequence_parallel, recompute, vocab_layout, as_json
) -> None:
    """Parameters, FLOPs per token and memory per GPU of SPEC (a preset name or config.json)."""
    cfg = _load(spec, vocab_layout)
    if seq is not None and seq < 1 or micro_batch < 1:
        raise click.ClickException("--seq and --micro-batch must be >= 1")
    try:
        d = describe(
            cfg,
            ParallelLayout(tp=tp, pp=pp, dp=dp, ep=ep, etp=etp),
            seq,
            micro_batch,
            sequence_parallel,
            recompute,
        )
    except LayoutError as err:
        raise click.ClickException(f"layout does not fit {cfg.name}: {err}") from None
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    p, f, lay, m = d["params"], d["flops_per_token"], d["layout"], d["memory_per_gpu_bytes"]
    kind = "dense"
    if cfg.moe is not None:
        moe = cfg.moe
        kind = f"MoE {moe.num_experts} experts, top-{moe.top_k}, {sum(cfg.moe_layers)} MoE layers"
    lines = [
        (
            "model",
            f"{cfg.name} ({kind}); {cfg.num_layers} layers, hidden {cfg.hidden_size}, "
            f"{cfg.num_attention_heads}/{cfg.num_kv_heads} heads x {cfg.head_dim}, "
            f"vocab {cfg.vocab_size}",
        ),
        ("params total", f"{_si(p['total'])} ({p['total']:,})"),
        ("params active", f"{_si(p['active'])} ({p['active']:,})"),
        (
            "embedding",
            f"input {_si(p['embedding'])}, output layer {_si(p['output_layer'])}"
            + (" (tied)" if cfg.tie_embeddings else ""),
        ),
        (
            "non-embedding",
            f"total {_si(p['non_embedding'])}, active {_si(p['non_embedding_active'])}",
        ),
        (
            "FLOPs/token",
            f"{f['total']:.3e} train (fwd+bwd) at seq {f['seq_len']}: 6N {f['matmul']:.3e} "
            f"+ attention {f['attention']:.3e} + output {f['output_layer']:.3e}; "
            f"forward {f['forward']:.3e}",
        ),
        (
            "layout",
            f"tp={lay['tp']} pp={lay['pp']} dp={lay['dp']} ep={lay['ep']} etp={lay['etp']} "
            f"expert-dp={lay['expert_dp']} -> {lay['num_gpus']} GPUs; micro-batch "
            f"{lay['micro_batch']}, SP {'on' if lay['sequence_parallel'] else 'off'}, "
            f"recompute {lay['recompute']}",
        ),
        (
            f"memory/GPU (stage {m['stage']})",
            f"{_gib(m['total'])} = weights {_gib(m['weights'])} + grads {_gib(m['grads'])} + "
            f"optimizer {_gib(m['optimizer'])} + activations {_gib(m['activations'])}",
        ),
        ("params/GPU", f"dense {_si(m['dense_params'])}, experts {_si(m['expert_params'])}"),
    ]
    width = max(len(k) for k, _ in lines)
    for k, v in lines:
        click.echo(f"{k:<{width}}  {v}")


@main.command("config")
@click.argument("spec")
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write config.json here (default: print it).",
)
@click.option(
    "--vocab-layout",
    type=click.Path(dir_okay=False),
    default=None,
    help="Take vocab_size from this vocab_layout.json.",
)
def config_cmd(spec: str, out: str | None, vocab_layout: str | None) -> None:
    """Validate SPEC (preset or config.json) and print or write it as config.json."""
    cfg = _load(spec, vocab_layout)
    if out is None:
        click.echo(cfg.to_json(), nl=False)
    else:
        click.echo(f"wrote {cfg.save(Path(out))}")


@main.command("megatron-config")
@click.argument("spec")
@click.option(
    "--layer-spec",
    type=click.Choice(["te", "local"]),
    default="te",
    show_default=True,
    help="Layer spec the config is for (te: grouped experts, local: sequential).",
)
@click.option(
    "--dtype",
    type=click.Choice(["float32", "bfloat16"]),
    default="bfloat16",
    show_default=True,
)
@click.option(
    "--vocab-layout",
    type=click.Path(dir_okay=False),
    default=None,
    help="Take vocab_size from this vocab_layout.json.",
)
def megatron_config_cmd(spec: str, layer_spec: str, dtype: str, vocab_layout: str | None) -> None:
    """Print the megatron-core TransformerConfig fields (JSON) that realise SPEC (preset or
    config.json), or fail naming every option megatron-core cannot express."""
    import torch

    from vla_model.megatron import MegatronConfigError, transformer_config_kwargs

    cfg = _load(spec, vocab_layout)
    try:
        kw = transformer_config_kwargs(cfg, spec=layer_spec, params_dtype=getattr(torch, dtype))
    except MegatronConfigError as err:
        raise click.ClickException(str(err)) from None
    kw["activation_func"] = kw["activation_func"].__name__
    kw["params_dtype"] = dtype
    gpt = {
        "vocab_size": cfg.vocab_size,
        "max_sequence_length": cfg.max_position_embeddings,
        "share_embeddings_and_output_weights": cfg.tie_embeddings,
        "position_embedding_type": "rope",
        "rotary_base": cfg.rope_theta,
    }
    click.echo(json.dumps({"transformer_config": kw, "gpt_model": gpt}, indent=2))
