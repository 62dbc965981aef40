"""Decode and encode video with PyAV: one-pass scans with per-frame features, H.264 writing.

Decoding is single-threaded by default (``thread_count=1``): ingest already runs one process
per core, and one thread per decoder is the cheapest per core. Luma is read straight from the
Y plane of 8-bit YUV frames (no colour conversion); RGB is made only for sampled frames.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from vla_data.video.quality import FeatureTracker, FrameFeatures

VideoSource = bytes | str | Path
# called per decoded frame with (index, pts in seconds, is_keyframe, starts_a_new_shot): keep RGB?
Want = Callable[[int, float, bool, bool], bool]

_Y8 = {
    "yuv420p",
    "yuvj420p",
    "yuv422p",
    "yuvj422p",
    "yuv444p",
    "yuvj444p",
    "nv12",
    "nv21",
    "gray",
    "yuv410p",
    "yuv411p",
    "yuv440p",
}


class VideoError(ValueError):
    """A video that cannot be decoded (or has no video stream)."""


@dataclass(frozen=True)
class VideoInfo:
    codec: str
    width: int
    height: int
    frames: int
    pix_fmt: str
    container: str


@dataclass
class VideoScan:
    """What one decode pass found: stream facts, keyframes, per-frame features, sampled RGB."""

    info: VideoInfo
    keyframes: np.ndarray  # bool (frames,)
    pts_s: np.ndarray  # float64 (frames,) presentation times from the container (NaN if none)
    features: FrameFeatures | None
    images: dict[int, np.ndarray] = field(default_factory=dict)  # frame index -> (H, W, 3) RGB


def _open(source: VideoSource):
    try:
        if isinstance(source, bytes | bytearray | memoryview):
            return av.open(io.BytesIO(bytes(source)), mode="r")
        return av.open(str(source), mode="r")
    except (av.FFmpegError, OSError, ValueError) as e:
        raise VideoError(f"not a readable video container: {e}") from None


def luma(frame: av.VideoFrame) -> np.ndarray:
    """The frame's luma as a (H, W) uint8 array; a view of the Y plane when it is 8-bit YUV."""
    if frame.format.name in _Y8:
        plane = frame.planes[0]
        buf = np.frombuffer(plane, np.uint8)
        return buf.reshape(plane.height, plane.line_size)[:, : plane.width]
    return frame.to_ndarray(format="gray")


def scan_video(
    source: VideoSource,
    *,
    want: Want | Iterable[int] | None = None,
    features: bool = True,
    thread_count: int = 1,
    max_frames: int | None = None,
) -> VideoScan:
    """Decode every frame of the first video stream once.

    ``want`` picks frames whose RGB is kept: a set of indices, or a callable
    ``(index, pts_s, is_keyframe, new_shot) -> bool`` (``new_shot`` needs ``features``). Raises
    :class:`VideoError` naming the cause when the data is not a decodable video.
    """
    wanted: set[int] | None = None
    if want is not None and not callable(want):
        wanted = {int(i) for i in want}
    container = _open(source)
    try:
        if not container.streams.video:
            raise VideoError("no video stream")
        stream = container.streams.video[0]
        stream.codec_context.thread_count = thread_count
        tracker = FeatureTracker() if features else None
        keys: list[bool] = []
        pts: list[float] = []
        images: dict[int, np.ndarray] = {}
        width = height = 0
        pix_fmt = ""
        tb = float(stream.time_base) if stream.time_base else None
        try:
            for i, frame in enumerate(container.decode(stream)):
                if max_frames is not None and i >= max_frames:
                    break
                if i == 0:
                    width, height, pix_fmt = frame.width, frame.height, frame.format.name
                elif (frame.width, frame.height) != (width, height):
                    raise VideoError(
                        f"frame {i} is {frame.width}x{frame.height}, the stream {width}x{height}"
                    )
                key = bool(frame.key_frame)
                keys.append(key)
                t = frame.pts * tb if frame.pts is not None and tb else float(np.nan)
                pts.append(t)
                new_shot = False
                if tracker is not None:
                    new_shot = tracker.add(luma(frame))
                if (wanted is not None and i in wanted) or (
                    callable(want) and want(i, t, key, new_shot)
                ):
                    images[i] = frame.to_ndarray(format="rgb24")
        except av.FFmpegError as e:
            raise VideoError(f"decoding failed after {len(keys)} frames: {e}") from None
        if not keys:
            raise VideoError("no decodable frames")
        info = VideoInfo(
            codec=stream.codec_context.name,
            width=width,
            height=height,
            frames=len(keys),
            pix_fmt=pix_fmt,
            container=container.format.name,
        )
    finally:
        container.close()
    return VideoScan(
        info=info,
        keyframes=np.array(keys, dtype=bool),
        pts_s=np.array(pts, dtype=np.float64),
        features=tracker.result() if tracker is not None else None,
        images=images,
    )


def iter_frames(source: VideoSource, *, fmt: str = "rgb24", thread_count: int = 1):
    """Yield every frame as an ndarray in ``fmt`` (``rgb24``, ``gray``, ...)."""
    container = _open(source)
    try:
        if not container.streams.video:
            raise VideoError("no video stream")
        stream = container.streams.video[0]
        stream.codec_context.thread_count = thread_count
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format=fmt)
        except av.FFmpegError as e:
            raise VideoError(f"decoding failed: {e}") from None
    finally:
        container.close()


def encode_h264(
    frames: Iterable[np.ndarray],
    fps: float = 12.0,
    *,
    crf: int | None = 23,
    bitrate_kbps: float | None = None,
    preset: str = "veryfast",
    gop: int | None = None,
    threads: int = 1,
) -> bytes:
    """Encode RGB (H, W, 3) uint8 frames to an H.264 (libx264, yuv420p) mp4 in memory.

    Width and height must be even (yuv420p). ``gop`` defaults to one keyframe per second.
    """
    from fractions import Fraction

    rate = Fraction(fps).limit_denominator(1001)
    out = io.BytesIO()
    n = 0
    with av.open(out, mode="w", format="mp4") as container:
        stream = None
        for img in frames:
            img = np.ascontiguousarray(img, dtype=np.uint8)
            if img.ndim == 2:
                img = np.repeat(img[..., None], 3, axis=2)
            if stream is None:
                h, w = img.shape[:2]
                if h % 2 or w % 2:
                    raise ValueError(f"H.264 yuv420p needs even width and height, got {w}x{h}")
                stream = container.add_stream("libx264", rate=rate)
                stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
                options = {"preset": preset, "threads": str(threads)}
                if bitrate_kbps is not None:
                    stream.bit_rate = int(bitrate_kbps * 1000)
                elif crf is not None:
                    options["crf"] = str(crf)
                stream.gop_size = gop or max(1, round(fps))
                options["keyint_min"] = str(stream.gop_size)
                options["sc_threshold"] = "0"  # keyframes on a fixed grid, not at scene cuts
                stream.codec_context.options = options
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = n
            for packet in stream.encode(frame):
                container.mux(packet)
            n += 1
        if stream is None:
            raise ValueError("no frames to encode")
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


def probe_video(source: VideoSource) -> VideoInfo:
    """Decode the whole stream (no features) and return its facts."""
    return scan_video(source, features=False).info
