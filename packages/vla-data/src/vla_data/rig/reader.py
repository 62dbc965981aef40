"""Load a rig folder (decode, validate, synchronise) and turn it into a rig `Sample`.

`load_rig` reads `rig.json`, every camera's timestamps, CAN and ego pose, synchronises the
clocks (:mod:`vla_data.rig.sync`), decodes every frame of every camera once with PyAV (frame
count, size and codec checked; per-frame quality features; optional sampled RGB frames) and
resamples actions and ego pose to the reference ticks. Anything malformed raises
:class:`~vla_data.rig.layout.RigError` naming the file and the cause; sync problems are not
errors but :class:`~vla_data.sample.RigDefect` records in the sample's metadata.

`read_rig` is the ingest reader: `vla-data ingest` hands it each folder's `rig.json` (see
:func:`claim_rig_files`), and it yields one rig sample or one quarantined record.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO, TYPE_CHECKING, Any

import fsspec
import numpy as np
from PIL import Image, UnidentifiedImageError
from pydantic import ValidationError

from vla_data.rig.config import RigSyncConfig
from vla_data.rig.layout import (
    ACTION_DIMS,
    CAMERAS,
    POSE_DIMS,
    RIG_MANIFEST,
    CameraEntry,
    RigError,
    RigManifest,
    image_files,
    parse_manifest,
    read_table,
    read_timestamps,
    timestamps_from_names,
)
from vla_data.rig.sync import SyncResult, interpolate_pose, interpolate_signals, synchronise
from vla_data.sample import RigCameraMeta, RigDefect, RigMeta
from vla_data.video.decode import VideoError, encode_h264, iter_frames, scan_video
from vla_data.video.quality import QualityConfig, QualityReport, check_quality, frame_features
from vla_data.video.sampling import SamplingPolicy, policy_want, sample_fixed_fps

if TYPE_CHECKING:  # the ingest package imports this module; no runtime import back
    from vla_data.ingest.base import FileContext, Record

MAX_QUARANTINE_BYTES = 64 << 20


class RigFiles:
    """Read-only access to the files of one rig folder (any fsspec URL or local path)."""

    def __init__(self, folder: str) -> None:
        self.url = str(folder).rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.url)

    def _path(self, rel: str) -> str:
        return f"{self.root.rstrip('/')}/{rel.strip('/')}"

    def read(self, rel: str) -> bytes:
        try:
            return self.fs.cat_file(self._path(rel))
        except FileNotFoundError:
            raise RigError(rel, "file not found") from None
        except IsADirectoryError:
            raise RigError(rel, "is a folder, not a file") from None
        except OSError as e:
            raise RigError(rel, f"unreadable: {e}") from None

    def list(self, rel: str) -> list[str]:
        path = self._path(rel)
        if not self.fs.isdir(path):
            raise RigError(rel, "frames folder not found")
        names = []
        for info in self.fs.ls(path, detail=True):
            if info.get("type") != "directory":
                base = str(info["name"]).rstrip("/").rsplit("/", 1)[-1]
                if not base.startswith("."):
                    names.append(base)
        return names


@dataclass
class RigCamera:
    """One decoded, validated camera."""

    name: str
    entry: CameraEntry
    file: str  # the mp4 or frames folder, relative to the rig folder
    source: str  # "mp4" or "images"
    mp4: bytes  # H.264 mp4 (the original bytes when the input was H.264)
    codec: str  # codec of the input
    width: int
    height: int
    timestamps: np.ndarray  # int64, one per decoded frame
    keyframes: np.ndarray  # bool per frame
    quality: QualityReport
    images: dict[int, np.ndarray]  # sampled frames (frame index -> RGB)


@dataclass
class Rig:
    """A loaded rig: cameras, synchronisation, actions and ego pose at the reference ticks."""

    url: str
    manifest: RigManifest
    config: RigSyncConfig
    cameras: dict[str, RigCamera]
    sync: SyncResult
    can_t: np.ndarray  # int64 (n,)
    can: np.ndarray  # float64 (n, 4)
    actions: np.ndarray  # float32 (ticks, 4)
    ego_pose: np.ndarray | None  # float64 (ticks, 7)
    defects: list[RigDefect]

    @property
    def id(self) -> str:
        return self.manifest.id or PurePosixPath(self.url).name or "rig"

    def sampled_frames(self, camera: str) -> dict[int, np.ndarray]:
        """Sampled RGB frames of one camera by **tick** index (from `load_rig(policy=...)`)."""
        col = CAMERAS.index(camera)
        tick_of = {int(f): k for k, f in enumerate(self.sync.frame_index[:, col]) if f >= 0}
        cam = self.cameras[camera]
        return {tick_of[i]: img for i, img in cam.images.items() if i in tick_of}

    def meta(self) -> RigMeta:
        cams = {}
        for c, cam in self.cameras.items():
            clock = self.sync.clocks[c]
            counts = cam.quality.counts()
            cams[c] = RigCameraMeta(
                width=cam.width,
                height=cam.height,
                intrinsic=cam.entry.intrinsic,
                translation=cam.entry.translation,
                rotation=cam.entry.rotation,
                frames=len(cam.timestamps),
                codec=cam.codec,
                source=cam.source,  # type: ignore[arg-type]
                offset_ms=round(clock.offset_us / 1000, 3),
                drift_ppm=round(clock.drift_ppm, 1),
                black_frames=counts["black"],
                frozen_frames=counts["frozen"],
                blurry_frames=counts["blurry"],
            )
        return RigMeta(
            rate_hz=round(self.sync.rate_hz, 6),
            tolerance_ms=self.config.tolerance_ms,
            ticks=len(self.sync.ticks_us),
            start_us=int(self.sync.ticks_us[0]) if len(self.sync.ticks_us) else 0,
            duration_s=round(self.sync.duration_s, 6),
            cameras=cams,
            missing_cameras=list(self.sync.missing),
            action_dims=list(ACTION_DIMS),
            ego_pose=self.ego_pose is not None,
            clock_corrected=self.sync.corrected,
            defects=self.defects,
        )

    def payloads(self) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for c, cam in self.cameras.items():
            out[f"{c}.mp4"] = cam.mp4
            out[f"{c}.timestamps.npy"] = npy_bytes(cam.timestamps.astype(np.int64))
        out["timestamps.npy"] = npy_bytes(self.sync.ticks_us.astype(np.int64))
        out["frames.npy"] = npy_bytes(self.sync.frame_index.astype(np.int32))
        out["actions.npy"] = npy_bytes(self.actions.astype(np.float32))
        out["can.npy"] = npy_bytes(
            np.concatenate([self.can_t[:, None].astype(np.float64), self.can], 1)
        )
        if self.ego_pose is not None:
            out["ego_pose.npy"] = npy_bytes(self.ego_pose.astype(np.float64))
        return out

    def report(self) -> dict[str, Any]:
        """A JSON-ready summary: clocks, quality and defects (what `vla-data rig-check` prints)."""
        return {
            "id": self.id,
            "rate_hz": round(self.sync.rate_hz, 6),
            "ticks": len(self.sync.ticks_us),
            "duration_s": round(self.sync.duration_s, 3),
            "cameras": {
                c: {
                    "source": cam.source,
                    "codec": cam.codec,
                    "size": [cam.width, cam.height],
                    "frames": len(cam.timestamps),
                    "matched": self.sync.clocks[c].matched,
                    "offset_ms": round(self.sync.clocks[c].offset_us / 1000, 3),
                    "drift_ppm": round(self.sync.clocks[c].drift_ppm, 1),
                    "quality": cam.quality.counts(),
                }
                for c, cam in self.cameras.items()
            },
            "missing_cameras": self.sync.missing,
            "defects": [d.model_dump(exclude_defaults=False) for d in self.defects],
        }


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def effective_config(config: RigSyncConfig | None, manifest: RigManifest) -> RigSyncConfig:
    config = config or RigSyncConfig()
    if not manifest.sync:
        return config
    try:
        return RigSyncConfig.model_validate(config.model_dump() | manifest.sync)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        raise RigError(RIG_MANIFEST, f"sync.{loc}: {err['msg']}".rstrip(".")) from None


def _camera_timestamps(
    files: RigFiles, name: str, entry: CameraEntry
) -> tuple[np.ndarray, str, list[str]]:
    """(timestamps, their file for messages, the image names for a frames folder)."""
    images: list[str] = []
    if entry.frames is not None:
        images = image_files(files.list(entry.frames))
        if not images:
            raise RigError(entry.frames, "frames folder has no .jpg/.jpeg/.png/.webp images")
    if entry.timestamps is not None:
        return (
            read_timestamps(entry.timestamps, files.read(entry.timestamps)),
            entry.timestamps,
            images,
        )
    folder = entry.frames.rstrip("/")  # type: ignore[union-attr]
    return timestamps_from_names(folder, images), f"{folder}/ (file names)", images


def _decode_images(
    files: RigFiles, folder: str, names: list[str], want: Any
) -> tuple[list[np.ndarray], dict[int, np.ndarray], str]:
    """RGB frames of an image folder, the sampled ones, and the first image's format."""
    frames: list[np.ndarray] = []
    size = None
    fmt = ""
    for n in names:
        rel = f"{folder.rstrip('/')}/{n}"
        try:
            with Image.open(io.BytesIO(files.read(rel))) as img:
                img.load()
                fmt = fmt or (img.format or "image").lower()
                rgb = np.asarray(img.convert("RGB"))
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
            raise RigError(rel, f"undecodable image: {e}") from None
        if size is None:
            size = rgb.shape[:2]
            if size[0] % 2 or size[1] % 2:
                raise RigError(rel, f"{size[1]}x{size[0]}: H.264 needs an even width and height")
        elif rgb.shape[:2] != size:
            raise RigError(
                rel, f"{rgb.shape[1]}x{rgb.shape[0]}, the first frame {size[1]}x{size[0]}"
            )
        frames.append(rgb)
    sampled = {}
    if isinstance(want, set):
        sampled = {i: frames[i] for i in sorted(want) if i < len(frames)}
    elif want is not None:
        sampled = {i: f for i, f in enumerate(frames) if want(i, float("nan"), i == 0, False)}
    return frames, sampled, fmt


def _load_camera(
    files: RigFiles,
    name: str,
    entry: CameraEntry,
    timestamps: np.ndarray,
    ts_file: str,
    images: list[str],
    config: RigSyncConfig,
    quality: QualityConfig,
    policy: SamplingPolicy | None,
    wanted: set[int] | None = None,
) -> RigCamera:
    want: Any = None
    if policy is not None:
        want = policy_want(policy, timestamps) if wanted is None else wanted
    if entry.video is not None:
        file = entry.video
        data = files.read(file)
        if not data:
            raise RigError(file, "empty file")
        try:
            scan = scan_video(data, want=want, thread_count=config.thread_count)
        except VideoError as e:
            raise RigError(file, f"undecodable video: {e}") from None
        info = scan.info
        codec, width, height, n = info.codec, info.width, info.height, info.frames
        mp4 = data
        if codec != "h264" or "mp4" not in info.container:
            try:
                mp4 = encode_h264(iter_frames(data), config.rate_hz, crf=config.crf)
            except (VideoError, ValueError) as e:
                raise RigError(file, f"cannot re-encode {codec} to H.264: {e}") from None
        features, sampled, source = scan.features, scan.images, "mp4"
    else:
        file = entry.frames.rstrip("/")  # type: ignore[union-attr]
        frames, sampled, codec = _decode_images(files, file, images, want)
        n, (height, width), source = len(frames), frames[0].shape[:2], "images"
        features = frame_features(frames)
        mp4 = encode_h264(frames, config.rate_hz, crf=config.crf)
    if n != len(timestamps):
        raise RigError(file, f"{n} decoded frames but {ts_file} has {len(timestamps)} timestamps")
    if (entry.width or width, entry.height or height) != (width, height):
        raise RigError(
            file, f"frames are {width}x{height}, rig.json says {entry.width}x{entry.height}"
        )
    k = entry.intrinsic
    if not (0 < k[0][2] < width and 0 < k[1][2] < height):
        raise RigError(
            RIG_MANIFEST,
            f"cameras.{name}.intrinsic: principal point ({k[0][2]}, {k[1][2]}) is outside the "
            f"{width}x{height} frames of {file}",
        )
    assert features is not None
    keyframes = np.zeros(n, dtype=bool)
    if source == "mp4":
        keyframes = scan.keyframes
    return RigCamera(
        name=name,
        entry=entry,
        file=file,
        source=source,
        mp4=mp4,
        codec=codec,
        width=width,
        height=height,
        timestamps=np.asarray(timestamps, dtype=np.int64),
        keyframes=keyframes,
        quality=check_quality(features, quality),
        images=sampled,
    )


def load_rig(
    folder: str,
    config: RigSyncConfig | None = None,
    *,
    policy: SamplingPolicy | None = None,
    quality: QualityConfig | None = None,
    manifest: RigManifest | None = None,
) -> Rig:
    """Load, validate, decode and synchronise the rig in ``folder`` (local path or fsspec URL).

    ``policy`` keeps the RGB of the frames it samples (see :meth:`Rig.sampled_frames`): ``fps``
    picks reference ticks (the same for every camera; a camera without a frame at a picked tick
    contributes none), ``keyframes``/``shots``/``all`` pick per camera.
    Raises :class:`RigError` (file + cause) for a malformed rig.
    """
    files = RigFiles(str(folder))
    if manifest is None:
        manifest = parse_manifest(files.read(RIG_MANIFEST))
    config = effective_config(config, manifest)
    quality = quality or QualityConfig()
    present = manifest.present
    timestamps: dict[str, np.ndarray] = {}
    ts_files: dict[str, str] = {}
    images: dict[str, list[str]] = {}
    for c in present:
        entry = manifest.cameras[c]
        assert entry is not None
        timestamps[c], ts_files[c], images[c] = _camera_timestamps(files, c, entry)
    sync = synchronise(timestamps, config, files=ts_files)
    can_t, can = read_table(
        manifest.can.file, files.read(manifest.can.file), ACTION_DIMS, manifest.can
    )
    actions, defects = interpolate_signals(
        can_t, can, sync.ticks_us, max_gap_ms=config.can_max_gap_ms, what="actions"
    )
    ego = None
    if manifest.ego_pose is not None:
        e = manifest.ego_pose
        ego_t, ego_v = read_table(e.file, files.read(e.file), POSE_DIMS, e)
        norms = np.linalg.norm(ego_v[:, 3:7], axis=1)
        if (np.abs(norms - 1) > 1e-3).any():
            row = int(np.flatnonzero(np.abs(norms - 1) > 1e-3)[0])
            raise RigError(
                e.file, f"row {row + 1}: rotation (qw, qx, qy, qz) is not a unit quaternion"
            )
        ego = interpolate_pose(ego_t, ego_v, sync.ticks_us)
        _, pose_defects = interpolate_signals(
            ego_t, ego_v[:, :1], sync.ticks_us, max_gap_ms=config.can_max_gap_ms, what="ego pose"
        )
        defects += pose_defects
    wanted: dict[str, set[int]] = {}
    if policy is not None and policy.kind == "fps":  # one tick grid for all cameras
        picked = sample_fixed_fps(sync.ticks_us, policy.fps)  # type: ignore[arg-type]
        for c in present:
            col = sync.frame_index[picked, CAMERAS.index(c)]
            wanted[c] = {int(i) for i in col if i >= 0}
    cameras = {
        c: _load_camera(
            files,
            c,
            manifest.cameras[c],  # type: ignore[arg-type]
            timestamps[c],
            ts_files[c],
            images[c],
            config,
            quality,
            policy,
            wanted.get(c),
        )
        for c in present
    }
    return Rig(
        url=files.url,
        manifest=manifest,
        config=config,
        cameras=cameras,
        sync=sync,
        can_t=can_t,
        can=can,
        actions=actions.astype(np.float32),
        ego_pose=ego,
        defects=sync.defects + defects,
    )


# ---------------------------------------------------------------- ingest plumbing


def read_rig(ctx: FileContext, f: IO[bytes]) -> Iterator[Record]:
    """Ingest reader for a rig folder's `rig.json`: one rig sample, or one quarantined record
    whose error names the file and the cause (and whose bytes are that file's)."""
    raw = f.read()
    folder = ctx.url.rsplit("/", 1)[0] if "/" in ctx.url else "."
    folder_name = folder.rstrip("/").rsplit("/", 1)[-1] or "rig"
    rid = folder_name
    try:
        manifest = parse_manifest(raw)
        rid = manifest.id or folder_name
        rig = load_rig(folder, getattr(ctx.config, "rig", None), manifest=manifest)
        payloads = rig.payloads()
        meta = rig.meta()
    except (ValueError, OSError) as e:  # anything else that is wrong with the input
        bad = raw
        if not isinstance(e, RigError):
            yield ctx.bad(rid, "", f"unreadable rig: {type(e).__name__}: {e}", raw)
            return
        if e.file != RIG_MANIFEST and "/ (" not in e.file:
            try:
                bad = RigFiles(folder).read(e.file)[:MAX_QUARANTINE_BYTES]
            except RigError:
                bad = raw
        yield ctx.bad(rid, "", str(e), bad)
        return
    yield ctx.sample(rid, "", meta, payloads, license=manifest.license, created=manifest.created)


def claim_rig_files(fs, paths: list[str], fingerprint: Callable[[dict], str]):
    """Split discovered paths for ingest: every folder holding a `rig.json` is one input.

    Returns ``(paths, rigs)``: the paths minus the files inside rig folders (each rig.json
    kept), and ``{rig.json path: (total bytes of the folder, fingerprint of all its files)}``.
    """
    manifests = [p for p in paths if p.rsplit("/", 1)[-1] == RIG_MANIFEST]
    if not manifests:
        return paths, {}
    rigs: dict[str, tuple[int, str]] = {}
    claimed: set[str] = set()
    for m in manifests:
        folder = m.rsplit("/", 1)[0]
        members = sorted(fs.find(folder))
        claimed.update(members)
        infos = [fs.info(p) for p in members]
        size = sum(int(i.get("size") or 0) for i in infos)
        digest = hashlib.sha1(
            "\n".join(f"{p}:{fingerprint(i)}" for p, i in zip(members, infos, strict=True)).encode()
        ).hexdigest()
        rigs[m] = (size, f"{size}:rig-{digest}")
    kept = [p for p in paths if p in rigs or p not in claimed]
    return kept, rigs
