"""Held-out evaluation of a codec: metrics as a JSON-ready dict, PNGs of originals vs
reconstructions (video frames) and of log-mel spectrograms (audio).

Vision: PSNR over uint8 pixels (peak 255, per clip then averaged), SSIM on [0, 1] (per frame,
averaged), codebook usage (share of codes used at least once over the set) and perplexity
(``exp`` of the code entropy), bits per pixel. Audio: mel distance (mean |log10 mel| difference,
1024-point STFT, hop 256, 80 bands), SI-SNR in dB, usage and perplexity per RVQ level, bitrate.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from vla_tokenizers.codecs.metrics import CodeCounter, mel_distance, psnr, si_snr, ssim


@torch.no_grad()
def evaluate_video(
    codec, frames: np.ndarray, batch_size: int = 8, device: str | torch.device = "cpu"
) -> tuple[dict, np.ndarray]:
    """Metrics over clips ``frames`` uint8 (N, T, H, W, 3) (T = 1: single images), and the
    reconstructions as uint8 of the same shape."""
    from vla_tokenizers.codecs.video import frames_to_tensor, tensor_to_frames

    if frames.ndim != 5 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (N, T, H, W, 3), got {frames.dtype} {frames.shape}")
    codec = codec.to(device).eval()
    q = codec.quantizer
    counter = CodeCounter(q.codebook_size, q.depth)
    psnrs, ssims, recons = [], [], []
    for i in range(0, len(frames), batch_size):
        x = frames_to_tensor(frames[i : i + batch_size]).to(device)
        recon, out = codec(x)
        counter.update(out.codes)
        rec = tensor_to_frames(recon).cpu()
        orig = torch.from_numpy(frames[i : i + batch_size])
        for a, b in zip(orig, rec, strict=True):
            psnrs.append(psnr(a.float(), b.float(), data_range=255.0))
        x01 = orig.permute(0, 4, 1, 2, 3).float() / 255
        r01 = rec.permute(0, 4, 1, 2, 3).float() / 255
        ssims += ssim(x01, r01, data_range=1.0, reduction="none").tolist()
        recons.append(rec.numpy())
    n, t, h, w, _ = frames.shape
    codes_per_clip = codec.codes_per_clip(t, h, w)
    metrics = {
        "clips": int(n),
        "frames": int(t),
        "size": [int(h), int(w)],
        "psnr_db": float(np.mean([p for p in psnrs if math.isfinite(p)] or [math.inf])),
        "ssim": float(np.mean(ssims)),
        "codes_per_clip": codes_per_clip,
        "bits_per_pixel": codes_per_clip * math.log2(q.codebook_size) / (t * h * w),
    } | counter.summary()
    return metrics, np.concatenate(recons)


@torch.no_grad()
def evaluate_audio(
    codec, waves: list[np.ndarray], device: str | torch.device = "cpu", max_seconds: float = 10.0
) -> tuple[dict, list[np.ndarray]]:
    """Metrics over mono waveforms at the codec's rate, and the reconstructions."""
    codec = codec.to(device).eval()
    cfg = codec.config
    counter = CodeCounter(cfg.codebook_size, cfg.levels)
    mels, snrs, recons, seconds = [], [], [], 0.0
    limit = int(max_seconds * cfg.sample_rate)
    for wave in waves:
        x = torch.as_tensor(np.asarray(wave, dtype=np.float32)[:limit]).view(1, 1, -1).to(device)
        recon, out = codec(x)
        counter.update(out.codes)
        mels.append(mel_distance(recon[:, 0], x[:, 0], cfg.sample_rate))
        snrs.append(float(si_snr(recon[:, 0], x[:, 0])))
        recons.append(recon[0, 0].cpu().numpy())
        seconds += x.shape[-1] / cfg.sample_rate
    metrics = {
        "clips": len(waves),
        "seconds": round(seconds, 3),
        "sample_rate": cfg.sample_rate,
        "frame_rate_hz": cfg.frame_rate,
        "levels": cfg.levels,
        "bitrate_bps": cfg.frame_rate * cfg.levels * math.log2(cfg.codebook_size),
        "mel_distance": float(np.mean(mels)),
        "si_snr_db": float(np.mean(snrs)),
    } | counter.summary()
    return metrics, recons


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_video_png(path: str | Path, original: np.ndarray, recon: np.ndarray, title: str = ""):
    """Two rows (original, reconstruction) of a clip's frames (T, H, W, 3) uint8."""
    plt = _pyplot()
    t = original.shape[0]
    fig, axes = plt.subplots(2, t, figsize=(2.2 * t, 4.6), squeeze=False)
    for i in range(t):
        for row, (img, label) in enumerate(((original, "original"), (recon, "reconstruction"))):
            ax = axes[row][i]
            ax.imshow(img[i])
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_ylabel(label)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def write_audio_png(
    path: str | Path, original: np.ndarray, recon: np.ndarray, sample_rate: int, title: str = ""
):
    """Log-mel spectrograms of the original and the reconstruction, one above the other."""
    from vla_tokenizers.codecs.mel import MelSpectrogram, log_mel

    plt = _pyplot()
    spec = MelSpectrogram(sample_rate, 1024, 256, 80)
    fig, axes = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    for ax, wave, label in ((axes[0], original, "original"), (axes[1], recon, "reconstruction")):
        m = log_mel(spec(torch.as_tensor(np.asarray(wave, dtype=np.float32)).view(1, -1)))[0]
        ax.imshow(m.numpy(), origin="lower", aspect="auto", cmap="magma")
        ax.set_ylabel(f"{label}\nmel band")
    axes[1].set_xlabel("frame (hop 256)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
