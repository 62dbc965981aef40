"""Named model presets: the 1B dense baseline, the 10B MoE flagship, and tiny ones for tests."""

from __future__ import annotations

from pathlib import Path

from vla_model.config import ConfigError, ModelConfig

_PRESETS: dict[str, dict] = {
    # The seeds' 1B-dense shape (Qwen3 style, 64-wide heads, untied embeddings).
    "vla-1b-dense": dict(
        vocab_size=152064,
        num_layers=24,
        hidden_size=2048,
        num_attention_heads=32,
        num_kv_heads=8,
        head_dim=64,
        ffn_hidden_size=8192,
        rope_theta=1_000_000.0,
        max_position_embeddings=4096,
        qk_norm=True,
        tie_embeddings=False,
    ),
    # Qwen3-30B-A3B's attention and expert shapes on a 28-layer trunk with 64 experts (~9.6B).
    "vla-10b-moe": dict(
        vocab_size=152064,
        num_layers=28,
        hidden_size=2048,
        num_attention_heads=32,
        num_kv_heads=4,
        head_dim=128,
        ffn_hidden_size=6144,
        rope_theta=1_000_000.0,
        max_position_embeddings=4096,
        qk_norm=True,
        tie_embeddings=False,
        moe=dict(
            num_experts=64,
            top_k=8,
            expert_ffn_hidden_size=768,
            score_function="softmax",
            normalize_topk=True,
            load_balancing="aux",
            aux_loss_coeff=1e-3,
            dropless=True,
        ),
    ),
    "tiny-dense": dict(
        vocab_size=1024,
        num_layers=2,
        hidden_size=64,
        num_attention_heads=4,
        num_kv_heads=2,
        head_dim=16,
        ffn_hidden_size=192,
        rope_theta=10_000.0,
        max_position_embeddings=256,
    ),
    "tiny-moe": dict(
        vocab_size=1024,
        num_layers=2,
        hidden_size=64,
        num_attention_heads=4,
        num_kv_heads=2,
        head_dim=16,
        ffn_hidden_size=192,
        rope_theta=10_000.0,
        max_position_embeddings=256,
        moe=dict(num_experts=8, top_k=2, expert_ffn_hidden_size=48),
    ),
}


def preset_names() -> list[str]:
    """Names of all presets."""
    return list(_PRESETS)


def get_preset(name: str) -> ModelConfig:
    """The validated `ModelConfig` of a preset."""
    if name not in _PRESETS:
        raise ConfigError(f"unknown preset '{name}' (known: {', '.join(_PRESETS)})")
    return ModelConfig.model_validate({"name": name, **_PRESETS[name]})


def resolve_config(spec: str) -> ModelConfig:
    """A preset name or the path of a `config.json`."""
    if spec in _PRESETS:
        return get_preset(spec)
    path = Path(spec)
    if path.is_dir():
        path = path / "config.json"
    if path.is_file():
        return ModelConfig.load(path)
    raise ConfigError(f"'{spec}' is neither a preset ({', '.join(_PRESETS)}) nor a config file")
