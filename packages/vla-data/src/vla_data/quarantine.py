"""Quarantine records: an input that failed, with its error and its original bytes.

Written to quarantine shards as `<key>.json` (this model) and `<key>.bin` (the payload, cut
at `MAX_QUARANTINE_BYTES` with `truncated` set), so nothing is lost silently and a fix can be
replayed from the quarantine alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from vla_data.sample import utcnow
from vla_data.shards import ShardWriter, iter_groups

MAX_QUARANTINE_BYTES = 64 << 20


class QuarantineRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str
    id: str
    source: str
    stage: str
    error: str
    bytes: int
    truncated: bool = False
    time: datetime = Field(default_factory=utcnow)


def write_quarantine(writer: ShardWriter, record: QuarantineRecord, payload: bytes) -> str:
    """Write one quarantine record; returns the shard name."""
    if len(payload) > MAX_QUARANTINE_BYTES:
        payload = payload[:MAX_QUARANTINE_BYTES]
        record = record.model_copy(update={"truncated": True})
    return writer.write_group(
        record.key, {"json": record.model_dump_json().encode(), "bin": payload}
    )


def iter_quarantine(path: str | Path) -> Iterator[tuple[QuarantineRecord, bytes]]:
    """Read back a quarantine shard as (record, original bytes)."""
    for _key, members in iter_groups(path):
        yield QuarantineRecord.model_validate_json(members["json"]), members.get("bin", b"")
