"""On-disk layout of a dataset folder and the per-task commit state that makes stages resumable.

```
DIR/shards/shard-<task>-SSSSSS.tar           kept samples (WebDataset)
DIR/quarantine/quarantine-<task>-SSSSSS.tar  rejected records: error JSON + original bytes
DIR/ledger/<task>.jsonl                      one ledger line per input record
DIR/state/<task>.json                        commit point of the task (atomic rewrite)
```

A task commits by finalising its open shards, appending its pending ledger lines, then
rewriting its state file, which is the single commit point: on restart, shards the state
does not list are removed and the ledger is cut back to the size the state recorded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel, Field

from vla_data.shards import ShardInfo


class FileProgress(BaseModel):
    """How far a task got through one input file."""

    fingerprint: str
    inputs: int = 0
    done: bool = False


class TaskState(BaseModel):
    """Committed progress of one task: its shards, input files and ledger size."""

    task: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    stage: str
    shards: list[ShardInfo] = Field(default_factory=list)
    quarantine: list[ShardInfo] = Field(default_factory=list)
    files: dict[str, FileProgress] = Field(default_factory=dict)
    ledger_bytes: int = 0
    metrics: dict[str, float] = Field(default_factory=dict)

    @property
    def inputs(self) -> int:
        return sum(f.inputs for f in self.files.values())


class DatasetLayout:
    """Paths inside a dataset folder."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.shards = self.root / "shards"
        self.quarantine = self.root / "quarantine"
        self.ledger = self.root / "ledger"
        self.state = self.root / "state"

    def create(self) -> DatasetLayout:
        for d in (self.shards, self.quarantine, self.ledger, self.state):
            d.mkdir(parents=True, exist_ok=True)
        return self

    def ledger_file(self, task: str) -> Path:
        return self.ledger / f"{task}.jsonl"

    def state_file(self, task: str) -> Path:
        return self.state / f"{task}.json"

    def load_state(self, task: str, stage: str) -> TaskState:
        path = self.state_file(task)
        if not path.exists():
            return TaskState(task=task, stage=stage)
        return TaskState.model_validate_json(path.read_bytes())

    def save_state(self, state: TaskState) -> None:
        write_atomic(self.state_file(state.task), state.model_dump_json(indent=1).encode())

    def states(self) -> list[TaskState]:
        if not self.state.is_dir():
            return []
        return [
            TaskState.model_validate_json(p.read_bytes())
            for p in sorted(self.state.glob("t*.json"))
        ]

    def shard_paths(self) -> list[Path]:
        return sorted(self.shards.glob("*.tar"))

    def quarantine_paths(self) -> list[Path]:
        return sorted(self.quarantine.glob("*.tar"))


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write a file under a temporary name, fsync, then rename over the target."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: str | os.PathLike, obj: object) -> None:
    write_atomic(
        path, (json.dumps(obj, indent=1, ensure_ascii=False, sort_keys=True) + "\n").encode()
    )


def pin_settings(layout: DatasetLayout, filename: str, settings: dict) -> None:
    """Record the settings a folder is written with; refuse to resume it with other ones."""
    path = layout.root / filename
    settings = json.loads(json.dumps(settings, sort_keys=True, default=str))
    if not path.exists():
        write_json_atomic(path, settings)
        return
    before = json.loads(path.read_text())
    if before != settings:
        changed = sorted(
            k for k in settings.keys() | before.keys() if before.get(k) != settings.get(k)
        )
        raise ValueError(
            f"{layout.root} was written with other settings ({', '.join(changed)}); use a new folder"
        )
