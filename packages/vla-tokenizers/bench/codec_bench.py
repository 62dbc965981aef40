"""Codec encode/decode throughput (untrained weights: speed does not depend on training).

    .venv/bin/python packages/vla-tokenizers/bench/codec_bench.py [--device cuda] [--threads 2]

Prints one JSON object: per config, clips (or audio seconds) per second for encode and decode,
and tokens per second of encoding.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from vla_tokenizers.codecs.checkpoint import build_codec
from vla_tokenizers.codecs.presets import codec_config


def _timed(fn, repeat: int, device: torch.device) -> float:
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / repeat


def bench_video(preset: str, batch: int, frames: int, size: int, repeat: int, device) -> dict:
    torch.manual_seed(0)
    codec = build_codec(codec_config("video", preset).to_dict()).to(device).eval()
    x = torch.rand(batch, 3, frames, size, size, device=device) * 2 - 1
    codes = codec.encode(x)
    enc = _timed(lambda: codec.encode(x), repeat, device)
    dec = _timed(lambda: codec.decode(codes), repeat, device)
    tokens = codec.codes_per_clip(frames, size, size)
    return {
        "input": [batch, frames, size, size],
        "tokens_per_clip": tokens,
        "encode_clips_per_s": round(batch / enc, 2),
        "decode_clips_per_s": round(batch / dec, 2),
        "encode_tokens_per_s": round(batch * tokens / enc, 1),
    }


def bench_audio(preset: str, batch: int, seconds: float, repeat: int, device) -> dict:
    torch.manual_seed(0)
    codec = build_codec(codec_config("audio", preset).to_dict()).to(device).eval()
    n = int(seconds * codec.config.sample_rate)
    x = 0.1 * torch.randn(batch, 1, n, device=device)
    codes = codec.encode(x)
    enc = _timed(lambda: codec.encode(x), repeat, device)
    dec = _timed(lambda: codec.decode(codes), repeat, device)
    return {
        "input": [batch, n],
        "tokens_per_s_of_audio": codec.config.frame_rate * codec.config.levels,
        "encode_audio_s_per_s": round(batch * seconds / enc, 2),
        "decode_audio_s_per_s": round(batch * seconds / dec, 2),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    with torch.inference_mode():
        result = {
            "device": torch.cuda.get_device_name()
            if device.type == "cuda"
            else platform.processor() or "cpu",
            "threads": args.threads,
            "torch": torch.__version__,
            "video_tiny_8x64": bench_video("tiny", 4, 8, 64, args.repeat, device),
            "video_small_8x128": bench_video("small", 2, 8, 128, args.repeat, device),
            "audio_small_16k": bench_audio("small", 2, 2.0, args.repeat, device),
        }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
