"""Torch-engine checkpoints: atomic folders of safetensors + JSON, keep-last-N, no pickle.

```
CKPT/step-00000100/manifest.json          CheckpointManifest: step, data position, schedule,
                                          optimizer hyper-parameters, guard state, file list
CKPT/step-00000100/model.safetensors      weights and persistent buffers
CKPT/step-00000100/optimizer.safetensors  AdamW state tensors, `state/<param index>/<name>`
CKPT/step-00000100/rng-rank<r>.safetensors  torch CPU (+ CUDA) generator states of every rank
```
A checkpoint is written under `.tmp-step-...` and renamed into place, so a folder named
`step-*` is always complete; older ones beyond `keep_last` are removed afterwards.
Everything loaded back is safetensors or JSON: nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from safetensors.torch import load_file, save_file

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; names the folder and the cause."""


class CheckpointManifest(BaseModel):
    """What a torch-engine checkpoint holds besides its tensors."""

    model_config = ConfigDict(extra="forbid")

    format_version: int = FORMAT_VERSION
    engine: str = "torch"
    step: int = Field(ge=0, description="optimizer steps done")
    consumed_samples: int = Field(ge=0, description="data position: samples consumed")
    tokens_seen: int = Field(ge=0)
    world_size: int = Field(ge=1)
    model: dict[str, Any] = Field(description="ModelConfig as JSON")
    param_groups: list[dict[str, Any]] = Field(description="optimizer hyper-parameters")
    trainer_state: dict[str, Any] = Field(default_factory=dict, description="guards etc.")
    config_digest: str = ""
    files: dict[str, str] = Field(default_factory=dict, description="file -> SHA-256")


def step_dir(root: Path, step: int) -> Path:
    return Path(root) / f"step-{step:08d}"


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoint folders under `root`, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step-*") if (p / MANIFEST).is_file())


def latest_checkpoint(root: Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1] if found else None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict, list[dict]]:
    """Split an optimizer state dict into flat tensors and JSON-able param groups."""
    sd = optimizer.state_dict()
    tensors = {}
    for idx, state in sd["state"].items():
        for name, value in state.items():
            if not isinstance(value, torch.Tensor):
                value = torch.tensor(value)
            tensors[f"state/{idx}/{name}"] = value.detach().cpu().contiguous()
    return tensors, sd["param_groups"]


def load_optimizer_tensors(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list[dict]
) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        _, idx, name = key.split("/", 2)
        state.setdefault(int(idx), {})[name] = value
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in groups]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def rng_tensors() -> dict[str, torch.Tensor]:
    out = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["torch_cuda"] = torch.cuda.get_rng_state()
    return out


def restore_rng(tensors: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    if "torch_cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["torch_cuda"])


def save_checkpoint(
    root: Path,
    manifest: CheckpointManifest,
    model_state: dict[str, torch.Tensor],
    optimizer_state: dict[str, torch.Tensor],
    rng_states: list[dict[str, torch.Tensor]],
    keep_last: int,
) -> Path:
    """Write one checkpoint atomically (one process: the caller gathers rank RNG states)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = step_dir(root, manifest.step)
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    files = {
        "model.safetensors": {k: v.detach().cpu().contiguous() for k, v in model_state.items()},
        "optimizer.safetensors": optimizer_state,
    }
    for rank, states in enumerate(rng_states):
        files[f"rng-rank{rank}.safetensors"] = states
    digests = {}
    for name, tensors in files.items():
        save_file(
            tensors, str(tmp / name), metadata={"format": "vla-train", "step": str(manifest.step)}
        )
        _fsync(tmp / name)
        digests[name] = _sha256(tmp / name)
    manifest = manifest.model_copy(update={"files": digests})
    (tmp / MANIFEST).write_text(manifest.model_dump_json(indent=1) + "\n")
    _fsync(tmp / MANIFEST)
    if final.exists():  # the same step again (e.g. after a resume): replace it
        old = root / f".old-{final.name}-{os.getpid()}"
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old)
    else:
        os.rename(tmp, final)
    _fsync(root)
    for stale in list_checkpoints(root)[:-keep_last]:
        shutil.rmtree(stale, ignore_errors=True)
    return final


def remove_partial(root: Path) -> None:
    """Delete temporary folders left by a run killed while saving."""
    for p in Path(root).glob(".tmp-step-*"):
        shutil.rmtree(p, ignore_errors=True)
    for p in Path(root).glob(".old-step-*"):
        shutil.rmtree(p, ignore_errors=True)


def read_manifest(path: Path) -> CheckpointManifest:
    """The manifest of checkpoint folder `path`; `CheckpointError` when absent or invalid."""
    mpath = Path(path) / MANIFEST
    try:
        return CheckpointManifest.model_validate_json(mpath.read_bytes())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no {MANIFEST}") from None
    except ValidationError as e:
        raise CheckpointError(f"{mpath}: invalid manifest: {e.errors()[0]['msg']}") from None


def verify_checkpoint(path: Path, jobs: int = 4) -> dict[str, Any]:
    """Check every file of a checkpoint folder (either engine) against its manifest, hashing
    `jobs` files at once: `{"checkpoint", "step", "engine", "files", "bytes", "missing",
    "differ", "ok"}`. Raises `CheckpointError` when the manifest is absent or invalid."""
    from concurrent.futures import ThreadPoolExecutor

    path = Path(path)
    m = read_manifest(path)
    present = sorted(n for n in m.files if (path / n).is_file())
    with ThreadPoolExecutor(max(1, jobs)) as pool:  # hashlib releases the GIL on large reads
        digests = dict(zip(present, pool.map(lambda n: _sha256(path / n), present), strict=True))
    missing = sorted(set(m.files) - set(present))
    differ = [n for n in present if digests[n] != m.files[n]]
    return {
        "checkpoint": str(path),
        "step": m.step,
        "engine": m.engine,
        "files": len(m.files),
        "bytes": sum((path / n).stat().st_size for n in present),
        "missing": missing,
        "differ": differ,
        "ok": not missing and not differ,
    }


class LoadedCheckpoint:
    """A verified checkpoint folder; tensors are read on demand."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        mpath = self.path / MANIFEST
        self.manifest = read_manifest(self.path)
        if self.manifest.format_version != FORMAT_VERSION:
            raise CheckpointError(
                f"{mpath}: format_version {self.manifest.format_version}, "
                f"this vla-train reads {FORMAT_VERSION}"
            )
        for name, digest in self.manifest.files.items():
            f = self.path / name
            if not f.is_file():
                raise CheckpointError(f"{self.path}: missing {name}")
            if _sha256(f) != digest:
                raise CheckpointError(f"{f}: SHA-256 differs from the manifest (corrupt file)")

    def tensors(self, name: str) -> dict[str, torch.Tensor]:
        try:
            return load_file(str(self.path / name))
        except Exception as e:
            raise CheckpointError(f"{self.path / name}: cannot read: {e}") from None

    def rng(self, rank: int) -> dict[str, torch.Tensor] | None:
        f = f"rng-rank{rank}.safetensors"
        return self.tensors(f) if (self.path / f).is_file() else None


def digest_of(obj: Any) -> str:
    """SHA-256 of a JSON-able object (config identity in the manifest)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()
