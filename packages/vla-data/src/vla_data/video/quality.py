"""Per-frame luma features and quality checks: black frames, frozen frames, blur.

Features come from the luma plane alone, subsampled so they cost a fraction of decoding:

- ``mean``: mean luma (0-255) and ``dark``: share of pixels below ``DARK_LEVEL``, on a 4x grid;
- ``sharpness``: variance of the 4-neighbour Laplacian on a 2x grid of the central 3/4 x 3/4
  of the frame (blur lowers it);
- ``diff``: mean absolute luma change from the previous frame on the 4x grid (0 when frozen);
- ``hist``: 32-bin luma histogram, and ``grid``: a 64-bit difference hash of 8x9 block means
  (both feed shot-cut detection in :mod:`vla_data.video.shots`).

A frame is **black** when at least ``black_fraction`` of its pixels are dark; **frozen** when it
repeats the previous frame (``diff <= frozen_diff``) and is not black, and so is the frame that
opens a frozen run when its own change is below ``frozen_rel`` x the clip's median change (a
codec refines the first repeat of a picture a little, the later ones not at all); **blurry**
when its Laplacian variance is below ``blur_abs`` or below ``blur_rel`` x the clip's median
(black frames excluded). Every threshold is a :class:`QualityConfig` field. The Laplacian
cannot tell blur from a view filled by a textureless surface: in the simulator's side cameras a
passing flat-shaded vehicle reads as 2-4 blurry frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

DARK_LEVEL = 24  # luma below this is "dark" (3 of the 32 histogram bins)
_DARK_BINS = DARK_LEVEL // 8


class QualityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    black_fraction: float = Field(0.98, gt=0, le=1, description="dark share of a black frame")
    frozen_diff: float = Field(0.1, ge=0, description="mean |dY| (0-255) at or below: frozen")
    frozen_rel: float = Field(
        0.25, ge=0, le=1, description="first frame of a frozen run: |dY| below this x clip median"
    )
    blur_abs: float = Field(10.0, ge=0, description="Laplacian variance below this: blurry")
    blur_rel: float = Field(0.25, ge=0, le=1, description="... or below this x clip median")


@dataclass
class FrameFeatures:
    """Per-frame feature arrays of one clip (index = decoded frame index)."""

    mean: np.ndarray  # float32 (n,)
    dark: np.ndarray  # float32 (n,) share of dark pixels
    sharpness: np.ndarray  # float32 (n,) Laplacian variance
    diff: np.ndarray  # float32 (n,) mean |dY| from the previous frame (NaN for frame 0)
    hist: np.ndarray  # float32 (n, 32) normalised luma histograms
    grid: np.ndarray  # uint64 (n,) block-mean difference hashes
    cut: np.ndarray  # bool (n,) frame starts a new shot (online detector)
    cut_score: np.ndarray  # float32 (n,) transition score into this frame (0 for frame 0)

    def __len__(self) -> int:
        return len(self.mean)


def laplacian_variance(y: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of a (H, W) luma array (blur measure)."""
    if y.shape[0] < 3 or y.shape[1] < 3:
        return 0.0
    c = y.astype(np.int16) if y.dtype == np.uint8 else y.astype(np.float32)
    lap = c[1:-1, 1:-1] * 4  # int16 holds +-2040
    lap -= c[:-2, 1:-1]
    lap -= c[2:, 1:-1]
    lap -= c[1:-1, :-2]
    lap -= c[1:-1, 2:]
    f = lap.astype(np.float32).ravel()
    mean = float(f.mean(dtype=np.float64))
    return max(0.0, float(np.dot(f, f)) / f.size - mean * mean)


def grid_hash(small: np.ndarray) -> int:
    """64-bit difference hash of 8x9 block means (a cheap dHash for consecutive frames)."""
    h, w = small.shape
    bh, bw = max(1, h // 8), max(1, w // 9)
    if h < 8 or w < 9:
        from PIL import Image

        img = Image.fromarray(np.ascontiguousarray(small, dtype=np.uint8)).resize((9, 8))
        blocks = np.asarray(img, dtype=np.float32)
    else:
        blocks = small[: bh * 8, : bw * 9].reshape(8, bh, 9, bw).mean(axis=(1, 3))
    bits = (blocks[:, 1:] > blocks[:, :-1]).ravel()
    return int(np.packbits(bits).view(">u8")[0])


class FeatureTracker:
    """Accumulates :class:`FrameFeatures` frame by frame; ``add`` returns "starts a new shot"."""

    def __init__(self, shots=None) -> None:
        from vla_data.video.shots import ShotConfig, ShotDetector

        self.detector = ShotDetector(shots or ShotConfig())
        self._mean: list[float] = []
        self._dark: list[float] = []
        self._sharp: list[float] = []
        self._diff: list[float] = []
        self._hist: list[np.ndarray] = []
        self._grid: list[int] = []
        self._cut: list[bool] = []
        self._score: list[float] = []
        self._prev: np.ndarray | None = None

    def add(self, y: np.ndarray) -> bool:
        small = np.ascontiguousarray(y[::4, ::4])
        n = small.size
        hist = np.bincount((small >> 3).ravel(), minlength=32).astype(np.float32) / n
        grid = grid_hash(small)
        s16 = small.astype(np.int16)
        diff = float(np.abs(s16 - self._prev).mean()) if self._prev is not None else np.nan
        self._prev = s16
        self._mean.append(float(small.mean()))
        self._dark.append(float(hist[:_DARK_BINS].sum()))
        h, w = y.shape
        self._sharp.append(laplacian_variance(y[h // 8 : h - h // 8 : 2, w // 8 : w - w // 8 : 2]))
        self._diff.append(diff)
        cut, score = self.detector.push(hist, grid)
        self._hist.append(hist)
        self._grid.append(grid)
        self._cut.append(cut)
        self._score.append(score)
        return cut

    def result(self) -> FrameFeatures:
        return FrameFeatures(
            mean=np.array(self._mean, dtype=np.float32),
            dark=np.array(self._dark, dtype=np.float32),
            sharpness=np.array(self._sharp, dtype=np.float32),
            diff=np.array(self._diff, dtype=np.float32),
            hist=np.array(self._hist, dtype=np.float32).reshape(-1, 32),
            grid=np.array(self._grid, dtype=np.uint64),
            cut=np.array(self._cut, dtype=bool),
            cut_score=np.array(self._score, dtype=np.float32),
        )


def frame_features(lumas) -> FrameFeatures:
    """Features of a sequence of (H, W) uint8 luma arrays (or RGB arrays, converted)."""
    tracker = FeatureTracker()
    for y in lumas:
        y = np.asarray(y)
        if y.ndim == 3:
            y = (y[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
        tracker.add(y)
    return tracker.result()


@dataclass
class QualityReport:
    """Frame indices flagged by each check, plus the thresholds' inputs."""

    frames: int
    black: list[int]
    frozen: list[int]
    blurry: list[int]
    sharpness_median: float

    @property
    def ok(self) -> bool:
        return not (self.black or self.frozen or self.blurry)

    def counts(self) -> dict[str, int]:
        return {"black": len(self.black), "frozen": len(self.frozen), "blurry": len(self.blurry)}

    def to_dict(self) -> dict:
        return {
            "frames": self.frames,
            "black": self.black,
            "frozen": self.frozen,
            "blurry": self.blurry,
            "sharpness_median": round(self.sharpness_median, 3),
        }


def check_quality(features: FrameFeatures, config: QualityConfig | None = None) -> QualityReport:
    """Black, frozen and blurry frames of a clip from its features."""
    config = config or QualityConfig()
    black = features.dark >= config.black_fraction
    frozen = np.zeros(len(features), dtype=bool)
    frozen[1:] = (features.diff[1:] <= config.frozen_diff) & ~black[1:]
    moving = ~frozen & ~black
    moving[0] = False
    typical = float(np.median(features.diff[moving])) if moving.any() else 0.0
    # the frame just before a run of exact repeats: the codec's first, refined repeat?
    starts = np.flatnonzero(frozen[2:] & ~frozen[1:-1]) + 1
    opens = starts[(features.diff[starts] <= config.frozen_rel * typical) & ~black[starts]]
    frozen[opens] = True
    lit = ~black
    median = float(np.median(features.sharpness[lit])) if lit.any() else 0.0
    limit = max(config.blur_abs, config.blur_rel * median)
    blurry = lit & (features.sharpness < limit)
    return QualityReport(
        frames=len(features),
        black=np.flatnonzero(black).tolist(),
        frozen=np.flatnonzero(frozen).tolist(),
        blurry=np.flatnonzero(blurry).tolist(),
        sharpness_median=median,
    )
