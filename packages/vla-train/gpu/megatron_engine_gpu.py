"""Checks of the megatron engine on GPUs, each a real `vla-train run` in its own process.

Run from the repository root on a CUDA machine with megatron-core (and, for the TE/FP8 checks,
Transformer Engine) importable:

    PYTHONPATH=/tmp/site:$(ls -d packages/*/src | paste -sd:) \\
        python3 packages/vla-train/gpu/megatron_engine_gpu.py --out megatron_engine_gpu.json

One GPU:
- `dense`: a small dense model (hidden 256, 4 layers, byte-level token shards, seq 512, 2
  micro-batches per step), BF16, distributed optimizer, 40 steps: every loss finite, the loss
  falls by > 1 nat; checkpoint at step 20 and 40.
- `resume`: the same run stopped after 20 steps (`--steps 20`), then `vla-train resume`: its
  steps 21..40 must equal the uninterrupted run's (max abs diff reported; bit-identical is the
  expectation with deterministic kernels, bf16 tolerance is accepted).
- `resume_async`: `resume` with `checkpoint.async_save` (shards written in the background).
- `resume_fully_reshardable`: `resume` with the optimizer state saved `fully_reshardable`
  (gathered into the model's shapes; TE's FusedAdam keeps its step in the param groups).
- `resume_paopt` (TE only): the same with the precision-aware optimizer (TE's FusedAdam keeps
  the FP32 master weights as remainders of the BF16 params), against an uninterrupted run with
  that optimizer (its distance to the default optimizer over steps 1-20 reported apart).
- `document_mask`: packed documents kept apart (THD packed sequences with TE, block mask local).
- `moe`: a small MoE (8 experts, top-2, aux + z loss), 30 steps, the loss falls.
- `local_spec`: megatron's local (non-TE) layers, 20 steps.
- `fp8_delayed`, `fp8_current`: FP8 GEMMs (TE only), 30 steps, the loss falls;
  `fp8_attention`: delayed scaling with FP8 dot-product attention too (2026-12-07, H100, TE
  2.11, cuDNN 9.19: no attention backend for its head_dim 64 + GQA; not in the default `te` run).
- `fp8_primary`: delayed scaling with the weights kept in FP8 (`fp8.primary_weights`), stopped
  at step 20 and resumed to 30: the loss falls, the checkpoint of FP8 weights loads.
- `fp8_op_fuser`, `fp8_te_activation`: `fp8_delayed` with the dense MLPs through TE's operation
  fuser (`megatron.te_op_fuser`) / TE's SwiGLU (`megatron.te_activation`): the loss falls; the
  loss difference to `fp8_delayed` is reported.
- `cuda_graphs`: the dense run with megatron's per-layer CUDA graphs (graph-safe RNG tracker,
  checkpoints at 20 and 40): the loss falls; loss difference to `dense` reported.
Two or more GPUs (skipped otherwise, reported as such):
- `tp2`: TP=2 + sequence parallel, losses close to the 1-GPU `dense` run;
- `ep2`: the MoE with EP=2 (alltoall dispatcher), the loss falls;
- `tp2_to_tp1`: the TP=2 checkpoint loaded at TP=1: logits equal (bf16 tolerance);
- `tp2_resume`: the dense run saved at TP=1 with `checkpoint.optimizer_format =
  "fully_reshardable"` after 20 steps, resumed at TP=2: steps 21..40 close to `dense`.
- `pp2_resume`: the same, resumed with the layers in two pipeline stages (PP=2).

Prints one JSON object (also written to --out); exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PACKAGES = Path(__file__).resolve().parents[2]
SMALL = {
    "hidden_size": 256,
    "num_layers": 4,
    "num_attention_heads": 8,
    "num_kv_heads": 4,
    "head_dim": 32,
    "ffn_hidden_size": 768,
    "vocab_size": 512,
    "max_position_embeddings": 1024,
}


def env() -> dict:
    e = os.environ.copy()
    src = ":".join(str(p) for p in sorted(PACKAGES.glob("*/src")))
    e["PYTHONPATH"] = f"{e['PYTHONPATH']}:{src}" if e.get("PYTHONPATH") else src
    e.setdefault("CUDA_DEVICE_MAX_CONNECTIONS", "1")
    e["PYTHONUNBUFFERED"] = "1"
    return e


def write_shards(folder: Path) -> int:
    """Byte-level shards (id = UTF-8 byte, EOD 256) of repetitive English-like text."""
    import numpy as np
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    rng = np.random.default_rng(0)
    words = (
        "the car turns left at the next junction while the bus waits behind the truck "
        "a cyclist crosses the road and the light changes to green so traffic moves on"
    ).split()
    b = IndexedDatasetBuilder(str(folder / "sample__text.bin"), dtype=np.uint16)
    for _ in range(3000):
        n = int(rng.integers(20, 200))
        text = " ".join(rng.choice(words, size=n))
        ids = list(text.encode()) + [256]
        b.add_document(torch.tensor(ids), [len(ids)])
    b.finalize(str(folder / "sample__text.idx"))
    return 256


def config(root: Path, shards: Path, name: str, **over) -> Path:
    """A TOML config for one check."""
    model = over.pop("model", {"preset": "tiny-dense", "overrides": SMALL})
    cfg = {
        "out_dir": str(root / name),
        "engine": "megatron",
        "seq_length": 512,
        "micro_batch_size": 4,
        "global_batch_size": 8,
        "model": model,
        "data": {"shards": str(shards), "eod_id": 256, "document_mask": False},
        "optimizer": {"lr": 2e-3, "min_lr": 2e-4},
        "schedule": {"train_steps": 40, "warmup_steps": 5},
        "checkpoint": {"every": 20, "keep_last": 2},
        "logging": {"tensorboard": False, "progress": False},
    }
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k] = {**cfg[k], **v}
        else:
            cfg[k] = v
    path = root / f"{name}.json"
    tmp = root / f".{name}.json.{os.getpid()}"  # whole or absent: every rank of a run writes it
    tmp.write_text(json.dumps(cfg))
    os.replace(tmp, path)
    return path


def vla_train(args: list[str], nproc: int = 1, timeout: int = 300) -> subprocess.CompletedProcess:
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc)]
        cmd += ["--master_port", "29511", "-m", "vla_train", *args]
    else:
        cmd = [sys.executable, "-m", "vla_train", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=timeout)


def losses(run_dir: Path) -> list[float]:
    f = run_dir / "metrics.jsonl"
    if not f.is_file():
        return []
    return [json.loads(line)["loss"] for line in f.open()]


def records(run_dir: Path) -> list[dict]:
    f = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in f.open()] if f.is_file() else []


def check_run(root: Path, cfg: Path, name: str, nproc: int = 1, fall: float = 1.0) -> dict:
    t = time.perf_counter()
    p = vla_train(["run", "--config", str(cfg)], nproc)
    recs = records(root / name)
    ls = [r["loss"] for r in recs]
    ok = p.returncode == 0 and ls and all(math.isfinite(x) for x in ls) and ls[-1] < ls[0] - fall
    out = {
        "ok": bool(ok),
        "rc": p.returncode,
        "wall_s": round(time.perf_counter() - t, 1),
        "steps": len(ls),
        "loss_first": ls[0] if ls else None,
        "loss_last": ls[-1] if ls else None,
        "tokens_per_s_median": sorted(r["tokens_per_s"] for r in recs)[len(recs) // 2]
        if recs
        else None,
        "max_memory_allocated_mib": max((r.get("mem_allocated_mib") or 0) for r in recs)
        if recs
        else None,
    }
    moe = {k: v for k, v in (recs[-1] if recs else {}).items() if k.startswith("moe_")}
    if moe:
        out["moe_last"] = moe
    if not ok:
        out["log_tail"] = (p.stdout + p.stderr)[-2500:]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--only", default=None, help="comma-separated check names")
    args = ap.parse_args()
    sys.path[:0] = [str(p) for p in sorted(PACKAGES.glob("*/src"))]
    import torch

    from vla_model.megatron import have_transformer_engine

    te = have_transformer_engine()
    gpus = torch.cuda.device_count()
    want = set(args.only.split(",")) if args.only else None
    res: dict = {
        "device": torch.cuda.get_device_name(0),
        "gpus": gpus,
        "transformer_engine": te,
        "date": time.strftime("%Y-%m-%d"),
        "command": " ".join(sys.argv),
        "checks": {},
    }
    checks = res["checks"]

    def on(name: str) -> bool:
        return want is None or name in want

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shards = root / "shards"
        shards.mkdir()
        write_shards(shards)
        if any(
            on(n)
            for n in (
                "dense",
                "resume",
                "resume_paopt",
                "resume_fully_reshardable",
                "resume_async",
                "cuda_graphs",
                "tp2",
                "tp2_resume",
                "pp2_resume",
            )
        ):
            checks["dense"] = check_run(root, config(root, shards, "dense"), "dense")
        fully = {
            "checkpoint": {"every": 20, "keep_last": 2, "optimizer_format": "fully_reshardable"}
        }
        background = {"checkpoint": {"every": 20, "keep_last": 2, "async_save": True}}
        resumes = {"resume": {}, "resume_fully_reshardable": fully, "resume_async": background}
        if te:  # TE's FusedAdam keeps the master weights (megatron-core 0.16.1 load workaround)
            resumes["resume_paopt"] = {"parallel": {"precision_aware_optimizer": True}}
        for name, over in resumes.items():
            if not on(name):
                continue
            cfg = config(root, shards, name, **over)
            t = time.perf_counter()
            reference = "dense"  # the same run, uninterrupted
            if over and "parallel" in over:
                reference = f"{name}_uninterrupted"
                vla_train(["run", "--config", str(config(root, shards, reference, **over))])
            p1 = vla_train(["run", "--config", str(cfg), "--steps", "20"])
            p2 = vla_train(["resume", "--config", str(cfg)])
            a, b = losses(root / reference), losses(root / name)
            diff = max((abs(x - y) for x, y in zip(a, b, strict=False)), default=float("inf"))
            checks[name] = {
                "ok": p1.returncode == 0 and p2.returncode == 0 and len(b) == 40 and diff < 2e-2,
                "steps": len(b),
                "max_abs_loss_diff_vs_uninterrupted": diff,
                "bit_identical": a == b,
                "wall_s": round(time.perf_counter() - t, 1),
            }
            if reference != "dense":  # how far the optimizer variant is from the default one
                d = losses(root / "dense")
                checks[name]["max_abs_loss_diff_vs_default_optimizer_steps_1_20"] = max(
                    (abs(x - y) for x, y in zip(d[:20], b[:20], strict=False)),
                    default=float("inf"),
                )
            if not checks[name]["ok"]:
                checks[name]["log_tail"] = (p1.stderr + p2.stdout + p2.stderr)[-2500:]
        if on("cuda_graphs"):  # per-layer CUDA graphs, checkpoints at 20 and 40 (RNG saved)
            cfg = config(root, shards, "graphs", megatron={"cuda_graph_impl": "local"})
            checks["cuda_graphs"] = check_run(root, cfg, "graphs")
            a, b = losses(root / "dense"), losses(root / "graphs")
            if a and b:
                checks["cuda_graphs"]["max_abs_loss_diff_vs_dense"] = max(
                    abs(x - y) for x, y in zip(a, b, strict=False)
                )
        if on("document_mask"):
            cfg = config(root, shards, "docmask", data={"document_mask": True})
            checks["document_mask"] = check_run(root, cfg, "docmask")
        moe_model = {
            "preset": "tiny-moe",
            "overrides": {
                **SMALL,
                "moe": {
                    "num_experts": 8,
                    "top_k": 2,
                    "expert_ffn_hidden_size": 256,
                    "aux_loss_coeff": 1e-2,
                    "z_loss_coeff": 1e-3,
                },
            },
        }
        if on("moe"):
            cfg = config(root, shards, "moe", model=moe_model, schedule={"train_steps": 30})
            checks["moe"] = check_run(root, cfg, "moe")
        if on("local_spec"):
            cfg = config(
                root, shards, "local", megatron={"spec": "local"}, schedule={"train_steps": 20}
            )
            checks["local_spec"] = check_run(root, cfg, "local", fall=0.5)
        fp8_runs = {
            "fp8_delayed": {"recipe": "delayed"},
            "fp8_current": {"recipe": "current"},
            "fp8_attention": {"recipe": "delayed", "attention": True},
            "fp8_op_fuser": {"recipe": "delayed"},
            "fp8_te_activation": {"recipe": "delayed"},
        }
        fp8_megatron = {
            "fp8_op_fuser": {"te_op_fuser": True},
            "fp8_te_activation": {"te_activation": True},
        }
        for name, fp8 in fp8_runs.items():
            if not on(name):
                continue
            if not te:
                checks[name] = {"ok": None, "skipped": "Transformer Engine does not import"}
                continue
            over: dict = {"fp8": fp8, "schedule": {"train_steps": 30}}
            if fp8.get("attention"):  # cuDNN's FP8 attention kernels: head_dim 64 (or 128)
                heads = {"num_attention_heads": 4, "num_kv_heads": 2, "head_dim": 64}
                over["model"] = {"preset": "tiny-dense", "overrides": {**SMALL, **heads}}
            if name in fp8_megatron:
                over["megatron"] = fp8_megatron[name]
            checks[name] = check_run(root, config(root, shards, name, **over), name)
            a, b = losses(root / "fp8_delayed"), losses(root / name)
            if name in fp8_megatron and a and b:  # the same maths through other kernels
                checks[name]["max_abs_loss_diff_vs_fp8_delayed"] = max(
                    abs(x - y) for x, y in zip(a, b, strict=False)
                )
        if on("fp8_primary"):
            if not te:
                checks["fp8_primary"] = {
                    "ok": None,
                    "skipped": "Transformer Engine does not import",
                }
            else:
                fp8 = {"recipe": "delayed", "primary_weights": True}
                cfg = config(root, shards, "fp8w", fp8=fp8, schedule={"train_steps": 30})
                t = time.perf_counter()
                p1 = vla_train(["run", "--config", str(cfg), "--steps", "20"])
                p2 = vla_train(["resume", "--config", str(cfg)])
                ls = losses(root / "fp8w")
                checks["fp8_primary"] = {
                    "ok": p1.returncode == 0
                    and p2.returncode == 0
                    and len(ls) == 30
                    and all(math.isfinite(x) for x in ls)
                    and ls[-1] < ls[0] - 1.0,
                    "steps": len(ls),
                    "loss_first": ls[0] if ls else None,
                    "loss_last": ls[-1] if ls else None,
                    "wall_s": round(time.perf_counter() - t, 1),
                }
                if not checks["fp8_primary"]["ok"]:
                    log = p1.stderr + p2.stdout + p2.stderr
                    checks["fp8_primary"]["log_tail"] = log[-2500:]
        multi = ("tp2", "ep2", "tp2_to_tp1", "tp2_resume", "pp2_resume")
        if gpus < 2:
            for name in multi:
                if on(name):
                    checks[name] = {"ok": None, "skipped": f"{gpus} GPU visible, needs 2"}
        else:
            if on("tp2") or on("tp2_to_tp1"):
                cfg = config(
                    root,
                    shards,
                    "tp2",
                    parallel={"tensor_model_parallel_size": 2, "sequence_parallel": True},
                )
                checks["tp2"] = check_run(root, cfg, "tp2", nproc=2)
                a, b = losses(root / "dense"), losses(root / "tp2")
                if a and b:
                    checks["tp2"]["max_abs_loss_diff_vs_1gpu"] = max(
                        abs(x - y) for x, y in zip(a, b, strict=False)
                    )
            splits = {  # saved at TP = PP = 1 (fully_reshardable), resumed on two GPUs
                "tp2_resume": {"tensor_model_parallel_size": 2, "sequence_parallel": True},
                "pp2_resume": {"pipeline_model_parallel_size": 2},
            }
            for name, parallel in splits.items():
                if not on(name):
                    continue
                first = config(root, shards, name, **fully)
                p1 = vla_train(["run", "--config", str(first), "--steps", "20"])
                cfg = config(root, shards, name, **fully, parallel=parallel)
                p2 = vla_train(["resume", "--config", str(cfg)], nproc=2)
                a, b = losses(root / "dense"), losses(root / name)
                diff = max((abs(x - y) for x, y in zip(a, b, strict=False)), default=float("inf"))
                checks[name] = {
                    "ok": p1.returncode == 0
                    and p2.returncode == 0
                    and len(b) == 40
                    and diff < 2e-2,
                    "steps": len(b),
                    "max_abs_loss_diff_vs_1gpu_uninterrupted": diff,
                }
                if not checks[name]["ok"]:
                    checks[name]["log_tail"] = (p1.stderr + p2.stdout + p2.stderr)[-2500:]
            if on("ep2"):
                cfg = config(
                    root,
                    shards,
                    "ep2",
                    model=moe_model,
                    parallel={"expert_model_parallel_size": 2},
                    schedule={"train_steps": 30},
                )
                checks["ep2"] = check_run(root, cfg, "ep2", nproc=2)
            if on("tp2_to_tp1"):
                p = subprocess.run(
                    [sys.executable, str(Path(__file__).with_name("megatron_reshard_check.py"))]
                    + [str(root / "tp2.json")],
                    capture_output=True,
                    text=True,
                    env=env(),
                    timeout=300,
                )
                lines = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
                checks["tp2_to_tp1"] = (
                    json.loads(lines[-1][7:])
                    if lines
                    else {"ok": False, "log_tail": (p.stdout + p.stderr)[-2500:]}
                )
    failed = [k for k, v in checks.items() if v.get("ok") is False]
    res["failed"] = failed
    text = json.dumps(res, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
