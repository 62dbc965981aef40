"""Weight mapping to megatron-core GPTModel: round trips, QKV layout, megatron's own names."""

from __future__ import annotations

import pytest
import torch

from vla_model import ModelConfig, VLAModel
from vla_model.megatron_mapping import (
    MegatronMappingError,
    from_megatron_state_dict,
    to_megatron_state_dict,
)

BASE = dict(
    vocab_size=128,
    num_layers=3,
    hidden_size=64,
    num_attention_heads=4,
    num_kv_heads=2,
    head_dim=16,
    ffn_hidden_size=96,
    max_position_embeddings=64,
)
MOE = dict(
    num_experts=4,
    top_k=2,
    expert_ffn_hidden_size=32,
    moe_layer_freq=[1, 0, 1],
    shared_expert_ffn_hidden_size=48,
    shared_expert_gate=True,
    score_function="sigmoid",
)
CONFIGS = {
    "dense": BASE,
    "dense-tied": {**BASE, "tie_embeddings": True},
    "moe": {**BASE, "moe": MOE},
    "moe-bias": {**BASE, "moe": {**MOE, "expert_bias": True, "moe_layer_freq": 1}},
}


def cfg_of(name: str) -> ModelConfig:
    return ModelConfig.model_validate(CONFIGS[name])


@pytest.mark.parametrize("spec", ["te", "local"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_round_trip(name: str, spec: str) -> None:
    cfg = cfg_of(name)
    torch.manual_seed(0)
    sd = VLAModel(cfg).state_dict()
    mc = to_megatron_state_dict(sd, cfg, spec)
    back = from_megatron_state_dict(mc, cfg, spec)
    assert back.keys() == sd.keys()
    assert all(torch.equal(back[k], v) for k, v in sd.items())
    assert ("output_layer.weight" in mc) is (not cfg.tie_embeddings)


def test_local_spec_names_are_the_ones_megatron_core_builds() -> None:
    # Recorded from megatron-core 0.16.1:
    # GPTModel(get_gpt_decoder_block_spec(cfg, False)).state_dict() for this config
    # (3 layers, moe_layer_freq [1, 0, 1], 4 experts, gated shared expert).
    attn = [
        "input_layernorm.weight",
        "self_attention.linear_proj.weight",
        "self_attention.linear_qkv.weight",
        "self_attention.q_layernorm.weight",
        "self_attention.k_layernorm.weight",
        "pre_mlp_layernorm.weight",
    ]
    moe = [
        "mlp.router.weight",
        "mlp.shared_experts.gate_weight",
        "mlp.shared_experts.linear_fc1.weight",
        "mlp.shared_experts.linear_fc2.weight",
    ]
    moe += [f"mlp.experts.local_experts.{j}.linear_fc{n}.weight" for j in range(4) for n in (1, 2)]
    dense = ["mlp.linear_fc1.weight", "mlp.linear_fc2.weight"]
    expected = {
        "embedding.word_embeddings.weight",
        "decoder.final_layernorm.weight",
        "output_layer.weight",
    }
    for i, names in enumerate([attn + moe, attn + dense, attn + moe]):
        expected |= {f"decoder.layers.{i}.{n}" for n in names}
    cfg = cfg_of("moe")
    mc = to_megatron_state_dict(VLAModel(cfg).state_dict(), cfg, "local")
    assert set(mc) == expected
    assert mc["decoder.layers.0.self_attention.linear_qkv.weight"].shape == (128, 64)
    assert mc["decoder.layers.0.mlp.experts.local_experts.0.linear_fc1.weight"].shape == (64, 64)
    assert mc["decoder.layers.0.mlp.shared_experts.gate_weight"].shape == (1, 64)


def test_te_spec_fuses_norms_and_groups_experts() -> None:
    cfg = cfg_of("moe")
    mc = to_megatron_state_dict(VLAModel(cfg).state_dict(), cfg, "te")
    assert "decoder.layers.1.self_attention.linear_qkv.layer_norm_weight" in mc
    assert "decoder.layers.1.mlp.linear_fc1.layer_norm_weight" in mc  # dense layer
    assert "decoder.layers.0.pre_mlp_layernorm.weight" in mc  # MoE layer keeps its own norm
    assert "decoder.layers.2.mlp.experts.linear_fc1.weight3" in mc
    with_extra = {**mc, "decoder.layers.0.self_attention.linear_qkv._extra_state": torch.zeros(1)}
    assert (
        from_megatron_state_dict(with_extra, cfg, "te").keys() == VLAModel(cfg).state_dict().keys()
    )


def test_qkv_and_glu_layouts_by_hand() -> None:
    cfg = ModelConfig(
        vocab_size=8,
        num_layers=1,
        hidden_size=2,
        num_attention_heads=4,
        num_kv_heads=2,
        head_dim=2,
        ffn_hidden_size=3,
    )
    sd = VLAModel(cfg).state_dict()

    def rows(tag: float, n: int) -> torch.Tensor:  # row r of tensor `tag` is [tag + r, tag + r]
        return (tag + torch.arange(n, dtype=torch.float32))[:, None].repeat(1, 2)

    sd["layers.0.attn.wq.weight"] = rows(100, 8)  # 4 heads x 2
    sd["layers.0.attn.wk.weight"] = rows(200, 4)  # 2 groups x 2
    sd["layers.0.attn.wv.weight"] = rows(300, 4)
    sd["layers.0.ffn.w_gate.weight"] = rows(400, 3)
    sd["layers.0.ffn.w_up.weight"] = rows(500, 3)
    mc = to_megatron_state_dict(sd, cfg, "local")
    qkv = mc["decoder.layers.0.self_attention.linear_qkv.weight"][:, 0].tolist()
    assert qkv == [100, 101, 102, 103, 200, 201, 300, 301, 104, 105, 106, 107, 202, 203, 302, 303]
    assert mc["decoder.layers.0.mlp.linear_fc1.weight"][:, 0].tolist() == [
        400,
        401,
        402,
        500,
        501,
        502,
    ]


def test_errors() -> None:
    cfg = cfg_of("moe")
    sd = VLAModel(cfg).state_dict()
    with pytest.raises(MegatronMappingError, match="without a megatron-core counterpart"):
        to_megatron_state_dict({**sd, "vision.weight": torch.zeros(1)}, cfg)
    mc = to_megatron_state_dict(sd, cfg, "local")
    del mc["decoder.layers.0.mlp.experts.local_experts.2.linear_fc2.weight"]
    with pytest.raises(MegatronMappingError, match=r"expected experts 0..3, found \[0, 1, 3\]"):
        from_megatron_state_dict(mc, cfg, "local")
    with pytest.raises(MegatronMappingError, match="no megatron-core GPTModel counterpart"):
        to_megatron_state_dict(sd, cfg.replace(extras={"action_dim": 7}))
    with pytest.raises(MegatronMappingError, match="spec must be"):
        to_megatron_state_dict(sd, cfg, "nemo")  # type: ignore[arg-type]


MEGATRON_SCRIPT = r"""
import os, sys, torch, torch.distributed as dist
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[1])
dist.init_process_group("gloo", rank=0, world_size=1)
from megatron.core import parallel_state
parallel_state.initialize_model_parallel(1, 1)
from megatron.core.models.gpt.gpt_layer_specs import get_gpt_decoder_block_spec
from megatron.core.models.gpt.gpt_model import GPTModel
from megatron.core.transformer.transformer_config import TransformerConfig
from vla_model import ModelConfig, VLAModel
from vla_model.megatron_mapping import from_megatron_state_dict, to_megatron_state_dict
cfg = ModelConfig.model_validate_json(sys.argv[2])
moe = {}
if cfg.moe is not None:
    m = cfg.moe
    moe = dict(num_moe_experts=m.num_experts, moe_router_topk=m.top_k,
               moe_ffn_hidden_size=m.expert_ffn_hidden_size, moe_layer_freq=m.moe_layer_freq,
               moe_shared_expert_intermediate_size=m.shared_expert_ffn_hidden_size or None,
               moe_shared_expert_gate=m.shared_expert_gate,
               moe_router_score_function=m.score_function,
               moe_grouped_gemm=False, moe_token_dispatcher_type="allgather")
tc = TransformerConfig(num_layers=cfg.num_layers, hidden_size=cfg.hidden_size,
    num_attention_heads=cfg.num_attention_heads, num_query_groups=cfg.num_kv_heads,
    kv_channels=cfg.head_dim, ffn_hidden_size=cfg.ffn_hidden_size, gated_linear_unit=True,
    activation_func=torch.nn.functional.silu, normalization="RMSNorm", qk_layernorm=cfg.qk_norm,
    add_bias_linear=False, use_cpu_initialization=True, params_dtype=torch.float32, **moe)
spec = get_gpt_decoder_block_spec(tc, use_transformer_engine=False)
gpt = GPTModel(config=tc, transformer_layer_spec=spec, vocab_size=cfg.vocab_size,
               max_sequence_length=cfg.max_position_embeddings,
               share_embeddings_and_output_weights=cfg.tie_embeddings,
               position_embedding_type="rope")
ours = VLAModel(cfg).state_dict()
missing, unexpected = gpt.load_state_dict(to_megatron_state_dict(ours, cfg, "local"), strict=False)
assert not unexpected, unexpected
assert all(k.endswith("_extra_state") for k in missing), missing
back = from_megatron_state_dict(gpt.state_dict(), cfg, "local")
assert back.keys() == ours.keys() and all(torch.equal(back[k], v) for k, v in ours.items())
print("OK")
"""


@pytest.mark.slow
@pytest.mark.parametrize(("name", "port"), [("dense", "29631"), ("moe", "29632")])
def test_loads_into_a_real_megatron_core_gptmodel(name: str, port: str, tmp_path) -> None:
    import importlib.util
    import subprocess
    import sys

    if (
        importlib.util.find_spec("megatron") is None
        or importlib.util.find_spec("megatron.core") is None
    ):
        pytest.skip("megatron-core is not installed (extra 'megatron')")
    script = tmp_path / "load.py"
    script.write_text(MEGATRON_SCRIPT)
    r = subprocess.run(
        [sys.executable, str(script), port, cfg_of(name).model_dump_json()],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert r.returncode == 0 and r.stdout.strip().endswith("OK"), r.stderr[-3000:]
