"""Codec weights as safetensors (config in the header metadata) and training checkpoints.

A codec file (`save_codec` / `load_codec`, or `codec_bytes` / `codec_from_bytes` for the
tokenizer bundle) holds every parameter and buffer (EMA codebooks, usage, restart counts) and
the JSON config under the metadata key ``vla_codec_config``; nothing is unpickled on load.

A training checkpoint is a folder ``step_XXXXXXXX/``::

    model.safetensors       codec weights + config (a codec file)
    optimizer.safetensors   optimizer tensors ("state.<param>.<name>") and RNG states ("rng.*")
    state.json              step, train config, optimizer param groups and scalar state, logs

written to a temporary folder and renamed; ``latest.json`` in the run folder names the newest.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

CONFIG_KEY = "vla_codec_config"
FORMAT_KEY = "vla_codec_format"
FORMAT = "1"
LATEST = "latest.json"


class CheckpointError(ValueError):
    pass


def build_codec(config: dict):
    """Instantiate a codec from its config dict (``kind`` video | audio)."""
    from vla_tokenizers.codecs.audio import AudioCodec, AudioCodecConfig
    from vla_tokenizers.codecs.video import VideoCodec, VideoCodecConfig

    kind = config.get("kind")
    if kind == "video":
        return VideoCodec(VideoCodecConfig.from_dict(config))
    if kind == "audio":
        return AudioCodec(AudioCodecConfig.from_dict(config))
    raise CheckpointError(f"unknown codec kind {kind!r} (expected video or audio)")


def _tensors(codec) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in codec.state_dict().items()}


def codec_bytes(codec) -> bytes:
    """The codec as safetensors bytes (for `TokenizerBundle.files()`)."""
    from safetensors.torch import save

    meta = {CONFIG_KEY: json.dumps(codec.config.to_dict()), FORMAT_KEY: FORMAT}
    return save(_tensors(codec), metadata=meta)


def _from_tensors(tensors: dict, meta: dict | None, where: str):
    if not meta or CONFIG_KEY not in meta:
        raise CheckpointError(f"{where}: no {CONFIG_KEY} in the safetensors metadata")
    try:
        config = json.loads(meta[CONFIG_KEY])
        if not isinstance(config, dict):
            raise ValueError("config is not a JSON object")
        with torch.device("meta"):  # shapes only: a config cannot make us allocate a huge model
            skeleton = build_codec(config)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{where}: invalid codec config ({e})") from None
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    if expected != got:
        diff = sorted(set(expected.items()) ^ set(got.items()))[:3]
        raise CheckpointError(
            f"{where}: weights do not match the config (first differences {diff})"
        )
    codec = build_codec(config)
    codec.load_state_dict(tensors)
    return codec.eval()


def codec_from_bytes(data: bytes, where: str = "<bytes>"):
    """Inverse of `codec_bytes`; `where` names the source in errors."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        tensors = load(data)
        meta = _metadata_from_bytes(data)
    except (SafetensorError, ValueError) as e:
        raise CheckpointError(f"{where}: not a safetensors file ({e})") from None
    return _from_tensors(tensors, meta, where)


def _metadata_from_bytes(data: bytes) -> dict:
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    return header.get("__metadata__", {})


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_codec(codec, path: str | os.PathLike) -> Path:
    """Write the codec's safetensors file atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, codec_bytes(codec))
    return path


def load_codec(path: str | os.PathLike):
    """Load a codec file (or the model of a checkpoint folder / run folder) in eval mode."""
    path = Path(path)
    if path.is_dir():
        path = resolve_checkpoint(path) / "model.safetensors"
    if not path.is_file():
        raise CheckpointError(f"{path}: no such codec file")
    return codec_from_bytes(path.read_bytes(), str(path))


# ---- training checkpoints ------------------------------------------------------------------


def _split_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for pid, entry in state["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _join_optimizer(tensors: dict[str, torch.Tensor], info: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("state."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    for pid, entry in info.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(entry)
    return {"state": state, "param_groups": info["param_groups"]}


def rng_states() -> dict[str, torch.Tensor]:
    states = {"rng.cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            states[f"rng.cuda.{i}"] = s
    return states


def set_rng_states(tensors: dict[str, torch.Tensor]) -> None:
    if "rng.cpu" in tensors:
        torch.set_rng_state(tensors["rng.cpu"].to(torch.uint8))
    cuda = sorted(k for k in tensors if k.startswith("rng.cuda."))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k].to(torch.uint8) for k in cuda])


def save_checkpoint(run_dir: str | os.PathLike, step: int, codec, optimizer, state: dict) -> Path:
    """Write ``run_dir/step_XXXXXXXX/`` atomically and point ``latest.json`` at it."""
    from safetensors.torch import save

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:08d}"
    final = run_dir / name
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=run_dir))
    try:
        opt_tensors, opt_info = _split_optimizer(optimizer.state_dict())
        (tmp / "model.safetensors").write_bytes(codec_bytes(codec))
        (tmp / "optimizer.safetensors").write_bytes(save(opt_tensors | rng_states()))
        body = dict(state, step=step, optimizer=opt_info, codec_config=codec.config.to_dict())
        (tmp / "state.json").write_text(json.dumps(body, indent=1) + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _write_atomic(
        run_dir / LATEST, (json.dumps({"checkpoint": name, "step": step}) + "\n").encode()
    )
    return final


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint folder, or the latest one of a run folder."""
    path = Path(path)
    if (path / "state.json").is_file():
        return path
    latest = path / LATEST
    if not latest.is_file():
        raise CheckpointError(f"{path}: neither a checkpoint (no state.json) nor a run ({LATEST})")
    try:
        name = json.loads(latest.read_text())["checkpoint"]
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{latest}: unreadable ({e})") from None
    if "/" in name or name.startswith("."):
        raise CheckpointError(f"{latest}: invalid checkpoint name {name!r}")
    return path / name


def load_checkpoint(path: str | os.PathLike) -> tuple[object, dict, dict[str, torch.Tensor]]:
    """(codec, state.json contents, optimizer + RNG tensors) of a checkpoint or run folder."""
    from safetensors.torch import load_file

    ckpt = resolve_checkpoint(path)
    try:
        state = json.loads((ckpt / "state.json").read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{ckpt / 'state.json'}: unreadable ({e})") from None
    codec = load_codec(ckpt / "model.safetensors")
    try:
        tensors = load_file(ckpt / "optimizer.safetensors")
    except Exception as e:  # safetensors raises its own error types for bad files
        raise CheckpointError(f"{ckpt / 'optimizer.safetensors'}: unreadable ({e})") from None
    return codec, state, tensors


def restore_optimizer(optimizer, state: dict, tensors: dict[str, torch.Tensor]) -> None:
    optimizer.load_state_dict(_join_optimizer(tensors, state["optimizer"]))


# ---- tokenizer bundle --------------------------------------------------------------------------

BUNDLE_FILES = {"video": "vision_codec.safetensors", "audio": "audio_codec.safetensors"}


def bundle_codec_files(*codecs) -> dict[str, bytes]:
    """{bundle file name: safetensors bytes} for `TokenizerBundle.files()` (so the manifest's
    SHA-256 covers them): ``vision_codec.safetensors`` and/or ``audio_codec.safetensors``."""
    files: dict[str, bytes] = {}
    for c in codecs:
        name = BUNDLE_FILES[c.config.kind]
        if name in files:
            raise CheckpointError(f"two {c.config.kind} codecs for one bundle")
        files[name] = codec_bytes(c)
    return files


def load_bundle_codecs(path: str | os.PathLike) -> dict[str, object]:
    """{kind: codec} of the codec files present in a bundle folder (checksums are the bundle's
    job: call this after `TokenizerBundle.load` verified the manifest)."""
    path = Path(path)
    out = {}
    for kind, name in BUNDLE_FILES.items():
        f = path / name
        if f.is_file():
            codec = codec_from_bytes(f.read_bytes(), str(f))
            if codec.config.kind != kind:
                raise CheckpointError(f"{f}: holds a {codec.config.kind} codec, expected {kind}")
            out[kind] = codec
    return out
