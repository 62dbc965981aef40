"""`verify()`: check a dataset folder's accounting invariant against what is on disk.

Invariant: inputs = kept + filtered + quarantined, one ledger entry per input key; every
kept key is in exactly one shard (the one its entry names) and every shard record is a kept
key; quarantined keys are in the quarantine; committed shards exist with their SHA-256.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from vla_data.dataset import DatasetLayout
from vla_data.ledger import LedgerError, Status, read_ledger
from vla_data.shards import ShardError, file_sha256, iter_groups, sample_from_group


@dataclass
class VerifyReport:
    root: str
    inputs: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    shards: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _keys_in(paths: list[Path], report: VerifyReport, validate: bool) -> dict[str, list[str]]:
    where: dict[str, list[str]] = defaultdict(list)
    for path in paths:
        try:
            for key, members in iter_groups(path):
                where[key].append(path.name)
                if validate:
                    try:
                        sample_from_group(path, key, members)
                    except ShardError as e:
                        report.problems.append(str(e))
        except ShardError as e:
            report.problems.append(str(e))
    return where


def verify(root: str | Path) -> VerifyReport:
    """Check the invariant; `report.problems` names every discrepancy found."""
    layout = DatasetLayout(root)
    report = VerifyReport(root=str(root))
    if not layout.state.is_dir() or not layout.ledger.is_dir():
        report.problems.append(f"{root}: not a dataset folder (no state/ or ledger/)")
        return report
    states = layout.states()
    report.inputs = sum(s.inputs for s in states)

    committed = {}
    for state in states:
        for folder, infos in ((layout.shards, state.shards), (layout.quarantine, state.quarantine)):
            for info in infos:
                committed[info.name] = info
                path = folder / info.name
                if not path.exists():
                    report.problems.append(
                        f"shard {info.name} (task {state.task}) is missing from {folder}"
                    )
                elif file_sha256(path) != info.sha256:
                    report.problems.append(
                        f"shard {info.name} fails its SHA-256 check (modified after commit)"
                    )
    for path in layout.shard_paths() + layout.quarantine_paths():
        if path.name not in committed:
            report.problems.append(
                f"shard {path.name} in {path.parent} was not committed by any task"
            )

    try:
        entries = list(read_ledger(layout.ledger))
    except LedgerError as e:
        report.problems.append(str(e))
        return report
    per_key = Counter(e.key for e in entries)
    for key, n in per_key.items():
        if n > 1:
            report.problems.append(f"key {key!r} has {n} ledger entries (must end exactly once)")
    counts = Counter(e.status.value for e in entries)
    report.counts = {s.value: counts.get(s.value, 0) for s in Status}
    if len(entries) != report.inputs:
        report.problems.append(
            f"inputs ({report.inputs}) != kept + filtered + quarantined "
            f"({report.counts['kept']} + {report.counts['filtered']} + {report.counts['quarantined']} = {len(entries)})"
        )

    in_shards = _keys_in(layout.shard_paths(), report, validate=True)
    in_quarantine = _keys_in(layout.quarantine_paths(), report, validate=False)
    report.shards = len(layout.shard_paths())
    kept = {e.key: e for e in entries if e.status is Status.KEPT}
    for key, names in in_shards.items():
        if len(names) > 1:
            report.problems.append(
                f"key {key!r} appears {len(names)} times in shards {sorted(names)}"
            )
        if key not in kept:
            report.problems.append(f"key {key!r} in shard {names[0]} has no kept ledger entry")
    for key, entry in kept.items():
        names = in_shards.get(key)
        if not names:
            report.problems.append(f"kept key {key!r} is in no shard (ledger says {entry.shard})")
        elif entry.shard not in names:
            report.problems.append(
                f"kept key {key!r} is in {names} but the ledger says {entry.shard}"
            )
    for e in entries:
        if e.status is Status.QUARANTINED and e.shard and e.key not in in_quarantine:
            report.problems.append(
                f"quarantined key {e.key!r} is missing from quarantine shard {e.shard}"
            )
    return report
