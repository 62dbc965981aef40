"""`IngestConfig`: every knob of `vla-data ingest`, validated."""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field

from vla_data.rig.config import RigSyncConfig
from vla_data.shards import DEFAULT_MAX_BYTES, DEFAULT_MAX_COUNT


class IngestConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    stage: str = "ingest"
    text_field: str = "text"
    id_field: str = "id"
    license_field: str = "license"
    created_field: str = "created"
    default_license: str = Field("unknown", min_length=1)
    audio_rate: int = Field(16_000, ge=8_000, le=192_000)
    audio_channels: int | None = Field(None, ge=1, le=8, description="None keeps the source's")
    strip_gps: bool = True
    action_dims: list[str] | None = Field(
        None, description="names for plain (unstructured) .npy columns"
    )
    rig: RigSyncConfig = Field(
        default_factory=RigSyncConfig, description="driving-rig sync (rig.json may override)"
    )
    transcript_language: str | None = Field(
        None, description="language of transcripts whose sidecar names none ('auto': language ID)"
    )
    ipa: bool = Field(True, description="add the IPA layer to transcripts (phonemizer/espeak-ng)")
    speech_checks: bool = Field(True, description="VAD, loudness, clipping and silence checks")
    blender_timeout_s: float = Field(60.0, gt=0, le=3600, description="wall clock per script")
    blender_cpu_s: int = Field(60, ge=1, le=3600, description="CPU seconds per script")
    blender_memory_mb: int = Field(4096, ge=256, description="address space per script (MiB)")
    max_shard_count: int = Field(DEFAULT_MAX_COUNT, ge=1)
    max_shard_bytes: int = Field(DEFAULT_MAX_BYTES, ge=1)
    tasks: int = Field(
        8, ge=1, le=100_000, description="output partitions; fix it for reproducible shards"
    )
    workers: int = Field(default_factory=lambda: max(1, min(8, os.cpu_count() or 1)), ge=1)
