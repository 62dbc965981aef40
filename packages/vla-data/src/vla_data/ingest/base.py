"""What every reader shares: the per-file context and the `Bad` record for quarantine."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import PurePosixPath
from typing import Any

from vla_data.ingest.config import IngestConfig
from vla_data.sample import Sample, sanitize_key

_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]+")


@dataclass(frozen=True)
class Bad:
    """An input record that failed: its id, the cause and its original bytes."""

    id: str
    locator: str
    error: str
    raw: bytes


Record = Sample | Bad


@dataclass(frozen=True)
class FileContext:
    """One input file being read: its URL, a short stable tag for keys, and the config."""

    url: str
    config: IngestConfig

    @cached_property
    def name(self) -> str:
        return PurePosixPath(self.url.split("://", 1)[-1]).name

    @cached_property
    def tag(self) -> str:
        stem = _UNSAFE.sub("_", self.name.split(".", 1)[0]).strip("_")[:40] or "f"
        return f"{stem}-{hashlib.sha1(self.url.encode()).hexdigest()[:12]}"

    def key(self, record_id: str) -> str:
        """Dataset-unique key: the file tag, plus the record id for multi-record files."""
        return self.tag if record_id == self.name else sanitize_key(f"{self.tag}-{record_id}")

    def locate(self, locator: str) -> str:
        return f"{self.url}#{locator}" if locator else self.url

    def bad(self, record_id: str, locator: str, error: str, raw: bytes = b"") -> Bad:
        return Bad(id=record_id, locator=locator, error=error, raw=raw)

    def sample(
        self,
        record_id: str,
        locator: str,
        meta: Any,
        payloads: dict[str, bytes],
        *,
        license: str | None = None,
        created: datetime | None = None,
    ) -> Sample:
        return Sample.create(
            id=record_id,
            key=self.key(record_id),
            source=self.locate(locator),
            license=license or self.config.default_license,
            created=created,
            lineage=[self.url],
            meta=meta,
            payloads=payloads,
        )
