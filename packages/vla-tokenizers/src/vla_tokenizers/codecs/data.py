"""Training and evaluation data for the codecs: simulator clips, frame archives (.npz), audio.

- `render_drive_clips`: rig video from `vla_data.sim.Drive`, cut into clips (N, T, H, W, 3).
- `save_clips_npz` / `load_clips_npz`: the frames plus per-clip camera, drive seed and frame
  times, in a NumPy archive (``allow_pickle=False``); loading needs only numpy, so a GPU machine
  without vla-data can train from a carried archive.
- `synthetic_speech`: vla-data's speech-like generator at the codec's rate.
- `load_audio_files` / `load_dataset_audio`: decode audio files or the FLAC payloads of vla-data
  dataset shards with PyAV, mono, resampled.
- `load_image_files` / `load_dataset_images`: image files or the image payloads of dataset
  shards, centre-cropped and resized.
- `decode_video_frames`: chosen frames of a video (a rig camera's mp4) resized while decoding.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

AUDIO_SUFFIXES = (".flac", ".wav", ".mp3", ".ogg", ".opus", ".m4a")


class CodecDataError(ValueError):
    pass


# ---- video -------------------------------------------------------------------------------


def render_drive_clips(
    seeds: Iterable[int],
    frames: int = 8,
    width: int = 128,
    height: int = 128,
    cameras: Sequence[str] | None = None,
    clips_per_camera: int = 1,
) -> dict[str, np.ndarray]:
    """Render consecutive-frame clips of simulated drives (12 fps).

    Returns arrays: ``frames`` uint8 (N, T, H, W, 3), ``camera`` (N,) str, ``seed`` (N,) int,
    ``times_s`` float (N, T) (seconds from the drive's first frame of that camera).
    """
    from vla_data.sim import CAMERAS, Drive

    cameras = list(cameras or CAMERAS)
    seconds = (frames * clips_per_camera + 1) / 12.0
    out: dict[str, list] = {"frames": [], "camera": [], "seed": [], "times_s": []}
    for seed in seeds:
        drive = Drive(int(seed), seconds, width=width, height=height)
        for cam in cameras:
            if cam not in drive.frame_times_us:
                raise CodecDataError(f"simulator has no camera {cam!r} (has {list(CAMERAS)})")
            t_us = drive.frame_times_us[cam]
            for c in range(clips_per_camera):
                idx = range(c * frames, (c + 1) * frames)
                out["frames"].append(np.stack([drive.frame(cam, i) for i in idx]))
                out["camera"].append(cam)
                out["seed"].append(int(seed))
                out["times_s"].append((t_us[list(idx)] - t_us[0]) / 1e6)
    if not out["frames"]:
        raise CodecDataError("no clips rendered (empty seed list)")
    return {
        "frames": np.stack(out["frames"]).astype(np.uint8),
        "camera": np.array(out["camera"]),
        "seed": np.array(out["seed"], dtype=np.int64),
        "times_s": np.stack(out["times_s"]).astype(np.float64),
    }


def save_clips_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> Path:
    """Write clip arrays (see `render_drive_clips`) to a compressed .npz, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **{k: np.asarray(v) for k, v in arrays.items()})
    os.replace(tmp, path)
    return path


def load_clips_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a clip archive (no pickles); checks that ``frames`` is uint8 (N, T, H, W, 3)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise CodecDataError(f"{path}: not a readable .npz archive ({e})") from None
    frames = arrays.get("frames")
    if frames is None:
        raise CodecDataError(f"{path}: archive has no 'frames' array")
    if frames.dtype != np.uint8 or frames.ndim != 5 or frames.shape[-1] != 3:
        raise CodecDataError(
            f"{path}: 'frames' must be uint8 (N, T, H, W, 3), got {frames.dtype} {frames.shape}"
        )
    return arrays


def split_clips(arrays: dict[str, np.ndarray], holdout_seeds: Sequence[int]):
    """(train, held-out) by drive seed, so held-out clips come from unseen drives."""
    held = np.isin(arrays["seed"], np.asarray(list(holdout_seeds)))
    if held.all() or not held.any():
        raise CodecDataError("hold-out seeds must select some but not all clips")
    return (
        {k: v[~held] for k, v in arrays.items()},
        {k: v[held] for k, v in arrays.items()},
    )


def decode_video_frames(
    data: bytes, indices, size: tuple[int, int], where: str = "<bytes>"
) -> dict[int, np.ndarray]:
    """Frames ``indices`` (decode order) of the first video stream as RGB uint8 (H, W, 3),
    resized to ``size`` = (H, W) by the scaler while decoding (area averaging; the whole frame,
    so the aspect ratio follows `size`). Decoding stops after the last wanted frame."""
    import av

    wanted = {int(i) for i in indices}
    if not wanted:
        return {}
    if min(wanted) < 0:
        raise CodecDataError(f"{where}: negative frame index")
    last, (h, w) = max(wanted), size
    out: dict[int, np.ndarray] = {}
    n = 0
    try:
        with av.open(io.BytesIO(data), mode="r") as src:
            if not src.streams.video:
                raise CodecDataError(f"{where}: no video stream")
            for i, frame in enumerate(src.decode(src.streams.video[0])):
                n = i + 1
                if i in wanted:
                    out[i] = frame.to_ndarray(
                        width=w, height=h, format="rgb24", interpolation="AREA"
                    )
                if i >= last:
                    break
    except av.FFmpegError as e:
        raise CodecDataError(f"{where}: undecodable video ({e})") from None
    if len(out) != len(wanted):
        raise CodecDataError(
            f"{where}: frame {min(wanted - set(out))} wanted but the video has {n} frames"
        )
    return out


# ---- images --------------------------------------------------------------------------------


def image_to_array(data: bytes, size: int, where: str = "<bytes>") -> np.ndarray:
    """Decode an image, centre-crop it square and resize to size x size RGB uint8."""
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data)).convert("RGB")
    except (UnidentifiedImageError, OSError) as e:
        raise CodecDataError(f"{where}: undecodable image ({e})") from None
    w, h = img.size
    s = min(w, h)
    img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    return np.asarray(img.resize((size, size), Image.Resampling.BICUBIC), dtype=np.uint8)


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def load_image_files(paths: Sequence[str | os.PathLike], size: int) -> np.ndarray:
    """Images (N, size, size, 3) from image files (folders are searched, sorted)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        else:
            files.append(p)
    if not files:
        raise CodecDataError(f"no image files in {[str(p) for p in paths]}")
    return np.stack([image_to_array(f.read_bytes(), size, str(f)) for f in files])


def load_dataset_images(datasets: Sequence[str | os.PathLike], size: int, limit: int = 0):
    """Images (N, size, size, 3) from the image samples of vla-data dataset folders/shards."""
    from vla_data.shards import iter_samples
    from vla_tokenizers.token_shards import discover

    out = []
    for shard in discover(datasets):
        for sample in iter_samples(shard.path):
            if str(sample.meta.modality) != "image":
                continue
            parts = sample.payloads
            part = next((p for p in ("jpg", "png", "webp", "jpeg") if p in parts), None)
            if part is None:
                raise CodecDataError(f"{shard.path}: image sample {sample.key!r} has no image part")
            out.append(image_to_array(parts[part], size, f"{shard.path}:{sample.key}.{part}"))
            if limit and len(out) >= limit:
                return np.stack(out)
    if not out:
        raise CodecDataError(f"no image samples in {[str(d) for d in datasets]}")
    return np.stack(out)


# ---- audio ---------------------------------------------------------------------------------


def synthetic_speech(n: int, seconds: float, rate: int, seed: int = 0) -> list[np.ndarray]:
    """`n` mono speech-like clips from vla-data's generator (float32, peak 0.6)."""
    from vla_data.corpus import speech_like

    rng = np.random.default_rng([seed, 0xA0D10])
    return [speech_like(rng, seconds, rate, 1)[0] for _ in range(n)]


def decode_audio(data: bytes, rate: int, where: str = "<bytes>") -> np.ndarray:
    """Decode the first audio stream with PyAV to mono float32 at `rate`."""
    import av

    chunks = []
    try:
        with av.open(io.BytesIO(data), mode="r") as src:
            if not src.streams.audio:
                raise CodecDataError(f"{where}: no audio stream")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            for frame in src.decode(src.streams.audio[0]):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except av.FFmpegError as e:
        raise CodecDataError(f"{where}: undecodable audio ({e})") from None
    if not chunks:
        raise CodecDataError(f"{where}: no audio samples decoded")
    return np.concatenate(chunks).astype(np.float32)


def load_audio_files(paths: Sequence[str | os.PathLike], rate: int) -> list[np.ndarray]:
    """Decode audio files (folders are searched for audio suffixes, sorted)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in AUDIO_SUFFIXES)
        else:
            files.append(p)
    if not files:
        raise CodecDataError(f"no audio files in {[str(p) for p in paths]}")
    return [decode_audio(f.read_bytes(), rate, str(f)) for f in files]


def load_dataset_audio(datasets: Sequence[str | os.PathLike], rate: int) -> list[np.ndarray]:
    """The FLAC payloads of the audio samples of vla-data dataset folders/shards."""
    from vla_data.shards import iter_samples
    from vla_tokenizers.token_shards import discover

    out = []
    for shard in discover(datasets):
        for sample in iter_samples(shard.path):
            if str(sample.meta.modality) != "audio":
                continue
            parts = sample.payloads
            if "flac" not in parts:
                raise CodecDataError(f"{shard.path}: audio sample {sample.key!r} has no flac part")
            out.append(decode_audio(parts["flac"], rate, f"{shard.path}:{sample.key}.flac"))
    if not out:
        raise CodecDataError(f"no audio samples in {[str(d) for d in datasets]}")
    return out
