"""Train a small video codec on simulator drives on one GPU and report held-out quality as JSON.

Two steps, so the GPU machine needs neither vla-data nor this package's tokenizer dependencies:

1. Here (vla-data installed): render drives into a frame archive::

       .venv/bin/python packages/vla-tokenizers/gpu/train_video_codec.py make-npz \\
           .codec_data/drives128.npz --train-seeds 0-39 --holdout-seeds 1000-1003

   Each drive gives 6 cameras x `--frames` consecutive frames (12 fps) at `--size` pixels; the
   held-out drives are other worlds (other seeds) than the training drives.

2. On the device (Python 3.12, torch + numpy + safetensors), with ``.codec_data`` carried::

       PYTHONPATH=packages/vla-tokenizers/src python3 \\
           packages/vla-tokenizers/gpu/train_video_codec.py train \\
           --npz .codec_data/drives128.npz --out "$OUT" --minutes 7

   It trains the ``small`` preset (8x spatial, 4x temporal, EMA VQ 1024 codes; ``--preset``
   and ``--set KEY=VALUE`` change it) for the time budget (the cosine schedule is fitted to the
   measured step rate), evaluates held-out 8-frame clips and single frames (one static tubelet
   each), prints one JSON object and writes into ``--out``: ``result.json``, ``train_log.jsonl``,
   the weights as ``video_codec.safetensors`` split into <= 15 MiB parts
   (``cat video_codec.safetensors.part* > video_codec.safetensors``; SHA-256 in result.json),
   and PNGs of held-out originals vs reconstructions when matplotlib is there.

``train --smoke`` runs a few CPU steps with a tiny model (checks the script end to end).
The codec modules are imported without ``vla_tokenizers/__init__`` (which needs pydantic,
tokenizers and phonemizer): only torch, numpy and safetensors are needed.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import sys
import time
import types
from pathlib import Path

PART_BYTES = 15 * 1024 * 1024


def _import_codecs():
    """`vla_tokenizers.codecs` without running the package's heavy `__init__` if it fails."""
    try:
        return importlib.import_module("vla_tokenizers.codecs")
    except ImportError:
        pass
    for name in [
        m for m in sys.modules if m == "vla_tokenizers" or m.startswith("vla_tokenizers.")
    ]:
        del sys.modules[name]
    for entry in sys.path:
        pkg_dir = Path(entry or ".") / "vla_tokenizers"
        if (pkg_dir / "codecs" / "__init__.py").is_file():
            stub = types.ModuleType("vla_tokenizers")
            stub.__path__ = [str(pkg_dir)]
            sys.modules["vla_tokenizers"] = stub
            return importlib.import_module("vla_tokenizers.codecs")
    sys.exit("cannot find vla_tokenizers/codecs: put packages/vla-tokenizers/src on PYTHONPATH")


def _seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-", 1)
            out += range(int(a), int(b) + 1)
        elif part.strip():
            out.append(int(part))
    return out


# ---- make-npz (here) ------------------------------------------------------------------------


def make_npz(args) -> None:
    import numpy as np

    from vla_tokenizers.codecs.data import render_drive_clips, save_clips_npz

    train, held = _seeds(args.train_seeds), _seeds(args.holdout_seeds)
    if set(train) & set(held):
        sys.exit("train and hold-out seeds overlap")
    parts, t0 = [], time.perf_counter()
    for i, seed in enumerate(train + held):
        parts.append(render_drive_clips([seed], args.frames, args.size, args.size))
        print(f"rendered drive {i + 1}/{len(train) + len(held)}", file=sys.stderr, flush=True)
    arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    arrays["holdout"] = np.isin(arrays["seed"], held)
    save_clips_npz(args.out, arrays)
    print(
        json.dumps(
            {
                "out": args.out,
                "bytes": os.path.getsize(args.out),
                "frames": list(arrays["frames"].shape),
                "train_drives": len(train),
                "holdout_drives": len(held),
                "render_s": round(time.perf_counter() - t0, 1),
            }
        )
    )


# ---- train (device) ---------------------------------------------------------------------------


def _windows(frames, length: int):
    """Non-overlapping windows of `length` frames of every sequence: (N * k, length, H, W, 3)."""
    k = frames.shape[1] // length
    return frames[:, : k * length].reshape(-1, length, *frames.shape[2:])


def _write_weights(codec, out: Path, checkpoint) -> dict:
    data = checkpoint.codec_bytes(codec)
    parts = []
    for i in range(0, len(data), PART_BYTES):
        name = f"video_codec.safetensors.part{i // PART_BYTES:02d}"
        (out / name).write_bytes(data[i : i + PART_BYTES])
        parts.append(name)
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "parts": parts}


def train(args) -> None:
    import torch

    _import_codecs()
    from vla_tokenizers.codecs import checkpoint
    from vla_tokenizers.codecs.data import load_clips_npz
    from vla_tokenizers.codecs.evaluate import evaluate_video
    from vla_tokenizers.codecs.presets import codec_config
    from vla_tokenizers.codecs.training import ClipBatches, TrainConfig, Trainer

    device = "cpu" if args.smoke else ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    arrays = load_clips_npz(args.npz)
    frames, held = arrays["frames"], arrays["holdout"].astype(bool)
    train_frames, held_frames = frames[~held], frames[held]
    if args.smoke:
        train_frames, held_frames = train_frames[:4, :, :32, :32], held_frames[:2, :, :32, :32]
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            overrides[key] = json.loads(value)
        except ValueError:
            overrides[key] = value
    preset = "tiny" if args.smoke else args.preset
    cfg = codec_config("video", preset, **overrides)
    torch.manual_seed(args.seed)
    codec = checkpoint.build_codec(cfg.to_dict())
    batch = 2 if args.smoke else args.batch_size
    batches = ClipBatches(
        train_frames, batch, args.clip_frames, seed=args.seed, device=device,
        still_prob=args.still_prob,
    )  # fmt: skip
    tcfg = TrainConfig(
        steps=10**9, batch_size=batch, lr=args.lr, warmup=2 if args.smoke else args.warmup,
        seed=args.seed, log_every=2 if args.smoke else 100,
    )  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "train_log.jsonl"
    log_path.write_text("")

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)
        with open(log_path, "a") as f:
            f.write(line + "\n")

    trainer = Trainer(codec, batches, tcfg, device=device, log=log)
    budget = args.minutes * 60
    t0 = time.perf_counter()
    if args.smoke:
        trainer.config.steps = 4
        trainer.train()
    else:
        # fit the cosine schedule to the measured step rate, then train to the time budget
        probe = 40
        trainer.train(steps=10)
        if device == "cuda":
            torch.cuda.synchronize()
        t1 = time.perf_counter()
        trainer.train(steps=10 + probe)
        if device == "cuda":
            torch.cuda.synchronize()
        rate = probe / (time.perf_counter() - t1)
        left = budget - (time.perf_counter() - t0)
        trainer.config.steps = trainer.step + max(int(rate * left * 0.97), 1)
        trainer.train(time_limit_s=left)
    train_s = time.perf_counter() - t0

    length = min(8, frames.shape[1])
    held_clips = _windows(held_frames, length)
    train_clips = _windows(train_frames, length)[: len(held_clips)]
    step = max(1, held_frames.shape[1] // 4)  # 4 frames per held-out sequence as still images
    images = held_frames[:, ::step].reshape(-1, 1, *held_frames.shape[2:])
    bs = 4 if args.smoke else 16
    heldout, recon = evaluate_video(codec, held_clips, batch_size=bs, device=device)
    result = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "torch": torch.__version__,
        "npz": str(args.npz),
        "codec_config": cfg.to_dict(),
        "parameters": sum(p.numel() for p in codec.parameters()),
        "train": {
            "clips": int(len(train_frames)),
            "clip_frames": args.clip_frames,
            "batch_size": batch,
            "steps": trainer.step,
            "seconds": round(train_s, 1),
            "steps_per_s": round(trainer.step / train_s, 2),
            "last_log": trainer.history[-1] if trainer.history else None,
        },
        "heldout_clips": heldout,
        "heldout_images": evaluate_video(codec, images, batch_size=bs, device=device)[0],
        "train_clips": evaluate_video(codec, train_clips, batch_size=bs, device=device)[0],
    }
    if not args.smoke or args.save_smoke_weights:
        result["weights"] = _write_weights(codec.cpu(), out, checkpoint)
    try:
        from vla_tokenizers.codecs.evaluate import write_video_png

        for i in (0, len(held_clips) // 2):
            write_video_png(
                out / f"heldout_{i:03d}.png", held_clips[i], recon[i], f"held-out clip {i}"
            )
    except ImportError:
        result["pngs"] = "matplotlib missing"
    (out / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make-npz", help="render simulator drives into a frame archive (here)")
    m.add_argument("out")
    m.add_argument("--train-seeds", default="0-39")
    m.add_argument("--holdout-seeds", default="1000-1003")
    m.add_argument("--frames", type=int, default=24, help="frames per camera and drive")
    m.add_argument("--size", type=int, default=128)
    t = sub.add_parser("train", help="train and evaluate (device)")
    t.add_argument("--npz", required=True)
    t.add_argument("--out", default=os.environ.get("OUT", "codec_out"))
    t.add_argument("--minutes", type=float, default=7.0, help="training time budget")
    t.add_argument("--preset", default="small")
    t.add_argument("--set", action="append", default=[], help="codec setting KEY=VALUE")
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--clip-frames", type=int, default=8)
    t.add_argument("--still-prob", type=float, default=0.1, help="share of still clips")
    t.add_argument("--lr", type=float, default=4e-4)
    t.add_argument("--warmup", type=int, default=200)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--smoke", action="store_true", help="a few CPU steps with a tiny model")
    t.add_argument("--save-smoke-weights", action="store_true")
    args = p.parse_args(argv)
    if args.cmd == "make-npz":
        make_npz(args)
    else:
        train(args)


if __name__ == "__main__":
    main()
