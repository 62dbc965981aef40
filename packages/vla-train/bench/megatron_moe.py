"""Training throughput of the megatron engine on a reduced-depth vla-10b-moe (issue 8).

vla-10b-moe's layer (hidden 2048, 64 experts of FFN 768, top-8, dropless, aux loss) at
`--layers` depth, seq 4096, BF16 (or `--fp8 delayed|current`), the full `MegatronTrainer` step:
megatron DDP, distributed optimizer, TE grouped-GEMM experts, alltoall token dispatch over
`--ep` expert-parallel ranks. Run under torchrun with one process per GPU; rank 0 prints one
JSON object (and writes `--out`): tokens/s, TFLOP/s per GPU and MFU from vla-model's
FLOPs/token (active parameters: top-8 experts), peak memory, MoE losses.

    python -m torch.distributed.run --nproc_per_node 2 packages/vla-train/bench/megatron_moe.py \\
        --ep 2 --layers 8 --out moe_ep2.json
    python packages/vla-train/bench/megatron_moe.py --ep 1 --layers 4     # one GPU
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from megatron_mfu import emit, write_random_shards  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ep", type=int, default=2, help="expert-parallel size")
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--micro", type=int, default=1)
    ap.add_argument("--accum", type=int, default=1, help="micro-batches per step per DP rank")
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--skip", type=int, default=5, help="warm-up steps left out of the median")
    ap.add_argument("--fp8", default="none", choices=["none", "delayed", "current"])
    ap.add_argument("--dispatcher", default="alltoall", choices=["alltoall", "allgather"])
    ap.add_argument(
        "--no-fusions", dest="fusions", action="store_false", help="TE's fused MoE kernels off"
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    import torch

    from vla_model import count_parameters, resolve_config
    from vla_train.config import TrainConfig
    from vla_train.megatron_engine import MegatronTrainer

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    mcfg = resolve_config("vla-10b-moe").replace(num_layers=args.layers)
    batch = args.micro * args.accum * world  # every rank is a data-parallel rank (TP = PP = 1)
    with tempfile.TemporaryDirectory() as tmp:  # one shard folder per rank: no index races
        tmp = Path(tmp)
        tokens = (args.steps + 2) * batch * args.seq * 2
        eod = write_random_shards(tmp, mcfg.vocab_size, tokens)
        cfg = TrainConfig.from_dict(
            {
                "out_dir": str(tmp / "run"),
                "engine": "megatron",
                "seq_length": args.seq,
                "micro_batch_size": args.micro,
                "global_batch_size": batch,
                "model": {"preset": "vla-10b-moe", "overrides": {"num_layers": args.layers}},
                "data": {"shards": str(tmp), "eod_id": eod, "document_mask": False},
                "optimizer": {"lr": 1e-4, "min_lr": 1e-5},
                "schedule": {"train_steps": args.steps, "warmup_steps": 2},
                "checkpoint": {"every": 10**6, "save_final": False},
                "logging": {"tensorboard": False, "progress": False},
                "parallel": {"expert_model_parallel_size": args.ep},
                "fp8": {"recipe": args.fp8},
                "megatron": {
                    "moe_token_dispatcher": args.dispatcher,
                    "manual_gc_interval": 50,
                    **({} if args.fusions else {"moe_fusions": False}),
                },
            }
        )
        trainer = MegatronTrainer(cfg, resume=False)
        trainer.train()
        if rank != 0:
            return
        recs = [json.loads(line) for line in (cfg.out_dir / "metrics.jsonl").open()]
    timed = recs[args.skip :]
    counts = count_parameters(mcfg)
    out = {
        "bench": "megatron_moe",
        "date": datetime.date.today().isoformat(),
        "device": torch.cuda.get_device_name(0),
        "gpus": world,
        "command": " ".join(sys.argv),
        "shape": f"vla-10b-moe at {args.layers} layers: hidden 2048, 64 experts (FFN 768) top-8",
        "params_total": counts.total,
        "params_active": counts.active,
        "ep": args.ep,
        "seq": args.seq,
        "micro_batch": args.micro,
        "global_batch": batch,
        "fp8": args.fp8,
        "dispatcher": args.dispatcher if args.ep > 1 else "allgather (EP = 1)",
        "moe_fusions": args.fusions,
        "tokens_per_s": statistics.median(r["tokens_per_s"] for r in timed),
        "tokens_per_s_min_max": [
            min(r["tokens_per_s"] for r in timed),
            max(r["tokens_per_s"] for r in timed),
        ],
        "tflops_per_gpu": statistics.median(r["tflops_per_device"] for r in timed),
        "mfu": statistics.median(r["mfu"] for r in timed),
        "max_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
        "loss_first": recs[0]["loss"],
        "loss_last": recs[-1]["loss"],
        "moe_last": {k: v for k, v in recs[-1].items() if k.startswith("moe_")},
    }
    emit(out, args.out)


if __name__ == "__main__":
    main()
