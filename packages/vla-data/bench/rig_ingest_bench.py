"""Rig ingest speed: real-time factor per core of decode + sync + sampling for 6-camera
480p@12Hz driving rigs (prints JSON). Target: >= 10x.

    python bench/rig_ingest_bench.py [--seconds 10] [--content sim,texture] [--repeat 3]

The input is generated first (not timed): a rig folder of 6 H.264 cameras at 640x480, 12 Hz,
``--seconds`` long, with CAN at 100 Hz and ego pose.

- ``sim``: the procedural driving simulator (road, traffic, occluders; six calibrated cameras),
  encoded with libx264 CRF 23 (veryfast): what the sample corpus' rigs look like.
- ``texture``: a panning random texture at a fixed ``--bitrate-kbps`` per camera (default
  1500, a high-detail stress case: decode cost grows with bitrate).

Each case is timed with `load_rig` (read, validate, decode every frame of every camera once with
PyAV on one thread, per-frame luma features and quality checks, clock sync, CAN/ego-pose
resampling) under three sampling policies (2 Hz ticks as RGB, codec keyframes as RGB, every
frame as RGB), then through `ingest` (one worker: + shard writing and SHA-256). The real-time
factor per core is the rig's duration / process CPU time (one process, one decoder thread):
6 cameras x 12 Hz = 72 frames to decode per second of driving.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import av
import numpy as np

from vla_data.ingest import IngestConfig, ingest
from vla_data.rig import load_rig
from vla_data.rig.synthetic import synthetic_rig
from vla_data.video import SamplingPolicy

POLICIES = {
    "fps2": SamplingPolicy(kind="fps", fps=2.0),
    "keyframes": SamplingPolicy(kind="keyframes"),
    "all": SamplingPolicy(kind="all"),
}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def timed(fn, repeat: int) -> tuple[float, float, object]:
    """Median process-CPU and wall seconds over ``repeat`` runs, and the last result."""
    cpu, wall, result = [], [], None
    for _ in range(repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        result = fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return statistics.median(cpu), statistics.median(wall), result


def run_case(folder: Path, seconds: float, repeat: int, work: Path) -> dict:
    mp4s = sorted(folder.glob("*.mp4"))
    kbps = [p.stat().st_size * 8 / seconds / 1e3 for p in mp4s]
    out: dict = {
        "cameras": len(mp4s),
        "seconds": seconds,
        "frames_per_camera": int(round(seconds * 12)),
        "bitrate_kbps_per_camera": round(statistics.mean(kbps), 1),
        "input_mb": round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6, 2),
        "decode_sync_sample": {},
    }
    load_rig(str(folder))  # warm the page cache and imports
    for name, policy in POLICIES.items():
        cpu, wall, rig = timed(lambda p=policy: load_rig(str(folder), policy=p), repeat)
        sampled = sum(len(c.images) for c in rig.cameras.values())  # type: ignore[attr-defined]
        out["decode_sync_sample"][name] = {
            "cpu_s": round(cpu, 3),
            "wall_s": round(wall, 3),
            "rgb_frames": sampled,
            "realtime_factor_per_core": round(seconds / cpu, 2),
            "camera_frames_per_cpu_s": round(6 * 12 * seconds / cpu, 1),
        }
    runs = iter(range(repeat))

    def do_ingest():
        report = ingest([str(folder)], work / f"ds{next(runs)}", IngestConfig(workers=1, tasks=1))
        assert report.kept == 1 and report.quarantined == 0, report
        return report

    cpu, wall, _ = timed(do_ingest, repeat)
    out["ingest_one_worker"] = {
        "cpu_s": round(cpu, 3),
        "wall_s": round(wall, 3),
        "realtime_factor_per_core": round(seconds / cpu, 2),
        "note": "ingest runs one rig per worker process; CPU time is the parent's (workers=1 "
        "runs in-process)",
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--content", default="sim,texture", help="sim, texture or both")
    parser.add_argument("--bitrate-kbps", type=float, default=1500.0, help="texture case")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    results: dict = {
        "bench": "rig_ingest",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "pyav": av.__version__,
            "numpy": np.__version__,
        },
        "rig": "6 cameras, 640x480, 12 Hz, H.264 (libx264 veryfast), CAN 100 Hz, ego pose",
        "target_realtime_factor_per_core": 10.0,
        "cases": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for content in [c.strip() for c in args.content.split(",") if c.strip()]:
            folder = Path(tmp) / content
            t0 = time.perf_counter()
            if content == "sim":
                synthetic_rig(
                    folder, seconds=args.seconds, width=640, height=480, content="sim", crf=23
                )
            else:
                synthetic_rig(
                    folder,
                    seconds=args.seconds,
                    width=640,
                    height=480,
                    content="texture",
                    crf=None,
                    bitrate_kbps=args.bitrate_kbps,
                )
            gen = time.perf_counter() - t0
            case = run_case(folder, args.seconds, args.repeat, Path(tmp) / f"work-{content}")
            case["generate_s"] = round(gen, 1)
            results["cases"][content] = case
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
