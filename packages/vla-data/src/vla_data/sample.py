"""`Sample`: the typed record that travels between every stage, and its key rules.

On disk a sample is a group of WebDataset tar members sharing one key: `<key>.json` holds
this model (without the payload bytes) and `<key>.<part>` holds each payload.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

SCHEMA_VERSION = 1
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_\-]{1,200}$")
PART_PATTERN = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)*$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]+")


class Modality(StrEnum):
    """What a sample carries; decides which metadata model applies."""

    TEXT = "text"
    AUDIO = "audio"
    IMAGE = "image"
    ACTIONS = "actions"
    MESH = "mesh"
    RIG = "rig"


class _Meta(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TextMeta(_Meta):
    modality: Literal["text"] = "text"
    chars: int = Field(ge=0)
    language: str | None = None
    ipa_fallback: bool = False


class IpaLayer(_Meta):
    """IPA of a transcript (phonemizer's espeak-ng backend), stored beside it (see vla_data.speech).

    `words` are the transcript's words (whitespace tokens; one per CJK character), `word_ipa`
    their IPA. `alignment`: `aligned` when the utterance IPA has exactly one word per transcript
    word (then `word_ipa` are its words), `isolated` when espeak merged or split words (then
    each word was phonemized on its own), `empty` when the transcript has no words.
    `foreign_words` counts words espeak read with another voice (e.g. Han characters under hak).
    """

    language: str
    voice: str
    backend: str
    ipa: str
    words: list[str]
    word_ipa: list[str]
    alignment: Literal["aligned", "isolated", "empty"]
    transcript_words: int = Field(ge=0)
    ipa_words: int = Field(ge=0)
    foreign_words: int = Field(0, ge=0)


class SpeechChecks(_Meta):
    """Signal checks of a recording (see vla_data.speech); levels in dBFS floor at -120."""

    peak_dbfs: float
    rms_dbfs: float
    loudness_lufs: float | None = None  # ITU-R BS.1770-4 integrated; None under 0.4 s or gated
    clipped_fraction: float = Field(ge=0, le=1)
    clipped_runs: int = Field(ge=0)
    speech_ratio: float = Field(ge=0, le=1)
    segments: list[tuple[float, float]] = Field(default_factory=list)  # VAD, seconds
    leading_silence_s: float = Field(ge=0)
    trailing_silence_s: float = Field(ge=0)
    vad: str
    issues: list[str] = Field(default_factory=list)


class AudioMeta(_Meta):
    modality: Literal["audio"] = "audio"
    sample_rate: int = Field(gt=0)
    channels: int = Field(gt=0)
    duration_s: float = Field(gt=0)
    source_sample_rate: int = Field(gt=0)
    source_codec: str
    transcript: str | None = None
    language: str | None = None  # of the transcript
    ipa: IpaLayer | None = None
    speech: SpeechChecks | None = None


class ImageMeta(_Meta):
    modality: Literal["image"] = "image"
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    mode: str
    format: str
    exif: dict[str, str] = Field(default_factory=dict)
    gps_stripped: bool = False


class ActionsMeta(_Meta):
    modality: Literal["actions"] = "actions"
    dims: list[str] = Field(min_length=1)
    steps: int = Field(gt=0)
    dtype: str
    rate_hz: float | None = Field(default=None, gt=0)


class MeshMeta(_Meta):
    """A 3D sample (see vla_data.mesh): parts `obj` (canonical geometry) and `x3d` always, plus
    the source `blend.py`, `ply` or `pcd`. Geometry checks are counts; bbox over finite vertices."""

    modality: Literal["mesh"] = "mesh"
    source_format: Literal["blend.py", "obj", "ply", "pcd", "x3d"]
    vertices: int = Field(ge=0)
    faces: int = Field(ge=0)
    triangles: int = Field(ge=0)
    objects: list[str] = Field(default_factory=list)
    point_cloud: bool = False
    bbox_min: list[float] | None = Field(None, min_length=3, max_length=3)
    bbox_max: list[float] | None = Field(None, min_length=3, max_length=3)
    non_finite_vertices: int = Field(0, ge=0)
    degenerate_faces: int = Field(0, ge=0)
    boundary_edges: int = Field(0, ge=0)
    non_manifold_edges: int = Field(0, ge=0)
    watertight: bool = False
    winding_consistent: bool | None = None
    issues: list[str] = Field(default_factory=list)
    sandbox: dict[str, Any] | None = None  # blend.py: isolation applied, seconds, CPU, memory


RIG_CAMERAS = ("front", "front_left", "front_right", "back", "back_left", "back_right")


class RigCameraMeta(_Meta):
    """One camera of a rig sample: calibration (nuScenes conventions), decode and clock facts."""

    width: int = Field(gt=0)
    height: int = Field(gt=0)
    intrinsic: list[list[float]] = Field(min_length=3, max_length=3)  # 3x3 pinhole
    translation: list[float] = Field(min_length=3, max_length=3)  # camera origin in ego, metres
    rotation: list[float] = Field(min_length=4, max_length=4)  # camera -> ego, quaternion w,x,y,z
    frames: int = Field(ge=0)
    codec: str
    source: Literal["mp4", "images"]
    offset_ms: float = 0.0  # clock offset against the rig's consensus clock (corrected if set)
    drift_ppm: float = 0.0
    black_frames: int = Field(0, ge=0)
    frozen_frames: int = Field(0, ge=0)
    blurry_frames: int = Field(0, ge=0)


class RigDefect(_Meta):
    """A synchronisation defect found in a rig (reported, not fatal)."""

    kind: Literal[
        "missing_camera",
        "dropped_frames",
        "duplicate_timestamps",
        "clock_offset",
        "clock_drift",
        "unsynced_frames",
        "frame_rate",
        "actions_out_of_range",
        "can_gap",
        "ego_pose_out_of_range",
    ]
    camera: str | None = None
    count: int = Field(1, ge=0)
    where: list[int] = Field(default_factory=list)  # tick or frame indices (first 100)
    value: float | None = None  # ms for offsets and gaps, ppm for drift, Hz for frame rates
    detail: str = ""


class RigMeta(_Meta):
    """A synchronised 6-camera driving rig: parts `<camera>.mp4`, `<camera>.timestamps.npy`,
    `timestamps.npy` (reference ticks, us), `frames.npy` (ticks x 6 frame indices, -1 = none),
    `actions.npy` (ticks x dims), `can.npy` (raw CAN) and, if given, `ego_pose.npy`."""

    modality: Literal["rig"] = "rig"
    rate_hz: float = Field(gt=0)
    tolerance_ms: float = Field(gt=0)
    ticks: int = Field(ge=0)
    start_us: int
    duration_s: float = Field(ge=0)
    cameras: dict[str, RigCameraMeta]
    missing_cameras: list[str] = Field(default_factory=list)
    action_dims: list[str] = Field(min_length=1)
    ego_pose: bool = False
    clock_corrected: bool = True
    defects: list[RigDefect] = Field(default_factory=list)


Meta = Annotated[
    TextMeta | AudioMeta | ImageMeta | ActionsMeta | RigMeta | MeshMeta,
    Field(discriminator="modality"),
]


class Part(BaseModel):
    """One payload member: its size and SHA-256, checked against the bytes on read."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


def sanitize_key(raw: str) -> str:
    """Turn any record id into a WebDataset-safe key (no dots or slashes; stable and unique).

    Safe ids pass through unchanged; anything else gets its unsafe runs replaced by `_` and a
    short hash of the original appended, so distinct ids never collide.
    """
    if KEY_PATTERN.match(raw):
        return raw
    stem = _UNSAFE.sub("_", raw).strip("_")[:150] or "k"
    digest = hashlib.sha1(raw.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{stem}-{digest}"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def utcnow() -> datetime:
    return datetime.now(UTC)


class Sample(BaseModel):
    """A validated record: identity, provenance, modality metadata and payload parts.

    `payloads` maps a part name (`txt`, `flac`, `jpg`, `actions.npy`, ...) to its bytes; it is
    not serialised into the JSON member but each part's size and hash is, in `parts`.
    """

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = SCHEMA_VERSION
    key: str
    id: str = Field(min_length=1)
    source: str = Field(min_length=1)
    license: str = Field(min_length=1)
    created: datetime | None = None
    ingested: datetime = Field(default_factory=utcnow)
    lineage: list[str] = Field(default_factory=list)
    meta: Meta
    parts: dict[str, Part] = Field(default_factory=dict)
    _payloads: dict[str, bytes] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _check_modality_field(cls, data: Any) -> Any:
        # The JSON form repeats the modality at top level for readability; it must agree.
        if isinstance(data, dict) and "modality" in data:
            data = dict(data)
            top = data.pop("modality")
            meta = data.get("meta")
            inner = (
                meta.get("modality") if isinstance(meta, dict) else getattr(meta, "modality", None)
            )
            if inner is not None and top != inner:
                raise ValueError(f"modality {top!r} disagrees with meta.modality {inner!r}")
        return data

    @field_validator("key")
    @classmethod
    def _check_key(cls, key: str) -> str:
        if not KEY_PATTERN.match(key):
            raise ValueError(
                f"key {key!r} is not WebDataset-safe: use letters, digits, '_' and '-' only "
                "(sanitize_key() makes one from any id)"
            )
        return key

    @field_validator("parts")
    @classmethod
    def _check_part_names(cls, parts: dict[str, Part]) -> dict[str, Part]:
        for name in parts:
            if not PART_PATTERN.match(name) or name == "json":
                raise ValueError(
                    f"part name {name!r} is invalid (lowercase [a-z0-9_.], not 'json')"
                )
        return parts

    @property
    def modality(self) -> Modality:
        return Modality(self.meta.modality)

    @property
    def payloads(self) -> dict[str, bytes]:
        return dict(self._payloads)

    @classmethod
    def create(cls, *, payloads: dict[str, bytes], **fields: Any) -> Sample:
        """Build a sample from payload bytes; fills `parts` and sanitises the key from `id`."""
        fields.setdefault("key", sanitize_key(fields["id"]))
        fields["parts"] = {
            name: Part(bytes=len(data), sha256=sha256_hex(data)) for name, data in payloads.items()
        }
        sample = cls(**fields)
        sample._payloads = dict(payloads)
        if not payloads:
            raise ValueError(f"sample {sample.key!r} has no payload")
        return sample

    def with_payloads(self, payloads: dict[str, bytes], **updates: Any) -> Sample:
        """A copy with some payloads replaced (parts re-hashed) and fields updated."""
        fields = self.model_dump(exclude={"parts"}) | updates
        return Sample.create(payloads=self.payloads | payloads, **fields)

    def attach(self, payloads: dict[str, bytes]) -> Sample:
        """Attach payload bytes read from disk, checking them against `parts`."""
        if set(payloads) != set(self.parts):
            raise ValueError(
                f"sample {self.key!r}: members {sorted(payloads)} do not match parts {sorted(self.parts)}"
            )
        for name, data in payloads.items():
            part = self.parts[name]
            if len(data) != part.bytes or sha256_hex(data) != part.sha256:
                raise ValueError(f"sample {self.key!r}: part {name!r} fails its size/SHA-256 check")
        self._payloads = dict(payloads)
        return self

    def to_json_bytes(self) -> bytes:
        data = self.model_dump(mode="json")
        data["modality"] = self.modality.value
        return (_dumps(data) + "\n").encode()

    @classmethod
    def from_json_bytes(cls, raw: bytes) -> Sample:
        return cls.model_validate_json(raw)


def _dumps(data: Any) -> str:
    import json

    return json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
