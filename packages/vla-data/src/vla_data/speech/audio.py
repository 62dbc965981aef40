"""Decode any audio PyAV reads to float32 arrays, and sample-rate normalisation with PyAV's resampler.

`decode(data)` gives the first audio stream as planar float32 in [-1, 1], shape (channels, n), at
its own rate (or at `rate`, mixed to mono with `mono=True`); `resample(x, src, dst)` converts an
array with libswresample (the same resampler the ingest FLAC path uses), so analysis and storage
see the same conversion.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import av
import numpy as np

MAX_CHANNELS = 8


@dataclass(frozen=True)
class Decoded:
    samples: np.ndarray  # (channels, n) float32
    rate: int
    source_rate: int
    source_channels: int
    codec: str

    @property
    def duration_s(self) -> float:
        return self.samples.shape[1] / self.rate if self.rate else 0.0

    def mono(self) -> np.ndarray:
        return self.samples.mean(axis=0) if self.samples.shape[0] > 1 else self.samples[0]


def _layout(channels: int) -> str:
    return {1: "mono", 2: "stereo"}.get(channels, f"{channels}c")


def _collect(frames, channels: int) -> list[np.ndarray]:
    out = []
    for frame in frames:
        arr = frame.to_ndarray()
        out.append(arr.reshape(channels, -1) if arr.ndim == 2 else arr.reshape(1, -1))
    return out


_SCALE = {"u8": 128.0, "s16": 32768.0, "s32": 2147483648.0, "s64": 9223372036854775808.0}


def _native(frame) -> np.ndarray:
    """A decoded frame as float32 (channels, n) without resampling (plain format conversion)."""
    arr = frame.to_ndarray()
    name = frame.format.name.rstrip("p")
    channels = len(frame.layout.channels)
    if not frame.format.is_planar:
        arr = arr.reshape(-1, channels).T
    if name == "u8":
        return ((arr.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    if name in _SCALE:
        return (arr / _SCALE[name]).astype(np.float32)
    return arr.astype(np.float32, copy=False)


def decode(data: bytes, rate: int | None = None, mono: bool = False) -> Decoded:
    """First audio stream of `data` as float32 (channels, n); `rate`/`mono` convert on the way."""
    with av.open(io.BytesIO(data), mode="r") as src:
        if not src.streams.audio:
            raise ValueError("no audio stream")
        stream = src.streams.audio[0]
        src_rate = stream.codec_context.sample_rate or stream.rate
        src_channels = stream.codec_context.channels or 1
        if not src_rate:
            raise ValueError("audio stream has no sample rate")
        channels = 1 if mono else min(src_channels, MAX_CHANNELS)
        out_rate = rate or src_rate
        direct = out_rate == src_rate and channels == src_channels
        resampler = av.AudioResampler(format="fltp", layout=_layout(channels), rate=out_rate)
        chunks: list[np.ndarray] = []
        for frame in src.decode(stream):
            if direct and len(frame.layout.channels) == channels and frame.sample_rate == out_rate:
                chunks.append(_native(frame))
            else:
                direct = False
                chunks += _collect(resampler.resample(frame), channels)
        if not direct:
            chunks += _collect(resampler.resample(None), channels)
        codec = stream.codec_context.name
    samples = np.concatenate(chunks, axis=1) if chunks else np.zeros((channels, 0), np.float32)
    if samples.shape[1] == 0:
        raise ValueError("no audio samples decoded")
    return Decoded(samples.astype(np.float32, copy=False), out_rate, src_rate, src_channels, codec)


def resample(samples: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Resample float (n,) or (channels, n) audio with libswresample (PyAV)."""
    x = np.asarray(samples, dtype=np.float32)
    squeeze = x.ndim == 1
    x = x.reshape(1, -1) if squeeze else x
    if src_rate == dst_rate:
        return x[0] if squeeze else x
    channels = x.shape[0]
    resampler = av.AudioResampler(format="fltp", layout=_layout(channels), rate=dst_rate)
    chunks: list[np.ndarray] = []
    step = 1 << 16
    for start in range(0, x.shape[1], step):
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(x[:, start : start + step]),
            format="fltp",
            layout=_layout(channels),
        )
        frame.sample_rate = src_rate
        frame.pts = None
        chunks += _collect(resampler.resample(frame), channels)
    chunks += _collect(resampler.resample(None), channels)
    out = np.concatenate(chunks, axis=1) if chunks else np.zeros((channels, 0), np.float32)
    return out[0] if squeeze else out
