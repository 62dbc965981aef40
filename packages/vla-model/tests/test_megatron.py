"""megatron-core realisation: TransformerConfig fields, unsupported options, expert layouts, and
(with the `megatron` extra) real GPTModels built on CPU: every weight covered with the right
shape, exact weight round trips, and logits parity through megatron's CPU forward."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
import torch

from vla_model import ModelConfig, VLAModel, get_preset, preset_names
from vla_model.megatron import (
    MegatronConfigError,
    check_supported,
    coverage_problems,
    transformer_config_kwargs,
    unsupported_options,
)
from vla_model.megatron_mapping import (
    MegatronMappingError,
    from_megatron_state_dict,
    to_megatron_state_dict,
)

BASE = dict(
    vocab_size=256,
    num_layers=3,
    hidden_size=64,
    num_attention_heads=4,
    num_kv_heads=2,
    head_dim=32,  # q width 128 > hidden, as in Qwen3
    ffn_hidden_size=96,
    max_position_embeddings=64,
    init_std=0.05,
)
CONFIGS = {
    "dense": BASE,
    "dense-tied-mqa-noqknorm": {
        **BASE,
        "num_kv_heads": 1,
        "tie_embeddings": True,
        "qk_norm": False,
        "rope_theta": 10_000.0,
    },
    "moe": {
        **BASE,
        "moe": dict(
            num_experts=4,
            top_k=2,
            expert_ffn_hidden_size=32,
            moe_layer_freq=[1, 0, 1],
            shared_expert_ffn_hidden_size=48,
            shared_expert_gate=True,
        ),
    },
    "moe-sigmoid-bias-capacity": {
        **BASE,
        "moe": dict(
            num_experts=8,
            top_k=3,
            expert_ffn_hidden_size=32,
            score_function="sigmoid",
            expert_bias=True,
            load_balancing="seq_aux",
            z_loss_coeff=1e-3,
            dropless=False,
            capacity_factor=1.25,
        ),
    },
    "moe-top1-presoftmax": {
        **BASE,
        "moe": dict(
            num_experts=4,
            top_k=1,
            normalize_topk=False,
            expert_ffn_hidden_size=32,
            moe_layer_freq=2,
            load_balancing="none",
        ),
    },
}


def cfg_of(name: str) -> ModelConfig:
    return ModelConfig.model_validate({"name": name, **CONFIGS[name]})


def have_megatron() -> bool:
    return (
        importlib.util.find_spec("megatron") is not None
        and importlib.util.find_spec("megatron.core") is not None
    )


needs_megatron = pytest.mark.skipif(
    not have_megatron(), reason="megatron-core is not installed (extra 'megatron')"
)


# ----- TransformerConfig fields (no megatron needed) -----


def test_dense_transformer_config_fields() -> None:
    cfg = cfg_of("dense-tied-mqa-noqknorm")
    kw = transformer_config_kwargs(cfg, params_dtype=torch.bfloat16)
    assert kw["num_query_groups"] == 1 and kw["kv_channels"] == 32
    assert kw["num_attention_heads"] == 4 and kw["ffn_hidden_size"] == 96
    assert kw["normalization"] == "RMSNorm" and kw["layernorm_epsilon"] == cfg.norm_eps
    assert kw["qk_layernorm"] is False
    assert kw["gated_linear_unit"] and kw["activation_func"] is torch.nn.functional.silu
    assert kw["add_bias_linear"] is False and kw["add_qkv_bias"] is False
    assert kw["hidden_dropout"] == kw["attention_dropout"] == 0.0
    assert kw["init_method_std"] == 0.05 and kw["rotary_interleaved"] is False
    assert kw["bf16"] and kw["params_dtype"] is torch.bfloat16 and not kw["fp16"]
    assert not any(k.startswith("moe_") or k == "num_moe_experts" for k in kw)


def test_moe_transformer_config_fields() -> None:
    kw = transformer_config_kwargs(cfg_of("moe"), spec="te")
    assert kw["num_moe_experts"] == 4 and kw["moe_router_topk"] == 2
    assert kw["moe_ffn_hidden_size"] == 32 and kw["moe_layer_freq"] == [1, 0, 1]
    assert kw["moe_shared_expert_intermediate_size"] == 48 and kw["moe_shared_expert_gate"]
    assert kw["moe_router_score_function"] == "softmax"
    assert kw["moe_router_pre_softmax"] is False  # softmax over the top-k = renormalised
    assert kw["moe_router_load_balancing_type"] == "aux_loss"
    assert kw["moe_aux_loss_coeff"] == 1e-3 and kw["moe_z_loss_coeff"] is None
    assert kw["moe_expert_capacity_factor"] is None  # dropless
    assert kw["moe_grouped_gemm"] is True  # TE spec: TEGroupedMLP
    assert kw["moe_token_dispatcher_type"] == "allgather"
    assert transformer_config_kwargs(cfg_of("moe"), spec="local")["moe_grouped_gemm"] is False

    kw = transformer_config_kwargs(cfg_of("moe-sigmoid-bias-capacity"), token_dispatcher="alltoall")
    assert kw["moe_router_score_function"] == "sigmoid"
    assert kw["moe_router_enable_expert_bias"] and kw["moe_router_bias_update_rate"] == 1e-3
    assert kw["moe_router_load_balancing_type"] == "seq_aux_loss"
    assert kw["moe_z_loss_coeff"] == 1e-3
    assert kw["moe_expert_capacity_factor"] == 1.25 and kw["moe_token_drop_policy"] == "probs"
    assert kw["moe_shared_expert_intermediate_size"] is None
    assert kw["moe_token_dispatcher_type"] == "alltoall"

    kw = transformer_config_kwargs(cfg_of("moe-top1-presoftmax"), recompute_granularity="full")
    assert kw["moe_router_pre_softmax"] is True and kw["moe_layer_freq"] == 2
    assert kw["moe_router_load_balancing_type"] == "none" and kw["moe_aux_loss_coeff"] == 0.0
    assert kw["recompute_granularity"] == "full"  # overrides go last


@pytest.mark.parametrize("name", preset_names())
def test_presets_are_expressible(name: str) -> None:
    check_supported(get_preset(name))
    transformer_config_kwargs(get_preset(name), spec="te")


@pytest.mark.parametrize(
    ("moe", "match"),
    [
        (dict(expert_bias=True), "expert_bias with score_function 'softmax'"),
        (dict(score_function="sigmoid", normalize_topk=False), "sigmoid router and top_k > 1"),
        (dict(score_function="sigmoid", top_k=1), "sigmoid router and top_k = 1"),
        (dict(top_k=1), "softmax router and top_k = 1"),
    ],
)
def test_options_megatron_cannot_express(moe: dict, match: str) -> None:
    base = dict(num_experts=4, top_k=2, expert_ffn_hidden_size=32)
    cfg = ModelConfig.model_validate({**BASE, "moe": {**base, **moe}})
    assert len(unsupported_options(cfg)) == 1
    with pytest.raises(MegatronConfigError, match=match):
        transformer_config_kwargs(cfg)


def test_extras_and_several_problems_are_all_named() -> None:
    cfg = cfg_of("moe").replace(
        extras={"action_dim": 7},
        moe={**CONFIGS["moe"]["moe"], "expert_bias": True, "top_k": 1},
    )
    problems = unsupported_options(cfg)
    assert len(problems) == 3 and "VLA extras ['action_dim']" in problems[0]
    with pytest.raises(MegatronConfigError, match="VLA extras.*expert_bias.*top_k = 1"):
        check_supported(cfg)


def test_te_op_fuser_needs_the_te_spec() -> None:
    from vla_model.megatron import decoder_block_spec

    with pytest.raises(MegatronConfigError, match="te_op_fuser needs the TE spec"):
        decoder_block_spec(None, "local", te_op_fuser=True)


@needs_megatron
def test_te_op_fuser_swaps_only_the_dense_mlps(monkeypatch) -> None:
    """The spec rewrite alone (TEFusedMLP exists only where TE imports: a stand-in class)."""
    import megatron.core.extensions.transformer_engine as te_ext
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_decoder_layer_specs
    from megatron.core.transformer.mlp import MLP
    from megatron.core.transformer.transformer_block import TransformerBlockSubmodules

    from vla_model.megatron import _with_fused_dense_mlps, to_transformer_config

    class FusedStandIn(MLP):
        pass

    monkeypatch.setattr(te_ext, "TEFusedMLP", FusedStandIn, raising=False)
    tc = to_transformer_config(cfg_of("moe"), spec="local", experts="sequential")
    layers = get_gpt_decoder_layer_specs(tc, use_transformer_engine=False, normalization="RMSNorm")
    block = TransformerBlockSubmodules(layer_specs=layers)
    fused = _with_fused_dense_mlps(block)
    kinds = [layer.submodules.mlp.module for layer in fused.layer_specs]
    assert kinds[1] is FusedStandIn  # moe_layer_freq [1, 0, 1]: layer 1 is dense
    assert kinds[0] is kinds[2] is block.layer_specs[0].submodules.mlp.module
    assert kinds[0] is not MLP and kinds[0] is not FusedStandIn  # MoE layers keep theirs
    assert block.layer_specs[1].submodules.mlp.module is MLP  # the input spec is not changed


def test_grouped_experts_need_the_te_spec() -> None:
    cfg = cfg_of("moe")
    with pytest.raises(MegatronConfigError, match="need the TE spec"):
        transformer_config_kwargs(cfg, spec="local", experts="grouped")
    sd = VLAModel(cfg).state_dict()
    with pytest.raises(MegatronMappingError, match="need the TE spec"):
        to_megatron_state_dict(sd, cfg, "local", experts="grouped")
    with pytest.raises(MegatronMappingError, match="experts must be"):
        to_megatron_state_dict(sd, cfg, "te", experts="stacked")  # type: ignore[arg-type]


def test_te_spec_with_sequential_experts() -> None:
    cfg = cfg_of("moe")
    torch.manual_seed(0)
    sd = VLAModel(cfg).state_dict()
    mc = to_megatron_state_dict(sd, cfg, "te", experts="sequential")
    assert "decoder.layers.0.mlp.experts.local_experts.3.linear_fc2.weight" in mc
    assert "decoder.layers.0.self_attention.linear_qkv.layer_norm_weight" in mc  # TE names
    assert not any("linear_fc1.weight0" in k for k in mc)
    back = from_megatron_state_dict(mc, cfg, "te", experts="sequential")
    assert back.keys() == sd.keys() and all(torch.equal(back[k], v) for k, v in sd.items())
    with pytest.raises(MegatronMappingError, match="not part of this config"):
        from_megatron_state_dict(mc, cfg, "te")  # default grouped: the names do not fit


def test_coverage_problems() -> None:
    target = {"a": torch.zeros(2, 3), "b": torch.zeros(4), "c._extra_state": torch.zeros(1)}
    assert coverage_problems({"a": torch.ones(2, 3), "b": torch.ones(4)}, target) == []
    problems = coverage_problems({"a": torch.ones(3, 2), "z": torch.ones(1)}, target)
    assert problems == [
        "not filled: b",
        "unknown to megatron: z",
        "shape of a: megatron (2, 3), mapped (3, 2)",
    ]


# ----- real megatron-core GPTModels on CPU (subprocess: it patches torch.cuda) -----

CPU_SCRIPT = r"""
import json, sys, warnings
warnings.filterwarnings("ignore")
import torch
from vla_model import ModelConfig
from vla_model.megatron import (build_gpt_model, compare_with_reference, coverage_problems,
    enable_cpu_forward, export_reference_weights, init_single_process, random_reference)
from vla_model.megatron_mapping import to_megatron_state_dict
enable_cpu_forward()  # expert-bias buffers are made on torch.cuda.current_device()
init_single_process()
out = {}
for name, data in json.loads(sys.argv[1]).items():
    cfg = ModelConfig.model_validate({"name": name, **data})
    ref = random_reference(cfg, seed=3)
    gpt = build_gpt_model(cfg, "local")
    mapped = to_megatron_state_dict(ref.state_dict(), cfg, "local")
    params = dict(gpt.named_parameters())
    row = {
        "spec": gpt.vla_spec, "experts": gpt.vla_experts,
        "problems": coverage_problems(mapped, gpt.state_dict()),
        "params_not_mapped": sorted(set(params) - set(mapped)),
        "shapes_match": all(tuple(params[k].shape) == tuple(mapped[k].shape) for k in params),
        "n_params": len(params),
        "module_types": sorted({type(m).__name__ for m in gpt.modules()}),
    }
    r = compare_with_reference(cfg, "local", reference=ref, batch=2, seq=16, seed=5)
    row.update({k: r[k] for k in ("max_abs_diff", "round_trip_exact", "argmax_agreement")})
    out[name] = row
print("JSON" + json.dumps(out))
"""


@pytest.fixture(scope="module")
def cpu_run() -> dict:
    if not have_megatron():
        pytest.skip("megatron-core is not installed (extra 'megatron')")
    if torch.cuda.is_available():
        pytest.skip("the CPU forward shims are for machines without CUDA")
    r = subprocess.run(
        [sys.executable, "-c", CPU_SCRIPT, json.dumps(CONFIGS)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("JSON")]
    assert r.returncode == 0 and lines, r.stderr[-4000:]
    return json.loads(lines[-1][4:])


@pytest.mark.slow
@needs_megatron
@pytest.mark.parametrize("name", list(CONFIGS))
def test_every_megatron_weight_is_covered_with_its_shape(cpu_run: dict, name: str) -> None:
    row = cpu_run[name]
    assert row["spec"] == "local"
    assert row["problems"] == [] and row["params_not_mapped"] == [] and row["shapes_match"]
    if CONFIGS[name].get("moe"):
        assert row["experts"] == "sequential" and "SequentialMLP" in row["module_types"]
        assert "TopKRouter" in row["module_types"]


@pytest.mark.slow
@needs_megatron
@pytest.mark.parametrize("name", list(CONFIGS))
def test_round_trip_through_a_real_gptmodel_is_exact(cpu_run: dict, name: str) -> None:
    assert cpu_run[name]["round_trip_exact"]


@pytest.mark.slow
@needs_megatron
@pytest.mark.parametrize("name", list(CONFIGS))
def test_logits_match_megatron_forward_on_cpu(cpu_run: dict, name: str) -> None:
    # float32 on CPU: same weights, same tokens -> logits equal to rounding
    assert cpu_run[name]["max_abs_diff"] < 1e-4
    assert cpu_run[name]["argmax_agreement"] == 1.0


# ----- on a GPU (device machine): local spec, and the TE spec when TE imports -----

GPU_SCRIPT = r"""
import json, os, sys, warnings
os.environ.setdefault("NVIDIA_TF32_OVERRIDE", "0")
warnings.filterwarnings("ignore")
import torch
torch.backends.cuda.matmul.allow_tf32 = False
from vla_model import ModelConfig
from vla_model.megatron import compare_with_reference, have_transformer_engine, init_single_process
init_single_process()
specs = ["local"] + (["te"] if have_transformer_engine() else [])
out = {}
for name, data in json.loads(sys.argv[1]).items():
    cfg = ModelConfig.model_validate({"name": name, **data})
    for spec in specs:
        r = compare_with_reference(cfg, spec, batch=2, seq=32)
        out[f"{name}/{spec}"] = [r["max_abs_diff"], r["round_trip_exact"]]
print("JSON" + json.dumps(out))
"""


@pytest.mark.gpu
@needs_megatron
def test_logits_match_megatron_on_gpu() -> None:
    r = subprocess.run(
        [sys.executable, "-c", GPU_SCRIPT, json.dumps(CONFIGS)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("JSON")]
    assert r.returncode == 0 and lines, r.stderr[-4000:]
    for key, (diff, round_trip) in json.loads(lines[-1][4:]).items():
        assert round_trip and diff < 1e-3, (key, diff)
