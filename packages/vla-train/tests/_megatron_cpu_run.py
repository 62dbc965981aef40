"""Helper of `test_megatron_cpu_engine.py` (not a test): one `vla-train` megatron-engine run on
CPU (see `_megatron_cpu.py`), the GPU checks' tiny model and byte-level shards, under gloo.

    python _megatron_cpu_run.py ROOT NAME '{"parallel": {...}}' [--steps N]
    python -m torch.distributed.run --nproc_per_node 2 _megatron_cpu_run.py ROOT NAME '{...}'

Runs (or resumes) `ROOT/NAME`: `metrics.jsonl` and checkpoints there. The `__main__` guard is
needed: dist_checkpointing starts a multiprocessing Manager, whose process re-imports it."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root", type=Path)
    ap.add_argument("name")
    ap.add_argument("over", nargs="?", default="{}")
    ap.add_argument("--steps", type=int, default=None, help="stop after this many steps")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    sys.path[:0] = [str(HERE), str(HERE.parent / "gpu")]
    from _megatron_cpu import enable_cpu_training

    enable_cpu_training()
    import megatron_engine_gpu as checks
    import torch.distributed as dist

    from vla_train.config import TrainConfig
    from vla_train.megatron_engine import MegatronTrainer

    shards = args.root / "shards"
    over = {
        "seq_length": 64,
        "micro_batch_size": 2,
        "global_batch_size": 4,
        "megatron": {"spec": "local"},
        "schedule": {"train_steps": 6, "warmup_steps": 1},
        "checkpoint": {"every": 3, "keep_last": 2},
        **json.loads(args.over),
    }
    cfg = TrainConfig.from_dict(
        json.loads(checks.config(args.root, shards, args.name, **over).read_text())
    )
    trainer = MegatronTrainer(cfg, resume=True)
    trainer.train(stop_after=args.steps)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
