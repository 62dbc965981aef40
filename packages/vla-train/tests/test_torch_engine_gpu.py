"""The torch engine on CUDA (bf16 autocast): learning, metrics, DDP over NCCL; plus a CPU dry
run of `gpu/torch_engine_gpu.py`. The `gpu` tests skip on machines without CUDA."""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vla_train.config import TrainConfig
from vla_train.engine import Trainer
from vla_train.monitor import read_metrics

SCRIPT = Path(__file__).resolve().parents[1] / "gpu" / "torch_engine_gpu.py"
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
WIDER = {  # the test shards' 512-token BPE; wide enough for bf16 matmuls to matter
    "vocab_size": 512,
    "hidden_size": 256,
    "num_layers": 4,
    "num_attention_heads": 4,
    "num_kv_heads": 2,
    "head_dim": 64,
    "ffn_hidden_size": 768,
    "max_position_embeddings": 256,
}


def _script():
    spec = importlib.util.spec_from_file_location("torch_engine_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _gpu_cfg(make_config, shards, out, **over) -> dict:
    d = make_config(
        shards,
        out,
        seq_length=256,
        micro_batch_size=8,
        global_batch_size=16,
        precision="bf16",
        device="cuda",
        model={"preset": "tiny-dense", "overrides": WIDER},
        optimizer={"lr": 3e-3, "min_lr": 3e-4, "weight_decay": 0.0},
        schedule={"train_steps": 40, "warmup_steps": 4},
        checkpoint={"every": 1000, "save_final": False},
    )
    for k, v in over.items():
        d[k] = {**d[k], **v} if isinstance(v, dict) and isinstance(d.get(k), dict) else v
    return d


@pytest.mark.gpu
@needs_cuda
def test_bf16_loss_falls_on_one_gpu(shards, tmp_path, make_config) -> None:
    cfg = TrainConfig.from_dict(_gpu_cfg(make_config, shards, tmp_path / "run"))
    trainer = Trainer(cfg)
    assert trainer.device.type == "cuda" and trainer.autocast
    result = trainer.train()
    losses = result.losses
    assert len(losses) == 40 and all(math.isfinite(x) for x in losses)
    assert not result.skipped
    assert losses[0] > 0.9 * math.log(512)  # starts near uniform
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:3]) / 3, losses
    rec = read_metrics(cfg.out_dir / "metrics.jsonl")[-1]
    assert rec["tokens_per_s"] > 0 and 0 < rec["mfu"] < 1
    assert rec["mem_allocated_mib"] > 0 and rec["mem_reserved_mib"] >= rec["mem_allocated_mib"]
    assert all(
        p.device.type == "cuda" and p.dtype == torch.float32 for p in trainer.model.parameters()
    )


@pytest.mark.gpu
@needs_cuda
def test_bf16_first_step_matches_fp32(shards, tmp_path, make_config) -> None:
    """Same initial weights and batch: the bf16-autocast loss is the fp32 loss within bf16."""
    losses = {}
    for precision in ("bf16", "fp32"):
        d = _gpu_cfg(
            make_config,
            shards,
            tmp_path / precision,
            precision=precision,
            schedule={"train_steps": 1, "warmup_steps": 0},
        )
        losses[precision] = Trainer(TrainConfig.from_dict(d)).train().losses[0]
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=2e-2)


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_two_gpu_ddp_matches_one_gpu(shards, tmp_path, make_config) -> None:
    """torchrun 2 ranks (NCCL) with the same global batch as one GPU: the same losses."""
    over = dict(schedule={"train_steps": 10, "warmup_steps": 2})
    one = Trainer(TrainConfig.from_dict(_gpu_cfg(make_config, shards, tmp_path / "one", **over)))
    reference = one.train().losses
    path = tmp_path / "ddp.toml"
    path.write_text(_script().toml_text(_gpu_cfg(make_config, shards, tmp_path / "ddp", **over)))
    src = [str(p) for p in sorted(SCRIPT.parents[2].glob("*/src"))]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "NCCL_NVLS_ENABLE": "0"}
    env["PYTHONPATH"] = os.pathsep.join(src + [p for p in [env.get("PYTHONPATH")] if p])
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
        + ["-m", "vla_train", "run", "--config", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    losses = [r["loss"] for r in read_metrics(tmp_path / "ddp" / "metrics.jsonl")]
    assert losses == pytest.approx(reference, rel=2e-2)
    assert losses[0] == pytest.approx(reference[0], rel=1e-5)  # same weights, same batch


@pytest.mark.slow  # megatron-core index build + a few tiny steps of each engine on CPU
def test_gpu_script_cpu_dry_run(tmp_path) -> None:
    report = _script().main(
        [
            "--cpu-dry-run",
            "--no-ddp",
            "--steps",
            "2",
            "--compare-steps",
            "1",
            "--work-dir",
            str(tmp_path / "work"),
            "--out",
            str(tmp_path / "report.json"),
        ]
    )
    assert report["ok"], report["checks"]
    assert report["single"]["steps"] == 2 and report["ddp"]["ran"] is False
    t = report["transformers"]
    assert t["first_step_loss"]["ours"] == pytest.approx(t["first_step_loss"]["transformers"])
    assert (tmp_path / "report.json").is_file()
