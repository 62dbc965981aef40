"""Train a small audio codec (16 kHz, residual VQ, multi-scale mel loss) on speech on one GPU
and report held-out quality as JSON.

Two steps, because the GPU machine has neither espeak-ng (`espeakng-loader`), PyAV nor
pydantic; it needs only torch, numpy and safetensors:

1. Here (vla-data installed): speak vla-data's corpus sentences (`vla_data.corpus.SENTENCES`,
   11 languages) with espeak-ng (`vla_data.speech.synth`) in several voice variants, speaking
   rates and pitches, resampled to 16 kHz, into a clip archive::

       .venv/bin/python packages/vla-tokenizers/gpu/train_audio_codec.py make-npz \\
           .codec_data/speech16k.npz

   Held out: the last sentence of every language (texts the codec never hears in training),
   spoken in `--holdout-variants` voices. The archive holds the clips as int16 in one array
   (``audio`` + ``offsets``), with ``language``, ``sentence``, ``voice`` and ``holdout`` per
   clip (``.codec_data/`` is ignored by git; it is carried to the device).

2. On the device (Python 3.12, torch + numpy + safetensors), with ``.codec_data`` carried::

       PYTHONPATH=packages/vla-tokenizers/src python3 \\
           packages/vla-tokenizers/gpu/train_audio_codec.py train \\
           --npz .codec_data/speech16k.npz --out "$OUT" --minutes 7

   It trains the ``small`` preset (16 kHz, hop 320 = 50 Hz frames, residual VQ 8 x 1024 =
   4 kbit/s; ``--preset`` and ``--set KEY=VALUE`` change it) on random 1 s crops for the time
   budget (the cosine schedule is fitted to the measured step rate), evaluates every held-out
   clip (mel distance, SI-SNR, codebook usage per level, also with only the first 1/2/4 RVQ
   levels), prints one JSON object and writes into ``--out``: ``result.json``,
   ``train_log.jsonl``, the weights as ``audio_codec.safetensors`` split into <= 15 MiB parts
   (``cat audio_codec.safetensors.part* > audio_codec.safetensors``; SHA-256 in result.json),
   a held-out clip (left) and its reconstruction (right) as one 16-bit stereo WAV, and a log-mel
   PNG when matplotlib is there (at most 7 files for the small preset's 40 MiB of weights).

``train --cpu-smoke`` runs 3 CPU steps of the ``tiny`` preset on a few clips and evaluates two
held-out clips (checks the script end to end; seconds).
The codec modules are imported without ``vla_tokenizers/__init__`` (which needs pydantic,
tokenizers and phonemizer): only torch, numpy and safetensors are needed.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import sys
import time
import types
import wave
from pathlib import Path

PART_BYTES = 15 * 1024 * 1024
RATE = 16_000


def _import_codecs():
    """`vla_tokenizers.codecs` without running the package's heavy `__init__` if it fails."""
    try:
        return importlib.import_module("vla_tokenizers.codecs")
    except ImportError:
        pass
    for name in [
        m for m in sys.modules if m == "vla_tokenizers" or m.startswith("vla_tokenizers.")
    ]:
        del sys.modules[name]
    for entry in sys.path:
        pkg_dir = Path(entry or ".") / "vla_tokenizers"
        if (pkg_dir / "codecs" / "__init__.py").is_file():
            stub = types.ModuleType("vla_tokenizers")
            stub.__path__ = [str(pkg_dir)]
            sys.modules["vla_tokenizers"] = stub
            return importlib.import_module("vla_tokenizers.codecs")
    sys.exit("cannot find vla_tokenizers/codecs: put packages/vla-tokenizers/src on PYTHONPATH")


# ---- make-npz (here) ------------------------------------------------------------------------

# espeak-ng voice variants (male/female timbres); combined with random rate and pitch
VARIANTS = ("", "+m1", "+m3", "+m5", "+m7", "+f1", "+f2", "+f3", "+f4", "+f5")


def make_npz(args) -> None:
    import numpy as np

    from vla_data.corpus import SENTENCES
    from vla_data.speech.audio import resample
    from vla_data.speech.ipa import VOICES
    from vla_data.speech.synth import SynthError, synthesize

    def voice_for(lang: str) -> str | None:
        """The first espeak-ng voice name that speaks `lang` (phonemizer and synth differ)."""
        for name in dict.fromkeys((VOICES.get(lang, lang), lang, lang.split("-")[0])):
            try:
                synthesize("a", name)
                return name
            except SynthError:
                continue
        return None

    rng = np.random.default_rng(args.seed)
    chunks, meta = [], {"language": [], "sentence": [], "voice": [], "holdout": []}
    skipped = []
    t0 = time.perf_counter()
    for lang, sentences in SENTENCES.items():
        voice = voice_for(lang)
        if voice is None:
            skipped.append(lang)
            continue
        for k, text in enumerate(sentences):
            held = k == len(sentences) - 1  # the last sentence of each language: unseen text
            n = args.holdout_variants if held else args.variants
            for variant in rng.permutation(VARIANTS)[:n]:
                pcm, rate = synthesize(
                    text,
                    voice + str(variant),
                    words_per_minute=int(rng.integers(130, 200)),
                    pitch=int(rng.integers(25, 80)),
                )
                x = resample(pcm.astype(np.float32) / 32768.0, rate, RATE)
                pad = np.zeros(int(0.1 * RATE), np.float32)
                x = np.concatenate([pad, x, pad])
                chunks.append(np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16))
                meta["language"].append(lang)
                meta["sentence"].append(k)
                meta["voice"].append(voice + str(variant))
                meta["holdout"].append(held)
        print(f"spoke {lang}: {len(sentences)} sentences", file=sys.stderr, flush=True)
    offsets = np.concatenate([[0], np.cumsum([len(c) for c in chunks])]).astype(np.int64)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        np.savez_compressed(
            f,
            audio=np.concatenate(chunks),
            offsets=offsets,
            sample_rate=np.int64(RATE),
            language=np.array(meta["language"]),
            sentence=np.array(meta["sentence"], dtype=np.int64),
            voice=np.array(meta["voice"]),
            holdout=np.array(meta["holdout"], dtype=bool),
        )
    os.replace(tmp, out)
    held = np.array(meta["holdout"])
    seconds = np.diff(offsets) / RATE
    print(
        json.dumps(
            {
                "out": str(out),
                "bytes": out.stat().st_size,
                "clips": len(chunks),
                "train_clips": int((~held).sum()),
                "holdout_clips": int(held.sum()),
                "train_seconds": round(float(seconds[~held].sum()), 1),
                "holdout_seconds": round(float(seconds[held].sum()), 1),
                "languages": len(SENTENCES) - len(skipped),
                "languages_without_voice": skipped,
                "make_s": round(time.perf_counter() - t0, 1),
            }
        )
    )


# ---- train (device) ---------------------------------------------------------------------------


def load_npz(path) -> dict:
    """Clips as float32 waveforms (no pickles), split into train and held-out."""
    import numpy as np

    with np.load(path, allow_pickle=False) as z:
        audio, offsets = z["audio"], z["offsets"]
        if int(z["sample_rate"]) != RATE:
            sys.exit(f"{path}: clips are at {int(z['sample_rate'])} Hz, this trains at {RATE}")
        held = z["holdout"].astype(bool)
        langs, voices = z["language"], z["voice"]
    waves = [
        audio[offsets[i] : offsets[i + 1]].astype(np.float32) / 32768.0 for i in range(len(held))
    ]
    return {
        "train": [w for w, h in zip(waves, held, strict=True) if not h],
        "heldout": [w for w, h in zip(waves, held, strict=True) if h],
        "heldout_ids": [f"{lg}/{v}" for lg, v, h in zip(langs, voices, held, strict=True) if h],
    }


def _write_weights(codec, out: Path, checkpoint) -> dict:
    data = checkpoint.codec_bytes(codec)
    parts = []
    for i in range(0, len(data), PART_BYTES):
        name = f"audio_codec.safetensors.part{i // PART_BYTES:02d}"
        (out / name).write_bytes(data[i : i + PART_BYTES])
        parts.append(name)
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "parts": parts}


def _write_wav(path: Path, channels, rate: int) -> None:
    """16-bit WAV with one channel per waveform (equal lengths)."""
    import numpy as np

    x = np.stack([np.asarray(c, dtype=np.float32) for c in channels], axis=1)
    pcm = np.clip(np.round(x * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(x.shape[1])
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.tobytes())


def _levels_sweep(codec, waves, device) -> dict:
    """Mean mel distance and SI-SNR of the held-out clips decoded from the first k levels."""
    import numpy as np
    import torch

    from vla_tokenizers.codecs.metrics import mel_distance, si_snr

    out = {}
    depth = codec.config.levels
    for k in sorted({1, 2, 4, depth} & set(range(1, depth + 1))):
        mels, snrs = [], []
        with torch.no_grad():
            for w in waves:
                x = torch.as_tensor(w).view(1, 1, -1).to(device)
                recon, _ = codec(x, levels=k)
                mels.append(mel_distance(recon[:, 0], x[:, 0], codec.config.sample_rate))
                snrs.append(float(si_snr(recon[:, 0], x[:, 0])))
        out[str(k)] = {
            "mel_distance": round(float(np.mean(mels)), 4),
            "si_snr_db": round(float(np.mean(snrs)), 3),
            "bitrate_bps": codec.config.frame_rate * k * np.log2(codec.config.codebook_size),
        }
    return out


def train(args) -> None:
    import torch

    _import_codecs()
    from vla_tokenizers.codecs import checkpoint
    from vla_tokenizers.codecs.evaluate import evaluate_audio
    from vla_tokenizers.codecs.presets import codec_config
    from vla_tokenizers.codecs.training import AudioBatches, TrainConfig, Trainer

    smoke = args.cpu_smoke
    device = "cpu" if smoke else ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    data = load_npz(args.npz)
    train_waves, held_waves, held_ids = data["train"], data["heldout"], data["heldout_ids"]
    if smoke:
        train_waves = train_waves[:4]
        held_waves, held_ids = [w[:RATE] for w in held_waves[:2]], held_ids[:2]
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            overrides[key] = json.loads(value)
        except ValueError:
            overrides[key] = value
    cfg = codec_config("audio", "tiny" if smoke else args.preset, **overrides)
    if cfg.sample_rate != RATE:
        sys.exit(f"the clips are at {RATE} Hz; the codec config wants {cfg.sample_rate}")
    torch.manual_seed(args.seed)
    codec = checkpoint.build_codec(cfg.to_dict())
    batch = 2 if smoke else args.batch_size
    crop = int((0.5 if smoke else args.crop_seconds) * RATE)
    batches = AudioBatches(train_waves, batch, crop, seed=args.seed)
    tcfg = TrainConfig(
        steps=3 if smoke else 10**9, batch_size=batch, lr=args.lr,
        warmup=1 if smoke else args.warmup, seed=args.seed, log_every=1 if smoke else 100,
    )  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "train_log.jsonl"
    log_path.write_text("")

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)
        with open(log_path, "a") as f:
            f.write(line + "\n")

    trainer = Trainer(codec, batches, tcfg, device=device, log=log)
    t0 = time.perf_counter()
    if smoke:
        trainer.train()
    else:
        # fit the cosine schedule to the measured step rate, then train to the time budget
        budget, probe = args.minutes * 60, 40
        trainer.train(steps=10)
        if device == "cuda":
            torch.cuda.synchronize()
        t1 = time.perf_counter()
        trainer.train(steps=10 + probe)
        if device == "cuda":
            torch.cuda.synchronize()
        rate = probe / (time.perf_counter() - t1)
        left = budget - (time.perf_counter() - t0)
        trainer.config.steps = trainer.step + max(int(rate * left * 0.97), 1)
        trainer.train(time_limit_s=left)
    train_s = time.perf_counter() - t0

    codec.eval()
    heldout, recons = evaluate_audio(codec, held_waves, device=device)
    train_eval = evaluate_audio(codec, train_waves[: len(held_waves)], device=device)[0]
    params = sum(p.numel() for p in codec.parameters())
    result = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "torch": torch.__version__,
        "npz": str(args.npz),
        "codec_config": cfg.to_dict(),
        "parameters": params,
        "frame_rate_hz": cfg.frame_rate,
        "tokens_per_second": cfg.frame_rate * cfg.levels,
        "bitrate_bps": heldout["bitrate_bps"],
        "train": {
            "clips": len(train_waves),
            "seconds_of_audio": round(sum(len(w) for w in train_waves) / RATE, 1),
            "crop_s": crop / RATE,
            "batch_size": batch,
            "steps": trainer.step,
            "seconds": round(train_s, 1),
            "steps_per_s": round(trainer.step / max(train_s, 1e-9), 2),
            "last_log": trainer.history[-1] if trainer.history else None,
        },
        "heldout": heldout,
        "heldout_by_levels": _levels_sweep(codec, held_waves, device),
        "train_subset": train_eval,
    }
    result["weights"] = _write_weights(codec.cpu(), out, checkpoint)
    i = 0
    # left: the original, right: the reconstruction (one file: $OUT brings back <= 8 files)
    _write_wav(out / "heldout_000_lr.wav", [held_waves[i][: len(recons[i])], recons[i]], RATE)
    result["examples"] = {"heldout_000": held_ids[i]}
    try:
        from vla_tokenizers.codecs.evaluate import write_audio_png

        write_audio_png(
            out / "heldout_000.png", held_waves[i][: len(recons[i])], recons[i], RATE,
            f"held-out {held_ids[i]}",
        )  # fmt: skip
    except ImportError:
        result["pngs"] = "matplotlib missing"
    (out / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make-npz", help="speak the corpus sentences into a clip archive (here)")
    m.add_argument("out", nargs="?", default=".codec_data/speech16k.npz")
    m.add_argument("--variants", type=int, default=8, help="voices per training sentence")
    m.add_argument("--holdout-variants", type=int, default=3, help="voices per held-out one")
    m.add_argument("--seed", type=int, default=0)
    t = sub.add_parser("train", help="train and evaluate (device)")
    t.add_argument("--npz", required=True)
    t.add_argument("--out", default=os.environ.get("OUT", "codec_out"))
    t.add_argument("--minutes", type=float, default=7.0, help="training time budget (<= 8)")
    t.add_argument("--preset", default="small")
    t.add_argument("--set", action="append", default=[], help="codec setting KEY=VALUE")
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--crop-seconds", type=float, default=1.0)
    t.add_argument("--lr", type=float, default=5e-4)
    t.add_argument("--warmup", type=int, default=200)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--cpu-smoke", action="store_true", help="3 CPU steps of the tiny preset")
    args = p.parse_args(argv)
    if args.cmd == "make-npz":
        make_npz(args)
    else:
        if args.minutes > 8:
            p.error("--minutes must be at most 8")
        train(args)


if __name__ == "__main__":
    main()
