"""Training loop for either codec: AdamW, warm-up + cosine schedule, gradient clipping, progress
lines, safetensors checkpoints and exact resume.

Exact resume: a batch is a pure function of ``(seed, step)`` (`ClipBatches`, `AudioBatches`), and
a checkpoint holds the weights (with EMA codebooks), the optimizer state and the torch RNG states
(used by codebook initialisation and dead-code restarts), so training N steps in one go or in
two runs with a resume in between gives bit-identical weights on the same device.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from vla_tokenizers.codecs.checkpoint import (
    load_checkpoint,
    restore_optimizer,
    save_checkpoint,
    set_rng_states,
)


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 8
    lr: float = 2e-4
    min_lr_ratio: float = 0.1
    warmup: int = 50
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 0  # 0: only at the end (when a run folder is given)
    amp: bool = True  # bf16 autocast on CUDA; ignored on CPU

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)
        if self.steps < 0 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("need steps >= 0, batch_size >= 1 and lr > 0")

    def lr_at(self, step: int) -> float:
        """Linear warm-up to `lr`, then cosine decay to ``min_lr_ratio * lr`` at `steps`."""
        if self.warmup and step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        span = max(self.steps - self.warmup, 1)
        progress = min((step - self.warmup) / span, 1.0)
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * cosine)


class ClipBatches:
    """Random video batches from uint8 clips (N, T, H, W, 3): a random clip, a random window of
    `frames` frames, a random `crop` (square, or the full frame) and a random horizontal flip, all
    drawn from a generator seeded with ``(seed, step)``. With probability `still_prob` a clip is
    one frame repeated (what a single image looks like to the codec). `device` keeps the clips
    there (e.g. on the GPU, so batches are cut without host copies)."""

    def __init__(
        self,
        clips: np.ndarray,
        batch_size: int,
        frames: int,
        crop: tuple[int, int] | None = None,
        seed: int = 0,
        flip: bool = True,
        device: str | torch.device = "cpu",
        still_prob: float = 0.0,
    ):
        if clips.ndim != 5 or clips.shape[-1] != 3 or clips.dtype != np.uint8:
            raise ValueError(
                f"clips must be uint8 (N, T, H, W, 3), got {clips.dtype} {clips.shape}"
            )
        if frames > clips.shape[1]:
            raise ValueError(f"clips have {clips.shape[1]} frames, {frames} requested")
        self.clips = torch.from_numpy(np.ascontiguousarray(clips)).to(device)
        self.batch_size, self.frames, self.seed, self.flip = batch_size, frames, seed, flip
        self.still_prob = still_prob
        self.crop = crop or (clips.shape[2], clips.shape[3])
        if self.crop[0] > clips.shape[2] or self.crop[1] > clips.shape[3]:
            raise ValueError(f"crop {self.crop} is larger than the frames {clips.shape[2:4]}")

    def __call__(self, step: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        n, t, h, w, _ = self.clips.shape
        ch, cw = self.crop
        out = []
        for _ in range(self.batch_size):
            i = int(torch.randint(n, (1,), generator=g))
            t0 = int(torch.randint(t - self.frames + 1, (1,), generator=g))
            y0 = int(torch.randint(h - ch + 1, (1,), generator=g))
            x0 = int(torch.randint(w - cw + 1, (1,), generator=g))
            clip = self.clips[i, t0 : t0 + self.frames, y0 : y0 + ch, x0 : x0 + cw]
            if self.flip and bool(torch.randint(2, (1,), generator=g)):
                clip = clip.flip(2)
            if self.still_prob and float(torch.rand(1, generator=g)) < self.still_prob:
                clip = clip[:1].expand_as(clip)
            out.append(clip)
        from vla_tokenizers.codecs.video import frames_to_tensor

        return frames_to_tensor(torch.stack(out))


class AudioBatches:
    """Random mono crops of `samples` samples from float32 waveforms, seeded by ``(seed, step)``;
    waveforms shorter than the crop are zero-padded."""

    def __init__(self, waves: list[np.ndarray], batch_size: int, samples: int, seed: int = 0):
        if not waves:
            raise ValueError("no audio to train on")
        self.waves = [torch.as_tensor(np.asarray(w, dtype=np.float32).ravel()) for w in waves]
        self.batch_size, self.samples, self.seed = batch_size, samples, seed

    def __call__(self, step: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        out = torch.zeros(self.batch_size, 1, self.samples)
        for b in range(self.batch_size):
            w = self.waves[int(torch.randint(len(self.waves), (1,), generator=g))]
            start = int(torch.randint(max(w.numel() - self.samples, 0) + 1, (1,), generator=g))
            piece = w[start : start + self.samples]
            out[b, 0, : piece.numel()] = piece
        return out


def _log_line(record: dict) -> str:
    return json.dumps(record, separators=(",", ":"))


class Trainer:
    """Trains `codec` on ``batches(step) -> tensor``; `run_dir` (optional) receives checkpoints."""

    def __init__(
        self,
        codec,
        batches: Callable[[int], torch.Tensor],
        config: TrainConfig,
        run_dir: str | Path | None = None,
        device: str | torch.device = "cpu",
        log: Callable[[str], None] | None = None,
    ):
        self.codec, self.batches, self.config = codec, batches, config
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.device = torch.device(device)
        self.codec.to(self.device)
        self.optimizer = torch.optim.AdamW(
            [p for p in codec.parameters() if p.requires_grad],
            lr=config.lr,
            betas=config.betas,
            weight_decay=config.weight_decay,
        )
        self.step = 0
        self.history: list[dict] = []
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        torch.manual_seed(config.seed)

    # ---- checkpoints ----------------------------------------------------------------------

    def save(self) -> Path:
        if self.run_dir is None:
            raise ValueError("no run folder to save checkpoints to")
        state = {"train_config": asdict(self.config), "history": self.history[-50:]}
        return save_checkpoint(self.run_dir, self.step, self.codec, self.optimizer, state)

    def resume(self, path: str | Path | None = None) -> int:
        """Load weights, optimizer, RNG and step from a checkpoint (default: the run's latest)."""
        path = path or self.run_dir
        if path is None:
            raise ValueError("no checkpoint to resume from")
        loaded, state, tensors = load_checkpoint(path)
        if loaded.config.to_dict() != self.codec.config.to_dict():
            raise ValueError(f"{path}: checkpoint codec config differs from this run's")
        self.codec.load_state_dict(loaded.state_dict())
        restore_optimizer(self.optimizer, state, tensors)
        set_rng_states(tensors)
        self.step = int(state["step"])
        self.history = list(state.get("history", []))
        return self.step

    # ---- loop -----------------------------------------------------------------------------

    def train_step(self) -> dict[str, torch.Tensor]:
        cfg = self.config
        self.codec.train()
        batch = self.batches(self.step).to(self.device, non_blocking=True)
        for group in self.optimizer.param_groups:
            group["lr"] = cfg.lr_at(self.step)
        amp = cfg.amp and self.device.type == "cuda"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
            loss, logs = self.codec.loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            logs["grad_norm"] = torch.nn.utils.clip_grad_norm_(
                self.codec.parameters(), cfg.grad_clip
            ).detach()
        self.optimizer.step()
        self.step += 1
        return logs

    def train(self, steps: int | None = None, time_limit_s: float | None = None) -> list[dict]:
        """Train until `steps` (default: config.steps) or `time_limit_s`; returns logged records."""
        cfg = self.config
        target = cfg.steps if steps is None else steps
        start, sums, count = time.perf_counter(), {}, 0
        last_t, last_step = start, self.step
        while self.step < target:
            logs = self.train_step()
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
            done = self.step == target
            timeout = time_limit_s is not None and time.perf_counter() - start > time_limit_s
            if self.step % cfg.log_every == 0 or done or timeout:
                now = time.perf_counter()
                record = {"step": self.step, "lr": round(cfg.lr_at(self.step - 1), 8)}
                record |= {k: round(float(v) / count, 5) for k, v in sums.items()}
                record["steps_per_s"] = round((self.step - last_step) / max(now - last_t, 1e-9), 3)
                record |= self._codebook_stats()
                self.history.append(record)
                self.log(_log_line(record))
                sums, count, last_t, last_step = {}, 0, now, self.step
            if (
                self.run_dir is not None
                and cfg.checkpoint_every
                and self.step % cfg.checkpoint_every == 0
            ):
                self.save()
            if timeout:
                break
        if self.run_dir is not None:
            self.save()
        return self.history

    def _codebook_stats(self) -> dict:
        """Live state of VQ codebooks: the perplexity of the EMA usage distribution as a share
        of the codebook size (1.0: all codes equally used) and the restarts so far."""
        from vla_tokenizers.codecs.metrics import codebook_perplexity
        from vla_tokenizers.codecs.quantizers import ResidualVQ, VectorQuantizerEMA

        q = self.codec.quantizer
        layers = q.layers if isinstance(q, ResidualVQ) else [q]
        if not isinstance(layers[0], VectorQuantizerEMA):
            return {}
        share = [codebook_perplexity(v.usage.detach().cpu()) / v.codebook_size for v in layers]
        return {
            "ema_perplexity_share": round(sum(share) / len(share), 4),
            "restarts": int(sum(int(v.restarts) for v in layers)),
        }
