"""ModelConfig / MoEConfig validation, IO, vocab layout and presets."""

from __future__ import annotations

import json

import pytest

from vla_model import ConfigError, ModelConfig, MoEConfig, get_preset, preset_names
from vla_model.config import vocab_size_from_layout
from vla_model.presets import resolve_config

BASE = dict(
    vocab_size=100,
    num_layers=4,
    hidden_size=32,
    num_attention_heads=4,
    num_kv_heads=2,
    head_dim=8,
    ffn_hidden_size=64,
)
MOE = dict(num_experts=8, top_k=2, expert_ffn_hidden_size=16)


def build(**changes) -> ModelConfig:
    return ModelConfig.from_dict({**BASE, **changes})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(num_kv_heads=3), "must be a multiple of num_kv_heads"),
        (dict(head_dim=7), "head_dim (7) must be even"),
        (dict(hidden_size=0), "hidden_size: Input should be greater than or equal to 1"),
        (dict(n_layers=4), "n_layers: Extra inputs are not permitted"),
        (dict(moe={**MOE, "top_k": 9}), "top_k (9) must be <= num_experts (8)"),
        (dict(moe={**MOE, "shared_expert_gate": True}), "shared_expert_gate needs a shared expert"),
        (dict(moe={**MOE, "capacity_factor": 1.25}), "capacity_factor is set but dropless is true"),
        (dict(moe={**MOE, "dropless": False}), "dropless=false needs a capacity_factor"),
        (
            dict(moe={**MOE, "load_balancing": "none", "aux_loss_coeff": 0.01}),
            "load_balancing is 'none'",
        ),
        (dict(moe={**MOE, "aux_loss_coeff": 0.0}), "needs aux_loss_coeff > 0"),
        (dict(moe={**MOE, "expert_bias": True, "expert_bias_update_rate": 0.0}), "update_rate > 0"),
        (dict(moe={**MOE, "score_function": "relu"}), "moe.score_function"),
        (dict(moe={**MOE, "moe_layer_freq": [1, 0]}), "lists 2 layers but num_layers is 4"),
        (dict(moe={**MOE, "moe_layer_freq": [0, 0, 0, 0]}), "makes no layer an MoE layer"),
        (dict(moe={**MOE, "moe_layer_freq": [1, 2, 0, 1]}), "holds only 0 and 1"),
        (dict(moe={**MOE, "moe_layer_freq": 0}), "moe_layer_freq must be >= 1"),
        (dict(extras={"num_cameras": -1}), "extras.num_cameras"),
    ],
)
def test_invalid_configs_fail_with_clear_message(changes, message) -> None:
    with pytest.raises(ConfigError) as err:
        build(**changes)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_moe_layer_freq_semantics() -> None:
    assert build(moe={**MOE, "moe_layer_freq": 2}).moe_layers == [True, False, True, False]
    assert build(moe=MOE).moe_layers == [True] * 4
    assert build(moe={**MOE, "moe_layer_freq": [0, 1, 1, 0]}).moe_layers == [
        False,
        True,
        True,
        False,
    ]
    assert build().moe_layers == [False] * 4


def test_no_balancing_defaults_to_zero_coefficient() -> None:
    m = MoEConfig(**MOE, load_balancing="none")
    assert m.aux_loss_coeff == 0.0
    assert MoEConfig.model_validate(m.model_dump()) == m


def test_save_load_round_trip(tmp_path) -> None:
    cfg = build(
        moe={
            **MOE,
            "score_function": "sigmoid",
            "expert_bias": True,
            "moe_layer_freq": [1, 0, 1, 1],
        },
        extras={"num_cameras": 6, "action_dim": 7},
    )
    path = cfg.save(tmp_path / "sub" / "config.json")
    assert ModelConfig.load(path) == cfg
    assert [p.name for p in path.parent.iterdir()] == ["config.json"]  # no temporary left behind
    assert json.loads(path.read_text())["moe"]["moe_layer_freq"] == [1, 0, 1, 1]


def test_load_errors_name_the_file(tmp_path) -> None:
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match=r"config\.json: cannot read config"):
        ModelConfig.load(bad)
    bad.write_text(json.dumps({**BASE, "num_kv_heads": 3}))
    with pytest.raises(ConfigError, match=r"config\.json: .*num_kv_heads"):
        ModelConfig.load(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="expected a JSON object"):
        ModelConfig.load(bad)


def test_vocab_size_from_layout(tmp_path) -> None:
    layout = tmp_path / "vocab_layout.json"
    layout.write_text(json.dumps({"vocab_size": 151_700, "ranges": {"text": [0, 151_000]}}))
    assert vocab_size_from_layout(layout) == 151_700
    assert vocab_size_from_layout(layout, pad_to_multiple=128) == 151_808
    fields = {k: v for k, v in BASE.items() if k != "vocab_size"}
    assert ModelConfig.from_vocab_layout(layout, **fields).vocab_size == 151_700
    assert get_preset("tiny-dense").with_vocab_layout(layout, 128).vocab_size == 151_808
    layout.write_text(json.dumps({"total": 5}))
    with pytest.raises(ConfigError, match="top-level positive int 'vocab_size'"):
        vocab_size_from_layout(layout)
    with pytest.raises(ConfigError, match="cannot read vocab layout"):
        vocab_size_from_layout(tmp_path / "missing.json")


def test_replace_revalidates() -> None:
    cfg = build()
    assert cfg.replace(num_layers=6).num_layers == 6
    with pytest.raises(Exception, match="num_kv_heads"):
        cfg.replace(num_kv_heads=3)


def test_presets() -> None:
    assert set(preset_names()) == {"vla-1b-dense", "vla-10b-moe", "tiny-dense", "tiny-moe"}
    d = get_preset("vla-1b-dense")
    assert (
        d.num_layers,
        d.hidden_size,
        d.ffn_hidden_size,
        d.num_attention_heads,
        d.num_kv_heads,
        d.head_dim,
        d.vocab_size,
        d.rope_theta,
        d.max_position_embeddings,
    ) == (24, 2048, 8192, 32, 8, 64, 152064, 1e6, 4096)
    assert d.qk_norm and not d.tie_embeddings and d.moe is None
    m = get_preset("vla-10b-moe")
    assert m.moe.top_k == 8 and 64 <= m.moe.num_experts <= 128 and m.moe.score_function == "softmax"
    with pytest.raises(ConfigError, match="unknown preset"):
        get_preset("vla-70b")


def test_resolve_config(tmp_path) -> None:
    assert resolve_config("tiny-moe").name == "tiny-moe"
    get_preset("tiny-dense").save(tmp_path / "config.json")
    assert resolve_config(str(tmp_path)).name == "tiny-dense"
    assert resolve_config(str(tmp_path / "config.json")).name == "tiny-dense"
    with pytest.raises(ConfigError, match="neither a preset"):
        resolve_config(str(tmp_path / "nope.json"))
