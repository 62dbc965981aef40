"""The torch engine on GPU: bf16 training, 2-GPU DDP agreement, and transformers' Qwen3 speed.

Run from the repository root on a CUDA machine (megatron-core and transformers importable;
our packages are found from this file's location, or through PYTHONPATH=packages/*/src):

    PYTHONPATH=$(ls -d packages/*/src | paste -sd:) \\
        python3 packages/vla-train/gpu/torch_engine_gpu.py --out torch_engine_gpu.json

1. writes byte-level token shards (id = UTF-8 byte, EOD = 256) of vla-data's sample texts;
2. trains the torch engine on one GPU (precision "bf16", device "cuda") for --steps steps with
   the tiny-dense preset widened to hidden 512 / 8 layers at seq 1024; checks every loss is
   finite and the loss falls; reports tokens/s, MFU and peak memory from the engine's metrics;
3. with >= 2 visible GPUs: the same run as 2-rank DDP over NCCL through
   `torchrun --nproc_per_node 2 -m vla_train run --config ...` (the same global batch) and
   checks its losses agree with the 1-GPU run within bf16 tolerance;
4. times transformers' Qwen3ForCausalLM on the same config, the same batches and the same
   optimizer in bf16 autocast, alternating steps with the engine's `train_step`.

Prints one JSON object (also written to --out) and exits 1 when a check fails.
`--cpu-dry-run` runs the same code paths on CPU in fp32 (tiny sizes, 3 steps; DDP over gloo).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

PACKAGES = Path(__file__).resolve().parents[2]  # <repo>/packages
for _src in sorted(PACKAGES.glob("*/src")):
    if str(_src) not in sys.path:
        sys.path.insert(0, str(_src))

warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

EOD = 256
GPU_MODEL = {  # tiny-dense widened: ~25M non-embedding parameters
    "vocab_size": 512,
    "hidden_size": 512,
    "num_layers": 8,
    "num_attention_heads": 8,
    "num_kv_heads": 4,
    "head_dim": 64,
    "ffn_hidden_size": 1536,
    "max_position_embeddings": 1024,
}
DRY_MODEL = {"vocab_size": 512, "max_position_embeddings": 128}  # tiny-dense as is


def sample_documents(documents: int) -> tuple[list[str], str]:
    """vla-data's sample sentences and lessons, or (where vla-data's media dependencies such as
    PyAV are not installed, as on the lent GPU machine) sentences from a fixed word list."""
    rng = np.random.default_rng(0)
    try:
        from vla_data.corpus import SENTENCES
        from vla_data.textbook import lessons
    except ImportError as e:
        words = (
            "the car turns left at the next junction while the bus waits behind the truck "
            "a cyclist crosses the road and the light changes to green so traffic moves on"
        ).split()
        docs = [
            " ".join(rng.choice(words, size=int(rng.integers(20, 200)))) for _ in range(documents)
        ]
        return docs, f"word list (vla_data not importable: {e})"
    pool = [s for g in SENTENCES.values() for s in g]
    docs = [" ".join(rng.choice(pool, size=3, replace=False)) for _ in range(documents)]
    docs += [d["text"] for d in lessons(24, 0)]
    return docs, "vla_data sample sentences and lessons"


def write_byte_shards(folder: Path, documents: int = 2000) -> tuple[int, str]:
    """Byte-level token shards of sample texts; returns the EOD id and where the text is from."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    folder.mkdir(parents=True, exist_ok=True)
    docs, source = sample_documents(documents)
    builder = IndexedDatasetBuilder(str(folder / "sample__text.bin"), dtype=np.uint16)
    for d in docs:
        ids = list(d.encode()) + [EOD]
        builder.add_document(torch.tensor(ids), [len(ids)])
    builder.finalize(str(folder / "sample__text.idx"))
    return EOD, source


def run_config(args: argparse.Namespace, shards: Path, out_dir: Path) -> dict:
    """The TrainConfig dict of the run (1 GPU, DDP and the comparison use the same one)."""
    dry = args.cpu_dry_run
    return {
        "out_dir": str(out_dir),
        "seed": 0,
        "seq_length": args.seq,
        "micro_batch_size": args.micro,
        "global_batch_size": args.global_batch,
        "precision": "fp32" if dry else "bf16",
        "device": "cpu" if dry else "cuda",
        "model": {"preset": "tiny-dense", "overrides": DRY_MODEL if dry else GPU_MODEL},
        "data": {"shards": str(shards), "eod_id": EOD, "document_mask": args.document_mask},
        "optimizer": {"lr": args.lr, "min_lr": args.lr / 10, "weight_decay": 0.0},
        "schedule": {"train_steps": args.steps, "warmup_steps": min(5, args.steps // 5)},
        "checkpoint": {"every": 10**6, "save_final": False},
        "logging": {"tensorboard": False, "progress": False},
    }


def toml_text(cfg: dict) -> str:
    """A TOML file of a run-config dict (scalars, lists, one level of tables/inline tables)."""
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


def _median(records: list[dict], key: str, skip: int) -> float | None:
    vals = [r[key] for r in records[skip:] if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def train_single(args: argparse.Namespace, shards: Path, work: Path) -> dict:
    """Step 2: the engine on one device; losses, speed, MFU and memory from its metrics."""
    from vla_train.config import TrainConfig
    from vla_train.engine import Trainer
    from vla_train.monitor import read_metrics

    cfg = TrainConfig.from_dict(run_config(args, shards, work / "single"))
    trainer = Trainer(cfg, resume=False)
    result = trainer.train()
    records = read_metrics(cfg.out_dir / "metrics.jsonl")
    losses = result.losses
    skip = min(args.warmup, max(len(records) - 1, 0))  # first steps: allocator, autotuning
    head, tail = losses[: min(3, len(losses))], losses[-min(5, len(losses)) :]
    first, last = sum(head) / len(head), sum(tail) / len(tail)
    mem = {
        k: max(r[k] for r in records)
        for k in ("mem_allocated_mib", "mem_reserved_mib", "mem_rss_mib")
        if k in records[-1]
    }
    return {
        "steps": len(losses),
        "params": sum(p.numel() for p in trainer.model.parameters()),
        "flops_per_token": trainer.flops_per_token,
        "losses": [round(x, 5) for x in losses],
        "losses_full": losses,
        "first_loss": first,
        "last_loss": last,
        "finite": all(math.isfinite(x) for x in losses),
        "loss_falls": last < args.falls_below * first,
        "skipped_steps": len(result.skipped),
        "tokens_per_s_median": _median(records, "tokens_per_s", skip),
        "tokens_per_s_run": result.tokens_per_s,
        "tflops_per_device_median": _median(records, "tflops_per_device", skip),
        "mfu_median": _median(records, "mfu", skip),
        "peak_tflops": trainer.peak_flops / 1e12 if trainer.peak_flops else None,
        **mem,
    }


def train_ddp(args: argparse.Namespace, shards: Path, work: Path, reference: list[float]) -> dict:
    """Step 3: 2 ranks through torchrun + `python -m vla_train run`; losses vs the 1-device run."""
    from vla_train.monitor import read_metrics

    cfg = run_config(args, shards, work / "ddp")
    path = work / "ddp.toml"
    path.write_text(toml_text(cfg))
    env = dict(os.environ)
    src = [str(p) for p in sorted(PACKAGES.glob("*/src"))]
    env["PYTHONPATH"] = os.pathsep.join(src + [p for p in [env.get("PYTHONPATH")] if p])
    env.setdefault("PYTHONWARNINGS", "ignore")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("NCCL_NVLS_ENABLE", "0")  # no NVLink multicast on shared hosts
    env.setdefault("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",  # = torchrun
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "vla_train",
        "run",
        "--config",
        str(path),
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.ddp_timeout)
    wall = time.perf_counter() - t0
    out: dict = {"command": " ".join(cmd), "returncode": proc.returncode, "wall_s": wall}
    if proc.returncode != 0:
        out["stderr_tail"] = proc.stderr[-3000:]
        out["agree"] = False
        return out
    records = read_metrics(Path(cfg["out_dir"]) / "metrics.jsonl")
    losses = [r["loss"] for r in records]
    rel = [abs(a - b) / max(abs(b), 1e-12) for a, b in zip(losses, reference, strict=False)]
    skip = min(args.warmup, max(len(records) - 1, 0))
    out.update(
        {
            "losses": [round(x, 5) for x in losses],
            "max_rel_diff": max(rel) if rel else None,
            "first_step_rel_diff": rel[0] if rel else None,
            "tolerance": args.ddp_rtol,
            "agree": len(losses) == len(reference) and max(rel) <= args.ddp_rtol,
            "bit_identical": losses == reference,
            "tokens_per_s_median": _median(records, "tokens_per_s", skip),
            "mfu_median": _median(records, "mfu", skip),
            "summary": (proc.stdout.strip().splitlines() or [""])[-1],
        }
    )
    return out


def compare_transformers(args: argparse.Namespace, shards: Path, work: Path) -> dict:
    """Step 4: transformers' Qwen3ForCausalLM vs the engine's `train_step`, alternating steps,
    the same initial weights, batches (fetched the same way), optimizer, LR and clipping."""
    from transformers import Qwen3ForCausalLM

    from vla_model.hf import to_hf_config, to_hf_state_dict
    from vla_train.config import TrainConfig
    from vla_train.engine import Trainer, make_optimizer

    d = run_config(args, shards, work / "compare")
    d["optimizer"] = {"lr": args.lr, "min_lr": args.lr, "weight_decay": 0.0}
    d["schedule"] = {"train_steps": args.compare_steps + args.warmup, "decay": "constant"}
    cfg = TrainConfig.from_dict(d)
    ours = Trainer(cfg, resume=False)
    device, mcfg = ours.device, ours.mcfg
    hf = Qwen3ForCausalLM._from_config(to_hf_config(mcfg), attn_implementation="sdpa")
    hf.load_state_dict(to_hf_state_dict(ours.model.state_dict(), mcfg), strict=False)
    hf.to(device).train()
    hf_opt, _ = make_optimizer(hf, cfg, device)
    autocast = device.type == "cuda"
    accum = cfg.global_batch_size // cfg.micro_batch_size

    def fetch(step: int) -> list:
        base = step * cfg.global_batch_size
        out = []
        for m in range(accum):
            idx = list(
                range(base + m * cfg.micro_batch_size, base + (m + 1) * cfg.micro_batch_size)
            )
            b = ours.stream.batch(idx)
            out.append(b.to(device) if device.type == "cpu" else _pinned(b).to(device))
        return out

    pool = ThreadPoolExecutor(max_workers=1) if cfg.data.prefetch else None
    pending: dict[int, Future] = {}
    total = args.compare_steps + args.warmup

    def hf_step(step: int) -> float:
        fut = pending.pop(step, None)
        batches = fut.result() if fut is not None else fetch(step)
        if pool is not None and step + 1 < total:
            pending[step + 1] = pool.submit(fetch, step + 1)
        denom = sum(b.loss_mask.sum() for b in batches)
        loss_sum = 0.0
        for b in batches:
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
                logits = hf(input_ids=b.tokens, position_ids=b.positions).logits
            logits = logits.float()
            ce = F.cross_entropy(
                logits.view(-1, logits.shape[-1]), b.labels.view(-1), reduction="none"
            )
            part = (ce * b.loss_mask.view(-1)).sum() / denom
            part.backward()
            loss_sum = loss_sum + part.detach()
        torch.nn.utils.clip_grad_norm_(hf.parameters(), cfg.optimizer.grad_clip)
        hf_opt.step()
        hf_opt.zero_grad(set_to_none=True)
        return float(loss_sum)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    t_ours, t_hf, first = [], [], None
    ours.model.train()
    for step in range(total):
        sync()
        t0 = time.perf_counter()
        rec = ours.train_step(step)
        sync()
        t1 = time.perf_counter()
        hl = hf_step(step)
        sync()
        t2 = time.perf_counter()
        if step == 0:
            first = (rec["loss"], hl)
        if step >= args.warmup:
            t_ours.append(t1 - t0)
            t_hf.append(t2 - t1)
    if pool is not None:
        pool.shutdown()
    tokens = cfg.tokens_per_step
    ours_tps, hf_tps = tokens / statistics.median(t_ours), tokens / statistics.median(t_hf)
    import transformers

    return {
        "transformers": transformers.__version__,
        "timed_steps": len(t_ours),
        "ours_tokens_per_s": ours_tps,
        "transformers_tokens_per_s": hf_tps,
        "ratio": ours_tps / hf_tps,
        "ours_median_step_ms": 1e3 * statistics.median(t_ours),
        "transformers_median_step_ms": 1e3 * statistics.median(t_hf),
        "ours_mfu": ours_tps * ours.flops_per_token / ours.peak_flops if ours.peak_flops else None,
        "transformers_mfu": hf_tps * ours.flops_per_token / ours.peak_flops
        if ours.peak_flops
        else None,
        "first_step_loss": {"ours": first[0], "transformers": first[1]},
        "first_step_rel_diff": abs(first[0] - first[1]) / abs(first[1]),
        "timing": "median step (synchronized); steps alternate between the engines",
    }


def _pinned(batch):
    from vla_train.data import Batch

    return Batch(*(t.pin_memory() for t in batch.__dict__.values()))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    ap.add_argument("--work-dir", type=Path, default=None, help="default: a temporary folder")
    ap.add_argument("--steps", type=int, default=None, help="default 50 (3 with --cpu-dry-run)")
    ap.add_argument("--seq", type=int, default=None, help="default 1024 (128 dry)")
    ap.add_argument("--micro", type=int, default=None, help="default 8 (2 dry)")
    ap.add_argument("--global-batch", type=int, default=None, help="default 16 (4 dry)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=5, help="steps left out of the timings")
    ap.add_argument("--compare-steps", type=int, default=None, help="default 30 (2 dry)")
    ap.add_argument("--falls-below", type=float, default=0.8, help="last/first loss must be <")
    ap.add_argument("--ddp-rtol", type=float, default=2e-2, help="DDP vs 1 GPU, per step")
    ap.add_argument("--ddp-timeout", type=int, default=900)
    ap.add_argument("--document-mask", action="store_true", help="(transformers gets none)")
    ap.add_argument("--no-ddp", action="store_true", help="skip the 2-rank run")
    ap.add_argument("--no-transformers", action="store_true", help="skip the comparison")
    ap.add_argument(
        "--cpu-dry-run",
        action="store_true",
        help="CPU, fp32, tiny sizes, 3 steps, DDP over gloo: checks the script, not the GPU",
    )
    args = ap.parse_args(argv)
    dry = args.cpu_dry_run
    defaults = {
        "steps": 3 if dry else 50,
        "seq": 128 if dry else 1024,
        "micro": 2 if dry else 8,
        "global_batch": 4 if dry else 16,
        "compare_steps": 2 if dry else 30,
    }
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if dry:
        args.warmup = min(args.warmup, 1)
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if not args.cpu_dry_run and not torch.cuda.is_available():
        sys.exit("CUDA is not available (use --cpu-dry-run to check the script on CPU)")
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        shards = work / "tokens"
        _, text_source = write_byte_shards(shards)
        report: dict = {
            "script": "torch_engine_gpu",
            "mode": "cpu-dry-run" if args.cpu_dry_run else "gpu",
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "device": torch.cuda.get_device_name(0) if gpus else "cpu",
            "visible_gpus": gpus,
            "torch": torch.__version__,
            "config": {
                "model": {"preset": "tiny-dense"} | (DRY_MODEL if args.cpu_dry_run else GPU_MODEL),
                "seq_length": args.seq,
                "micro_batch_size": args.micro,
                "global_batch_size": args.global_batch,
                "steps": args.steps,
                "precision": "fp32" if args.cpu_dry_run else "bf16",
                "document_mask": args.document_mask,
                "text": text_source,
            },
        }
        single = train_single(args, shards, work)
        reference = single.pop("losses_full")
        report["single"] = single
        checks = {"finite": single["finite"], "no_skipped_steps": single["skipped_steps"] == 0}
        if not args.cpu_dry_run:  # 3 dry steps (in warmup) need not fall
            checks["loss_falls"] = single["loss_falls"]
        ddp_possible = gpus >= 2 or args.cpu_dry_run
        if args.no_ddp or not ddp_possible:
            report["ddp"] = {"ran": False, "why": "--no-ddp" if args.no_ddp else f"{gpus} GPU(s)"}
        else:
            report["ddp"] = {"ran": True} | train_ddp(args, shards, work, reference)
            checks["ddp_agrees"] = report["ddp"]["agree"]
        if not args.no_transformers:
            report["transformers"] = compare_transformers(args, shards, work)
            checks["transformers_first_loss_close"] = report["transformers"][
                "first_step_rel_diff"
            ] < (1e-4 if args.cpu_dry_run else 2e-2)
        report["checks"] = checks
        report["ok"] = all(checks.values())
    text = json.dumps(report, indent=1)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return report


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
