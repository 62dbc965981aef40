"""`TaskWriter`: one task's output shards, quarantine, ledger lines and commit protocol.

Used by every stage that writes a dataset folder (ingest, filter pipelines, dedup). Each
record is settled exactly once — `keep`, `drop` (filtered) or `reject` (quarantined) — and a
`commit` finalises the open shards, appends the pending ledger lines and rewrites the task's
state file, the single commit point. Opening a task rolls back whatever a crash left after its
last commit.
"""

from __future__ import annotations

import re

from vla_data.dataset import DatasetLayout, TaskState
from vla_data.ledger import LedgerEntry, LedgerWriter, Status, read_ledger
from vla_data.quarantine import QuarantineRecord, write_quarantine
from vla_data.sample import Sample
from vla_data.shards import DEFAULT_MAX_BYTES, DEFAULT_MAX_COUNT, ShardWriter


class TaskWriter:
    """Writes task `task` of a dataset folder for stage `stage`."""

    def __init__(
        self,
        layout: DatasetLayout,
        task: str,
        stage: str,
        *,
        max_count: int = DEFAULT_MAX_COUNT,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ):
        self.layout, self.task, self.stage = layout.create(), task, stage
        self.state: TaskState = layout.load_state(task, stage)
        self.ledger = LedgerWriter(layout.ledger_file(task))
        self._recover()
        exists = self.ledger.path.exists()
        self.keys: set[str] = {e.key for e in read_ledger(self.ledger.path)} if exists else set()
        limits = {"max_count": max_count, "max_bytes": max_bytes}
        self.shards = ShardWriter(
            layout.shards, f"shard-{task}", start_index=len(self.state.shards), **limits
        )
        self.quarantine = ShardWriter(
            layout.quarantine,
            f"quarantine-{task}",
            start_index=len(self.state.quarantine),
            **limits,
        )
        self.pending: list[LedgerEntry] = []

    def _recover(self) -> None:
        """Drop what a crashed run wrote after its last commit."""
        self.ledger.truncate(self.state.ledger_bytes)
        for folder, prefix, committed in (
            (self.layout.shards, "shard", self.state.shards),
            (self.layout.quarantine, "quarantine", self.state.quarantine),
        ):
            ours = re.compile(
                rf"^\.?{re.escape(prefix)}-{re.escape(self.task)}-\d{{6}}\.tar(\.tmp)?$"
            )
            names = {s.name for s in committed}
            for path in folder.iterdir():
                if (
                    ours.match(path.name)
                    and path.name.lstrip(".").removesuffix(".tmp") not in names
                ):
                    path.unlink()

    def unique_key(self, key: str) -> str:
        """`key`, or `key-2`, `key-3`, ... if this task already settled it."""
        candidate, n = key, 1
        while candidate in self.keys:
            n += 1
            candidate = f"{key}-{n}"
        return candidate

    def _settle(self, entry: LedgerEntry) -> Status:
        self.keys.add(entry.key)
        self.pending.append(entry)
        return entry.status

    def keep(
        self,
        sample: Sample,
        scores: dict[str, float] | None = None,
        *,
        cluster: str | None = None,
    ) -> Status:
        """Write the sample to an output shard (with the scores measured on the way)."""
        if self.shards.is_full():
            self.commit()
        shard = self.shards.write_sample(sample)
        return self._settle(
            LedgerEntry(
                key=sample.key,
                id=sample.id,
                source=sample.source,
                stage=self.stage,
                status=Status.KEPT,
                shard=shard,
                cluster=cluster,
                scores=scores or None,
            )
        )

    def drop(
        self,
        sample: Sample,
        stage: str,
        reason: str,
        *,
        cluster: str | None = None,
        scores: dict[str, float] | None = None,
    ) -> Status:
        """Record the sample as filtered by `stage` for `reason` (and its dedup `cluster`)."""
        return self._settle(
            LedgerEntry(
                key=sample.key,
                id=sample.id,
                source=sample.source,
                stage=stage,
                status=Status.FILTERED,
                reason=reason,
                cluster=cluster,
                scores=scores or None,
            )
        )

    def reject(self, key: str, record_id: str, source: str, error: str, raw: bytes) -> Status:
        """Quarantine a record: its error and original bytes go to a quarantine shard."""
        if self.quarantine.is_full():
            self.commit()
        record = QuarantineRecord(
            key=key, id=record_id, source=source, stage=self.stage, error=error, bytes=len(raw)
        )
        shard = write_quarantine(self.quarantine, record, raw)
        return self._settle(
            LedgerEntry(
                key=key,
                id=record_id,
                source=source,
                stage=self.stage,
                status=Status.QUARANTINED,
                error=error,
                shard=shard,
            )
        )

    def commit(self) -> None:
        """Finalise open shards, append pending ledger lines, then rewrite the state file."""
        for writer, committed in (
            (self.shards, self.state.shards),
            (self.quarantine, self.state.quarantine),
        ):
            if info := writer.finalise():
                committed.append(info)
        self.state.ledger_bytes = self.ledger.append(self.pending)
        self.pending.clear()
        self.layout.save_state(self.state)

    def abort(self) -> None:
        """Drop uncommitted shards (pending ledger lines are never written)."""
        self.shards.abort()
        self.quarantine.abort()
        self.pending.clear()
