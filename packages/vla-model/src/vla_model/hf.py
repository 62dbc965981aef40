"""transformers interop: `ModelConfig` <-> `Qwen3Config` / `Qwen3MoeConfig`, state dicts both ways,
and a small `save_hf_checkpoint` writing a folder that stock `from_pretrained` loads.

Expert weights have two HF layouts: `per_expert` (the Hub checkpoint format of Qwen3-MoE,
`mlp.experts.{j}.gate_proj.weight` ...; what `from_pretrained` reads in transformers 4 and 5)
and `fused` (transformers >= 5 in memory: `mlp.experts.gate_up_proj` `[E, 2F, H]`,
`mlp.experts.down_proj` `[E, H, F]`). `from_hf_state_dict` accepts either.

transformers is imported lazily: only `to_hf_config` and `save_hf_checkpoint` need it.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch

from vla_model.config import ModelConfig

ExpertLayout = Literal["per_expert", "fused"]


class HFConversionError(ValueError):
    """The config or state dict has no transformers Qwen3 / Qwen3-MoE counterpart."""


# (our name, HF name); `{i}` is the layer index. Data, used both ways.
NAME_MAP: tuple[tuple[str, str], ...] = (
    ("tok_embeddings.weight", "model.embed_tokens.weight"),
    ("final_norm.weight", "model.norm.weight"),
    ("lm_head.weight", "lm_head.weight"),
    ("layers.{i}.attn_norm.weight", "model.layers.{i}.input_layernorm.weight"),
    ("layers.{i}.attn.wq.weight", "model.layers.{i}.self_attn.q_proj.weight"),
    ("layers.{i}.attn.wk.weight", "model.layers.{i}.self_attn.k_proj.weight"),
    ("layers.{i}.attn.wv.weight", "model.layers.{i}.self_attn.v_proj.weight"),
    ("layers.{i}.attn.wo.weight", "model.layers.{i}.self_attn.o_proj.weight"),
    ("layers.{i}.attn.q_norm.weight", "model.layers.{i}.self_attn.q_norm.weight"),
    ("layers.{i}.attn.k_norm.weight", "model.layers.{i}.self_attn.k_norm.weight"),
    ("layers.{i}.ffn_norm.weight", "model.layers.{i}.post_attention_layernorm.weight"),
    ("layers.{i}.ffn.w_gate.weight", "model.layers.{i}.mlp.gate_proj.weight"),
    ("layers.{i}.ffn.w_up.weight", "model.layers.{i}.mlp.up_proj.weight"),
    ("layers.{i}.ffn.w_down.weight", "model.layers.{i}.mlp.down_proj.weight"),
    ("layers.{i}.ffn.router.weight", "model.layers.{i}.mlp.gate.weight"),
)
# Our stacked expert tensors `[E, ...]` and the HF per-expert names they split into.
EXPERT_MAP: tuple[tuple[str, str], ...] = (
    ("layers.{i}.ffn.experts.w_gate", "model.layers.{i}.mlp.experts.{j}.gate_proj.weight"),
    ("layers.{i}.ffn.experts.w_up", "model.layers.{i}.mlp.experts.{j}.up_proj.weight"),
    ("layers.{i}.ffn.experts.w_down", "model.layers.{i}.mlp.experts.{j}.down_proj.weight"),
)
FUSED_GATE_UP = "model.layers.{i}.mlp.experts.gate_up_proj"
FUSED_DOWN = "model.layers.{i}.mlp.experts.down_proj"


def _pattern(template: str) -> re.Pattern:
    return re.compile(
        "^"
        + re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{j\}", r"(?P<j>\d+)")
        + "$"
    )


_OURS_TO_HF = [(_pattern(o), h) for o, h in NAME_MAP]
_HF_TO_OURS = [(_pattern(h), o) for o, h in NAME_MAP]
_EXPERT_OURS = [(_pattern(o), h) for o, h in EXPERT_MAP]
_EXPERT_HF = [(_pattern(h), o) for o, h in EXPERT_MAP]


def unsupported_options(cfg: ModelConfig) -> list[str]:
    """Options of `cfg` that transformers' Qwen3 / Qwen3-MoE cannot express (empty: convertible)."""
    out = []
    if not cfg.qk_norm:
        out.append("qk_norm=false (Qwen3 always normalises q and k per head)")
    for extra in cfg.extras.enabled:
        out.append(f"extras.{extra} (VLA extra, not part of Qwen3)")
    m = cfg.moe
    if m is not None:
        if m.score_function != "softmax":
            out.append(f"moe.score_function='{m.score_function}' (Qwen3-MoE routes with softmax)")
        if m.expert_bias:
            out.append("moe.expert_bias (aux-loss-free routing bias changes expert choice)")
        if m.shared_expert_ffn_hidden_size:
            out.append("moe.shared_expert_ffn_hidden_size > 0 (Qwen3-MoE has no shared expert)")
        if m.shared_expert_gate:
            out.append("moe.shared_expert_gate (Qwen3-MoE has no shared expert gate)")
        if not m.dropless:
            out.append("moe.dropless=false (capacity-factor token dropping; Qwen3-MoE is dropless)")
    return out


def _hf_config_kwargs(cfg: ModelConfig) -> dict[str, Any]:
    problems = unsupported_options(cfg)
    if problems:
        raise HFConversionError(
            f"config '{cfg.name}' has no transformers Qwen3 counterpart: " + "; ".join(problems)
        )
    kw: dict[str, Any] = dict(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.ffn_hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_kv_heads,
        head_dim=cfg.head_dim,
        hidden_act="silu",
        max_position_embeddings=cfg.max_position_embeddings,
        initializer_range=cfg.init_std,
        rms_norm_eps=cfg.norm_eps,
        tie_word_embeddings=cfg.tie_embeddings,
        rope_theta=cfg.rope_theta,
        attention_bias=False,
        use_sliding_window=False,
    )
    if cfg.moe is not None:
        m = cfg.moe
        kw.update(
            num_experts=m.num_experts,
            num_experts_per_tok=m.top_k,
            moe_intermediate_size=m.expert_ffn_hidden_size,
            norm_topk_prob=m.normalize_topk,
            decoder_sparse_step=1,
            mlp_only_layers=[i for i, moe in enumerate(cfg.moe_layers) if not moe],
            # transformers' balancing loss is top_k times ours (see vla_model.moe)
            router_aux_loss_coef=m.aux_loss_coeff / m.top_k,
        )
    return kw


def to_hf_config(cfg: ModelConfig):
    """A transformers `Qwen3Config` (dense) or `Qwen3MoeConfig` (MoE) for `cfg`.

    Raises `HFConversionError` listing every option without a counterpart. Training-only MoE
    options (`load_balancing`, `z_loss_coeff`) do not change the forward pass and are dropped.
    """
    from transformers import Qwen3Config, Qwen3MoeConfig

    kw = _hf_config_kwargs(cfg)
    return Qwen3MoeConfig(**kw) if cfg.moe is not None else Qwen3Config(**kw)


def _rope_theta(hf: Any) -> float:
    params = getattr(hf, "rope_parameters", None)
    if isinstance(params, dict) and "rope_theta" in params:
        if params.get("rope_type", "default") != "default":
            raise HFConversionError(f"rope_type '{params['rope_type']}' is not supported")
        return float(params["rope_theta"])
    return float(hf.rope_theta)


def _as_layer_freq(pattern: list[int]) -> int | list[int]:
    """megatron's int `moe_layer_freq` k when `pattern` is 'every k-th from 0', else the list."""
    for k in range(1, len(pattern) + 1):
        if pattern == [int(i % k == 0) for i in range(len(pattern))]:
            return k
    return pattern


def from_hf_config(hf: Any, name: str = "custom") -> ModelConfig:
    """A `ModelConfig` from a transformers `Qwen3Config` / `Qwen3MoeConfig` (or its dict)."""
    get = hf.get if isinstance(hf, Mapping) else lambda k, d=None: getattr(hf, k, d)
    model_type = get("model_type")
    if model_type not in ("qwen3", "qwen3_moe"):
        raise HFConversionError(f"model_type '{model_type}' is not qwen3 or qwen3_moe")
    if get("use_sliding_window", False):
        raise HFConversionError("sliding-window attention is not supported")
    if isinstance(hf, Mapping):
        rope = hf.get("rope_parameters") or {"rope_theta": hf.get("rope_theta", 10000.0)}
        theta = float(rope["rope_theta"])
    else:
        theta = _rope_theta(hf)
    heads = get("num_attention_heads")
    data: dict[str, Any] = dict(
        name=name,
        vocab_size=get("vocab_size"),
        num_layers=get("num_hidden_layers"),
        hidden_size=get("hidden_size"),
        num_attention_heads=heads,
        num_kv_heads=get("num_key_value_heads") or heads,
        head_dim=get("head_dim") or get("hidden_size") // heads,
        ffn_hidden_size=get("intermediate_size"),
        rope_theta=theta,
        max_position_embeddings=get("max_position_embeddings"),
        qk_norm=True,
        tie_embeddings=bool(get("tie_word_embeddings", False)),
        norm_eps=get("rms_norm_eps"),
        init_std=get("initializer_range", 0.02),
    )
    if model_type == "qwen3_moe":
        n = data["num_layers"]
        step = get("decoder_sparse_step", 1) or 1
        dense_only = set(get("mlp_only_layers") or [])
        pattern = [int(i not in dense_only and (i + 1) % step == 0) for i in range(n)]
        top_k = get("num_experts_per_tok")
        coef = get("router_aux_loss_coef", 0.001) or 0.0
        data["moe"] = dict(
            num_experts=get("num_experts") or get("num_local_experts"),
            top_k=top_k,
            expert_ffn_hidden_size=get("moe_intermediate_size"),
            normalize_topk=bool(get("norm_topk_prob", False)),
            load_balancing="aux" if coef > 0 else "none",
            aux_loss_coeff=round(coef * top_k, 12),
            moe_layer_freq=_as_layer_freq(pattern),
        )
    return ModelConfig.from_dict(data, source="transformers config")


def to_hf_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    cfg: ModelConfig,
    expert_layout: ExpertLayout = "per_expert",
) -> dict[str, torch.Tensor]:
    """Rename our weights to transformers' names (tied models get no `lm_head.weight`)."""
    _hf_config_kwargs(cfg)
    if expert_layout not in ("per_expert", "fused"):
        raise ValueError(f"expert_layout must be 'per_expert' or 'fused', not '{expert_layout}'")
    out: dict[str, torch.Tensor] = {}
    stacked: dict[tuple[int, str], torch.Tensor] = {}
    for key, tensor in state_dict.items():
        for pat, target in _OURS_TO_HF:
            m = pat.match(key)
            if m:
                out[target.format(**m.groupdict())] = tensor
                break
        else:
            for pat, target in _EXPERT_OURS:
                m = pat.match(key)
                if m:
                    stacked[(int(m["i"]), key.rsplit(".", 1)[-1])] = tensor
                    if expert_layout == "per_expert":
                        for j in range(tensor.shape[0]):
                            out[target.format(i=m["i"], j=j)] = tensor[j]
                    break
            else:
                raise HFConversionError(f"weight '{key}' has no transformers counterpart")
    if expert_layout == "fused":
        for i in sorted({i for i, _ in stacked}):
            out[FUSED_GATE_UP.format(i=i)] = torch.cat(
                [stacked[(i, "w_gate")], stacked[(i, "w_up")]], dim=1
            )
            out[FUSED_DOWN.format(i=i)] = stacked[(i, "w_down")]
    return out


def from_hf_state_dict(
    state_dict: Mapping[str, torch.Tensor], cfg: ModelConfig
) -> dict[str, torch.Tensor]:
    """transformers weights (either expert layout) -> our names; checks nothing is left over."""
    _hf_config_kwargs(cfg)
    out: dict[str, torch.Tensor] = {}
    experts: dict[tuple[str, int], torch.Tensor] = {}
    fused_gate_up = _pattern(FUSED_GATE_UP)
    fused_down = _pattern(FUSED_DOWN)
    for key, tensor in state_dict.items():
        if cfg.tie_embeddings and key == "lm_head.weight":
            continue
        for pat, target in _HF_TO_OURS:
            m = pat.match(key)
            if m:
                out[target.format(**m.groupdict())] = tensor
                break
        else:
            if m := fused_gate_up.match(key):
                gate, up = tensor.chunk(2, dim=1)
                out[f"layers.{m['i']}.ffn.experts.w_gate"] = gate
                out[f"layers.{m['i']}.ffn.experts.w_up"] = up
                continue
            if m := fused_down.match(key):
                out[f"layers.{m['i']}.ffn.experts.w_down"] = tensor
                continue
            for pat, target in _EXPERT_HF:
                m = pat.match(key)
                if m:
                    experts[(target.format(i=m["i"]), int(m["j"]))] = tensor
                    break
            else:
                raise HFConversionError(f"transformers weight '{key}' is not part of a Qwen3 model")
    for name in sorted({n for n, _ in experts}):
        n_exp = cfg.moe.num_experts if cfg.moe else 0
        missing = [j for j in range(n_exp) if (name, j) not in experts]
        if missing:
            raise HFConversionError(f"experts {missing} of '{name}' are missing")
        out[name] = torch.stack([experts[(name, j)] for j in range(n_exp)])
    return out


def load_hf_weights(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Load transformers weights into our `VLAModel` (strict: every tensor must match)."""
    ours = from_hf_state_dict(state_dict, model.config)
    missing, unexpected = model.load_state_dict(ours, strict=False)
    if missing or unexpected:
        raise HFConversionError(f"missing weights {missing}; unexpected weights {unexpected}")


def save_hf_checkpoint(
    model: torch.nn.Module, out_dir: str | os.PathLike, dtype: torch.dtype | None = None
) -> Path:
    """Write `config.json` + `model.safetensors` (per-expert layout) for `from_pretrained`.

    The folder is written under a temporary name and renamed into place.
    """
    from safetensors.torch import save_file

    cfg: ModelConfig = model.config
    hf_config = to_hf_config(cfg)
    tensors = to_hf_state_dict(model.state_dict(), cfg, "per_expert")
    tensors = {
        k: (v.to(dtype) if dtype else v).detach().contiguous().cpu() for k, v in tensors.items()
    }
    if dtype is not None:
        hf_config.dtype = str(dtype).removeprefix("torch.")
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} exists; refusing to overwrite")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        hf_config.to_json_file(tmp / "config.json")
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
