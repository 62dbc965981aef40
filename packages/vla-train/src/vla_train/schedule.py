"""Learning-rate schedule: linear warmup to `lr`, then cosine decay to `min_lr`."""

from __future__ import annotations

import math

from vla_train.config import OptimizerSection, ScheduleSection


def lr_at(step: int, opt: OptimizerSection, sched: ScheduleSection) -> float:
    """LR of optimizer step `step` (0-based): `lr * (step + 1) / warmup` during warmup, then a
    cosine from `lr` (step `warmup`) to `min_lr` (step `train_steps - 1`); "constant" keeps `lr`."""
    warmup = sched.warmup_steps
    if step < warmup:
        return opt.lr * (step + 1) / warmup
    if sched.decay == "constant":
        return opt.lr
    span = max(sched.train_steps - 1 - warmup, 1)
    progress = min(max((step - warmup) / span, 0.0), 1.0)
    return opt.min_lr + 0.5 * (opt.lr - opt.min_lr) * (1.0 + math.cos(math.pi * progress))
