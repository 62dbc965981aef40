"""Synthetic rig folders with planted defects, for tests, benchmarks and examples.

Two kinds of pictures: ``"texture"`` (a panning blocky random texture per camera, made in
microseconds per frame, any size) and ``"sim"`` (the procedural driving simulator of
:mod:`vla_data.sim`: road, traffic and occluders seen by six calibrated cameras; ~50 ms a
640x480 frame). Defects are planted exactly: ``drop={"front_left": [10]}`` removes frames
(video and timestamps), ``offset_us={"back": 40_000}`` shifts a camera's clock,
``duplicate={"front": [5]}`` gives frame 5 frame 4's timestamp, ``missing=["back_right"]`` leaves
a camera out of rig.json.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

import numpy as np

from vla_data.rig.layout import CAMERAS, write_rig
from vla_data.video.decode import encode_h264

START_US = 1_700_000_000_000_000


def texture_frames(camera: str, n: int, width: int, height: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` RGB frames of a random texture (smooth shapes plus blocky detail) panning 3 px
    right and 1 px down a frame."""
    from PIL import Image

    rng = np.random.default_rng([seed, CAMERAS.index(camera) if camera in CAMERAS else 99])
    block = max(3, width // 32) | 1  # odd, so it never lines up with a 2x/4x subsampling grid
    th, tw = height + n + 1, width + 3 * n + 1
    cell = max(8, width // 5)
    coarse = rng.integers(0, 256, (th // cell + 2, tw // cell + 2, 3), dtype=np.uint8)
    low = np.asarray(Image.fromarray(coarse).resize((tw, th), Image.Resampling.BICUBIC))
    fine = rng.integers(-40, 41, (th // block + 1, tw // block + 1, 3), dtype=np.int16)
    fine = np.repeat(np.repeat(fine, block, 0), block, 1)[:th, :tw]
    tex = np.clip(low.astype(np.int16) + fine, 0, 255).astype(np.uint8)
    return [np.ascontiguousarray(tex[i : i + height, 3 * i : 3 * i + width]) for i in range(n)]


def _calibration(width: int, height: int) -> dict[str, dict]:
    from vla_data.sim.camera import make_rig

    return {name: cam.calibration() for name, cam in make_rig(width, height).items()}


def synthetic_rig(
    folder: str | Path,
    *,
    seconds: float = 2.0,
    fps: float = 12.0,
    width: int = 64,
    height: int = 48,
    content: Literal["texture", "sim"] = "texture",
    seed: int = 0,
    jitter_us: int = 400,
    drop: Mapping[str, Iterable[int]] | None = None,
    offset_us: Mapping[str, int] | None = None,
    drift_ppm: Mapping[str, float] | None = None,
    duplicate: Mapping[str, Iterable[int]] | None = None,
    missing: Iterable[str] = (),
    crf: int | None = 23,
    bitrate_kbps: float | None = None,
    ego_pose: bool = True,
    rig_id: str | None = None,
) -> Path:
    """Write a rig folder (6 H.264 cameras, timestamps, CAN at 100 Hz, ego pose) and return it.

    CAN and ego pose cover the cameras with 50 ms to spare on each side; camera clocks have a
    uniform jitter of ``jitter_us``.
    """
    n = int(round(seconds * fps))
    period = 1e6 / fps
    rng = np.random.default_rng([seed, 7])
    drop, offset_us, drift_ppm = drop or {}, offset_us or {}, drift_ppm or {}
    duplicate, missing = duplicate or {}, set(missing)
    calib = _calibration(width, height)
    drive = None
    if content == "sim":
        from vla_data.sim import Drive

        drive = Drive(seed=seed, seconds=seconds, fps=fps, width=width, height=height, jitter_us=0)
    cams: dict[str, dict] = {}
    for c in CAMERAS:
        ts = START_US + np.round(np.arange(n) * period).astype(np.int64)
        ts += rng.integers(-jitter_us, jitter_us + 1, n) if jitter_us else 0
        if c in missing:
            continue
        if drive is not None:
            frames = [drive.frame(c, i) for i in range(n)]
        else:
            frames = texture_frames(c, n, width, height, seed)
        if c in drift_ppm:
            ts = ts + np.round((ts - START_US) * drift_ppm[c] * 1e-6).astype(np.int64)
        ts = ts + int(offset_us.get(c, 0))
        for i in duplicate.get(c, ()):
            ts[i] = ts[i - 1]
        gone = set(drop.get(c, ()))
        keep = [i for i in range(n) if i not in gone]
        mp4 = encode_h264([frames[i] for i in keep], fps, crf=crf, bitrate_kbps=bitrate_kbps)
        cams[c] = {"mp4": mp4, "timestamps": ts[keep], **calib[c]}
    can_t = np.arange(
        START_US - 50_000, START_US + int(n * period) + 50_000, 10_000, dtype=np.int64
    )
    if drive is not None:
        t, v = drive.actions()
        values = np.stack([np.interp(can_t, t, v[:, j]) for j in range(4)], 1)
    else:
        s = (can_t - START_US) / 1e6
        values = np.stack([0.1 * np.sin(s), 0.3 + 0 * s, 0 * s, 8 + 0.5 * s], 1)
    pose = None
    if ego_pose:
        pt = can_t[::2]
        s = (pt - START_US) / 1e6
        if drive is not None:  # the simulated ego's own pose (x, y, 0, yaw as a quaternion)
            x, y, yaw = np.array([drive.ego_pose(int(t)) for t in pt]).T
        else:
            x, y, yaw = 8 * s, 0.2 * s, 0.05 * s
        pose_v = np.stack([x, y, 0 * s, np.cos(yaw / 2), 0 * s, 0 * s, np.sin(yaw / 2)], 1)
        pose = (pt, pose_v)
    return write_rig(folder, cams, (can_t, values), ego_pose=pose, rig_id=rig_id)
