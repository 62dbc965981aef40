"""Codec codes <-> ids of the unified vocabulary, and the spans that wrap them.

A position's codes ``(..., depth)`` become ids ``range.start + level * codebook_size + code``
(levels of a residual VQ get disjoint id blocks, so the model sees which level a token is),
flattened in raster order with the level innermost: video ``t, h, w, level``; audio
``frame, level``. A codec therefore needs ``depth * codebook_size`` ids of the layout's
`vision` (65536 by default) or `audio` (16384) range.

Spans follow `VLAProcessor`'s template, so `VLAProcessor.decode` parses them::

    <|vision_start|> <camera> <time> <frame> <|video_pad|> VISION* <|vision_end|>
    <|audio_start|> <|audio_pad|> AUDIO* <|audio_end|>

A rig clip becomes one visual span per camera and tubelet (time-major, cameras in the given
order); each span carries the camera token, the quantised timestamp of the tubelet's first frame
and its frame index. `wrap_camera_codes` builds a span from explicit ids for callers without a
`VocabLayout`.

`rig_tubelets` plans a synchronised rig (``frames.npy``: ticks x cameras, -1 = no frame) as
tubelets: consecutive reference ticks in blocks of the codec's temporal factor; per block and
camera the frame that fills each tubelet position. **Dropped frames inside a tubelet** (a -1
between ticks where the camera has frames) are filled by repeating the camera's nearest frame in
that block (the earlier one on a tie) and counted in `filled`; a camera with no frame in a whole
block gets no tubelet there; a short last block (ticks not a multiple of the factor) is padded by
repeating its last frame, as the codec pads clips itself (`VideoCodec.pad_time`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"
IMAGE_PAD, VIDEO_PAD = "<|image_pad|>", "<|video_pad|>"
AUDIO_START, AUDIO_END, AUDIO_PAD = "<|audio_start|>", "<|audio_end|>", "<|audio_pad|>"


class CodecTokenError(ValueError):
    pass


def codes_to_ids(codes, codebook_size: int, start: int = 0, range_size: int | None = None):
    """Codes (..., depth) -> flat int64 ids ``start + level * codebook_size + code``."""
    c = np.asarray(codes, dtype=np.int64)
    if c.ndim < 1:
        raise CodecTokenError("codes need a trailing depth axis")
    depth = c.shape[-1]
    if range_size is not None and depth * codebook_size > range_size:
        raise CodecTokenError(
            f"{depth} levels x {codebook_size} codes need {depth * codebook_size} ids, "
            f"the layout range has {range_size}"
        )
    if c.size and (c.min() < 0 or c.max() >= codebook_size):
        raise CodecTokenError(f"codes must lie in [0, {codebook_size})")
    return (c + np.arange(depth, dtype=np.int64) * codebook_size + start).ravel()


def ids_to_codes(ids, codebook_size: int, depth: int, start: int = 0) -> np.ndarray:
    """Inverse of `codes_to_ids`: flat ids -> codes (positions, depth)."""
    a = np.asarray(ids, dtype=np.int64).ravel() - start
    if a.size % depth:
        raise CodecTokenError(f"{a.size} ids are not a whole number of {depth}-level positions")
    a = a.reshape(-1, depth)
    level_base = np.arange(depth, dtype=np.int64) * codebook_size
    codes = a - level_base
    if a.size and ((codes < 0) | (codes >= codebook_size)).any():
        raise CodecTokenError("ids do not belong to the expected codec levels")
    return codes


def wrap_camera_codes(
    code_ids: Sequence[int],
    *,
    vision_start_id: int,
    vision_end_id: int,
    pad_id: int,
    camera_id: int | None = None,
    time_id: int | None = None,
    frame_id: int | None = None,
) -> list[int]:
    """One visual span from explicit token ids (for callers without a `VocabLayout`)."""
    head = [vision_start_id]
    head += [i for i in (camera_id, time_id, frame_id) if i is not None]
    return [*head, pad_id, *(int(i) for i in code_ids), vision_end_id]


def camera_token_id(layout, camera: str) -> int:
    """Id of the layout's camera token (vla-data's rig camera names)."""
    if layout.has_token(f"camera:{camera}"):
        return layout.id_of(f"camera:{camera}")
    raise CodecTokenError(f"unknown camera {camera!r} (layout has {list(layout.config.cameras)})")


def time_token_id(layout, time_s: float) -> int:
    """Id of the quantised timestamp (``round(time_s / time_step_s)`` steps from the start)."""
    r, step = layout.range("time"), layout.config.time_step_s
    k = int(round(time_s / step))
    if not 0 <= k < r.size:
        raise CodecTokenError(
            f"timestamp {time_s}s is outside the time range [0, {r.size * step}s)"
        )
    return r.start + k


def frame_token_id(layout, frame: int) -> int:
    r = layout.range("frame")
    if not 0 <= frame < r.size:
        raise CodecTokenError(f"frame index {frame} is outside [0, {r.size})")
    return r.start + int(frame)


def vision_span(
    layout,
    codes,
    codebook_size: int,
    *,
    camera: str | None = None,
    time_s: float | None = None,
    frame: int | None = None,
    pad: str = "video",
) -> list[int]:
    """A visual span around codes (..., depth) of one image or tubelet."""
    r = layout.range("vision")
    return wrap_camera_codes(
        codes_to_ids(codes, codebook_size, r.start, r.size).tolist(),
        vision_start_id=layout.id_of(VISION_START),
        vision_end_id=layout.id_of(VISION_END),
        pad_id=layout.id_of(VIDEO_PAD if pad == "video" else IMAGE_PAD),
        camera_id=None if camera is None else camera_token_id(layout, camera),
        time_id=None if time_s is None else time_token_id(layout, time_s),
        frame_id=None if frame is None else frame_token_id(layout, frame),
    )


def rig_clip_ids(
    layout,
    codes_by_camera: Mapping[str, np.ndarray],
    frame_times_s: Mapping[str, Sequence[float]],
    codebook_size: int,
    tubelet: int,
    first_frame: int = 0,
) -> list[int]:
    """Spans of a multi-camera clip: codes (t, h, w, depth) per camera, one span per camera and
    tubelet, time-major. `frame_times_s[camera][i]` is frame i's time (seconds from the start of
    the sample); a tubelet is stamped with its first frame's time and index."""
    steps = {int(np.asarray(c).shape[0]) for c in codes_by_camera.values()}
    if len(steps) != 1:
        raise CodecTokenError(f"cameras have different numbers of tubelets: {sorted(steps)}")
    ids: list[int] = []
    for k in range(steps.pop()):
        for camera, codes in codes_by_camera.items():
            times = frame_times_s[camera]
            i = k * tubelet
            if i >= len(times):
                raise CodecTokenError(f"camera {camera!r} has no time for frame {i}")
            ids += vision_span(
                layout,
                np.asarray(codes)[k],
                codebook_size,
                camera=camera,
                time_s=float(times[i]),
                frame=first_frame + i,
            )
    return ids


@dataclass
class RigBlock:
    """Reference ticks ``[start, stop)`` of one tubelet and, per camera column present, the
    frame index at each of the tubelet's positions (length = temporal factor)."""

    start: int
    stop: int
    frames: dict[int, np.ndarray] = field(default_factory=dict)
    filled: dict[int, int] = field(default_factory=dict)  # column -> dropped frames filled


def rig_tubelets(frame_index, tubelet: int) -> list[RigBlock]:
    """Tubelets of a rig's ``frames.npy`` (ticks x cameras, -1 = no frame); see the module
    docstring for how dropped frames and a short last block are filled."""
    fi = np.asarray(frame_index, dtype=np.int64)
    if fi.ndim != 2:
        raise CodecTokenError(f"frame index must be (ticks, cameras), got shape {fi.shape}")
    if tubelet < 1:
        raise CodecTokenError(f"tubelet must be >= 1, got {tubelet}")
    blocks = []
    for start in range(0, fi.shape[0], tubelet):
        stop = min(start + tubelet, fi.shape[0])
        block = RigBlock(start, stop)
        for col in range(fi.shape[1]):
            got = fi[start:stop, col]
            have = np.flatnonzero(got >= 0)
            if have.size == 0:
                continue
            pos = np.arange(stop - start)
            # nearest available position (argmin picks the earlier one on a tie)
            nearest = have[np.abs(pos[:, None] - have[None, :]).argmin(axis=1)]
            filled = got[nearest]
            pad = np.full(tubelet - filled.size, filled[-1], dtype=np.int64)
            block.frames[col] = np.concatenate([filled, pad])
            block.filled[col] = int(filled.size - have.size)
        blocks.append(block)
    return blocks


def audio_span(layout, codes, codebook_size: int) -> list[int]:
    """An audio span around codes (frames, levels)."""
    r = layout.range("audio")
    body = codes_to_ids(codes, codebook_size, r.start, r.size).tolist()
    return [layout.id_of(AUDIO_START), layout.id_of(AUDIO_PAD), *body, layout.id_of(AUDIO_END)]
