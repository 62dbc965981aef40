"""`vla-train`: run, resume, describe or launch a training run; verify a checkpoint."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from vla_train.config import TrainConfig, TrainConfigError


def _fail(msg: str) -> None:
    click.echo(f"error: {msg}", err=True)
    sys.exit(2)


def _load(config: Path) -> TrainConfig:
    try:
        return TrainConfig.load(config)
    except TrainConfigError as e:
        _fail(str(e))
        raise  # unreachable


def _run(cfg: TrainConfig, resume: bool, steps: int | None) -> None:
    from vla_train.checkpoint import CheckpointError
    from vla_train.data import DataError
    from vla_train.monitor import TrainingStopped

    if cfg.engine == "megatron":
        from vla_train.megatron_engine import MegatronTrainer as Trainer
    else:
        from vla_train.engine import Trainer

    try:
        trainer = Trainer(cfg, resume=resume)
        start = trainer.step
        result = trainer.train(stop_after=steps)
    except TrainingStopped as e:
        _fail(str(e))
    except (TrainConfigError, DataError, CheckpointError) as e:
        _fail(str(e))
    if trainer.is_main:
        summary = {
            "out_dir": str(cfg.out_dir),
            "start_step": start,
            "steps_done": result.steps_done,
            "first_loss": result.losses[0] if result.losses else None,
            "last_loss": result.losses[-1] if result.losses else None,
            "skipped_steps": len(result.skipped),
            "tokens_per_s": round(result.tokens_per_s, 1),
            "checkpoint": str(result.final_checkpoint) if result.final_checkpoint else None,
        }
        click.echo(json.dumps(summary))


@click.group()
@click.version_option(package_name="vla-train")
def main() -> None:
    """Train VLA models: the torch engine (CPU/dev, DDP) and the megatron engine (GPUs)."""


@main.command()
@click.option("--config", "config", type=click.Path(path_type=Path, dir_okay=False), required=True)
@click.option("--steps", type=int, default=None, help="stop after this many steps (default: all)")
@click.option("--overwrite", is_flag=True, help="start over even if out_dir has checkpoints")
def run(config: Path, steps: int | None, overwrite: bool) -> None:
    """Start the run described by a TOML config (under torchrun for DDP)."""
    from vla_train.checkpoint import latest_checkpoint

    cfg = _load(config)
    found = latest_checkpoint(cfg.out_dir / "checkpoints")
    if found is not None and not overwrite:
        _fail(f"{found} exists: use `vla-train resume --config {config}` or --overwrite")
    if found is not None:
        import shutil

        shutil.rmtree(cfg.out_dir / "checkpoints")
    _run(cfg, resume=False, steps=steps)


@main.command()
@click.option("--config", "config", type=click.Path(path_type=Path, dir_okay=False), default=None)
@click.option(
    "--out-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="a run folder (its train_config.json is used)",
)
@click.option("--steps", type=int, default=None, help="stop after this many more steps")
def resume(config: Path | None, out_dir: Path | None, steps: int | None) -> None:
    """Continue a run from its latest checkpoint (exactly: same losses as uninterrupted)."""
    if (config is None) == (out_dir is None):
        _fail("give --config or --out-dir")
    if config is not None:
        cfg = _load(config)
    else:
        path = out_dir / "train_config.json"
        if not path.is_file():
            _fail(f"{out_dir}: no train_config.json (not a vla-train run folder)")
        cfg = _load(path)
    _run(cfg, resume=True, steps=steps)


@main.command()
@click.option("--config", "config", type=click.Path(path_type=Path, dir_okay=False), required=True)
@click.option("--data/--no-data", default=True, help="also open the token shards")
def describe(config: Path, data: bool) -> None:
    """Print the model, batch arithmetic, schedule and data mixture of a config as JSON."""
    from vla_model import count_parameters, flops_per_token

    cfg = _load(config)
    try:
        mcfg = cfg.resolve_model()
    except (TrainConfigError, ValueError) as e:
        _fail(f"{config}: {e}")
    params = count_parameters(mcfg)
    out: dict = {
        "engine": cfg.engine,
        "model": mcfg.name,
        "params": params.as_dict(),
        "flops_per_token": flops_per_token(mcfg, cfg.seq_length).as_dict(),
        "seq_length": cfg.seq_length,
        "micro_batch_size": cfg.micro_batch_size,
        "global_batch_size": cfg.global_batch_size,
        "tokens_per_step": cfg.tokens_per_step,
        "train_steps": cfg.schedule.train_steps,
        "train_tokens": cfg.schedule.train_steps * cfg.tokens_per_step,
    }
    if data:
        from vla_train.data import DataError, discover_buckets, plan_stages

        try:
            buckets = discover_buckets(cfg.data.shards)
            stages = plan_stages(cfg, buckets)
        except (DataError, ValueError) as e:
            _fail(str(e))
        out["buckets"] = {
            k: {"documents": b.documents, "tokens": b.tokens} for k, b in buckets.items()
        }
        out["stages"] = [
            {"name": s.name, "samples": s.samples, "weights": s.weights} for s in stages
        ]
    click.echo(json.dumps(out, indent=1))


@main.command()
@click.option(
    "--shards", type=click.Path(path_type=Path, file_okay=False, exists=True), required=True
)
@click.option("--out-dir", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--steps", type=int, default=300, show_default=True)
@click.option("--eod-id", type=int, default=None, help="default: the layout's <|endoftext|>")
@click.option("--vocab-layout", type=click.Path(path_type=Path, dir_okay=False), default=None)
def tiny(
    shards: Path, out_dir: Path, steps: int, eod_id: int | None, vocab_layout: Path | None
) -> None:
    """Train the tiny preset on a folder of token shards (a few hundred steps on CPU)."""
    from vla_train.quick import tiny_config

    try:
        cfg = tiny_config(shards, out_dir, steps, eod_id=eod_id, vocab_layout=vocab_layout)
    except (TrainConfigError, ValueError, KeyError) as e:
        _fail(str(e))
    if cfg.data.eod_id is None:
        _fail(f"{shards}: no vocab_layout.json found; pass --eod-id")
    _run(cfg, resume=True, steps=None)


@main.command()
@click.argument("checkpoint", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--jobs", type=int, default=4, show_default=True, help="files hashed at once")
def verify(checkpoint: Path, jobs: int) -> None:
    """Check a checkpoint folder's files against the SHA-256 digests in its manifest (after a
    copy between clusters, before a long resume); prints JSON, exits 1 if any file differs."""
    from vla_train.checkpoint import CheckpointError, verify_checkpoint

    try:
        report = verify_checkpoint(checkpoint, jobs)
    except CheckpointError as e:
        _fail(str(e))
    click.echo(json.dumps(report, indent=1))
    if not report["ok"]:
        sys.exit(1)


def _register_launch() -> None:
    from vla_train.launch import launch_command

    main.add_command(launch_command, "launch")


_register_launch()
