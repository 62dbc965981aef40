"""The accounting ledger: one append-only JSONL line per input record and its fate.

Every input record of a stage ends as exactly one of: kept (in a shard), filtered (by a stage,
for a reason) or quarantined (with the error, its payload kept in a quarantine shard).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vla_data.sample import utcnow


class Status(StrEnum):
    KEPT = "kept"
    FILTERED = "filtered"
    QUARANTINED = "quarantined"


class LedgerEntry(BaseModel):
    """The fate of one input record at one stage."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(min_length=1)
    id: str
    source: str
    stage: str = Field(min_length=1)
    status: Status
    reason: str | None = None
    error: str | None = None
    shard: str | None = None
    cluster: str | None = None
    scores: dict[str, float] | None = None
    time: datetime = Field(default_factory=utcnow)

    @model_validator(mode="after")
    def _check_status_fields(self) -> LedgerEntry:
        if self.status is Status.KEPT and not self.shard:
            raise ValueError("a kept entry names the shard that holds the record")
        if self.status is Status.FILTERED and not self.reason:
            raise ValueError("a filtered entry needs a reason")
        if self.status is Status.QUARANTINED and not self.error:
            raise ValueError("a quarantined entry needs an error")
        return self


class LedgerError(ValueError):
    pass


class LedgerWriter:
    """Appends entries to a JSONL file; `append` writes a batch with one write and fsync."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, entries: Iterable[LedgerEntry]) -> int:
        """Append a batch durably; returns the file's size afterwards."""
        blob = "".join(e.model_dump_json(exclude_none=True) + "\n" for e in entries).encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if blob:
                os.write(fd, blob)
                os.fsync(fd)
            return os.fstat(fd).st_size
        finally:
            os.close(fd)

    def truncate(self, size: int) -> None:
        """Roll back an uncommitted tail (after a crash) to the last committed size."""
        if self.path.exists() and self.path.stat().st_size > size:
            with open(self.path, "r+b") as f:
                f.truncate(size)
                os.fsync(f.fileno())


def read_ledger(path: str | os.PathLike) -> Iterator[LedgerEntry]:
    """Entries of one ledger file, or of every `*.jsonl` in a ledger folder (sorted)."""
    path = Path(path)
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    for file in files:
        with open(file, "rb") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield LedgerEntry.model_validate_json(line)
                except ValidationError as e:
                    raise LedgerError(
                        f"{file}:{lineno}: invalid ledger entry: {e.errors()[0]['msg']}"
                    ) from None
