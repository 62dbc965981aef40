"""The `vla-model` CLI."""

from __future__ import annotations

import json

from click.testing import CliRunner

from vla_model import ModelConfig, count_parameters, get_preset
from vla_model.cli import main


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_presets_table_and_json() -> None:
    r = run("presets")
    assert r.exit_code == 0
    for name in ("vla-1b-dense", "vla-10b-moe", "tiny-dense", "tiny-moe"):
        assert name in r.output
    rows = json.loads(run("presets", "--json").output)
    moe = next(x for x in rows if x["name"] == "vla-10b-moe")
    assert moe["total_params"] == count_parameters(get_preset("vla-10b-moe")).total


def test_describe_preset_text_and_json() -> None:
    r = run("describe", "vla-10b-moe", "--ep", "8", "--dp", "8")
    assert r.exit_code == 0, r.output
    assert "params active" in r.output and "memory/GPU" in r.output
    d = json.loads(
        run(
            "describe",
            "vla-10b-moe",
            "--ep",
            "8",
            "--dp",
            "8",
            "--tp",
            "2",
            "--seq",
            "2048",
            "--micro-batch",
            "2",
            "--recompute",
            "full",
            "--json",
        ).output
    )
    assert d["layout"] == {
        "tp": 2,
        "pp": 1,
        "dp": 8,
        "ep": 8,
        "etp": 2,
        "expert_dp": 1,
        "num_gpus": 16,
        "seq_len": 2048,
        "micro_batch": 2,
        "sequence_parallel": True,
        "recompute": "full",
    }
    assert d["flops_per_token"]["seq_len"] == 2048
    assert d["params"]["active"] < d["params"]["total"]


def test_describe_config_file_and_vocab_layout(tmp_path) -> None:
    path = get_preset("tiny-moe").save(tmp_path / "config.json")
    layout = tmp_path / "vocab_layout.json"
    layout.write_text(json.dumps({"vocab_size": 2000}))
    d = json.loads(run("describe", str(path), "--vocab-layout", str(layout), "--json").output)
    assert d["name"] == "tiny-moe" and d["params"]["embedding"] == 2000 * 64


def test_bad_input_exits_nonzero_with_one_line(tmp_path) -> None:
    for args in (
        ("describe", "no-such-preset"),
        ("describe", "vla-1b-dense", "--tp", "3"),
        ("describe", "tiny-dense", "--micro-batch", "0"),
    ):
        r = run(*args)
        assert r.exit_code == 1
        assert r.output.startswith("Error: ") and r.output.count("\n") == 1
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps({"vocab_size": 10}))
    r = run("describe", str(bad))
    assert r.exit_code == 1 and "num_layers: Field required" in r.output


def test_config_writes_loadable_file(tmp_path) -> None:
    out = tmp_path / "c.json"
    r = run("config", "vla-10b-moe", "-o", str(out))
    assert r.exit_code == 0
    assert ModelConfig.load(out) == get_preset("vla-10b-moe")
    assert json.loads(run("config", "tiny-dense").output)["name"] == "tiny-dense"


def test_megatron_config() -> None:
    r = run("megatron-config", "vla-10b-moe")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    tc = d["transformer_config"]
    assert tc["num_moe_experts"] == 64 and tc["moe_router_topk"] == 8
    assert tc["num_query_groups"] == 4 and tc["kv_channels"] == 128
    assert tc["moe_grouped_gemm"] is True and tc["bf16"] is True
    assert tc["activation_func"] == "silu" and tc["params_dtype"] == "bfloat16"
    assert d["gpt_model"]["vocab_size"] == 152064
    r = run("megatron-config", "tiny-moe", "--layer-spec", "local", "--dtype", "float32")
    assert json.loads(r.output)["transformer_config"]["moe_grouped_gemm"] is False


def test_megatron_config_names_what_megatron_cannot_express(tmp_path) -> None:
    cfg = get_preset("tiny-moe").replace(
        moe={**get_preset("tiny-moe").moe.model_dump(), "top_k": 1}
    )
    path = cfg.save(tmp_path / "config.json")
    r = run("megatron-config", str(path))
    assert r.exit_code != 0 and "softmax router and top_k = 1" in r.output
