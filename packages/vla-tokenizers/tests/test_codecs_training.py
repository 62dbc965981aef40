"""Checkpoints (safetensors + JSON), exact resume, codec files, and the `codec` CLI end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from vla_tokenizers.codecs.checkpoint import (
    CheckpointError,
    codec_bytes,
    codec_from_bytes,
    load_codec,
    save_codec,
)
from vla_tokenizers.codecs.cli import codec as codec_cli
from vla_tokenizers.codecs.data import load_clips_npz, render_drive_clips, save_clips_npz
from vla_tokenizers.codecs.presets import codec_config
from vla_tokenizers.codecs.training import ClipBatches, TrainConfig, Trainer
from vla_tokenizers.codecs.video import VideoCodec

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def clips():
    return render_drive_clips([0], frames=4, width=32, height=32, cameras=["front", "back"])


def _trainer(clips, run_dir, steps=6, preset="tiny"):
    torch.manual_seed(0)
    codec = VideoCodec(codec_config("video", preset, dead_threshold=0.5, ema_decay=0.6))
    cfg = TrainConfig(steps=steps, batch_size=2, lr=2e-3, warmup=2, log_every=2)
    return Trainer(
        codec,
        ClipBatches(clips["frames"], 2, 4, (24, 24), seed=1),
        cfg,
        run_dir,
        log=lambda s: None,
    )


@pytest.mark.parametrize("preset", ["tiny", "tiny-rvq"])
def test_resume_gives_identical_weights(clips, tmp_path, preset):
    straight = _trainer(clips, tmp_path / "a", preset=preset)
    straight.train()
    first = _trainer(clips, tmp_path / "b", preset=preset)
    first.train(steps=3)
    resumed = _trainer(clips, tmp_path / "b", preset=preset)
    assert resumed.resume() == 3
    resumed.train()
    a, b = straight.codec.state_dict(), resumed.codec.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # dead-code restarts happened, so the RNG state really was part of the resume
    assert int(a["quantizer.restarts" if preset == "tiny" else "quantizer.layers.0.restarts"]) > 0
    files = sorted(p.name for p in (tmp_path / "b" / "step_00000006").iterdir())
    assert files == ["model.safetensors", "optimizer.safetensors", "state.json"]
    state = json.loads((tmp_path / "b" / "step_00000006" / "state.json").read_text())
    assert state["step"] == 6 and state["codec_config"]["quantizer"] == preset.split("-")[
        -1
    ].replace("tiny", "vq")


def test_resume_refuses_another_config(clips, tmp_path):
    t = _trainer(clips, tmp_path / "run", steps=2)
    t.train()
    torch.manual_seed(0)
    other = Trainer(
        VideoCodec(codec_config("video", "tiny", codebook_size=32)),
        ClipBatches(clips["frames"], 2, 4),
        TrainConfig(steps=2),
        tmp_path / "run",
    )
    with pytest.raises(ValueError, match="config differs"):
        other.resume()


def test_codec_file_round_trip_and_errors(tmp_path):
    torch.manual_seed(0)
    codec = VideoCodec(codec_config("video", "tiny-fsq")).eval()
    again = codec_from_bytes(codec_bytes(codec))
    x = torch.rand(1, 3, 4, 16, 16) * 2 - 1
    assert torch.equal(codec.encode(x), again.encode(x))
    path = save_codec(codec, tmp_path / "c.safetensors")
    assert torch.equal(load_codec(path).encode(x), codec.encode(x))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        load_codec(bad)
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, tmp_path / "noconfig.safetensors")
    with pytest.raises(CheckpointError, match="noconfig.safetensors.*vla_codec_config"):
        load_codec(tmp_path / "noconfig.safetensors")
    with pytest.raises(CheckpointError, match="neither a checkpoint"):
        load_codec(tmp_path)


def test_npz_round_trip_and_validation(clips, tmp_path):
    path = save_clips_npz(tmp_path / "c.npz", clips)
    back = load_clips_npz(path)
    assert np.array_equal(back["frames"], clips["frames"])
    assert back["camera"].tolist() == ["front", "back"]
    np.savez(tmp_path / "f.npz", frames=np.zeros((2, 4, 8, 8, 3), dtype=np.float32))
    from vla_tokenizers.codecs.data import CodecDataError

    with pytest.raises(CodecDataError, match="f.npz.*uint8"):
        load_clips_npz(tmp_path / "f.npz")


def test_cli_clips_train_resume_eval_export(tmp_path):
    runner = CliRunner()
    npz = tmp_path / "clips.npz"
    r = runner.invoke(
        codec_cli,
        ["clips", str(npz), "--seeds", "0-1", "--frames", "4", "--size", "32", "--camera", "front"],
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.output.strip().splitlines()[-1])["shape"] == [2, 4, 32, 32, 3]
    run = tmp_path / "run"
    args = [
        "train",
        "video",
        str(run),
        "--data",
        str(npz),
        "--steps",
        "4",
        "--batch-size",
        "2",
        "--log-every",
        "2",
    ]
    r = runner.invoke(codec_cli, args)
    assert r.exit_code == 0, r.output
    r = runner.invoke(codec_cli, args)  # same folder again without --resume
    assert r.exit_code != 0 and "--resume" in r.output
    r = runner.invoke(codec_cli, [*args[:-4], "--steps", "6", "--resume"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output.strip().splitlines()[-1])["step"] == 6
    out = tmp_path / "eval"
    r = runner.invoke(
        codec_cli, ["eval", str(run), "--data", str(npz), "--out", str(out), "--pngs", "1"]
    )
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert report["clips"] == 2 and 0 < report["psnr_db"] < 60 and -1 <= report["ssim"] <= 1
    assert 0 < report["codebook_usage"] <= 1 and report["perplexity"] >= 1
    assert (out / "video_000.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = runner.invoke(codec_cli, ["export", str(run), str(tmp_path / "v.safetensors")])
    assert r.exit_code == 0 and load_codec(tmp_path / "v.safetensors").config.kind == "video"
    r = runner.invoke(
        codec_cli, ["train", "video", str(tmp_path / "x"), "--preset", "huge", "--data", str(npz)]
    )
    assert r.exit_code != 0 and "unknown video preset" in r.output


def test_cli_audio_train_and_eval(tmp_path):
    runner = CliRunner()
    run = tmp_path / "arun"
    r = runner.invoke(
        codec_cli,
        [
            "train",
            "audio",
            str(run),
            "--synthetic",
            "2",
            "--seconds",
            "0.2",
            "--steps",
            "2",
            "--batch-size",
            "2",
        ],
    )
    assert r.exit_code == 0, r.output
    out = tmp_path / "aeval"
    r = runner.invoke(
        codec_cli, ["eval", str(run), "--synthetic", "1", "--out", str(out), "--pngs", "1"]
    )
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert report["frame_rate_hz"] == 50.0 and report["levels"] == 3
    assert report["mel_distance"] > 0 and np.isfinite(report["si_snr_db"])
    assert (out / "audio_000.png").is_file() and (out / "report.json").is_file()


def test_bundle_codec_files_round_trip(tmp_path):
    from vla_tokenizers.codecs.audio import AudioCodec
    from vla_tokenizers.codecs.checkpoint import bundle_codec_files, load_bundle_codecs

    torch.manual_seed(0)
    video = VideoCodec(codec_config("video", "tiny")).eval()
    audio = AudioCodec(codec_config("audio", "tiny")).eval()
    files = bundle_codec_files(video, audio)
    assert sorted(files) == ["audio_codec.safetensors", "vision_codec.safetensors"]
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    loaded = load_bundle_codecs(tmp_path)
    x = torch.rand(1, 3, 4, 16, 16) * 2 - 1
    assert torch.equal(loaded["video"].encode(x), video.encode(x))
    with pytest.raises(CheckpointError, match="two video codecs"):
        bundle_codec_files(video, video)
    (tmp_path / "audio_codec.safetensors").write_bytes(files["vision_codec.safetensors"])
    with pytest.raises(CheckpointError, match="audio_codec.safetensors: holds a video codec"):
        load_bundle_codecs(tmp_path)


def test_batches_are_a_function_of_the_step(clips):
    from vla_tokenizers.codecs.training import AudioBatches

    b = ClipBatches(clips["frames"], 3, 2, (16, 16), seed=5)
    assert b(7).shape == (3, 3, 2, 16, 16)
    assert torch.equal(b(7), b(7)) and not torch.equal(b(7), b(8))
    still = ClipBatches(clips["frames"], 4, 4, seed=0, still_prob=1.0)(0)
    assert torch.equal(still[:, :, 1:], still[:, :, :1].expand_as(still[:, :, 1:]))
    a = AudioBatches([np.ones(100, dtype=np.float32)], 2, 150, seed=0)
    x = a(0)
    assert x.shape == (2, 1, 150) and float(x[0, 0, 99]) == 1.0 and float(x[0, 0, 100]) == 0.0


def test_lr_schedule():
    cfg = TrainConfig(steps=100, lr=1.0, warmup=10, min_lr_ratio=0.1)
    assert cfg.lr_at(0) == pytest.approx(0.1)
    assert cfg.lr_at(10) == pytest.approx(1.0)
    assert cfg.lr_at(55) == pytest.approx(0.55)
    assert cfg.lr_at(100) == pytest.approx(0.1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from vla_data.corpus import generate_corpus

    root = tmp_path_factory.mktemp("corpus") / "c"
    generate_corpus(root)
    return root


def test_cli_eval_on_sample_corpus_images_and_audio(corpus, tmp_path):
    runner = CliRunner()
    torch.manual_seed(0)
    save_codec(VideoCodec(codec_config("video", "tiny")), tmp_path / "v.safetensors")
    r = runner.invoke(
        codec_cli,
        [
            "eval",
            str(tmp_path / "v.safetensors"),
            "--images",
            str(corpus / "images"),
            "--image-size",
            "32",
        ],
    )
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    n_images = sum(
        1 for f in (corpus / "images").rglob("*") if f.suffix in (".jpg", ".png", ".webp")
    )
    assert report["clips"] == n_images and report["frames"] == 1 and report["codes_per_clip"] == 16
    from vla_tokenizers.codecs.audio import AudioCodec

    save_codec(AudioCodec(codec_config("audio", "tiny")), tmp_path / "a.safetensors")
    r = runner.invoke(
        codec_cli, ["eval", str(tmp_path / "a.safetensors"), "--data", str(corpus / "audio")]
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["clips"] == 5
    bad = tmp_path / "bad.flac"
    bad.write_bytes(b"fLaC not really")
    r = runner.invoke(codec_cli, ["eval", str(tmp_path / "a.safetensors"), "--data", str(bad)])
    assert r.exit_code != 0 and "bad.flac" in r.output and "Traceback" not in r.output


def test_codec_file_with_mismatched_weights_is_refused(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    codec = VideoCodec(codec_config("video", "tiny"))
    tensors = {k: v.contiguous() for k, v in codec.state_dict().items()}
    meta = {
        "vla_codec_config": json.dumps(codec_config("video", "tiny", codebook_size=32).to_dict())
    }
    save_file(tensors, tmp_path / "m.safetensors", metadata=meta)
    with pytest.raises(CheckpointError, match="m.safetensors: weights do not match"):
        load_codec(tmp_path / "m.safetensors")
    meta = {"vla_codec_config": json.dumps({"kind": "video", "channels": "many"})}
    save_file(tensors, tmp_path / "c.safetensors", metadata=meta)
    with pytest.raises(CheckpointError, match="c.safetensors: invalid codec config"):
        load_codec(tmp_path / "c.safetensors")
