"""Weight-name mapping between our reference model and a megatron-core 0.16 `GPTModel`.

Covers the unsharded (`tp = pp = ep = 1`) `state_dict()` of a `GPTModel` built from the same
config with either layer spec:

- `te`: `get_gpt_layer_with_transformer_engine_spec` / `get_gpt_decoder_block_spec(..., True)`:
  the input norm is fused into `linear_qkv` (`layer_norm_weight`), a dense layer's pre-MLP norm
  into `linear_fc1`; an MoE layer keeps its own `pre_mlp_layernorm`. These are also the names
  megatron's `dist_checkpointing` uses for both specs.
- `local`: `get_gpt_layer_local_spec` / `get_gpt_decoder_block_spec(..., False)`: separate norms.

Routed experts come in two layouts, chosen by `TransformerConfig.moe_grouped_gemm`:
`grouped` (`TEGroupedMLP`, TE spec only: `mlp.experts.linear_fc1.weight{j}`) and `sequential`
(`SequentialMLP`, either spec: `mlp.experts.local_experts.{j}.linear_fc1.weight`). The default
is grouped for `te` and sequential for `local` (megatron's legacy `GroupedMLP`, local spec with
grouped GEMM, is not supported).

Two tensor transforms besides renaming: `qkv` (megatron's `linear_qkv` is
`[groups, (q_per_group + 2) * head_dim, hidden]` flattened: the query heads of group g, then
k_g, then v_g, for g = 0..groups-1) and `glu` (`linear_fc1` = rows of the gate projection, then
the up projection). Megatron-core imports nothing here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch

from vla_model.config import ModelConfig

Spec = Literal["te", "local"]
ExpertLayout = Literal["grouped", "sequential"]
Transform = Literal["copy", "qkv", "glu"]
Scope = Literal["global", "all", "dense", "moe", "expert"]


class MegatronMappingError(ValueError):
    """A weight without a megatron-core counterpart, or a state dict that does not fit."""


@dataclass(frozen=True)
class Rule:
    """Our weight(s) -> one megatron-core weight. `{i}` = layer, `{j}` = expert (ours stack
    experts on dim 0, megatron keeps one tensor per expert). For `expert` rules `te` is the
    grouped name and `local` the sequential one, whatever the spec."""

    ours: tuple[str, ...]
    te: str
    local: str
    transform: Transform = "copy"
    scope: Scope = "all"


P = "decoder.layers.{i}."
RULES: tuple[Rule, ...] = (
    Rule(
        ("tok_embeddings.weight",),
        "embedding.word_embeddings.weight",
        "embedding.word_embeddings.weight",
        scope="global",
    ),
    Rule(
        ("final_norm.weight",),
        "decoder.final_layernorm.weight",
        "decoder.final_layernorm.weight",
        scope="global",
    ),
    Rule(("lm_head.weight",), "output_layer.weight", "output_layer.weight", scope="global"),
    Rule(
        ("layers.{i}.attn_norm.weight",),
        P + "self_attention.linear_qkv.layer_norm_weight",
        P + "input_layernorm.weight",
    ),
    Rule(
        ("layers.{i}.attn.wq.weight", "layers.{i}.attn.wk.weight", "layers.{i}.attn.wv.weight"),
        P + "self_attention.linear_qkv.weight",
        P + "self_attention.linear_qkv.weight",
        "qkv",
    ),
    Rule(
        ("layers.{i}.attn.wo.weight",),
        P + "self_attention.linear_proj.weight",
        P + "self_attention.linear_proj.weight",
    ),
    Rule(
        ("layers.{i}.attn.q_norm.weight",),
        P + "self_attention.q_layernorm.weight",
        P + "self_attention.q_layernorm.weight",
    ),
    Rule(
        ("layers.{i}.attn.k_norm.weight",),
        P + "self_attention.k_layernorm.weight",
        P + "self_attention.k_layernorm.weight",
    ),
    # dense layers
    Rule(
        ("layers.{i}.ffn_norm.weight",),
        P + "mlp.linear_fc1.layer_norm_weight",
        P + "pre_mlp_layernorm.weight",
        scope="dense",
    ),
    Rule(
        ("layers.{i}.ffn.w_gate.weight", "layers.{i}.ffn.w_up.weight"),
        P + "mlp.linear_fc1.weight",
        P + "mlp.linear_fc1.weight",
        "glu",
        "dense",
    ),
    Rule(
        ("layers.{i}.ffn.w_down.weight",),
        P + "mlp.linear_fc2.weight",
        P + "mlp.linear_fc2.weight",
        scope="dense",
    ),
    # MoE layers
    Rule(
        ("layers.{i}.ffn_norm.weight",),
        P + "pre_mlp_layernorm.weight",
        P + "pre_mlp_layernorm.weight",
        scope="moe",
    ),
    Rule(
        ("layers.{i}.ffn.router.weight",),
        P + "mlp.router.weight",
        P + "mlp.router.weight",
        scope="moe",
    ),
    Rule(
        ("layers.{i}.ffn.router.expert_bias",),
        P + "mlp.router.expert_bias",
        P + "mlp.router.expert_bias",
        scope="moe",
    ),
    Rule(
        ("layers.{i}.ffn.shared_expert.w_gate.weight", "layers.{i}.ffn.shared_expert.w_up.weight"),
        P + "mlp.shared_experts.linear_fc1.weight",
        P + "mlp.shared_experts.linear_fc1.weight",
        "glu",
        "moe",
    ),
    Rule(
        ("layers.{i}.ffn.shared_expert.w_down.weight",),
        P + "mlp.shared_experts.linear_fc2.weight",
        P + "mlp.shared_experts.linear_fc2.weight",
        scope="moe",
    ),
    Rule(
        ("layers.{i}.ffn.shared_gate.weight",),
        P + "mlp.shared_experts.gate_weight",
        P + "mlp.shared_experts.gate_weight",
        scope="moe",
    ),
    Rule(
        ("layers.{i}.ffn.experts.w_gate", "layers.{i}.ffn.experts.w_up"),
        P + "mlp.experts.linear_fc1.weight{j}",
        P + "mlp.experts.local_experts.{j}.linear_fc1.weight",
        "glu",
        "expert",
    ),
    Rule(
        ("layers.{i}.ffn.experts.w_down",),
        P + "mlp.experts.linear_fc2.weight{j}",
        P + "mlp.experts.local_experts.{j}.linear_fc2.weight",
        scope="expert",
    ),
)


def default_expert_layout(spec: Spec) -> ExpertLayout:
    """`grouped` (TEGroupedMLP) for the TE spec, `sequential` (SequentialMLP) for the local one."""
    return "grouped" if spec == "te" else "sequential"


def megatron_name(rule: Rule, spec: Spec, experts: ExpertLayout) -> str:
    """The megatron-core name pattern of `rule` for this spec and expert layout."""
    if rule.scope == "expert":
        return rule.te if experts == "grouped" else rule.local
    return getattr(rule, spec)


def _check(cfg: ModelConfig, spec: str, experts: str | None) -> ExpertLayout:
    if spec not in ("te", "local"):
        raise MegatronMappingError(f"spec must be 'te' or 'local', not '{spec}'")
    experts = experts or default_expert_layout(spec)  # type: ignore[arg-type]
    if experts not in ("grouped", "sequential"):
        raise MegatronMappingError(f"experts must be 'grouped' or 'sequential', not '{experts}'")
    if experts == "grouped" and spec == "local" and cfg.is_moe:
        raise MegatronMappingError(
            "grouped experts need the TE spec (TEGroupedMLP); megatron's legacy GroupedMLP "
            "(local spec + moe_grouped_gemm) is not supported: use experts='sequential'"
        )
    if cfg.extras.enabled:
        raise MegatronMappingError(
            f"VLA extras {cfg.extras.enabled} have no megatron-core GPTModel counterpart"
        )
    return experts  # type: ignore[return-value]


def _qkv_fuse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    g, d = cfg.num_kv_heads, cfg.head_dim
    per = cfg.num_attention_heads // g
    h = q.shape[-1]
    return torch.cat(
        [q.reshape(g, per * d, h), k.reshape(g, d, h), v.reshape(g, d, h)], dim=1
    ).reshape(-1, h)


def _qkv_split(qkv: torch.Tensor, cfg: ModelConfig) -> tuple[torch.Tensor, ...]:
    g, d = cfg.num_kv_heads, cfg.head_dim
    per = cfg.num_attention_heads // g
    h = qkv.shape[-1]
    if qkv.shape[0] != (per + 2) * g * d:
        raise MegatronMappingError(
            f"linear_qkv has {qkv.shape[0]} rows, expected {(per + 2) * g * d}"
        )
    q, k, v = qkv.reshape(g, (per + 2) * d, h).split([per * d, d, d], dim=1)
    return q.reshape(-1, h), k.reshape(-1, h), v.reshape(-1, h)


def _rules_for_layer(is_moe: bool) -> list[Rule]:
    wanted = {"all", "moe", "expert"} if is_moe else {"all", "dense"}
    return [r for r in RULES if r.scope in wanted]


def to_megatron_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    cfg: ModelConfig,
    spec: Spec = "te",
    experts: ExpertLayout | None = None,
) -> dict[str, torch.Tensor]:
    """Our state dict -> megatron-core `GPTModel` names and layouts (unsharded); `experts`
    defaults to `default_expert_layout(spec)`."""
    experts = _check(cfg, spec, experts)
    sd = dict(state_dict)
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(name: str) -> torch.Tensor | None:
        if name in sd:
            used.add(name)
            return sd[name]
        return None

    for rule in RULES:
        if rule.scope != "global":
            continue
        t = take(rule.ours[0])
        if t is not None:
            out[getattr(rule, spec)] = t
    for i, is_moe in enumerate(cfg.moe_layers):
        for rule in _rules_for_layer(is_moe):
            target = megatron_name(rule, spec, experts)
            srcs = [take(n.format(i=i)) for n in rule.ours]
            if any(s is None for s in srcs):
                continue
            if rule.scope == "expert":
                for j in range(srcs[0].shape[0]):
                    parts = [s[j] for s in srcs]
                    out[target.format(i=i, j=j)] = (
                        torch.cat(parts, 0) if rule.transform == "glu" else parts[0]
                    )
            elif rule.transform == "qkv":
                out[target.format(i=i)] = _qkv_fuse(*srcs, cfg)
            elif rule.transform == "glu":
                out[target.format(i=i)] = torch.cat(srcs, dim=0)
            else:
                out[target.format(i=i)] = srcs[0]
    left = sorted(set(sd) - used)
    if left:
        raise MegatronMappingError(f"weights without a megatron-core counterpart: {left}")
    return out


def from_megatron_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    cfg: ModelConfig,
    spec: Spec = "te",
    experts: ExpertLayout | None = None,
) -> dict[str, torch.Tensor]:
    """megatron-core `GPTModel` weights (unsharded) -> our names; skips `_extra_state` keys."""
    experts = _check(cfg, spec, experts)
    sd = {k: v for k, v in state_dict.items() if not k.endswith("_extra_state")}
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for rule in RULES:
        if rule.scope == "global" and getattr(rule, spec) in sd:
            out[rule.ours[0]] = sd[getattr(rule, spec)]
            used.add(getattr(rule, spec))
    for i, is_moe in enumerate(cfg.moe_layers):
        for rule in _rules_for_layer(is_moe):
            names = [n.format(i=i) for n in rule.ours]
            if rule.scope == "expert":
                pat = re.compile(
                    re.escape(megatron_name(rule, spec, experts).format(i=i, j="@")).replace(
                        "@", r"(\d+)"
                    )
                    + "$"
                )
                found = {int(m[1]): k for k in sd if (m := pat.match(k))}
                if not found:
                    continue
                n_exp = cfg.moe.num_experts
                if sorted(found) != list(range(n_exp)):
                    raise MegatronMappingError(
                        f"layer {i}: expected experts 0..{n_exp - 1}, found {sorted(found)}"
                    )
                used.update(found.values())
                tensors = [sd[found[j]] for j in range(n_exp)]
                if rule.transform == "glu":
                    halves = [t.chunk(2, dim=0) for t in tensors]
                    out[names[0]] = torch.stack([a for a, _ in halves])
                    out[names[1]] = torch.stack([b for _, b in halves])
                else:
                    out[names[0]] = torch.stack(tensors)
                continue
            key = megatron_name(rule, spec, experts).format(i=i)
            if key not in sd:
                continue
            used.add(key)
            t = sd[key]
            if rule.transform == "qkv":
                out.update(zip(names, _qkv_split(t, cfg), strict=True))
            elif rule.transform == "glu":
                out.update(zip(names, t.chunk(2, dim=0), strict=True))
            else:
                out[names[0]] = t
    left = sorted(set(sd) - used)
    if left:
        raise MegatronMappingError(f"megatron-core weights not part of this config: {left}")
    return out
