"""Shot (scene-cut) detection between consecutive frames.

Each transition gets a score in [0, 1]:

- ``hist``: half the L1 distance of the two 32-bin luma histograms (colour/brightness change);
- ``hash``: Hamming distance of the frames' 64-bit block-mean difference hashes / 64
  (layout change; unrelated frames score ~0.5 even when their histograms match);
- ``combined`` (default): the mean of the two.

A frame starts a new shot when its score is at least ``threshold`` **and** at least
``adaptive_ratio`` x the median score of the previous ``window`` transitions (so steady fast
motion, which scores high everywhere, does not cut), and at least ``min_shot_frames`` frames
after the previous cut. The detector only looks backwards, so it runs online during decoding
and gives the same cuts offline.

Defaults measured on the procedural driving simulator (640x480, 12 Hz, all six cameras): no
false cut in 24 streams of 3-6 s, and 94 of 108 splices of two different drives (scenes of
one look-alike style, the hard case) found; a cut between unrelated footage scores far higher.
"""

from __future__ import annotations

import statistics
from collections import deque
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from vla_data.video.decode import VideoSource, scan_video


class ShotConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["hist", "hash", "combined"] = "combined"
    threshold: float = Field(0.3, gt=0, le=1)
    adaptive_ratio: float = Field(2.0, ge=1)
    window: int = Field(8, ge=1)
    min_shot_frames: int = Field(3, ge=1)


def transition_score(
    hist_a: np.ndarray, hist_b: np.ndarray, grid_a: int, grid_b: int, method: str = "combined"
) -> float:
    h = 0.5 * float(np.abs(np.asarray(hist_a) - np.asarray(hist_b)).sum())
    g = (int(grid_a) ^ int(grid_b)).bit_count() / 64
    return {"hist": h, "hash": g, "combined": 0.5 * (h + g)}[method]


class ShotDetector:
    """Online cut detector: ``push(hist, grid)`` per frame -> (starts a new shot, score)."""

    def __init__(self, config: ShotConfig | None = None) -> None:
        self.config = config or ShotConfig()
        self._recent: deque[float] = deque(maxlen=self.config.window)
        self._prev: tuple[np.ndarray, int] | None = None
        self._since_cut = 0

    def push(self, hist: np.ndarray, grid: int) -> tuple[bool, float]:
        c = self.config
        if self._prev is None:
            self._prev = (hist, grid)
            self._since_cut = 1
            return False, 0.0
        score = transition_score(self._prev[0], hist, self._prev[1], grid, c.method)
        self._prev = (hist, grid)
        base = statistics.median(self._recent) if self._recent else 0.0
        cut = (
            score >= c.threshold
            and score >= c.adaptive_ratio * base
            and self._since_cut >= c.min_shot_frames
        )
        self._recent.append(score)
        self._since_cut = 1 if cut else self._since_cut + 1
        return cut, score


def cuts_from_features(hists: np.ndarray, grids: np.ndarray, config: ShotConfig | None = None):
    """Indices of frames that start a new shot (frame 0 excluded)."""
    det = ShotDetector(config)
    return [i for i, (h, g) in enumerate(zip(hists, grids, strict=True)) if det.push(h, int(g))[0]]


def detect_cuts(source: VideoSource, config: ShotConfig | None = None) -> list[int]:
    """Decode a video and return the indices of frames that start a new shot."""
    feats = scan_video(source).features
    assert feats is not None
    if config is None:
        return np.flatnonzero(feats.cut).tolist()
    return cuts_from_features(feats.hist, feats.grid, config)


def shots(cuts: list[int], frames: int) -> list[tuple[int, int]]:
    """``[start, end)`` frame ranges of the shots given cut indices."""
    bounds = [0, *[c for c in cuts if 0 < c < frames], frames]
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
