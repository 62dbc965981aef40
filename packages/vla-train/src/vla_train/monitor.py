"""Monitoring: metrics as JSONL and TensorBoard scalars, MFU, memory, and step guards."""

from __future__ import annotations

import json
import math
import os
import resource
import sys
from collections import deque
from pathlib import Path
from typing import Any

import torch


class TrainingStopped(RuntimeError):
    """Too many skipped steps; `report` says which and why (also in out_dir/stop_report.json)."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


class StepGuard:
    """Decides whether a step's update is applied: skip it when the loss or the gradient norm
    is NaN/inf, or the loss exceeds `spike_factor` x the mean of the last `spike_window` good
    losses (once `spike_min_history` exist). After `max_skipped_steps` skips it stops the run."""

    def __init__(
        self,
        max_skipped_steps: int,
        spike_factor: float,
        spike_window: int,
        spike_min_history: int,
    ) -> None:
        self.max_skipped = max_skipped_steps
        self.factor = spike_factor
        self.min_history = spike_min_history
        self.history: deque[float] = deque(maxlen=spike_window)
        self.skipped: list[dict[str, Any]] = []

    def check(self, step: int, loss: float, grad_norm: float) -> str | None:
        """None when the step is good (and recorded), else the reason to skip it."""
        reason = None
        if not math.isfinite(loss):
            reason = f"non-finite loss ({loss})"
        elif not math.isfinite(grad_norm):
            reason = f"non-finite gradient norm ({grad_norm})"
        elif len(self.history) >= self.min_history:
            mean = sum(self.history) / len(self.history)
            if loss > self.factor * mean:
                reason = f"loss spike: {loss:.4g} > {self.factor} x recent mean {mean:.4g}"
        if reason is None:
            self.history.append(loss)
            return None
        self.skipped.append({"step": step, "loss": loss, "grad_norm": grad_norm, "reason": reason})
        return reason

    @property
    def must_stop(self) -> bool:
        return len(self.skipped) > self.max_skipped

    def state(self) -> dict[str, Any]:
        return {"history": list(self.history), "skipped": self.skipped}

    def load_state(self, state: dict[str, Any]) -> None:
        self.history.clear()
        self.history.extend(state.get("history", []))
        self.skipped = list(state.get("skipped", []))


def memory_stats(device: torch.device) -> dict[str, float]:
    """Peak memory in MiB: CUDA allocator on GPU, process max RSS on CPU."""
    if device.type == "cuda":
        return {
            "mem_allocated_mib": torch.cuda.max_memory_allocated(device) / 2**20,
            "mem_reserved_mib": torch.cuda.max_memory_reserved(device) / 2**20,
        }
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"mem_rss_mib": rss_kib / 1024}


class MetricsLog:
    """Append-only `metrics.jsonl` (one object per logged step) and TensorBoard scalars."""

    def __init__(self, out_dir: Path, tensorboard: bool, enabled: bool = True) -> None:
        self.path = Path(out_dir) / "metrics.jsonl"
        self.enabled = enabled
        self.writer = None
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(Path(out_dir) / "tensorboard"))

    def truncate_after(self, step: int) -> None:
        """Drop lines of steps after `step` (they are recomputed on resume)."""
        if not self.enabled or not self.path.is_file():
            return
        keep = []
        for line in self.path.read_text().splitlines():
            if line.strip() and json.loads(line).get("step", 0) <= step:
                keep.append(line + "\n")
        tmp = self.path.with_name(".metrics.jsonl.tmp")
        tmp.write_text("".join(keep))
        os.replace(tmp, self.path)

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
        if self.writer is not None:
            step = record["step"]
            for k, v in record.items():
                if k != "step" and isinstance(v, int | float) and v is not None:
                    self.writer.add_scalar(k.replace("loss_", "loss/"), v, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a `metrics.jsonl`."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


class Progress:
    """Progress on stderr (rank 0 only): a one-line bar on a terminal, else a line every 10%."""

    def __init__(self, total: int, start: int, enabled: bool) -> None:
        self.total, self.enabled = total, enabled and sys.stderr is not None
        self.tty = self.enabled and sys.stderr.isatty()
        self.every = max(1, total // 10)

    def update(self, step: int, text: str) -> None:
        if not self.enabled:
            return
        if self.tty:
            width = 30
            filled = int(width * step / max(self.total, 1))
            bar = "#" * filled + "-" * (width - filled)
            sys.stderr.write(f"\r[{bar}] {step}/{self.total} {text}")
        elif step % self.every == 0 or step == self.total:
            sys.stderr.write(f"step {step}/{self.total} {text}\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\n")
