"""`dataset_stats()`: counts, bytes and audio hours by source, license and modality."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from vla_data.dataset import DatasetLayout
from vla_data.ledger import read_ledger
from vla_data.sample import AudioMeta
from vla_data.shards import iter_samples


def source_root(source: str) -> str:
    """The file part of a sample's source URI (drops the `#record` locator)."""
    return source.partition("#")[0]


def dataset_stats(root: str | Path, by_source_limit: int = 50) -> dict:
    """Aggregate over the kept shards plus the ledger's fate counts and quarantine causes."""
    layout = DatasetLayout(root)
    samples, payload_bytes, audio_seconds = 0, 0, 0.0
    by_modality: dict[str, Counter] = defaultdict(Counter)
    by_license: Counter = Counter()
    by_source: Counter = Counter()
    for path in layout.shard_paths():
        for s in iter_samples(path):
            size = sum(p.bytes for p in s.parts.values())
            samples += 1
            payload_bytes += size
            by_modality[s.modality.value]["samples"] += 1
            by_modality[s.modality.value]["bytes"] += size
            by_license[s.license] += 1
            by_source[source_root(s.source)] += 1
            if isinstance(s.meta, AudioMeta):
                audio_seconds += s.meta.duration_s
    status: Counter = Counter()
    errors: Counter = Counter()
    if layout.ledger.is_dir():
        for e in read_ledger(layout.ledger):
            status[e.status.value] += 1
            if e.error:
                errors[e.error.split(":")[0]] += 1
    return {
        "root": str(root),
        "samples": samples,
        "payload_bytes": payload_bytes,
        "shard_bytes": sum(p.stat().st_size for p in layout.shard_paths()),
        "shards": len(layout.shard_paths()),
        "audio_hours": round(audio_seconds / 3600, 6),
        "by_modality": {k: dict(v) for k, v in sorted(by_modality.items())},
        "by_license": dict(by_license.most_common()),
        "by_source": dict(by_source.most_common(by_source_limit)),
        "ledger": dict(status),
        "quarantine_causes": dict(errors.most_common()),
    }
