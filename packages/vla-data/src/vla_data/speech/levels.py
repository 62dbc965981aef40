"""Levels: peak and RMS in dBFS, ITU-R BS.1770-4 integrated loudness (LUFS), clipping.

Integrated loudness follows BS.1770-4 exactly in its steps:

1. K-weighting per channel: the standard's two biquads (a high shelf of about +4 dB above
   ~1.7 kHz modelling the head, then a ~38 Hz high-pass). The coefficients for any sample rate
   come from the analogue prototype through the bilinear transform, with the constants
   libebur128 uses (at 48 kHz they reproduce the table in the standard to 1e-8). The filter is
   applied as its exact frequency response in the FFT domain, overlap-add in blocks with a
   0.25 s impulse-response budget: the cascade's slowest pole (the high-pass, |p| ~ 0.995 at
   48 kHz) has decayed by about e**-60 by then at any rate, so this equals time-domain IIR
   filtering up to rounding (numpy has no IIR filter and scipy is not a dependency);
2. mean square per 400 ms block, blocks every 100 ms (75 % overlap);
3. block loudness -0.691 + 10 log10(sum_c G_c z_c), G = 1.0 for L/R/C, 1.41 for the surround
   channels of 5.1 (LFE excluded);
4. absolute gate at -70 LUFS, then a relative gate 10 LU below the loudness of the blocks that
   passed; integrated loudness over the blocks passing both.

Check: a full-scale 1 kHz sine in one channel reads -3.01 LUFS (the standard's calibration).
Shorter than one block (400 ms), or every block gated: `None`.
"""

from __future__ import annotations

import functools
import math

import numpy as np

FLOOR_DB = -120.0
_IR_SECONDS = 0.25  # impulse-response budget: the slowest pole has decayed by e**-60 by then


def _db(power: float) -> float:
    return max(FLOOR_DB, 10 * math.log10(power)) if power > 0 else FLOOR_DB


def peak_dbfs(x: np.ndarray) -> float:
    return _db(float(np.max(np.abs(x))) ** 2) if x.size else FLOOR_DB


def rms_dbfs(x: np.ndarray) -> float:
    """RMS over all samples of all channels, relative to a full-scale square wave (0 dBFS)."""
    return _db(float(np.mean(np.square(x, dtype=np.float64)))) if x.size else FLOOR_DB


def k_weighting(rate: int) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The two BS.1770 biquads ((b, a) shelf, (b, a) high-pass) at `rate`."""
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = math.tan(math.pi * f0 / rate)
    vh = 10 ** (gain_db / 20)
    vb = vh**0.4996667741545416
    a0 = 1 + k / q + k * k
    shelf_b = np.array(
        [(vh + vb * k / q + k * k) / a0, 2 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0]
    )
    shelf_a = np.array([1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0])
    f0, q = 38.13547087602444, 0.5003270373238773
    k = math.tan(math.pi * f0 / rate)
    a0 = 1 + k / q + k * k
    hp_b = np.array([1.0, -2.0, 1.0])
    hp_a = np.array([1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0])
    return (shelf_b, shelf_a), (hp_b, hp_a)


@functools.lru_cache(maxsize=32)
def _response(rate: int, n_fft: int) -> np.ndarray:
    z = np.exp(-1j * 2 * np.pi * np.arange(n_fft // 2 + 1) / n_fft)  # z**-1 on the grid
    h = np.ones_like(z)
    for b, a in k_weighting(rate):
        h *= (b[0] + b[1] * z + b[2] * z * z) / (a[0] + a[1] * z + a[2] * z * z)
    return h


def k_weight(x: np.ndarray, rate: int, block: int = 1 << 18) -> np.ndarray:
    """K-weighted copy of `x` (channels, n) (overlap-add FFT filtering, see module doc)."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    n = x.shape[1]
    block = min(block, max(n, 1))
    n_fft = 1 << int(math.ceil(math.log2(block + int(_IR_SECONDS * rate) + 1)))
    h = _response(rate, n_fft)
    y = np.zeros((x.shape[0], n + n_fft), dtype=np.float64)
    for start in range(0, n, block):
        seg = x[:, start : start + block]
        out = np.fft.irfft(np.fft.rfft(seg, n=n_fft, axis=1) * h, n=n_fft, axis=1)
        y[:, start : start + n_fft] += out
    return y[:, :n]


def _weights(channels: int) -> np.ndarray:
    if channels == 6:  # 5.1: L R C LFE Ls Rs
        return np.array([1.0, 1.0, 1.0, 0.0, 1.41, 1.41])
    return np.ones(channels)


def integrated_loudness(x: np.ndarray, rate: int) -> float | None:
    """BS.1770-4 integrated loudness in LUFS of (channels, n) float audio, or None."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    block, step = int(round(0.4 * rate)), int(round(0.1 * rate))
    if x.shape[1] < block:
        return None
    y = k_weight(x, rate)
    cs = np.concatenate([np.zeros((y.shape[0], 1)), np.cumsum(y * y, axis=1)], axis=1)
    starts = np.arange(0, x.shape[1] - block + 1, step)
    z = (cs[:, starts + block] - cs[:, starts]) / block  # (channels, blocks) mean square
    power = _weights(x.shape[0]) @ z
    with np.errstate(divide="ignore"):
        loud = -0.691 + 10 * np.log10(power)
    gated = power[loud > -70.0]
    if gated.size == 0:
        return None
    relative = -0.691 + 10 * math.log10(float(gated.mean())) - 10.0
    final = power[(loud > -70.0) & (loud > relative)]
    if final.size == 0:
        return None
    return -0.691 + 10 * math.log10(float(final.mean()))


def clipping(x: np.ndarray, level: float = 0.999, min_run: int = 3) -> tuple[float, int]:
    """(fraction of samples inside clipped runs, number of runs): a run is `min_run` or more
    consecutive samples at |x| >= `level` of full scale (a lone full-scale peak is not clipping)."""
    x = np.atleast_2d(x)
    total = x.size
    if total == 0:
        return 0.0, 0
    clipped = runs = 0
    for ch in x:
        hot = np.abs(ch) >= level
        if not hot.any():
            continue
        edges = np.diff(np.concatenate([[0], hot.astype(np.int8), [0]]))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        lengths = ends - starts
        long = lengths >= min_run
        runs += int(long.sum())
        clipped += int(lengths[long].sum())
    return clipped / total, runs
