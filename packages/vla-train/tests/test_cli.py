"""`vla-train` CLI: describe, run/resume guards, bad input; DDP through torchrun (slow)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from vla_train.cli import main
from vla_train.monitor import read_metrics


def _write(path: Path, cfg: dict) -> Path:
    lines = []
    for k, v in cfg.items():
        if not isinstance(v, dict):
            lines.append(f"{k} = {json.dumps(v)}")
    for k, v in cfg.items():
        if isinstance(v, dict):
            lines.append(f"[{k}]")
            for kk, vv in v.items():
                if isinstance(vv, dict):
                    inner = ", ".join(f"{a} = {json.dumps(b)}" for a, b in vv.items())
                    lines.append(f"{kk} = {{{inner}}}")
                else:
                    lines.append(f"{kk} = {json.dumps(vv)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_describe_prints_model_batch_and_mixture(shards, tmp_path, make_config) -> None:
    path = _write(tmp_path / "c.toml", make_config(shards, tmp_path / "out"))
    res = CliRunner().invoke(main, ["describe", "--config", str(path)])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["tokens_per_step"] == 8 * 64 and out["train_steps"] == 20
    assert set(out["buckets"]) == {"news__text", "textbook__text"}
    assert out["stages"][0]["samples"] == 160
    assert sum(out["stages"][0]["weights"].values()) == pytest.approx(1.0)
    assert out["params"]["total"] > 0 and out["flops_per_token"]["total"] > 0


def test_run_then_resume_refuses_to_clobber(shards, tmp_path, make_config) -> None:
    cfg = make_config(
        shards,
        tmp_path / "out",
        schedule={"train_steps": 4, "warmup_steps": 1},
        checkpoint={"every": 2},
    )
    path = _write(tmp_path / "c.toml", cfg)
    runner = CliRunner()
    res = runner.invoke(main, ["run", "--config", str(path), "--steps", "2"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output.strip().splitlines()[-1])["steps_done"] == 2
    res = runner.invoke(main, ["run", "--config", str(path)])
    assert res.exit_code != 0 and "vla-train resume" in res.output
    res = runner.invoke(main, ["resume", "--out-dir", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output.strip().splitlines()[-1])
    assert (summary["start_step"], summary["steps_done"]) == (2, 4)
    assert [r["step"] for r in read_metrics(tmp_path / "out" / "metrics.jsonl")] == [1, 2, 3, 4]

    # `vla-train verify`: the checkpoints check out; a changed byte and a lost file are named
    ckpts = sorted((tmp_path / "out" / "checkpoints").glob("step-*"))
    res = runner.invoke(main, ["verify", str(ckpts[-1])])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["ok"] and report["step"] == 4 and report["files"] >= 3 and report["bytes"] > 0
    model = ckpts[0] / "model.safetensors"
    data = bytearray(model.read_bytes())
    data[-1] ^= 0xFF
    model.write_bytes(bytes(data))
    next(ckpts[0].glob("rng-rank*.safetensors")).unlink()
    res = runner.invoke(main, ["verify", str(ckpts[0]), "--jobs", "2"])
    report = json.loads(res.output)
    assert res.exit_code == 1 and not report["ok"]
    assert report["differ"] == ["model.safetensors"]
    assert report["missing"] == ["rng-rank0.safetensors"]
    res = runner.invoke(main, ["verify", str(tmp_path)])
    assert res.exit_code == 2 and "no manifest.json" in res.output


def test_bad_config_exits_nonzero_with_one_line(tmp_path, shards, make_config) -> None:
    path = _write(tmp_path / "c.toml", make_config(shards, tmp_path / "o", micro_batch_size=3))
    res = CliRunner().invoke(main, ["run", "--config", str(path)])
    assert res.exit_code == 2
    assert "c.toml" in res.output and "global_batch_size" in res.output
    missing = make_config(tmp_path / "nowhere", tmp_path / "o2")
    res = CliRunner().invoke(main, ["run", "--config", str(_write(tmp_path / "m.toml", missing))])
    assert res.exit_code == 2 and "nowhere: token-shard folder does not exist" in res.output


@pytest.mark.slow  # torchrun starts two interpreters that each import megatron-core (~9 s)
def test_torchrun_ddp_two_ranks_matches_one_process(shards, tmp_path, make_config) -> None:
    over = dict(schedule={"train_steps": 3, "warmup_steps": 1}, checkpoint={"every": 3})
    ddp = _write(tmp_path / "ddp.toml", make_config(shards, tmp_path / "ddp", **over))
    one = _write(tmp_path / "one.toml", make_config(shards, tmp_path / "one", **over))
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    cmd = [torchrun, "--nproc_per_node", "2", "--master_port", "29577", "-m", "vla_train"]
    subprocess.run([*cmd, "run", "--config", str(ddp)], check=True, env=env, capture_output=True)
    assert CliRunner().invoke(main, ["run", "--config", str(one)]).exit_code == 0
    a = [r["loss"] for r in read_metrics(tmp_path / "ddp" / "metrics.jsonl")]
    b = [r["loss"] for r in read_metrics(tmp_path / "one" / "metrics.jsonl")]
    assert a == pytest.approx(b, rel=1e-5)
    ck = tmp_path / "ddp" / "checkpoints" / "step-00000003"
    assert (ck / "rng-rank0.safetensors").is_file() and (ck / "rng-rank1.safetensors").is_file()
