"""Reference model: shapes, causality, KV cache, generation, init, extras, training step."""

from __future__ import annotations

import math

import pytest
import torch

from vla_model import ModelConfig, VLAModel, count_parameters, get_preset

SMALL = dict(
    vocab_size=97,
    num_layers=2,
    hidden_size=32,
    num_attention_heads=4,
    num_kv_heads=2,
    head_dim=8,
    ffn_hidden_size=48,
    max_position_embeddings=64,
    init_std=0.1,
)
MOE = dict(num_experts=4, top_k=2, expert_ffn_hidden_size=16)


def model(**changes) -> VLAModel:
    torch.manual_seed(0)
    return VLAModel(ModelConfig.model_validate({**SMALL, **changes})).eval()


def ids(batch: int = 2, seq: int = 10, vocab: int = 97, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, seq), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("preset", ["tiny-dense", "tiny-moe"])
def test_forward_shapes_and_aux_losses(preset: str) -> None:
    cfg = get_preset(preset)
    m = VLAModel(cfg)
    out = m(ids(vocab=cfg.vocab_size))
    assert out.logits.shape == (2, 10, cfg.vocab_size)
    assert out.actions is None and out.hidden_states is None
    assert set(out.aux_losses) == ({"aux_loss"} if cfg.is_moe else set())


@pytest.mark.parametrize("moe", [None, MOE])
def test_causal(moe) -> None:
    m = model(moe=moe)
    a = ids()
    b = a.clone()
    b[:, 6] = (b[:, 6] + 1) % 97
    with torch.no_grad():
        la, lb = m(a).logits, m(b).logits
    torch.testing.assert_close(la[:, :6], lb[:, :6])
    assert not torch.allclose(la[:, 6:], lb[:, 6:])


@pytest.mark.parametrize("moe", [None, MOE])
def test_kv_cache_matches_full_forward(moe) -> None:
    m = model(moe=moe)
    x = ids(seq=12)
    with torch.no_grad():
        full = m(x).logits
        cache = m.new_kv_cache(2, 12)
        parts = [
            m(x[:, :5], kv_cache=cache).logits,  # prefill
            m(x[:, 5:9], kv_cache=cache).logits,
        ]  # chunk with a past: explicit mask path
        parts += [m(x[:, t : t + 1], kv_cache=cache).logits for t in range(9, 12)]  # single steps
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-5, atol=1e-5)
    assert cache.length == 12
    with pytest.raises(ValueError, match="KV cache full"):
        m(x[:, :1], kv_cache=cache)


def test_generate_greedy_equals_argmax_recompute() -> None:
    m = model()
    x = ids(seq=4)
    out = m.generate(x, max_new_tokens=6)
    seq = x
    with torch.no_grad():
        for _ in range(6):
            seq = torch.cat([seq, m(seq).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, seq)


def test_generate_sampling_eos_and_limits() -> None:
    m = model()
    m.train()
    x = ids(seq=4)
    a = m.generate(
        x, 8, greedy=False, temperature=0.8, top_k=5, generator=torch.Generator().manual_seed(3)
    )
    b = m.generate(
        x, 8, greedy=False, temperature=0.8, top_k=5, generator=torch.Generator().manual_seed(3)
    )
    assert torch.equal(a, b) and a.shape == (2, 12)
    assert m.training  # mode restored
    first = m.generate(x, 1)[:, -1]
    eos = int(first[0])
    out = m.generate(x, 8, eos_token_id=eos)
    assert (out[0, 4:] == eos).all()
    assert torch.equal(m.generate(x, 0), x)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        m.generate(x, 61)


def test_init_follows_init_std() -> None:
    cfg = ModelConfig.model_validate(
        {
            **SMALL,
            "hidden_size": 256,
            "ffn_hidden_size": 512,
            "num_attention_heads": 8,
            "head_dim": 32,
            "num_layers": 8,
            "init_std": 0.02,
            "moe": MOE,
            "qk_norm": True,
        }
    )
    m = VLAModel(cfg)
    out_std = 0.02 / math.sqrt(16)
    assert m.tok_embeddings.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert m.lm_head.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert m.layers[0].attn.wq.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert m.layers[0].attn.wo.weight.std().item() == pytest.approx(out_std, rel=0.05)
    assert m.layers[0].ffn.experts.w_down.std().item() == pytest.approx(out_std, rel=0.05)
    assert m.layers[0].ffn.router.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert torch.equal(m.layers[0].attn.q_norm.weight, torch.ones(32))


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"tie_embeddings": True, "qk_norm": False},
        {
            "moe": {
                **MOE,
                "shared_expert_ffn_hidden_size": 24,
                "shared_expert_gate": True,
                "expert_bias": True,
                "moe_layer_freq": [0, 1],
            }
        },
        {
            "extras": {
                "num_cameras": 6,
                "num_time_buckets": 10,
                "continuous_input_dim": 7,
                "action_dim": 3,
                "action_horizon": 4,
            }
        },
    ],
)
def test_parameter_count_matches_accounting(changes) -> None:
    m = model(**changes)
    assert sum(p.numel() for p in m.parameters()) == count_parameters(m.config).total


def test_tied_embeddings_share_storage() -> None:
    m = model(tie_embeddings=True)
    assert m.lm_head is None and m.output_weight is m.tok_embeddings.weight
    assert "lm_head.weight" not in m.state_dict()


def test_vla_extras() -> None:
    extras = {
        "num_cameras": 6,
        "num_time_buckets": 10,
        "continuous_input_dim": 7,
        "action_dim": 3,
        "action_horizon": 4,
    }
    m = model(extras=extras)
    x = ids(seq=8)
    none = torch.full((2, 8), -1)
    with torch.no_grad():
        base = m(x).logits
        same = m(x, camera_ids=none, time_ids=none).logits
        cams = none.clone()
        cams[:, 5:] = 2
        with_cam = m(x, camera_ids=cams, time_ids=cams).logits
        feats = torch.randn(2, 8, 7)
        mask = torch.zeros(2, 8, dtype=torch.bool)
        unmasked = m(x, continuous_features=feats, continuous_mask=mask).logits
        mask[:, 3] = True
        spliced = m(x, continuous_features=feats, continuous_mask=mask)
    torch.testing.assert_close(same, base)
    torch.testing.assert_close(unmasked, base)
    torch.testing.assert_close(with_cam[:, :5], base[:, :5])
    assert not torch.allclose(with_cam[:, 5:], base[:, 5:])
    torch.testing.assert_close(spliced.logits[:, :3], base[:, :3])
    assert not torch.allclose(spliced.logits[:, 3:], base[:, 3:])
    assert spliced.actions.shape == (2, 8, 4, 3)
    with pytest.raises(ValueError, match="camera_ids must lie"):
        m(x, camera_ids=torch.full((2, 8), 6))
    with pytest.raises(ValueError, match="no VLA input extra"):
        model()(x, camera_ids=none)


def test_default_backbone_has_no_extras() -> None:
    m = model()
    assert m.vla_inputs is None and m.action_head is None


def test_training_step_and_expert_bias_update() -> None:
    m = model(
        moe={
            **MOE,
            "expert_bias": True,
            "expert_bias_update_rate": 0.01,
            "load_balancing": "seq_aux",
            "z_loss_coeff": 1e-3,
        }
    )
    m.train()
    x = ids(seq=16)
    out = m(x[:, :-1])
    lm = torch.nn.functional.cross_entropy(out.logits.reshape(-1, 97), x[:, 1:].reshape(-1))
    assert set(out.aux_losses) == {"seq_aux_loss", "z_loss"}
    (lm + sum(out.aux_losses.values())).backward()
    assert all(p.grad is not None for p in m.parameters())
    router = m.layers[0].ffn.router
    assert router.tokens_per_expert.sum() == 2 * 15 * 2
    m.update_expert_bias()
    assert router.expert_bias.abs().sum() > 0
    assert "layers.0.ffn.router.expert_bias" in m.state_dict()
    assert "layers.0.ffn.router.tokens_per_expert" not in m.state_dict()


def test_bfloat16_forward_on_cpu() -> None:
    m = model(moe=MOE).to(torch.bfloat16)
    out = m(ids())
    assert out.logits.dtype == torch.bfloat16 and torch.isfinite(out.logits.float()).all()
    assert m.generate(ids(seq=3), 3).shape == (2, 6)


@pytest.mark.gpu
def test_cuda_matches_cpu() -> None:
    m = model(moe=MOE)
    x = ids()
    with torch.no_grad():
        cpu = m(x).logits
        gpu = m.cuda()(x.cuda()).logits.cpu()
    torch.testing.assert_close(gpu, cpu, rtol=1e-3, atol=1e-3)
    assert m.generate(x.cuda(), 4).shape == (2, 14)


def test_document_ids_keep_packed_documents_apart():
    """Packing two documents with document_ids gives each the logits it has alone."""
    torch.manual_seed(0)
    model = VLAModel(get_preset("tiny-dense")).eval()
    a, b = torch.randint(0, 100, (1, 7)), torch.randint(0, 100, (1, 5))
    packed = torch.cat([a, b], 1)
    positions = torch.cat([torch.arange(7), torch.arange(5)])[None]
    docs = torch.tensor([[0] * 7 + [1] * 5])
    with torch.no_grad():
        out = model(packed, positions=positions, document_ids=docs).logits
        alone_a, alone_b = model(a).logits, model(b).logits
        leaky = model(packed, positions=positions).logits
    torch.testing.assert_close(out[:, :7], alone_a, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out[:, 7:], alone_b, rtol=1e-5, atol=1e-5)
    assert (leaky[:, 7:] - alone_b).abs().max() > 1e-3  # without the mask, b sees a
