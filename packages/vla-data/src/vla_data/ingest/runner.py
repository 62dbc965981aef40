"""`ingest()`: read inputs in parallel tasks into shards, quarantine and ledger, resumably.

Files are assigned to `config.tasks` tasks by a stable hash of their URL; each task owns its
shards, ledger file and state file, so tasks run in parallel without locks, and a re-run
resumes every task from its last commit (record-exact) and skips files it finished.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vla_data.dataset import DatasetLayout, FileProgress, pin_settings
from vla_data.ingest.base import Bad, FileContext
from vla_data.ingest.config import IngestConfig
from vla_data.ingest.sources import READERS, InputFile, discover
from vla_data.ledger import Status
from vla_data.parallel import add, run_jobs
from vla_data.quarantine import MAX_QUARANTINE_BYTES
from vla_data.sample import Sample
from vla_data.task_writer import TaskWriter


@dataclass
class TaskResult:
    task: int
    files: int = 0
    files_skipped: int = 0
    bytes_in: int = 0
    status: Counter = field(default_factory=Counter)
    by_kind: Counter = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)


@dataclass
class IngestReport:
    """What one `ingest()` call did (this call only; the ledger holds the whole history)."""

    out: str
    files: int
    files_skipped: int
    bytes_in: int
    seconds: float
    kept: int
    quarantined: int
    by_kind: dict[str, int]
    warnings: list[str]

    @property
    def inputs(self) -> int:
        return self.kept + self.quarantined


def task_of(url: str, tasks: int) -> int:
    return int.from_bytes(hashlib.sha1(url.encode()).digest()[:8], "big") % tasks


def _reject(writer: TaskWriter, ctx: FileContext, bad: Bad) -> Status:
    key = writer.unique_key(ctx.key(bad.id))
    return writer.reject(key, bad.id, ctx.locate(bad.locator), bad.error, bad.raw)


def _read_file(
    writer: TaskWriter, config: IngestConfig, file: InputFile, result: TaskResult
) -> None:
    ctx = FileContext(file.url, config)
    progress = writer.state.files.get(file.url)
    if progress is not None and progress.fingerprint != file.fingerprint:
        result.warnings.append(
            f"{file.url}: changed since it was ingested here; not re-read (ingest it into a new folder)"
        )
        return
    if progress is not None and progress.done:
        result.files_skipped += 1
        return
    progress = writer.state.files.setdefault(file.url, FileProgress(fingerprint=file.fingerprint))
    resume_at = progress.inputs
    index = 0

    def take(record) -> None:
        nonlocal index
        if index >= resume_at:
            if not isinstance(record, Sample):
                status = _reject(writer, ctx, record)
            elif record.key in writer.keys:
                locator = record.source.rpartition("#")[2]
                dup = Bad(
                    record.id,
                    locator,
                    f"duplicate record id {record.id!r}",
                    record.payloads.get("txt", b""),
                )
                status = _reject(writer, ctx, dup)
            else:
                status = writer.keep(record)
            progress.inputs += 1
            result.status[status] += 1
            result.by_kind[file.kind] += 1
        index += 1

    if file.suffix not in READERS:
        with file.open() as fh:
            raw = fh.read(MAX_QUARANTINE_BYTES + 1)
        take(Bad(ctx.name, "", f"unknown file type {file.suffix or '(no extension)'!r}", raw))
    else:
        reader = READERS[file.suffix][1]
        try:
            with file.open() as fh:
                for record in reader(ctx, fh):
                    take(record)
        except Exception as e:  # a reader or filesystem failure must not end the batch
            take(
                Bad(
                    f"after{index}",
                    f"after{index}",
                    f"unreadable after {index} records: {type(e).__name__}: {e}",
                    b"",
                )
            )
    progress.done = True
    result.files += 1
    result.bytes_in += file.size


def run_task(
    task: int, files: list[InputFile], root: str, config: IngestConfig, counter=None
) -> TaskResult:
    """Ingest one task's files; commits at every shard rollover and at the end."""
    layout = DatasetLayout(root)
    writer = TaskWriter(
        layout,
        f"t{task:03d}",
        config.stage,
        max_count=config.max_shard_count,
        max_bytes=config.max_shard_bytes,
    )
    result = TaskResult(task)
    try:
        for file in files:
            _read_file(writer, config, file, result)
            add(counter, file.size)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return result


def ingest(
    sources: list[str],
    out: str | Path,
    config: IngestConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> IngestReport:
    """Ingest `sources` into dataset folder `out`; re-running resumes and duplicates nothing.

    `progress(done_bytes, total_bytes)` is called as files finish.
    """
    config = config or IngestConfig()
    start = time.perf_counter()
    files = discover(sources)
    layout = DatasetLayout(out).create()
    pin_settings(layout, "ingest_config.json", config.model_dump(exclude={"workers"}))
    groups: dict[int, list[InputFile]] = {}
    for f in files:
        groups.setdefault(task_of(f.url, config.tasks), []).append(f)
    total = sum(f.size for f in files)
    jobs = [(task, group, str(layout.root), config) for task, group in sorted(groups.items())]
    results = run_jobs(run_task, jobs, config.workers, progress, total)
    status = sum((r.status for r in results), Counter())
    return IngestReport(
        out=str(layout.root),
        files=sum(r.files for r in results),
        files_skipped=sum(r.files_skipped for r in results),
        bytes_in=sum(r.bytes_in for r in results),
        seconds=time.perf_counter() - start,
        kept=status[Status.KEPT],
        quarantined=status[Status.QUARANTINED],
        by_kind=dict(sum((r.by_kind for r in results), Counter())),
        warnings=[w for r in results for w in r.warnings],
    )
