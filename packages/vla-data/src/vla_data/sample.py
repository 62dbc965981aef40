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


class _Meta(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TextMeta(_Meta):
    modality: Literal["text"] = "text"
    chars: int = Field(ge=0)
    language: str | None = None
    ipa_fallback: bool = False


class AudioMeta(_Meta):
    modality: Literal["audio"] = "audio"
    sample_rate: int = Field(gt=0)
    channels: int = Field(gt=0)
    duration_s: float = Field(gt=0)
    source_sample_rate: int = Field(gt=0)
    source_codec: str
    transcript: str | None = None


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


Meta = Annotated[TextMeta | AudioMeta | ImageMeta | ActionsMeta, Field(discriminator="modality")]


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
