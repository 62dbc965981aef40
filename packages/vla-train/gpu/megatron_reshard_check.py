"""A megatron-engine checkpoint saved at TP=2 loads at TP=1 with the same logits (2 GPUs).

    python3 packages/vla-train/gpu/megatron_reshard_check.py RUN_CONFIG.json

RUN_CONFIG is the TP=2 run's config (its out_dir holds the checkpoints). The script runs
itself twice: under torchrun with 2 processes at TP=2 and once at TP=1; each loads the latest
checkpoint (model weights only, `MegatronTrainer.load(..., optimizer=False)`) and computes the
full-vocabulary logits of one fixed token batch; the TP=1 process compares. Prints
`RESULT {json}`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def logits_at(config: Path, tp: int, out: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from vla_train.checkpoint import latest_checkpoint
    from vla_train.config import TrainConfig
    from vla_train.megatron_engine import MegatronTrainer

    raw = json.loads(config.read_text())
    raw["parallel"] = {"tensor_model_parallel_size": tp, "sequence_parallel": False}
    raw["out_dir"] = str(out.parent / f"reload-tp{tp}")
    cfg = TrainConfig.from_dict(raw)
    trainer = MegatronTrainer(cfg, resume=False)
    ckpt = latest_checkpoint(Path(json.loads(config.read_text())["out_dir"]) / "checkpoints")
    trainer.load(ckpt, optimizer=False)
    gen = torch.Generator().manual_seed(7)
    tokens = torch.randint(0, 257, (2, 256), generator=gen)
    logits = trainer.logits(tokens)
    if trainer.rank == 0:
        save_file({"logits": logits.cpu().contiguous()}, str(out))
        print(f"checkpoint {ckpt}", flush=True)


def main() -> None:
    config = Path(sys.argv[1]).resolve()
    if len(sys.argv) > 2:  # child
        logits_at(config, int(sys.argv[2]), Path(sys.argv[3]))
        return
    import torch
    from safetensors.torch import load_file

    work = config.parent
    tp2, tp1 = work / "logits-tp2.safetensors", work / "logits-tp1.safetensors"
    env = os.environ.copy()
    run2 = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    run2 += ["--master_port", "29533", __file__, str(config), "2", str(tp2)]
    p2 = subprocess.run(run2, capture_output=True, text=True, env=env)
    p1 = subprocess.run(
        [sys.executable, __file__, str(config), "1", str(tp1)], capture_output=True, text=True
    )
    if p2.returncode or p1.returncode:
        print("RESULT " + json.dumps({"ok": False, "log_tail": (p2.stderr + p1.stderr)[-2500:]}))
        return
    a, b = load_file(str(tp2))["logits"], load_file(str(tp1))["logits"]
    diff = (a - b).abs()
    res = {
        "ok": bool(diff.max() < 0.05 * max(float(a.abs().max()), 1.0)),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "max_abs_logit": float(a.abs().max()),
        "argmax_agreement": float((a.argmax(-1) == b.argmax(-1)).float().mean()),
        "dtype": "bf16 model, fp32 logits",
        "torch": torch.__version__,
    }
    print("RESULT " + json.dumps(res))


if __name__ == "__main__":
    main()
