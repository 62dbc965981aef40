"""`vla-tok codec ...`: make simulator clips, train, evaluate and export the learned codecs.

Registered in `vla_tokenizers.cli` with ``main.add_command(codec)``; runs on its own as
``python -m vla_tokenizers.codecs.cli``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click


def _fail(message: str):
    raise click.ClickException(message)


def _seeds(text: str) -> list[int]:
    """'0-5,9' -> [0, 1, 2, 3, 4, 5, 9]."""
    out: list[int] = []
    try:
        for part in text.split(","):
            if "-" in part:
                a, b = part.split("-", 1)
                out += range(int(a), int(b) + 1)
            elif part.strip():
                out.append(int(part))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a seed list like 0-5,9") from None
    return out


def _overrides(items: tuple[str, ...]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _device(name: str | None) -> str:
    import torch

    if name:
        return name
    return "cuda" if torch.cuda.is_available() else "cpu"


def _video_frames(data: tuple[str, ...], dataset: tuple[str, ...], size: int, images=()):
    """uint8 (N, T, H, W, 3): clip archives (.npz); dataset or file images as one-frame clips."""
    import numpy as np

    from vla_tokenizers.codecs.data import load_clips_npz, load_dataset_images, load_image_files

    parts = [load_clips_npz(p)["frames"] for p in data]
    if dataset:
        parts.append(load_dataset_images(dataset, size)[:, None])
    if images:
        parts.append(load_image_files(images, size)[:, None])
    if not parts:
        _fail("give clips with --data X.npz (see `codec clips`), or --images / --dataset")
    shapes = {p.shape[1:] for p in parts}
    if len(shapes) > 1:
        _fail(f"inputs have different clip shapes: {sorted(shapes)}")
    return np.concatenate(parts)


def _audio_waves(data, dataset, synthetic: int, seconds: float, rate: int, seed: int):
    from vla_tokenizers.codecs.data import load_audio_files, load_dataset_audio, synthetic_speech

    waves = []
    if data:
        waves += load_audio_files(data, rate)
    if dataset:
        waves += load_dataset_audio(dataset, rate)
    if synthetic:
        waves += synthetic_speech(synthetic, seconds, rate, seed)
    if not waves:
        _fail("give audio with --data FILES/DIRS, --dataset DATASET or --synthetic N")
    return waves


@click.group("codec", context_settings={"help_option_names": ["-h", "--help"]})
def codec() -> None:
    """Learned image/video (VQ | FSQ | RVQ) and audio (RVQ) codecs: data, train, eval, export."""


@codec.command("clips")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--seeds", default="0-7", show_default=True, help="Drive seeds, e.g. 0-7,12.")
@click.option("--frames", default=8, show_default=True, help="Frames per clip (12 fps).")
@click.option("--size", default=128, show_default=True, help="Square frame size (pixels).")
@click.option("--clips-per-camera", default=1, show_default=True)
@click.option("--camera", "cameras", multiple=True, help="Cameras (default: all six).")
def clips_cmd(out, seeds, frames, size, clips_per_camera, cameras) -> None:
    """Render simulator drives into a clip archive OUT (.npz) for training or evaluation."""
    from vla_tokenizers.codecs.data import CodecDataError, render_drive_clips, save_clips_npz

    seed_list = _seeds(seeds)
    arrays: dict = {}
    try:
        with click.progressbar(seed_list, label="render", file=sys.stderr) as bar:
            parts = [
                render_drive_clips([s], frames, size, size, cameras or None, clips_per_camera)
                for s in bar
            ]
    except CodecDataError as e:
        _fail(str(e))
    import numpy as np

    for key in parts[0]:
        arrays[key] = np.concatenate([p[key] for p in parts])
    save_clips_npz(out, arrays)
    click.echo(
        json.dumps(
            {"out": out, "clips": int(len(arrays["frames"])), "shape": list(arrays["frames"].shape)}
        )
    )


@codec.command("train")
@click.argument("kind", type=click.Choice(["video", "audio"]))
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--preset", default="tiny", show_default=True, help="tiny | small | ... (presets.py)")
@click.option("--set", "settings", multiple=True, help="Codec setting KEY=VALUE (JSON value).")
@click.option(
    "--data",
    multiple=True,
    type=click.Path(exists=True),
    help="Clip .npz (video) or audio files/folders.",
)
@click.option(
    "--dataset",
    multiple=True,
    type=click.Path(exists=True),
    help="vla-data dataset folder or .tar shard.",
)
@click.option(
    "--images", multiple=True, type=click.Path(exists=True), help="Video: image files/folders."
)
@click.option("--synthetic", default=0, show_default=True, help="Audio: N synthetic speech clips.")
@click.option("--steps", default=200, show_default=True)
@click.option("--batch-size", default=8, show_default=True)
@click.option("--lr", default=3e-4, show_default=True)
@click.option("--warmup", default=20, show_default=True)
@click.option("--frames", default=4, show_default=True, help="Video: frames per training clip.")
@click.option("--crop", default=0, show_default=True, help="Video: square crop (0: full frame).")
@click.option(
    "--image-size", default=128, show_default=True, help="Video: size of --dataset images."
)
@click.option("--seconds", default=1.0, show_default=True, help="Audio: training crop length.")
@click.option("--seed", default=0, show_default=True)
@click.option("--log-every", default=10, show_default=True)
@click.option("--checkpoint-every", default=0, show_default=True, help="0: only at the end.")
@click.option("--resume", is_flag=True, help="Continue RUN_DIR from its latest checkpoint.")
@click.option("--device", default=None, help="cpu | cuda (default: cuda if available).")
@click.option("--time-limit", default=0.0, show_default=True, help="Stop after this many seconds.")
def train_cmd(
    kind, run_dir, preset, settings, data, dataset, images, synthetic, steps, batch_size, lr, warmup,
    frames, crop, image_size, seconds, seed, log_every, checkpoint_every, resume, device,
    time_limit,
) -> None:  # fmt: skip
    """Train a codec into RUN_DIR (checkpoints step_*/ and latest.json); progress on stderr."""
    import torch

    from vla_tokenizers.codecs.checkpoint import CheckpointError, build_codec
    from vla_tokenizers.codecs.data import CodecDataError
    from vla_tokenizers.codecs.presets import codec_config
    from vla_tokenizers.codecs.training import AudioBatches, ClipBatches, TrainConfig, Trainer

    try:
        cfg = codec_config(kind, preset, **_overrides(settings))
        torch.manual_seed(seed)
        model = build_codec(cfg.to_dict())
        if kind == "video":
            clips = _video_frames(data, dataset, image_size, images)
            use = min(frames, clips.shape[1])
            batches = ClipBatches(clips, batch_size, use, (crop, crop) if crop else None, seed)
        else:
            waves = _audio_waves(
                data, dataset, synthetic, max(seconds * 2, 2.0), cfg.sample_rate, seed
            )
            batches = AudioBatches(waves, batch_size, int(seconds * cfg.sample_rate), seed)
        tcfg = TrainConfig(
            steps=steps, batch_size=batch_size, lr=lr, warmup=warmup, seed=seed,
            log_every=log_every, checkpoint_every=checkpoint_every,
        )  # fmt: skip
        trainer = Trainer(model, batches, tcfg, run_dir, _device(device))
        if resume:
            trainer.resume()
        elif (Path(run_dir) / "latest.json").exists():
            _fail(f"{run_dir} already holds a run (pass --resume to continue it)")
        history = trainer.train(time_limit_s=time_limit or None)
    except (ValueError, CheckpointError, CodecDataError) as e:
        _fail(str(e))
    final = history[-1] if history else {}
    click.echo(json.dumps({"run_dir": run_dir, "step": trainer.step, "last": final}))


@codec.command("eval")
@click.argument("checkpoint", type=click.Path(exists=True))
@click.option(
    "--data",
    multiple=True,
    type=click.Path(exists=True),
    help="Clip .npz (video) or audio files/folders.",
)
@click.option(
    "--dataset",
    multiple=True,
    type=click.Path(exists=True),
    help="vla-data dataset folder or .tar shard.",
)
@click.option(
    "--synthetic", default=0, show_default=True, help="Audio: N synthetic clips (seed --seed)."
)
@click.option(
    "--seed",
    default=1000,
    show_default=True,
    help="Seed of synthetic audio (keep apart from training).",
)
@click.option("--image-size", default=128, show_default=True)
@click.option(
    "--images",
    multiple=True,
    type=click.Path(exists=True),
    help="Video codec: image files/folders.",
)
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False), help="Write report.json and PNGs here."
)
@click.option("--pngs", default=3, show_default=True, help="How many examples to plot.")
@click.option("--device", default=None)
def eval_cmd(
    checkpoint, data, dataset, synthetic, seed, image_size, images, out_dir, pngs, device
) -> None:
    """Evaluate a codec (file, checkpoint or run folder) on held-out data; prints JSON."""
    from vla_tokenizers.codecs.checkpoint import CheckpointError, load_codec
    from vla_tokenizers.codecs.data import CodecDataError
    from vla_tokenizers.codecs.evaluate import (
        evaluate_audio,
        evaluate_video,
        write_audio_png,
        write_video_png,
    )

    try:
        model = load_codec(checkpoint)
        dev = _device(device)
        out = Path(out_dir) if out_dir else None
        if out:
            out.mkdir(parents=True, exist_ok=True)
        if model.config.kind == "video":
            frames = _video_frames(data, dataset, image_size, images)
            metrics, recon = evaluate_video(model, frames, device=dev)
            for i in range(min(pngs, len(frames)) if out else 0):
                write_video_png(out / f"video_{i:03d}.png", frames[i], recon[i], f"clip {i}")
        else:
            sr = model.config.sample_rate
            waves = _audio_waves(data, dataset, synthetic, 3.0, sr, seed)
            metrics, recon = evaluate_audio(model, waves, device=dev)
            for i in range(min(pngs, len(waves)) if out else 0):
                write_audio_png(out / f"audio_{i:03d}.png", waves[i][: len(recon[i])], recon[i], sr)
    except (ValueError, CheckpointError, CodecDataError) as e:
        _fail(str(e))
    metrics = {"checkpoint": str(checkpoint), "kind": model.config.kind} | metrics
    if out:
        (out / "report.json").write_text(json.dumps(metrics, indent=1) + "\n")
    click.echo(json.dumps(metrics, indent=1))


@codec.command("export")
@click.argument("checkpoint", type=click.Path(exists=True))
@click.argument("out", type=click.Path(dir_okay=False))
def export_cmd(checkpoint, out) -> None:
    """Write the codec of a checkpoint/run as one safetensors file (weights + config)."""
    from vla_tokenizers.codecs.checkpoint import CheckpointError, load_codec, save_codec

    try:
        save_codec(load_codec(checkpoint), out)
    except CheckpointError as e:
        _fail(str(e))
    click.echo(json.dumps({"out": out}))


if __name__ == "__main__":
    codec()
