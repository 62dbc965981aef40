"""The on-disk rig input layout: a folder with `rig.json` and the files it names.

```
scene-0061/
  rig.json                       manifest (RigManifest below)
  front.mp4                      H.264 mp4 ...
  front.timestamps.txt           ... one integer per line: microseconds of each decoded frame
  back/                          ... or an image sequence (.jpg/.jpeg/.png/.webp, sorted by name)
    n015__CAM_BACK__1532402927637525.jpg     (timestamps may be the names' trailing digits)
  can.csv                        t_us,steering,throttle,brake,speed  (own clock, any rate)
  ego_pose.csv                   t_us,x,y,z,qw,qx,qy,qz              (optional)
```

`rig.json`:

```json
{"format": "vla-rig", "version": 1, "id": "scene-0061", "license": "CC-BY-NC-SA-4.0",
 "cameras": {
   "front": {"video": "front.mp4", "timestamps": "front.timestamps.txt",
             "intrinsic": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]],
             "translation": [x, y, z], "rotation": [w, x, y, z], "width": 640, "height": 480},
   "back": {"frames": "back/", ...}},
 "can": "can.csv",
 "ego_pose": "ego_pose.csv",
 "sync": {"tolerance_ms": 20}}
```

Cameras are `front, front_left, front_right, back, back_left, back_right`; one left out (or
`null`) is reported as a missing camera, not an error. Calibration follows nuScenes'
`calibrated_sensor`: the extrinsic is the camera's pose in the ego frame (a camera point ``p``
is ``R(q) @ p + t`` in ego coordinates), camera axes x right, y down, z forward. Timestamps are
integers in microseconds on any epoch shared by cameras, CAN and ego pose. Timestamps files may
be `.txt` (one per line), `.csv` (a `t_us`/`utime`/`timestamp` column) or `.npy` (1-D integer).
CAN and ego-pose tables may be `.csv` with a header or `.npy` (structured with those field
names, or 2-D in the column order above); `"can": {"file": ..., "columns": {"speed":
"vehicle_speed"}}` maps other column names (nuScenes CAN bus `utime`, `vehicle_speed`, ...).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from vla_data.sample import RIG_CAMERAS

CAMERAS = RIG_CAMERAS
RIG_MANIFEST = "rig.json"
ACTION_DIMS = ("steering", "throttle", "brake", "speed")
POSE_DIMS = ("x", "y", "z", "qw", "qx", "qy", "qz")
TIME_COLUMNS = ("t_us", "utime", "timestamp_us", "timestamp", "time_us")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
_TRAILING_DIGITS = re.compile(r"(\d+)$")


class RigError(ValueError):
    """A malformed rig: the message names the file and the cause; `file` is that file."""

    def __init__(self, file: str, cause: str):
        super().__init__(f"{file}: {cause}")
        self.file = file
        self.cause = cause


def _finite(values: Sequence[float], what: str) -> None:
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{what} has non-finite values")


def _safe_relpath(value: str) -> str:
    p = PurePosixPath(value.replace("\\", "/"))
    if not value or p.is_absolute() or ".." in p.parts or ":" in value.split("/", 1)[0]:
        raise ValueError(f"path {value!r} must be relative and stay inside the rig folder")
    return str(p)


class CameraEntry(BaseModel):
    """One camera: its frames (mp4 or image folder), timestamps and calibration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    video: str | None = None
    frames: str | None = None
    timestamps: str | None = None
    intrinsic: list[list[float]]
    translation: list[float] = Field(min_length=3, max_length=3)
    rotation: list[float] = Field(min_length=4, max_length=4)
    width: int | None = Field(None, gt=0)
    height: int | None = Field(None, gt=0)

    @field_validator("video", "frames", "timestamps")
    @classmethod
    def _paths(cls, v: str | None) -> str | None:
        return None if v is None else _safe_relpath(v)

    @field_validator("intrinsic")
    @classmethod
    def _intrinsic(cls, k: list[list[float]]) -> list[list[float]]:
        if len(k) != 3 or any(len(row) != 3 for row in k):
            raise ValueError("intrinsic must be a 3x3 matrix")
        _finite([v for row in k for v in row], "intrinsic")
        if k[2] != [0.0, 0.0, 1.0] or k[1][0] != 0.0:
            raise ValueError(f"intrinsic must be upper triangular with last row [0, 0, 1]: {k}")
        if k[0][0] <= 0 or k[1][1] <= 0:
            raise ValueError(f"focal lengths must be positive: fx={k[0][0]}, fy={k[1][1]}")
        return k

    @field_validator("translation")
    @classmethod
    def _translation(cls, t: list[float]) -> list[float]:
        _finite(t, "translation")
        return t

    @field_validator("rotation")
    @classmethod
    def _rotation(cls, q: list[float]) -> list[float]:
        _finite(q, "rotation")
        norm = math.sqrt(sum(v * v for v in q))
        if abs(norm - 1.0) > 1e-3:
            raise ValueError(
                f"rotation must be a unit quaternion (w, x, y, z); its norm is {norm:.6g}"
            )
        return q

    @model_validator(mode="after")
    def _one_source(self) -> CameraEntry:
        if (self.video is None) == (self.frames is None):
            raise ValueError("give exactly one of 'video' (an mp4) or 'frames' (an image folder)")
        if self.video is not None and self.timestamps is None:
            raise ValueError("a video camera needs 'timestamps' (microseconds per frame)")
        k = self.intrinsic
        if self.width is not None and not 0 < k[0][2] < self.width:
            raise ValueError(
                f"principal point cx={k[0][2]} is outside the image width {self.width}"
            )
        if self.height is not None and not 0 < k[1][2] < self.height:
            raise ValueError(
                f"principal point cy={k[1][2]} is outside the image height {self.height}"
            )
        return self


class TableEntry(BaseModel):
    """A CAN or ego-pose table: its file and, if its names differ, a column mapping."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str
    time_column: str | None = None
    columns: dict[str, str] = Field(default_factory=dict)

    @field_validator("file")
    @classmethod
    def _path(cls, v: str) -> str:
        return _safe_relpath(v)


def _table(v: Any) -> Any:
    return {"file": v} if isinstance(v, str) else v


class RigManifest(BaseModel):
    """`rig.json`, validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["vla-rig"] = "vla-rig"
    version: Literal[1] = 1
    id: str | None = Field(None, min_length=1)
    license: str | None = Field(None, min_length=1)
    created: datetime | None = None
    cameras: dict[str, CameraEntry | None]
    can: TableEntry
    ego_pose: TableEntry | None = None
    sync: dict[str, Any] = Field(default_factory=dict)

    @field_validator("can", "ego_pose", mode="before")
    @classmethod
    def _tables(cls, v: Any) -> Any:
        return _table(v)

    @field_validator("cameras")
    @classmethod
    def _camera_names(cls, cams: dict[str, CameraEntry | None]) -> dict[str, CameraEntry | None]:
        unknown = sorted(set(cams) - set(CAMERAS))
        if unknown:
            raise ValueError(f"unknown camera(s) {unknown}; cameras are {list(CAMERAS)}")
        return cams

    @property
    def present(self) -> list[str]:
        return [c for c in CAMERAS if self.cameras.get(c) is not None]

    @property
    def missing(self) -> list[str]:
        return [c for c in CAMERAS if self.cameras.get(c) is None]


def parse_manifest(raw: bytes) -> RigManifest:
    """Validate `rig.json` bytes; raises :class:`RigError` naming each problem's field."""
    from pydantic import ValidationError

    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RigError(RIG_MANIFEST, f"not valid JSON: {e}") from None
    try:
        return RigManifest.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors()[:5]:
            loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{loc}: {msg}")
        more = f" (+{e.error_count() - 5} more)" if e.error_count() > 5 else ""
        raise RigError(RIG_MANIFEST, "; ".join(problems) + more) from None


# ---------------------------------------------------------------- file readers (bytes in)


def _csv_rows(name: str, raw: bytes) -> tuple[list[str], list[list[str]]]:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise RigError(name, f"not UTF-8 text: {e}") from None
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(x.strip() for x in r)]
    if len(rows) < 2:
        raise RigError(name, "needs a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    if len(set(header)) != len(header) or not all(header):
        raise RigError(name, f"header has empty or repeated names: {header}")
    for i, row in enumerate(rows[1:], 2):
        if len(row) != len(header):
            raise RigError(name, f"line {i} has {len(row)} fields, the header {len(header)}")
    return header, rows[1:]


def _int_column(name: str, values: Sequence[str], column: str) -> np.ndarray:
    out = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        try:
            out[i] = int(v.strip())
        except ValueError:
            try:
                f = float(v)
            except ValueError:
                f = math.nan
            if not math.isfinite(f) or f != round(f):
                raise RigError(
                    name, f"line {i + 2}: {column} {v!r} is not an integer microsecond time"
                ) from None
            out[i] = int(f)
    return out


def _load_npy(name: str, raw: bytes) -> np.ndarray:
    try:
        return np.load(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise RigError(name, f"unreadable .npy: {e}") from None


def read_timestamps(name: str, raw: bytes) -> np.ndarray:
    """Per-frame times in microseconds (int64) from .txt, .csv or .npy bytes."""
    if not raw.strip():
        raise RigError(name, "empty timestamps file")
    suffix = PurePosixPath(name).suffix.lower()
    if suffix == ".npy":
        arr = _load_npy(name, raw)
        if arr.ndim != 1 or arr.dtype.kind not in "iuf":
            raise RigError(
                name, f"timestamps must be a 1-D integer array, got {arr.dtype} {arr.shape}"
            )
        if arr.dtype.kind == "f" and not (np.isfinite(arr).all() and (arr == np.round(arr)).all()):
            raise RigError(name, "timestamps must be integer microseconds")
        t = arr.astype(np.int64)
    elif suffix == ".csv":
        header, rows = _csv_rows(name, raw)
        lower = [h.lower() for h in header]
        col = next(
            (lower.index(c) for c in TIME_COLUMNS if c in lower), 0 if len(header) == 1 else None
        )
        if col is None:
            raise RigError(name, f"no time column (one of {list(TIME_COLUMNS)}) in {header}")
        t = _int_column(name, [r[col] for r in rows], header[col])
    else:
        lines = [ln.strip() for ln in raw.decode("utf-8-sig", "replace").splitlines()]
        lines = [ln for ln in lines if ln and not ln.startswith("#")]
        t = _int_column(name, lines, "timestamp")
    if t.size == 0:
        raise RigError(name, "no timestamps")
    return t


def read_table(
    name: str, raw: bytes, dims: Sequence[str], entry: TableEntry
) -> tuple[np.ndarray, np.ndarray]:
    """``(t_us int64 (n,), values float64 (n, len(dims)))`` of a CAN or ego-pose table.

    Times must be strictly increasing and values finite.
    """
    if not raw:
        raise RigError(name, "empty file")
    names = {d: entry.columns.get(d, d) for d in dims}
    if PurePosixPath(name).suffix.lower() == ".npy":
        arr = _load_npy(name, raw)
        if arr.dtype.names:
            fields = {f.lower(): f for f in arr.dtype.names}
            tcol = entry.time_column or next((fields[c] for c in TIME_COLUMNS if c in fields), None)
            missing = [names[d] for d in dims if names[d] not in arr.dtype.names]
            if tcol is None or tcol not in arr.dtype.names or missing:
                raise RigError(
                    name, f"fields {list(arr.dtype.names)} lack a time column or {missing}"
                )
            t = np.asarray(arr[tcol]).astype(np.int64)
            values = np.stack([np.asarray(arr[names[d]], dtype=np.float64) for d in dims], 1)
        else:
            if arr.ndim != 2 or arr.shape[1] != len(dims) + 1 or arr.dtype.kind not in "iuf":
                raise RigError(
                    name,
                    f"a plain array must be numeric (n, {len(dims) + 1}): time then "
                    f"{', '.join(dims)}; got {arr.dtype} {arr.shape}",
                )
            t = arr[:, 0].astype(np.int64)
            values = arr[:, 1:].astype(np.float64)
    else:
        header, rows = _csv_rows(name, raw)
        lower = {h.lower(): j for j, h in enumerate(header)}
        if entry.time_column is not None:
            tcol = header.index(entry.time_column) if entry.time_column in header else None
        else:
            tcol = next((lower[c] for c in TIME_COLUMNS if c in lower), None)
        if tcol is None:
            raise RigError(name, f"no time column (one of {list(TIME_COLUMNS)}) in {header}")
        missing = [names[d] for d in dims if names[d] not in header]
        if missing:
            raise RigError(name, f"missing column(s) {missing}; header is {header}")
        t = _int_column(name, [r[tcol] for r in rows], header[tcol])
        values = np.empty((len(rows), len(dims)), dtype=np.float64)
        cols = [header.index(names[d]) for d in dims]
        for i, row in enumerate(rows):
            try:
                values[i] = [float(row[j]) for j in cols]
            except ValueError as e:
                raise RigError(name, f"line {i + 2}: {e}") from None
    if t.size == 0:
        raise RigError(name, "no rows")
    if t.size > 1 and not (np.diff(t) > 0).all():
        i = int(np.flatnonzero(np.diff(t) <= 0)[0]) + 1
        raise RigError(name, f"time is not strictly increasing at row {i + 1}")
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = (int(x) for x in np.argwhere(bad)[0])
        raise RigError(
            name, f"{int(bad.sum())} non-finite values, first at row {row + 1} ({dims[col]})"
        )
    return t, values


def image_files(names: Sequence[str]) -> list[str]:
    """The image files of a frames folder, in order (trailing numbers compared as numbers)."""
    imgs = [n for n in names if PurePosixPath(n).suffix.lower() in IMAGE_SUFFIXES]

    def key(n: str) -> tuple:
        stem = PurePosixPath(n).stem
        m = _TRAILING_DIGITS.search(stem)
        return (stem[: m.start()] if m else stem, int(m.group(1)) if m else -1, n)

    return sorted(imgs, key=key)


def timestamps_from_names(folder: str, names: Sequence[str]) -> np.ndarray:
    """Microsecond times from image names ending in digits (nuScenes: `..._1532402927612460.jpg`)."""
    out = []
    for n in names:
        m = _TRAILING_DIGITS.search(PurePosixPath(n).stem)
        if not m:
            raise RigError(
                f"{folder}/{n}",
                "no 'timestamps' file and the name does not end in a microsecond time",
            )
        out.append(int(m.group(1)))
    return np.array(out, dtype=np.int64)


# ---------------------------------------------------------------- writing a rig folder


def write_rig(
    folder: str | Path,
    cameras: Mapping[str, Mapping[str, Any]],
    can: tuple[np.ndarray, np.ndarray],
    *,
    ego_pose: tuple[np.ndarray, np.ndarray] | None = None,
    rig_id: str | None = None,
    license: str | None = None,
    sync: Mapping[str, Any] | None = None,
) -> Path:
    """Write a rig folder in the layout above and return it.

    ``cameras[name]`` holds ``timestamps`` (int microseconds), calibration (``intrinsic``,
    ``translation``, ``rotation`` and optionally ``width``/``height``) and either ``mp4`` (bytes)
    or ``images`` (a list of encoded image bytes, written as ``<name>/<index>.jpg``-style files
    using ``image_ext``). ``can`` is ``(t_us, values (n, 4))``; ``ego_pose`` ``(t_us, (n, 7))``.
    """
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {"format": "vla-rig", "version": 1, "cameras": {}}
    if rig_id:
        manifest["id"] = rig_id
    if license:
        manifest["license"] = license
    for name, cam in cameras.items():
        entry: dict[str, Any] = {
            k: (np.asarray(cam[k]).tolist()) for k in ("intrinsic", "translation", "rotation")
        }
        for k in ("width", "height"):
            if cam.get(k) is not None:
                entry[k] = int(cam[k])
        ts = np.asarray(cam["timestamps"], dtype=np.int64)
        (root / f"{name}.timestamps.txt").write_text("".join(f"{int(t)}\n" for t in ts))
        entry["timestamps"] = f"{name}.timestamps.txt"
        if "mp4" in cam:
            (root / f"{name}.mp4").write_bytes(cam["mp4"])
            entry["video"] = f"{name}.mp4"
        else:
            sub = root / name
            sub.mkdir(exist_ok=True)
            ext = cam.get("image_ext", "jpg")
            for i, data in enumerate(cam["images"]):
                (sub / f"{i:06d}.{ext}").write_bytes(data)
            entry["frames"] = f"{name}/"
        manifest["cameras"][name] = entry
    t, v = can
    lines = ["t_us," + ",".join(ACTION_DIMS)]
    lines += [
        f"{int(a)}," + ",".join(repr(float(x)) for x in row) for a, row in zip(t, v, strict=True)
    ]
    (root / "can.csv").write_text("\n".join(lines) + "\n")
    manifest["can"] = "can.csv"
    if ego_pose is not None:
        t, v = ego_pose
        lines = ["t_us," + ",".join(POSE_DIMS)]
        lines += [
            f"{int(a)}," + ",".join(repr(float(x)) for x in row)
            for a, row in zip(t, v, strict=True)
        ]
        (root / "ego_pose.csv").write_text("\n".join(lines) + "\n")
        manifest["ego_pose"] = "ego_pose.csv"
    if sync:
        manifest["sync"] = dict(sync)
    (root / RIG_MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return root
