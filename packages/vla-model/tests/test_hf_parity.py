"""Our reference model against transformers' Qwen3 / Qwen3-MoE: logits, greedy generation,
state-dict conversion both ways, config conversion and its errors."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from vla_model import ModelConfig, VLAModel  # noqa: E402
from vla_model.hf import (  # noqa: E402
    HFConversionError,
    from_hf_config,
    from_hf_state_dict,
    load_hf_weights,
    save_hf_checkpoint,
    to_hf_config,
    to_hf_state_dict,
    unsupported_options,
)

BASE = dict(vocab_size=211, num_layers=2, max_position_embeddings=64, init_std=0.1, norm_eps=1e-6)

DENSE = {
    "mha-untied": dict(
        hidden_size=64,
        num_attention_heads=4,
        num_kv_heads=4,
        head_dim=16,
        ffn_hidden_size=96,
        rope_theta=10_000.0,
    ),
    "gqa2-tied": dict(
        hidden_size=48,
        num_attention_heads=4,
        num_kv_heads=2,
        head_dim=8,
        ffn_hidden_size=80,
        tie_embeddings=True,
        num_layers=3,
    ),
    "mqa-wide-heads": dict(
        hidden_size=64,
        num_attention_heads=8,
        num_kv_heads=1,
        head_dim=32,
        ffn_hidden_size=128,
        rope_theta=1_000_000.0,
        norm_eps=1e-5,
    ),
}
MOE = {
    "top2-norm-mixed-layers": dict(
        hidden_size=64,
        num_attention_heads=4,
        num_kv_heads=2,
        head_dim=16,
        ffn_hidden_size=96,
        num_layers=3,
        moe=dict(
            num_experts=8,
            top_k=2,
            expert_ffn_hidden_size=32,
            normalize_topk=True,
            moe_layer_freq=[1, 0, 1],
        ),
    ),
    "top3-unnormed-tied-mqa": dict(
        hidden_size=48,
        num_attention_heads=6,
        num_kv_heads=1,
        head_dim=8,
        ffn_hidden_size=64,
        tie_embeddings=True,
        moe=dict(num_experts=6, top_k=3, expert_ffn_hidden_size=24, normalize_topk=False),
    ),
    "top1-every-2nd-head64": dict(
        hidden_size=32,
        num_attention_heads=2,
        num_kv_heads=2,
        head_dim=64,
        ffn_hidden_size=48,
        num_layers=4,
        moe=dict(
            num_experts=4,
            top_k=1,
            expert_ffn_hidden_size=40,
            normalize_topk=True,
            moe_layer_freq=2,
            load_balancing="seq_aux",
            z_loss_coeff=1e-3,
        ),
    ),
}
CASES = {**DENSE, **MOE}


def make_cfg(name: str) -> ModelConfig:
    return ModelConfig.model_validate({**BASE, "name": name, **CASES[name]})


def hf_model(cfg: ModelConfig):
    hf_cfg = to_hf_config(cfg)
    cls = transformers.Qwen3MoeForCausalLM if cfg.is_moe else transformers.Qwen3ForCausalLM
    return cls(hf_cfg).eval()


def pair(name: str, seed: int = 0):
    cfg = make_cfg(name)
    torch.manual_seed(seed)
    ours = VLAModel(cfg).eval()
    hf = hf_model(cfg)
    sd = to_hf_state_dict(ours.state_dict(), cfg, expert_layout="fused")
    missing, unexpected = hf.load_state_dict(sd, strict=False)
    assert not unexpected
    assert set(missing) == ({"lm_head.weight"} if cfg.tie_embeddings else set())
    assert torch.equal(hf.lm_head.weight, ours.output_weight)
    return cfg, ours, hf


def prompt(cfg: ModelConfig, batch: int = 2, seq: int = 12, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, cfg.vocab_size, (batch, seq), generator=g)


@pytest.mark.parametrize("name", list(CASES))
def test_logits_match_transformers(name: str) -> None:
    cfg, ours, hf = pair(name)
    ids = prompt(cfg)
    with torch.no_grad():
        a = ours(ids).logits
        b = hf(input_ids=ids).logits
    assert a.shape == b.shape == (2, 12, cfg.vocab_size)
    assert a.abs().mean() > 0.1  # weights really were copied and are not degenerate
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", list(CASES))
def test_greedy_generation_matches_transformers(name: str) -> None:
    cfg, ours, hf = pair(name, seed=3)
    ids = prompt(cfg, batch=2, seq=7, seed=5)
    mine = ours.generate(ids, max_new_tokens=10, greedy=True)
    theirs = hf.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=10,
        min_new_tokens=10,
        do_sample=False,
        pad_token_id=0,
    )
    assert mine.shape == (2, 17)
    assert torch.equal(mine, theirs)


@pytest.mark.parametrize(
    "name", ["mha-untied", "gqa2-tied", "top2-norm-mixed-layers", "top3-unnormed-tied-mqa"]
)
def test_state_dict_round_trip_from_transformers(name: str) -> None:
    cfg, ours, hf = pair(name, seed=7)
    fresh = VLAModel(cfg).eval()
    load_hf_weights(fresh, hf.state_dict())
    ids = prompt(cfg)
    with torch.no_grad():
        torch.testing.assert_close(fresh(ids).logits, ours(ids).logits, rtol=0, atol=0)
    for layout in ("per_expert", "fused"):
        back = from_hf_state_dict(to_hf_state_dict(ours.state_dict(), cfg, layout), cfg)
        assert back.keys() == ours.state_dict().keys()
        assert all(torch.equal(back[k], v) for k, v in ours.state_dict().items())


def test_per_expert_checkpoint_loads_with_from_pretrained(tmp_path) -> None:
    cfg, ours, _ = pair("top2-norm-mixed-layers", seed=11)
    out = save_hf_checkpoint(ours, tmp_path / "release")
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "model.layers.0.mlp.experts.7.down_proj.weight" in keys
    assert "model.layers.1.mlp.gate_proj.weight" in keys  # the dense layer of the pattern
    loaded = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    ids = prompt(cfg)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(input_ids=ids).logits, ours(ids).logits, rtol=1e-4, atol=1e-5
        )
    with pytest.raises(FileExistsError):
        save_hf_checkpoint(ours, out)


def test_aux_loss_matches_transformers_up_to_top_k() -> None:
    cfg = make_cfg("top3-unnormed-tied-mqa").replace(num_layers=1)
    torch.manual_seed(0)
    ours = VLAModel(cfg).eval()
    hf = hf_model(cfg)
    hf.load_state_dict(to_hf_state_dict(ours.state_dict(), cfg, "fused"), strict=False)
    ids = prompt(cfg)
    with torch.no_grad():
        mine = ours(ids).aux_losses["aux_loss"] / cfg.moe.aux_loss_coeff
        theirs = hf(input_ids=ids, output_router_logits=True).aux_loss
    torch.testing.assert_close(mine * cfg.moe.top_k, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(CASES))
def test_config_round_trip(name: str) -> None:
    cfg = make_cfg(name)
    back = from_hf_config(to_hf_config(cfg), name=name)
    if cfg.moe is not None:
        assert back.moe.aux_loss_coeff == pytest.approx(cfg.moe.aux_loss_coeff)
        back = back.replace(
            moe={
                **back.moe.model_dump(),
                "aux_loss_coeff": cfg.moe.aux_loss_coeff,
                "load_balancing": cfg.moe.load_balancing,
                "z_loss_coeff": cfg.moe.z_loss_coeff,
                "moe_layer_freq": cfg.moe.moe_layer_freq,
            }
        )
        assert from_hf_config(to_hf_config(cfg)).moe_layers == cfg.moe_layers
    assert back == cfg
    assert from_hf_config(to_hf_config(cfg).to_dict(), name=name).moe_layers == cfg.moe_layers


@pytest.mark.parametrize(
    ("moe_changes", "extras", "expected"),
    [
        (dict(score_function="sigmoid"), {}, ["score_function='sigmoid'"]),
        (dict(expert_bias=True), {}, ["expert_bias"]),
        (
            dict(shared_expert_ffn_hidden_size=16, shared_expert_gate=True),
            {},
            ["shared_expert_ffn_hidden_size", "shared_expert_gate"],
        ),
        (dict(dropless=False, capacity_factor=1.25), {}, ["dropless=false"]),
        ({}, dict(num_cameras=6, action_dim=7), ["extras.num_cameras", "extras.action_dim"]),
    ],
)
def test_to_hf_config_rejects_options_without_counterpart(moe_changes, extras, expected) -> None:
    base = make_cfg("top2-norm-mixed-layers")
    cfg = base.replace(moe={**base.moe.model_dump(), **moe_changes}, extras=extras)
    assert len(unsupported_options(cfg)) == len(expected)
    with pytest.raises(HFConversionError) as err:
        to_hf_config(cfg)
    for fragment in expected:
        assert fragment in str(err.value)
    with pytest.raises(HFConversionError):
        to_hf_state_dict(VLAModel(cfg).state_dict(), cfg)


def test_dense_without_qk_norm_is_rejected() -> None:
    cfg = make_cfg("mha-untied").replace(qk_norm=False)
    with pytest.raises(HFConversionError, match="qk_norm"):
        to_hf_config(cfg)


def test_from_hf_state_dict_reports_foreign_and_missing_weights() -> None:
    cfg, ours, _ = pair("top2-norm-mixed-layers")
    sd = to_hf_state_dict(ours.state_dict(), cfg)
    with pytest.raises(HFConversionError, match="not part of a Qwen3"):
        from_hf_state_dict({**sd, "model.vision_tower.weight": torch.zeros(1)}, cfg)
    del sd["model.layers.0.mlp.experts.3.up_proj.weight"]
    with pytest.raises(HFConversionError, match=r"experts \[3\]"):
        from_hf_state_dict(sd, cfg)


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["gqa2-tied", "top2-norm-mixed-layers"])
def test_parity_on_cuda(name: str) -> None:
    cfg, ours, hf = pair(name, seed=13)
    ours, hf = ours.cuda(), hf.cuda()
    ids = prompt(cfg).cuda()
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, hf(input_ids=ids).logits, rtol=1e-4, atol=1e-4)
    mine = ours.generate(ids[:, :6], max_new_tokens=10)
    theirs = hf.generate(
        input_ids=ids[:, :6],
        attention_mask=torch.ones_like(ids[:, :6]),
        max_new_tokens=10,
        min_new_tokens=10,
        do_sample=False,
        pad_token_id=0,
    )
    assert torch.equal(mine, theirs)
