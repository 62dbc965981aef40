"""`run_pipeline()`: apply a stage cascade to every shard of a dataset, in parallel, resumably.

Each input shard is one task of the output folder: its samples flow through the stages in
order; the first stage that drops a sample settles it as filtered (stage, reason), a stage that
raises quarantines it, and survivors are written to the task's shards. Every ledger line
carries the scores measured on the way. Tasks commit at shard rollovers and resume
record-exact, like ingest; per-stage seconds and counters are kept in the task state.
"""

from __future__ import annotations

import io
import tarfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vla_data.dataset import DatasetLayout, FileProgress, pin_settings, write_json_atomic
from vla_data.ledger import Status, read_ledger
from vla_data.parallel import add, run_jobs
from vla_data.pipeline.config import PipelineConfig
from vla_data.pipeline.stage import Stage
from vla_data.sample import Sample
from vla_data.shards import ShardError, file_sha256, iter_groups, sample_from_group
from vla_data.task_writer import TaskWriter


@dataclass
class PipelineReport:
    out: str
    seconds: float
    inputs: int
    kept: int
    filtered: int
    quarantined: int
    stages: list[dict]


def _group_bytes(key: str, members: dict[str, bytes]) -> bytes:
    """A record's members as a small tar, so a quarantined record keeps all its parts."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for part, data in members.items():
            info = tarfile.TarInfo(f"{key}.{part}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _cascade(stages: list[Stage], sample: Sample, score_all: bool, metrics: Counter):
    """Run the stages; returns (final sample, verdict, scores, cluster).

    The verdict is (stage, reason) of the first drop, or None; the cluster is the last one a
    stage named (dedup stages name the representative of the sample's duplicate cluster).
    """
    current, verdict, scores, cluster = sample, None, {}, None
    for stage in stages:
        if not stage.applies_to(current):
            continue
        start = time.perf_counter()
        outcome = stage.apply(current)
        metrics[f"{stage.name}.seconds"] += time.perf_counter() - start
        scores.update({f"{stage.name}.{k}": float(v) for k, v in outcome.scores.items()})
        for name, value in outcome.counters.items():
            metrics[f"{stage.name}.{name}"] += value
        if verdict is None and outcome.cluster is not None:
            cluster = outcome.cluster
        if verdict is None and not outcome.keep:
            verdict = (stage.name, outcome.reason or "dropped")
            if not score_all:
                break
        elif verdict is None and outcome.sample is not None:
            current = outcome.sample
    return current, verdict, scores, cluster


def run_shard(shard: str, out: str, config: PipelineConfig, counter=None) -> int:
    """Process one input shard as task `<shard stem>` of `out`; returns records processed."""
    path = Path(shard)
    task = path.stem.removeprefix("shard-")
    writer = TaskWriter(
        DatasetLayout(out),
        task,
        config.name,
        max_count=config.max_shard_count,
        max_bytes=config.max_shard_bytes,
    )
    progress = writer.state.files.get(str(path))
    if progress is not None and progress.done:
        return 0
    fingerprint = file_sha256(path)
    if progress is not None and progress.fingerprint != fingerprint:
        raise ValueError(
            f"{path} changed since this pipeline started on it; use a new output folder"
        )
    progress = writer.state.files.setdefault(str(path), FileProgress(fingerprint=fingerprint))
    stages = config.build()
    for stage in stages:
        stage.begin_shard(path)
    metrics = Counter(writer.state.metrics)
    done = 0
    try:
        for index, (key, members) in enumerate(iter_groups(path)):
            if index < progress.inputs:
                continue
            try:
                sample = sample_from_group(path, key, members)
                final, verdict, scores, cluster = _cascade(
                    stages, sample, config.score_all, metrics
                )
            except ShardError as e:
                error = str(e)
            except Exception as e:  # a stage failing on one record must not end the batch
                error = f"{type(e).__name__} in a stage: {e}"
            else:
                error = None
            if error is not None:
                source = f"{path}#{key}"
                writer.reject(
                    writer.unique_key(key), key, source, error, _group_bytes(key, members)
                )
            elif verdict is None:
                writer.keep(final, scores, cluster=cluster)
            else:
                writer.drop(sample, verdict[0], verdict[1], cluster=cluster, scores=scores)
            progress.inputs += 1
            writer.state.metrics = dict(metrics)
            done += 1
        progress.done = True
        writer.state.metrics = dict(metrics)
        writer.commit()
    except ShardError as e:  # the input shard itself is unreadable past this point
        writer.reject(writer.unique_key(f"{task}-rest"), f"{task}-rest", str(path), str(e), b"")
        progress.inputs += 1
        progress.done = True
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    add(counter, 1)
    return done


def stage_stats(out: str | Path, config: PipelineConfig) -> list[dict]:
    """Per stage, in cascade order: in / kept / dropped by reason / seconds / counters."""
    layout = DatasetLayout(out)
    metrics: Counter = Counter()
    for state in layout.states():
        metrics.update(state.metrics)
    dropped: dict[str, Counter] = {s.stage_name: Counter() for s in config.stages}
    total = quarantined = 0
    for entry in read_ledger(layout.ledger):
        total += 1
        if entry.status is Status.FILTERED and entry.stage in dropped:
            dropped[entry.stage][entry.reason] += 1
        elif entry.status is Status.QUARANTINED:
            quarantined += 1
    remaining, rows = total - quarantined, []
    for spec in config.stages:
        name = spec.stage_name
        n_dropped = sum(dropped[name].values())
        counters = {
            k.split(".", 1)[1]: int(v) if float(v).is_integer() else v
            for k, v in metrics.items()
            if k.startswith(f"{name}.") and not k.endswith(".seconds")
        }
        rows.append(
            {
                "stage": name,
                "type": spec.type,
                "in": remaining,
                "kept": remaining - n_dropped,
                "dropped": dict(dropped[name].most_common()),
                "seconds": round(metrics.get(f"{name}.seconds", 0.0), 4),
                "counters": counters,
            }
        )
        remaining -= n_dropped
    return rows


def run_pipeline(
    src: str | Path,
    out: str | Path,
    config: PipelineConfig,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> PipelineReport:
    """Filter/transform the kept shards of dataset folder `src` into dataset folder `out`."""
    start = time.perf_counter()
    shards = DatasetLayout(src).shard_paths()
    if not shards:
        raise ValueError(f"{src}: no shards to process (expected {src}/shards/*.tar)")
    layout = DatasetLayout(out).create()
    pin_settings(layout, "pipeline_config.json", config.model_dump())
    config.build()
    jobs = [(str(p), str(layout.root), config) for p in shards]
    run_jobs(run_shard, jobs, workers, progress, total=len(jobs))
    rows = stage_stats(layout.root, config)
    statuses = Counter(e.status for e in read_ledger(layout.ledger))
    report = PipelineReport(
        out=str(layout.root),
        seconds=time.perf_counter() - start,
        inputs=sum(statuses.values()),
        kept=statuses[Status.KEPT],
        filtered=statuses[Status.FILTERED],
        quarantined=statuses[Status.QUARANTINED],
        stages=rows,
    )
    write_json_atomic(layout.root / "stats.json", report.__dict__)
    return report
