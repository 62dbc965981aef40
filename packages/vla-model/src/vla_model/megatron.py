"""megatron-core realisation of a `ModelConfig`: `TransformerConfig`, layer spec, `GPTModel`, and
weights moved both ways between it and our reference `VLAModel`.

```python
from vla_model.megatron import (build_gpt_model, export_reference_weights, init_single_process,
                                load_reference_weights)

init_single_process()                      # torch.distributed + parallel_state (1, 1)
gpt = build_gpt_model(cfg, spec="auto")    # TE spec when transformer_engine imports, else local
load_reference_weights(gpt, VLAModel(cfg).state_dict(), cfg)
ours = export_reference_weights(gpt, cfg)  # back to our names (exactly the same tensors)
```

Every `ModelConfig` option that megatron-core 0.16 expresses is set on the `TransformerConfig`
(`transformer_config_kwargs` lists them without importing megatron); the options it cannot
express raise `MegatronConfigError` (`unsupported_options` names them all):

- any VLA extra (camera / timestamp embeddings, continuous projector, action head);
- `moe.expert_bias` with the softmax router (megatron's aux-loss-free bias is sigmoid-only);
- the sigmoid router without `normalize_topk` for top-k > 1 (megatron always renormalises
  sigmoid top-k weights), or with `normalize_topk` for top-1 (megatron then uses the raw score);
- the softmax router with top-1 and `normalize_topk` (megatron needs `moe_router_pre_softmax`
  for k = 1, which keeps the raw probability instead of weight 1).

Router mapping: softmax with `normalize_topk` -> softmax over the top-k logits
(`moe_router_pre_softmax=False`, the same weights); softmax without it -> `pre_softmax=True`.

megatron-core (extra `megatron`) is imported lazily, inside the functions that need it.
`build_gpt_model` works around one megatron-core 0.16.1 bug without Transformer Engine (see
`patch_megatron_without_te`).
"""

from __future__ import annotations

import importlib.util
import os
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import torch

from vla_model.config import ModelConfig
from vla_model.megatron_mapping import (
    ExpertLayout,
    MegatronMappingError,
    Spec,
    default_expert_layout,
    from_megatron_state_dict,
    to_megatron_state_dict,
)
from vla_model.model import VLAModel

if TYPE_CHECKING:  # pragma: no cover
    from megatron.core.models.gpt.gpt_model import GPTModel
    from megatron.core.transformer.transformer_config import TransformerConfig

SpecChoice = Literal["auto", "te", "local"]
LOAD_BALANCING = {"aux": "aux_loss", "seq_aux": "seq_aux_loss", "none": "none"}
_TE_MODULE_PREFIX = "megatron.core.extensions.transformer_engine"


class MegatronConfigError(ValueError):
    """A `ModelConfig` option that megatron-core's GPTModel cannot express."""


def have_megatron_core() -> bool:
    """True when megatron-core is importable."""
    return (
        importlib.util.find_spec("megatron") is not None
        and importlib.util.find_spec("megatron.core") is not None
    )


def have_transformer_engine() -> bool:
    """True when `transformer_engine.pytorch` imports (it needs CUDA libraries)."""
    if importlib.util.find_spec("transformer_engine") is None:
        return False
    try:
        import transformer_engine.pytorch  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken TE install counts as absent
        return False
    return True


def resolve_spec(spec: SpecChoice) -> Spec:
    """`auto` -> `te` when Transformer Engine is importable, else `local`."""
    if spec == "auto":
        return "te" if have_transformer_engine() else "local"
    if spec not in ("te", "local"):
        raise MegatronConfigError(f"spec must be 'auto', 'te' or 'local', not '{spec}'")
    return spec


def unsupported_options(cfg: ModelConfig) -> list[str]:
    """Why `cfg` cannot be a megatron-core GPTModel (empty when it can)."""
    out = []
    if cfg.extras.enabled:
        out.append(f"VLA extras {cfg.extras.enabled} (no GPTModel counterpart)")
    m = cfg.moe
    if m is not None:
        if m.expert_bias and m.score_function != "sigmoid":
            out.append(
                "moe.expert_bias with score_function 'softmax' "
                "(megatron's aux-loss-free expert bias is sigmoid-only)"
            )
        if m.score_function == "sigmoid" and m.top_k > 1 and not m.normalize_topk:
            out.append(
                "moe.normalize_topk=false with the sigmoid router and top_k > 1 "
                "(megatron always renormalises sigmoid top-k weights)"
            )
        if m.score_function == "sigmoid" and m.top_k == 1 and m.normalize_topk:
            out.append(
                "moe.normalize_topk=true with the sigmoid router and top_k = 1 "
                "(megatron uses the raw sigmoid score, not weight 1)"
            )
        if m.score_function == "softmax" and m.top_k == 1 and m.normalize_topk:
            out.append(
                "moe.normalize_topk=true with the softmax router and top_k = 1 "
                "(megatron requires moe_router_pre_softmax for k = 1: raw probability, "
                "not weight 1)"
            )
    return out


def check_supported(cfg: ModelConfig) -> None:
    """Raise `MegatronConfigError` listing every option megatron-core cannot express."""
    problems = unsupported_options(cfg)
    if problems:
        raise MegatronConfigError(
            f"config '{cfg.name}' has options megatron-core cannot express: " + "; ".join(problems)
        )


def transformer_config_kwargs(
    cfg: ModelConfig,
    *,
    spec: Spec = "local",
    params_dtype: torch.dtype = torch.float32,
    experts: ExpertLayout | None = None,
    token_dispatcher: str = "allgather",
    router_dtype: str | None = None,
    use_cpu_initialization: bool = False,
    **overrides: Any,
) -> dict[str, Any]:
    """The `TransformerConfig(**kwargs)` that realises `cfg` (megatron-core is not imported).

    `experts` picks the routed-expert module (`grouped` = TEGroupedMLP, TE spec only;
    `sequential` = SequentialMLP); `token_dispatcher` is megatron's default `allgather` (use
    `alltoall` for expert parallelism; it needs CUDA to be built); `router_dtype` is megatron's
    `moe_router_dtype` (None = the activation dtype, as our reference router); `overrides` are
    set last (e.g. parallel sizes, `recompute_granularity`).
    """
    check_supported(cfg)
    experts = experts or default_expert_layout(spec)
    if experts == "grouped" and spec != "te" and cfg.is_moe:
        raise MegatronConfigError(
            "grouped experts (TEGroupedMLP) need the TE spec; use experts='sequential'"
        )
    if params_dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise MegatronConfigError(
            f"params_dtype must be float32/bfloat16/float16, not {params_dtype}"
        )
    kw: dict[str, Any] = dict(
        num_layers=cfg.num_layers,
        hidden_size=cfg.hidden_size,
        num_attention_heads=cfg.num_attention_heads,
        num_query_groups=cfg.num_kv_heads,
        kv_channels=cfg.head_dim,
        ffn_hidden_size=cfg.ffn_hidden_size,
        normalization="RMSNorm",
        layernorm_epsilon=cfg.norm_eps,
        qk_layernorm=cfg.qk_norm,
        gated_linear_unit=True,
        activation_func=torch.nn.functional.silu,
        add_bias_linear=False,
        add_qkv_bias=False,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        init_method_std=cfg.init_std,
        rotary_interleaved=False,
        params_dtype=params_dtype,
        bf16=params_dtype == torch.bfloat16,
        fp16=params_dtype == torch.float16,
        use_cpu_initialization=use_cpu_initialization,
    )
    m = cfg.moe
    if m is not None:
        kw.update(
            num_moe_experts=m.num_experts,
            moe_router_topk=m.top_k,
            moe_ffn_hidden_size=m.expert_ffn_hidden_size,
            moe_layer_freq=list(m.moe_layer_freq)
            if isinstance(m.moe_layer_freq, list)
            else m.moe_layer_freq,
            moe_shared_expert_intermediate_size=m.shared_expert_ffn_hidden_size or None,
            moe_shared_expert_gate=m.shared_expert_gate,
            moe_router_score_function=m.score_function,
            moe_router_pre_softmax=m.score_function == "softmax" and not m.normalize_topk,
            moe_router_enable_expert_bias=m.expert_bias,
            moe_router_bias_update_rate=m.expert_bias_update_rate,
            moe_router_load_balancing_type=LOAD_BALANCING[m.load_balancing],
            moe_aux_loss_coeff=m.aux_loss_coeff,
            moe_z_loss_coeff=m.z_loss_coeff or None,
            moe_expert_capacity_factor=None if m.dropless else m.capacity_factor,
            moe_token_drop_policy=m.drop_policy,
            moe_grouped_gemm=experts == "grouped",
            moe_token_dispatcher_type=token_dispatcher,
            moe_router_dtype=router_dtype,
        )
    kw.update(overrides)
    return kw


def patch_megatron_without_te() -> None:
    """megatron-core 0.16.1 without Transformer Engine: `moe_utils.router_gating_linear` tests
    `te_general_gemm is not None`, but that name is only bound when TE imports, so every MoE
    forward raises `NameError`. Bind it to None (what the code means). No-op with TE."""
    from megatron.core.transformer.moe import moe_utils

    if not hasattr(moe_utils, "te_general_gemm"):
        moe_utils.te_general_gemm = None


def to_transformer_config(cfg: ModelConfig, **kwargs: Any) -> TransformerConfig:
    """`TransformerConfig(**transformer_config_kwargs(cfg, **kwargs))`."""
    from megatron.core.transformer.transformer_config import TransformerConfig

    return TransformerConfig(**transformer_config_kwargs(cfg, **kwargs))


def decoder_block_spec(
    tc: TransformerConfig, spec: Spec, vp_stage: int | None = None, *, te_op_fuser: bool = False
) -> Any:
    """megatron's per-layer block spec (dense and MoE layers as `moe_layer_freq` says):
    `get_gpt_decoder_block_spec`, which uses `get_gpt_layer_with_transformer_engine_spec` or
    `get_gpt_layer_local_spec` (RMSNorm) for each layer. `te_op_fuser` (TE spec only) runs each
    dense MLP as megatron's `TEFusedMLP`: RMSNorm, FC1, SwiGLU and FC2 as one
    `transformer_engine.pytorch.ops.Sequential`, whose fused kernels write the SwiGLU output
    straight in FC2's FP8 input format (same parameters and checkpoint keys as `MLP`)."""
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_decoder_block_spec

    if spec == "te" and not have_transformer_engine():
        raise MegatronConfigError("spec 'te' needs transformer_engine, which does not import")
    if te_op_fuser and spec != "te":
        raise MegatronConfigError("te_op_fuser needs the TE spec (TEFusedMLP wraps TE layers)")
    block = get_gpt_decoder_block_spec(
        tc, use_transformer_engine=spec == "te", normalization="RMSNorm", vp_stage=vp_stage
    )
    if te_op_fuser:
        block = _with_fused_dense_mlps(block)
    return block


def _with_fused_dense_mlps(block: Any) -> Any:
    """`block` with every dense `MLP` submodule spec swapped for megatron's `TEFusedMLP`."""
    import dataclasses

    from megatron.core.extensions.transformer_engine import TEFusedMLP
    from megatron.core.transformer.mlp import MLP

    layers = []
    for layer in block.layer_specs:
        mlp = layer.submodules.mlp
        if getattr(mlp, "module", None) is MLP:
            mlp = dataclasses.replace(mlp, module=TEFusedMLP)
            layer = dataclasses.replace(
                layer, submodules=dataclasses.replace(layer.submodules, mlp=mlp)
            )
        layers.append(layer)
    return dataclasses.replace(block, layer_specs=layers)


def build_gpt_model(
    cfg: ModelConfig,
    spec: SpecChoice = "auto",
    *,
    params_dtype: torch.dtype = torch.float32,
    experts: ExpertLayout | None = None,
    use_cpu_initialization: bool | None = None,
    pre_process: bool = True,
    post_process: bool = True,
    vp_stage: int | None = None,
    te_op_fuser: bool = False,
    **config_overrides: Any,
) -> GPTModel:
    """A megatron-core `GPTModel` with `cfg`'s architecture (RoPE, untied/tied output layer).

    Needs `torch.distributed` and megatron's `parallel_state` initialised (`init_single_process`
    for one process). `use_cpu_initialization` defaults to "no CUDA available"; the model's
    parameters are on the current CUDA device otherwise. Under pipeline parallelism pass the
    stage's `pre_process` (has the embedding) / `post_process` (has the output layer) and, with
    virtual stages, `vp_stage`; `te_op_fuser`: see `decoder_block_spec`; parallel sizes go in
    `config_overrides`. The spec actually used is stored as `model.vla_spec`, the expert layout
    as `model.vla_experts`.
    """
    from megatron.core.models.gpt.gpt_model import GPTModel

    patch_megatron_without_te()
    s = resolve_spec(spec)
    experts = experts or default_expert_layout(s)
    if use_cpu_initialization is None:
        use_cpu_initialization = not torch.cuda.is_available()
    tc = to_transformer_config(
        cfg,
        spec=s,
        params_dtype=params_dtype,
        experts=experts,
        use_cpu_initialization=use_cpu_initialization,
        **config_overrides,
    )
    theta = cfg.rope_theta
    model = GPTModel(
        config=tc,
        transformer_layer_spec=decoder_block_spec(tc, s, vp_stage, te_op_fuser=te_op_fuser),
        vocab_size=cfg.vocab_size,
        max_sequence_length=cfg.max_position_embeddings,
        share_embeddings_and_output_weights=cfg.tie_embeddings,
        position_embedding_type="rope",
        rotary_percent=1.0,
        rotary_base=int(theta) if float(theta).is_integer() else theta,
        pre_process=pre_process,
        post_process=post_process,
        vp_stage=vp_stage,
    )
    model.vla_spec = s
    model.vla_experts = experts if cfg.is_moe else None
    return model


def spec_of(model: torch.nn.Module) -> Spec:
    """`te` when the model holds Transformer Engine modules, else `local`."""
    stored = getattr(model, "vla_spec", None)
    if stored in ("te", "local"):
        return stored
    te = any(type(m).__module__.startswith(_TE_MODULE_PREFIX) for m in model.modules())
    return "te" if te else "local"


def experts_of(model: torch.nn.Module) -> ExpertLayout:
    """`grouped` when the model's config uses grouped GEMM experts, else `sequential`."""
    cfg = getattr(model, "config", None)
    return "grouped" if getattr(cfg, "moe_grouped_gemm", False) else "sequential"


def coverage_problems(
    mapped: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]
) -> list[str]:
    """Differences between a mapped state dict and a model's own: megatron weights we do not
    fill (`_extra_state` aside), names megatron does not have, and shape mismatches."""
    want = {k: v for k, v in target.items() if not k.endswith("_extra_state")}
    problems = [f"not filled: {k}" for k in sorted(set(want) - set(mapped))]
    problems += [f"unknown to megatron: {k}" for k in sorted(set(mapped) - set(want))]
    for k in sorted(set(want) & set(mapped)):
        if tuple(want[k].shape) != tuple(mapped[k].shape):
            problems.append(
                f"shape of {k}: megatron {tuple(want[k].shape)}, mapped {tuple(mapped[k].shape)}"
            )
    return problems


def load_reference_weights(
    model: torch.nn.Module,
    state_dict: Mapping[str, torch.Tensor] | torch.nn.Module,
    cfg: ModelConfig,
    spec: Spec | None = None,
    experts: ExpertLayout | None = None,
) -> None:
    """Copy our reference weights (a `VLAModel` or its state dict) into a megatron `GPTModel`.

    Every megatron parameter and persistent buffer (except TE's `_extra_state`) must be filled
    with the right shape, else `MegatronMappingError`; values are cast to the model's dtypes.
    """
    sd = state_dict.state_dict() if isinstance(state_dict, torch.nn.Module) else state_dict
    spec = spec or spec_of(model)
    experts = experts or experts_of(model)
    mapped = to_megatron_state_dict(sd, cfg, spec, experts)
    problems = coverage_problems(mapped, model.state_dict())
    if problems:
        raise MegatronMappingError(
            f"{len(problems)} mismatches with the megatron model: " + "; ".join(problems[:20])
        )
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    bad = [k for k in missing if not k.endswith("_extra_state")] + list(unexpected)
    if bad:  # pragma: no cover - coverage_problems already checks this
        raise MegatronMappingError(f"load_state_dict left {bad}")


def export_reference_weights(
    model: torch.nn.Module,
    cfg: ModelConfig,
    spec: Spec | None = None,
    experts: ExpertLayout | None = None,
) -> dict[str, torch.Tensor]:
    """A megatron `GPTModel`'s weights under our names and layouts (`VLAModel.load_state_dict`)."""
    spec = spec or spec_of(model)
    experts = experts or experts_of(model)
    sd = {k: v.detach() for k, v in model.state_dict().items() if v is not None}
    return from_megatron_state_dict(sd, cfg, spec, experts)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_single_process(seed: int = 1234, backend: str | None = None) -> None:
    """One-process `torch.distributed` group (NCCL with CUDA, else gloo) and megatron's
    `parallel_state` with tp = pp = ep = 1; seeds megatron's CUDA RNG tracker when CUDA is
    available. Safe to call twice."""
    import torch.distributed as dist

    if not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(
            backend or ("nccl" if torch.cuda.is_available() else "gloo"), rank=0, world_size=1
        )
    from megatron.core import parallel_state

    if not parallel_state.model_parallel_is_initialized():
        parallel_state.initialize_model_parallel(1, 1)
    if torch.cuda.is_available():
        from megatron.core.tensor_parallel.random import model_parallel_cuda_manual_seed

        model_parallel_cuda_manual_seed(seed)


_CPU_FORWARD = False


def cpu_forward_enabled() -> bool:
    """Whether `enable_cpu_forward` patched this process (tests only)."""
    return _CPU_FORWARD


def enable_cpu_forward() -> None:
    """Tests only: let a local-spec `GPTModel` run its forward pass on CPU, and
    `megatron.core.dist_checkpointing` save/load its sharded state dict there.

    megatron-core 0.16.1 asks for CUDA in places a CPU forward passes through: tensors made on
    `torch.cuda.current_device()` (RoPE frequencies, router weights and expert-bias buffers), the
    CUDA RNG tracker forked around attention dropout, and a default causal mask made with
    `device="cuda"` (pass an explicit mask instead, as `compare_with_reference` does on CPU);
    `dist_checkpointing.save` calls `torch.cuda.synchronize()`, which raises without CUDA.
    This patches, process-wide, `torch.cuda.current_device` to return `"cpu"`,
    `torch.cuda.synchronize` to a no-op (nothing runs asynchronously on a CPU) and the tracker's
    `fork` to a no-op. Call it before building the model, in a process of its own; on a machine
    with CUDA it raises instead of patching anything."""
    import contextlib

    from megatron.core.tensor_parallel.random import get_cuda_rng_tracker

    global _CPU_FORWARD
    if torch.cuda.is_available():
        raise RuntimeError("enable_cpu_forward is for machines without CUDA")
    _CPU_FORWARD = True
    torch.cuda.current_device = lambda: "cpu"  # type: ignore[assignment]
    torch.cuda.synchronize = lambda device=None: None  # type: ignore[assignment]
    # the RNG tracker's states (megatron's `model_parallel_cuda_manual_seed`): the CPU generator's
    torch.cuda.get_rng_state = lambda device="cuda": torch.get_rng_state()  # type: ignore[assignment]
    torch.cuda.set_rng_state = lambda state, device="cuda": torch.set_rng_state(state)  # type: ignore[assignment]
    get_cuda_rng_tracker().fork = lambda *a, **k: contextlib.nullcontext()  # type: ignore[method-assign]


def random_reference(
    cfg: ModelConfig, seed: int = 0, norm_noise: float = 0.2, bias_noise: float = 0.05
) -> VLAModel:
    """A float32 `VLAModel` with random weights that make a mapping error visible: the usual
    init, then every RMSNorm weight `1 + norm_noise * N(0, 1)` (so swapped norms change the
    output) and every expert bias `bias_noise * N(0, 1)` (so it changes the routing)."""
    from vla_model.layers import RMSNorm
    from vla_model.moe import Router

    torch.manual_seed(seed)
    model = VLAModel(cfg)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, RMSNorm):
                m.weight.add_(norm_noise * torch.randn_like(m.weight))
            elif isinstance(m, Router) and m.expert_bias is not None:
                m.expert_bias.copy_(bias_noise * torch.randn_like(m.expert_bias))
    return model.eval()


def _as_dtype(model: VLAModel, dtype: torch.dtype, device: torch.device) -> VLAModel:
    """A copy in `dtype` on `device`; expert biases stay float32 (as megatron keeps them)."""
    import copy

    from vla_model.moe import Router

    out = copy.deepcopy(model).to(device=device, dtype=dtype)
    for src, dst in zip(model.modules(), out.modules(), strict=True):
        if isinstance(src, Router) and src.expert_bias is not None:
            dst.expert_bias = src.expert_bias.detach().to(device=device, dtype=torch.float32)
    return out.eval()


@torch.no_grad()
def compare_with_reference(
    cfg: ModelConfig,
    spec: SpecChoice = "auto",
    *,
    dtype: torch.dtype = torch.float32,
    experts: ExpertLayout | None = None,
    token_dispatcher: str = "allgather",
    batch: int = 2,
    seq: int = 64,
    seed: int = 0,
    reference: VLAModel | None = None,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Build our reference model and a megatron `GPTModel` from `cfg`, map the reference
    weights into it, run one random token batch through both (eval mode, `dtype`) and compare
    the logits (in bf16/fp16 through megatron's `Float16Module`, as megatron trains; our model
    cast the same way, expert biases kept in float32 as megatron keeps them). Also checks that
    every megatron weight was filled and that mapping back gives exactly the loaded weights.
    Needs `init_single_process()` first (and `enable_cpu_forward()` on a machine without CUDA,
    local spec only).

    Returns a JSON-ready dict: `max_abs_diff`, `mean_abs_diff`, `rel_l2` (‖Δ‖/‖ref‖),
    `argmax_agreement`, `max_abs_logit`, `round_trip_exact`, `num_parameters`; for a
    non-float32 dtype also the reference's own rounding, `ref_vs_ref_float32_max_abs_diff`,
    and `megatron_vs_ref_float32_max_abs_diff`.
    """
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    s = resolve_spec(spec)
    ref32 = (reference or random_reference(cfg, seed)).to(dev).eval()
    ref = ref32 if dtype == torch.float32 else _as_dtype(ref32, dtype, dev)
    gpt = build_gpt_model(
        cfg, s, params_dtype=dtype, experts=experts, token_dispatcher=token_dispatcher
    )
    gpt = gpt.to(dev)
    run: torch.nn.Module = gpt
    if dtype != torch.float32:  # as megatron trains: Float16Module casts everything (norms too)
        from megatron.core.transformer.module import Float16Module

        run = Float16Module(gpt.config, gpt)
    run.eval()
    load_reference_weights(gpt, ref32.state_dict(), cfg)
    back = export_reference_weights(gpt, cfg)
    ours = ref.state_dict()
    round_trip = back.keys() == ours.keys() and all(
        torch.equal(back[k].to(ours[k].device), ours[k]) for k in ours
    )

    gen = torch.Generator().manual_seed(seed + 1)
    ids = torch.randint(0, cfg.vocab_size, (batch, seq), generator=gen).to(dev)
    pos = torch.arange(seq, device=dev)[None].expand(batch, -1)
    mask = None
    if dev.type == "cpu":  # megatron's default causal mask is made on CUDA
        mask = torch.triu(torch.ones(seq, seq, dtype=torch.bool, device=dev), 1)[None, None]
    want = ref(ids).logits.float()
    got = run(ids, pos, mask).float()
    if tuple(got.shape) != tuple(want.shape):
        raise MegatronMappingError(f"logits shape {tuple(got.shape)} != {tuple(want.shape)}")
    diff = (got - want).abs()
    out: dict[str, Any] = {
        "config": cfg.name,
        "spec": s,
        "experts": getattr(gpt, "vla_experts", None),
        "token_dispatcher": token_dispatcher if cfg.is_moe else None,
        "dtype": str(dtype).removeprefix("torch."),
        "batch": batch,
        "seq": seq,
        "max_abs_diff": diff.max().item(),
        "mean_abs_diff": diff.mean().item(),
        "rel_l2": ((got - want).norm() / want.norm()).item(),
        "argmax_agreement": (got.argmax(-1) == want.argmax(-1)).float().mean().item(),
        "max_abs_logit": want.abs().max().item(),
        "round_trip_exact": bool(round_trip),
        "num_parameters": sum(p.numel() for p in gpt.parameters()),
        "megatron_modules": sorted(
            {
                type(m).__name__
                for m in gpt.modules()
                if "Linear" in type(m).__name__
                or "MLP" in type(m).__name__
                or "Attention" in type(m).__name__
                or "Norm" in type(m).__name__
            }
        ),
    }
    if dtype != torch.float32:
        want32 = ref32(ids).logits.float()
        out["ref_vs_ref_float32_max_abs_diff"] = (want - want32).abs().max().item()
        out["megatron_vs_ref_float32_max_abs_diff"] = (got - want32).abs().max().item()
    del gpt, run
    return out


__all__ = [
    "MegatronConfigError",
    "MegatronMappingError",
    "build_gpt_model",
    "check_supported",
    "compare_with_reference",
    "coverage_problems",
    "decoder_block_spec",
    "enable_cpu_forward",
    "experts_of",
    "export_reference_weights",
    "have_megatron_core",
    "have_transformer_engine",
    "init_single_process",
    "load_reference_weights",
    "patch_megatron_without_te",
    "random_reference",
    "resolve_spec",
    "spec_of",
    "to_transformer_config",
    "transformer_config_kwargs",
    "unsupported_options",
]
