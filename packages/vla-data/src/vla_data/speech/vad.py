"""Voice-activity detection and segmentation: an adaptive energy + zero-crossing detector.

Algorithm (`energy-zcr-v1`; after Rabiner & Sambur's endpoint detector, with adaptive levels):

1. Input is mono at 16 kHz (`vla_data.speech.audio.resample`); frames of 25 ms every 10 ms.
   Per frame: energy E in dBFS (mean square of the frame, computed from running sums so any
   length runs in O(n) memory) and zero-crossing rate Z (sign changes per sample).
2. Levels from the recording itself: noise floor N = 10th percentile of E, speech level
   S = 95th percentile. If S is below `abs_floor_dbfs` (-55 dBFS) there is no speech. If the
   spread S - N is under 6 dB the recording is stationary (all pause or all talk): every frame
   above `abs_floor_dbfs` is active. Otherwise two thresholds: high = N + 0.5 (S - N),
   low = N + 0.25 (S - N), neither below `abs_floor_dbfs`.
3. Hysteresis: a segment starts at a frame above `high` and runs while frames stay above `low`.
4. Unvoiced edges: fricatives (s, f, sh) are quiet but noisy, so each segment is extended by up
   to 250 ms on either side over frames with Z >= 0.3 and E above N + 0.1 (S - N).
5. Clean-up: gaps shorter than 300 ms are bridged, segments shorter than 150 ms dropped, and
   each kept segment padded by 50 ms (clipped to the recording).

It finds *activity* against the recording's own floor: it cannot tell speech from a steady tone
or music (nothing energy-based can), which is why it reports levels and leaves judging them to
later stages. `segment_chunks` groups segments into chunks of at most `max_s` seconds, cutting
only in pauses where possible (a single longer segment is split evenly).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VAD_NAME = "energy-zcr-v1"
VAD_RATE = 16_000


@dataclass(frozen=True)
class VadConfig:
    frame_ms: float = 25.0
    hop_ms: float = 10.0
    abs_floor_dbfs: float = -55.0
    min_spread_db: float = 6.0
    high: float = 0.5
    low: float = 0.25
    unvoiced_zcr: float = 0.3
    unvoiced_level: float = 0.1
    extend_s: float = 0.25
    min_silence_s: float = 0.3
    min_speech_s: float = 0.15
    pad_s: float = 0.05


@dataclass(frozen=True)
class FrameFeatures:
    energy_db: np.ndarray
    zcr: np.ndarray
    hop: int
    frame: int
    rate: int


def frame_features(x: np.ndarray, rate: int, cfg: VadConfig = VadConfig()) -> FrameFeatures:
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    frame = max(1, int(round(cfg.frame_ms * rate / 1000)))
    hop = max(1, int(round(cfg.hop_ms * rate / 1000)))
    if len(x) < frame:
        x = np.pad(x, (0, frame - len(x)))
    starts = np.arange(0, len(x) - frame + 1, hop)
    power = np.concatenate([[0.0], np.cumsum(x * x)])
    energy = (power[starts + frame] - power[starts]) / frame
    sign = np.signbit(x)
    flips = np.concatenate([[0], np.cumsum(sign[1:] != sign[:-1])])
    zcr = (flips[starts + frame - 1] - flips[starts]) / (frame - 1 if frame > 1 else 1)
    with np.errstate(divide="ignore"):
        energy_db = np.maximum(10 * np.log10(np.maximum(energy, 1e-30)), -120.0)
    return FrameFeatures(energy_db, zcr, hop, frame, rate)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(
        zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True)
    )


def detect(x: np.ndarray, rate: int, cfg: VadConfig = VadConfig()) -> list[tuple[float, float]]:
    """Active segments of mono `x` as (start_s, end_s), sorted and disjoint."""
    f = frame_features(x, rate, cfg)
    e, z = f.energy_db, f.zcr
    n = len(e)
    duration = len(np.asarray(x).reshape(-1)) / rate
    if n == 0:
        return []
    floor, level = np.percentile(e, 10), np.percentile(e, 95)
    if level < cfg.abs_floor_dbfs:
        return []
    spread = level - floor
    if spread < cfg.min_spread_db:
        active = e > cfg.abs_floor_dbfs
    else:
        high = max(floor + cfg.high * spread, cfg.abs_floor_dbfs)
        low = max(floor + cfg.low * spread, cfg.abs_floor_dbfs)
        active = np.zeros(n, dtype=bool)
        above_low = e > low
        for start, end in _runs(above_low):  # a low-run is speech if it reaches `high`
            if (e[start:end] > high).any():
                active[start:end] = True
        weak = (z >= cfg.unvoiced_zcr) & (e > floor + cfg.unvoiced_level * spread)
        reach = int(round(cfg.extend_s * rate / f.hop))
        for start, end in _runs(active):
            i = start
            while i > 0 and start - i < reach and weak[i - 1] and not active[i - 1]:
                i -= 1
            j = end
            while j < n and j - end < reach and weak[j] and not active[j]:
                j += 1
            active[i:j] = True
    hop_s = f.hop / rate
    frame_s = f.frame / rate
    segs = [(s * hop_s, min(duration, (t - 1) * hop_s + frame_s)) for s, t in _runs(active)]
    merged: list[list[float]] = []
    for s, t in segs:
        if merged and s - merged[-1][1] < cfg.min_silence_s:
            merged[-1][1] = t
        else:
            merged.append([s, t])
    out = []
    for s, t in merged:
        if t - s < cfg.min_speech_s:
            continue
        s, t = max(0.0, s - cfg.pad_s), min(duration, t + cfg.pad_s)
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], t)
        else:
            out.append((s, t))
    return [(round(s, 3), round(t, 3)) for s, t in out]


def segment_chunks(
    segments: list[tuple[float, float]], max_s: float = 30.0
) -> list[tuple[float, float]]:
    """Group VAD segments into chunks of at most `max_s` s, cut in pauses (long ones split)."""
    if max_s <= 0:
        raise ValueError("max_s must be positive")
    chunks: list[tuple[float, float]] = []
    for s, t in segments:
        pieces = max(1, int(np.ceil((t - s) / max_s)))
        for k in range(pieces):
            a, b = s + (t - s) * k / pieces, s + (t - s) * (k + 1) / pieces
            if chunks and b - chunks[-1][0] <= max_s:
                chunks[-1] = (chunks[-1][0], b)
            else:
                chunks.append((a, b))
    return [(round(a, 3), round(b, 3)) for a, b in chunks]
