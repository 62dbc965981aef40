"""Acceptance: SIGKILL at a random step, resume, and the loss sequence is bit-identical."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from vla_train.checkpoint import list_checkpoints
from vla_train.config import TrainConfig
from vla_train.engine import Trainer
from vla_train.monitor import read_metrics

STEPS = 24


def _toml(cfg: dict) -> str:
    lines, tables = [], []
    for k, v in cfg.items():
        (tables if isinstance(v, dict) else lines).append((k, v))
    out = [f"{k} = {json.dumps(v)}" for k, v in lines]
    for k, v in tables:
        out.append(f"[{k}]")
        for kk, vv in v.items():
            if isinstance(vv, dict):
                inner = ", ".join(f"{a} = {json.dumps(b)}" for a, b in vv.items())
                out.append(f"{kk} = {{{inner}}}")
            else:
                out.append(f"{kk} = {json.dumps(vv)}")
    return "\n".join(out) + "\n"


def toml_text(cfg: dict) -> str:
    return _toml(cfg)


def _cli(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen(
        [sys.executable, "-m", "vla_train", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


@pytest.mark.slow  # two fresh interpreters, each importing megatron-core (~9 s) + torch
def test_sigkill_at_random_step_then_resume_is_bit_identical(shards, tmp_path, make_config) -> None:
    tiny_config = make_config
    over = dict(
        schedule={"train_steps": STEPS, "warmup_steps": 3},
        checkpoint={"every": 4, "keep_last": 2},
    )
    # The uninterrupted reference run, in this process.
    ref_cfg = TrainConfig.from_dict(tiny_config(shards, tmp_path / "ref", **over))
    reference = Trainer(ref_cfg).train().losses
    assert len(reference) == STEPS

    # The same run in a subprocess, SIGKILLed once it has logged a random step.
    out = tmp_path / "killed"
    path = tmp_path / "run.toml"
    path.write_text(_toml(tiny_config(shards, out, **over)))
    kill_after = random.Random().randint(2, STEPS - 3)
    proc = _cli("run", "--config", str(path))
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= kill_after:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (kill_after, proc.stderr.read().decode()[-2000:])
    done_before = len(read_metrics(metrics))
    assert done_before < STEPS

    resumed = _cli("resume", "--config", str(path))
    stdout, stderr = resumed.communicate(timeout=180)
    assert resumed.returncode == 0, stderr.decode()[-2000:]
    summary = json.loads(stdout.decode().strip().splitlines()[-1])
    ckpts = list_checkpoints(out / "checkpoints")
    assert summary["start_step"] % 4 == 0 and summary["start_step"] <= done_before
    assert summary["steps_done"] == STEPS
    losses = [r["loss"] for r in read_metrics(metrics)]
    assert [r["step"] for r in read_metrics(metrics)] == list(range(1, STEPS + 1))
    assert losses == reference, f"killed after step {kill_after}"  # exact, not approximate
    assert len(ckpts) == 2 and ckpts[-1].name == f"step-{STEPS:08d}"  # keep_last = 2
