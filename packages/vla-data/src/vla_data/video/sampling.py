"""Frame-sampling policies: which decoded frames go downstream.

- ``fps``: the frame nearest each tick of a fixed-rate grid (from the first frame's time), each
  frame at most once and within half a grid period (so gaps in the video stay gaps);
- ``keyframes``: the codec's keyframes (cheap to seek to; the decoder marks them);
- ``shots``: the first frame of every shot (see :mod:`vla_data.video.shots`);
- ``all``: every frame.

``fps`` and ``all`` are decided from timestamps before decoding; ``keyframes`` and ``shots``
during decoding, so :func:`policy_want` plugs any policy into one decode pass.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator


class SamplingPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["fps", "keyframes", "shots", "all"] = "fps"
    fps: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _fps_given(self) -> SamplingPolicy:
        if self.kind == "fps" and self.fps is None:
            raise ValueError("sampling policy 'fps' needs fps")
        return self


def sample_fixed_fps(times_us: np.ndarray, fps: float) -> np.ndarray:
    """Indices of the frames nearest a ``fps`` grid starting at the first frame (sorted, unique)."""
    t = np.asarray(times_us, dtype=np.float64)
    if t.size == 0:
        return np.zeros(0, dtype=np.int64)
    period = 1e6 / fps
    ticks = t[0] + period * np.arange(int(np.floor((t[-1] - t[0]) / period + 1e-9)) + 1)
    right = (
        np.clip(np.searchsorted(t, ticks), 1, len(t) - 1)
        if len(t) > 1
        else np.zeros(len(ticks), dtype=np.int64)
    )
    left = np.maximum(right - 1, 0)
    nearest = np.where(np.abs(t[left] - ticks) <= np.abs(t[right] - ticks), left, right)
    close = np.abs(t[nearest] - ticks) <= period / 2
    return np.unique(nearest[close])


def sample_keyframes(keyframes: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.asarray(keyframes, dtype=bool))


def sample_shots(cuts: np.ndarray | list[int], frames: int) -> np.ndarray:
    """First frame of every shot (always frame 0)."""
    starts = {0, *(int(c) for c in cuts if 0 < int(c) < frames)}
    return np.array(sorted(starts), dtype=np.int64) if frames else np.zeros(0, np.int64)


def policy_want(policy: SamplingPolicy, times_us: np.ndarray | None = None):
    """The ``want`` argument of :func:`~vla_data.video.decode.scan_video` for a policy.

    ``fps`` uses ``times_us`` (per-frame timestamps) when given, else the container's
    presentation times online (the frame nearest each tick, assuming the next frame comes as
    far after it as it came after the previous one).
    """
    if policy.kind == "all":
        return lambda i, t, key, cut: True
    if policy.kind == "keyframes":
        return lambda i, t, key, cut: key
    if policy.kind == "shots":
        return lambda i, t, key, cut: i == 0 or cut
    if times_us is not None:
        chosen = set(sample_fixed_fps(times_us, policy.fps).tolist())  # type: ignore[arg-type]
        return lambda i, t, key, cut: i in chosen
    period = 1.0 / policy.fps  # type: ignore[operator]
    state: dict[str, float] = {}

    def want(i: int, t: float, key: bool, cut: bool) -> bool:
        t = t if t == t else float(i)  # no pts: frame index
        if not state:
            state["prev"], state["next"] = t, t + period
            return True
        half = (t - state["prev"]) / 2  # the frame serves ticks nearer to it than to neighbours
        state["prev"] = t
        hit = False
        while state["next"] < t + half:
            hit = hit or state["next"] >= t - half
            state["next"] += period
        return hit

    return want
