"""Probe (device tool, one GPU, TE): why do runs with `megatron.te_op_fuser` skip every step?

Runs the GPU checks' tiny model for 6 steps per variant — BF16 and FP8 delayed, each with and
without the op fuser and with and without TE's fused weight-gradient accumulation into
`main_grad` — with the guards relaxed so no run stops, and prints each step's loss, grad norm and
skip reason as one JSON object (also written to --out).

    PYTHONPATH=/tmp/site python3 packages/vla-train/gpu/op_fuser_probe.py --out $OUT/probe.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import megatron_engine_gpu as checks  # noqa: E402

VARIANTS = {
    "bf16": {},
    "bf16_fuser": {"megatron": {"te_op_fuser": True}},
    "bf16_fuser_no_wgrad_fusion": {
        "megatron": {"te_op_fuser": True, "gradient_accumulation_fusion": False}
    },
    "fp8": {"fp8": {"recipe": "delayed"}},
    "fp8_fuser": {"fp8": {"recipe": "delayed"}, "megatron": {"te_op_fuser": True}},
    "fp8_fuser_no_wgrad_fusion": {
        "fp8": {"recipe": "delayed"},
        "megatron": {"te_op_fuser": True, "gradient_accumulation_fusion": False},
    },
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--only", default=None)
    args = ap.parse_args()
    want = args.only.split(",") if args.only else list(VARIANTS)
    res: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shards = root / "shards"
        shards.mkdir()
        checks.write_shards(shards)
        for name in want:
            over = {
                **VARIANTS[name],
                "schedule": {"train_steps": 6, "warmup_steps": 1},
                "guards": {"max_skipped_steps": 100},
            }
            cfg = checks.config(root, shards, name, **over)
            p = checks.vla_train(["run", "--config", str(cfg)])
            recs = checks.records(root / name)
            res[name] = {
                "rc": p.returncode,
                "steps": [
                    {k: r.get(k) for k in ("step", "loss", "grad_norm", "skipped")} for r in recs
                ],
            }
            if p.returncode != 0:
                res[name]["log_tail"] = (p.stdout + p.stderr)[-2000:]
            print(json.dumps({name: res[name]}), flush=True)
    if args.out:
        args.out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
