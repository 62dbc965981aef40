"""Parameter, FLOP and memory accounting."""

from __future__ import annotations

import pytest

from vla_model import (
    LayoutError,
    ModelConfig,
    ParallelLayout,
    count_parameters,
    flops_per_token,
    get_preset,
    memory_per_gpu,
)
from vla_model.accounting import activation_bytes_per_layer


def test_dense_counts_by_hand() -> None:
    c = get_preset("tiny-dense")  # V=1024 L=2 H=64 heads 4/2 x16 F=192
    p = count_parameters(c)
    attn = 64 * 64 + 2 * 64 * 32 + 64 * 64 + 2 * 16
    mlp = 3 * 64 * 192
    assert p.attention == 2 * attn and p.dense_mlp == 2 * mlp
    assert p.embedding == p.output_layer == 1024 * 64
    assert p.total == p.active == 2 * 1024 * 64 + 2 * (attn + mlp + 2 * 64) + 64


def test_moe_active_counts_by_hand() -> None:
    c = get_preset("tiny-moe")  # 8 experts x F=48, top-2
    p = count_parameters(c)
    expert = 3 * 64 * 48
    assert p.routed_experts == 2 * 8 * expert
    assert p.routed_experts_active == 2 * 2 * expert
    assert p.router == 2 * 8 * 64
    assert p.total - p.active == 2 * 6 * expert


def test_flops_formula() -> None:
    c = get_preset("tiny-moe")
    f = flops_per_token(c, seq_len=128)
    p = count_parameters(c)
    assert f.matmul == 6 * p.non_embedding_active
    assert f.attention == 12 * 2 * 4 * 16 * 128
    assert f.output_layer == 6 * 1024 * 64
    assert f.total == f.matmul + f.attention + f.output_layer
    assert flops_per_token(c).seq_len == 256
    tied = c.replace(tie_embeddings=True)
    assert flops_per_token(tied).output_layer == flops_per_token(c).output_layer


def test_flagship_presets_sizes() -> None:
    dense = count_parameters(get_preset("vla-1b-dense"))
    assert dense.non_embedding == pytest.approx(1.46e9, rel=0.01)
    moe = count_parameters(get_preset("vla-10b-moe"))
    assert 9e9 < moe.total < 11e9
    assert 2.0e9 < moe.active < 2.5e9


def test_memory_hand_computed_no_parallelism() -> None:
    c = get_preset("tiny-dense")
    n = count_parameters(c).total
    m = memory_per_gpu(c, ParallelLayout(dp=4), seq=256, micro_batch=2, recompute="selective")
    assert m.dense_params == n and m.expert_params == 0
    assert (m.weights, m.grads, m.optimizer) == (2 * n, 4 * n, 12 * n / 4)
    s, b, h, v = 256, 2, 64, 1024
    assert m.activations == pytest.approx(2 * s * b * h * 34 + s * b * h + 4 * s * b * (h + v))


def test_pipeline_stages_partition_the_model() -> None:
    c = get_preset("tiny-moe").replace(num_layers=4)
    n = count_parameters(c).total
    lay = ParallelLayout(pp=2)
    from vla_model.accounting import _stage_params

    assert sum(sum(_stage_params(c, lay, s)) for s in range(2)) == n
    tied = c.replace(tie_embeddings=True)
    extra = 1024 * 64  # the last stage keeps its own copy of the tied output weight
    assert (
        sum(sum(_stage_params(tied, lay, s)) for s in range(2))
        == count_parameters(tied).total + extra
    )


def test_expert_and_tensor_parallel_split() -> None:
    c = get_preset("vla-10b-moe")
    p = count_parameters(c)
    m = memory_per_gpu(c, ParallelLayout(dp=8, ep=8))
    assert m.expert_params == p.routed_experts // 8
    assert m.optimizer == pytest.approx(12 * (m.dense_params / 8 + m.expert_params / 1))
    t = memory_per_gpu(c, ParallelLayout(tp=2, dp=4, ep=4, etp=1))
    assert t.expert_params == p.routed_experts // 4
    assert ParallelLayout(tp=2, dp=4, ep=4, etp=1).expert_dp == 2


def test_activation_formulas() -> None:
    c = ModelConfig(
        vocab_size=10,
        num_layers=1,
        hidden_size=1024,
        num_attention_heads=16,
        num_kv_heads=16,
        head_dim=64,
        ffn_hidden_size=4096,
    )
    s, b, h, a = 2048, 1, 1024, 16
    sbh = s * b * h
    assert activation_bytes_per_layer(c, s, b, 1, False, "none") == sbh * (34 + 5 * a * s / h)
    assert activation_bytes_per_layer(c, s, b, 8, False, "none") == pytest.approx(
        sbh * (10 + 24 / 8 + 5 * a * s / (h * 8))
    )
    assert activation_bytes_per_layer(c, s, b, 8, True, "none") == pytest.approx(
        sbh / 8 * (34 + 5 * a * s / h)
    )
    assert activation_bytes_per_layer(c, s, b, 8, True, "selective") == pytest.approx(sbh / 8 * 34)
    assert activation_bytes_per_layer(c, s, b, 8, True, "full") == pytest.approx(2 * sbh / 8)
    assert activation_bytes_per_layer(c, s, b, 8, False, "full") == 2 * sbh


@pytest.mark.parametrize(
    ("preset", "layout", "message"),
    [
        (
            "vla-1b-dense",
            ParallelLayout(tp=3),
            "num_attention_heads (32) is not divisible by tp (3)",
        ),
        ("vla-1b-dense", ParallelLayout(pp=5), "num_layers (24) is not divisible by pp (5)"),
        ("vla-1b-dense", ParallelLayout(ep=2, dp=2), "ep/etp > 1 needs an MoE model"),
        (
            "vla-10b-moe",
            ParallelLayout(ep=3, dp=3),
            "moe.num_experts (64) is not divisible by ep (3)",
        ),
        ("vla-10b-moe", ParallelLayout(ep=8, dp=4), "must divide tp*dp"),
        ("vla-10b-moe", ParallelLayout(tp=0), "tp must be >= 1"),
    ],
)
def test_layout_errors(preset, layout, message) -> None:
    with pytest.raises(LayoutError) as err:
        memory_per_gpu(get_preset(preset), layout)
    assert message in str(err.value)


def test_reproduces_published_qwen3_sizes() -> None:
    # Qwen3 model cards: Qwen3-30B-A3B 30.5B total / 3.3B activated;
    # Qwen3-1.7B 1.7B total, 1.4B non-embedding.
    q30 = ModelConfig(
        vocab_size=151936,
        num_layers=48,
        hidden_size=2048,
        num_attention_heads=32,
        num_kv_heads=4,
        head_dim=128,
        ffn_hidden_size=6144,
        moe=dict(num_experts=128, top_k=8, expert_ffn_hidden_size=768),
    )
    p = count_parameters(q30)
    assert round(p.total / 1e9, 1) == 30.5 and 3.3 <= p.active / 1e9 < 3.4
    q17 = ModelConfig(
        vocab_size=151936,
        num_layers=28,
        hidden_size=2048,
        num_attention_heads=16,
        num_kv_heads=8,
        head_dim=128,
        ffn_hidden_size=6144,
        tie_embeddings=True,
    )
    p = count_parameters(q17)
    assert round(p.total / 1e9, 1) == 1.7 and round(p.non_embedding / 1e9, 1) == 1.4
