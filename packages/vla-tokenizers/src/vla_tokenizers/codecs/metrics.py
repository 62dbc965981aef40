"""Codec quality metrics: PSNR, SSIM, codebook usage and perplexity (vision); mel distance and
SI-SNR (audio). All take torch tensors and return Python floats (or tensors for per-item
variants); `CodeCounter` accumulates code histograms over an evaluation set."""

from __future__ import annotations

import math

import torch

from vla_tokenizers.codecs.mel import MelSpectrogram, log_mel
from vla_tokenizers.codecs.ssim import ssim

__all__ = [
    "CodeCounter",
    "codebook_perplexity",
    "codebook_usage",
    "mel_distance",
    "psnr",
    "si_snr",
    "ssim",
]


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB over all elements: ``10 log10(L^2 / MSE)``; inf if equal."""
    if x.shape != y.shape:
        raise ValueError(f"PSNR inputs differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
    mse = torch.mean((x.double() - y.double()) ** 2).item()
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def codebook_usage(counts: torch.Tensor) -> float:
    """Fraction of codebook entries used at least once, from a histogram of code counts."""
    return float((counts > 0).sum().item() / counts.numel())


def codebook_perplexity(counts: torch.Tensor) -> float:
    """``exp(entropy)`` of the code distribution: the effective number of codes in use
    (equals the codebook size when codes are uniform, 1 when a single code is used)."""
    p = counts.double() / counts.sum().clamp_min(1)
    nz = p[p > 0]
    return float(torch.exp(-(nz * nz.log()).sum()).item())


class CodeCounter:
    """Histogram of codes per quantizer level over many batches."""

    def __init__(self, codebook_size: int, depth: int = 1):
        self.counts = torch.zeros(depth, codebook_size, dtype=torch.int64)

    def update(self, codes: torch.Tensor) -> None:
        """Add codes of shape (..., depth)."""
        c = codes.reshape(-1, codes.shape[-1]).cpu().long()
        for d in range(c.shape[1]):
            self.counts[d] += torch.bincount(c[:, d], minlength=self.counts.shape[1])

    def summary(self) -> dict:
        per_level = [
            {"usage": codebook_usage(c), "perplexity": codebook_perplexity(c)} for c in self.counts
        ]
        return {
            "codebook_usage": sum(x["usage"] for x in per_level) / len(per_level),
            "perplexity": sum(x["perplexity"] for x in per_level) / len(per_level),
            "codebook_size": int(self.counts.shape[1]),
            "positions": int(self.counts[0].sum()),
            "per_level": per_level if len(per_level) > 1 else None,
        }


def si_snr(estimate: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale-invariant SNR in dB per signal (last axis is time): both signals are made zero-mean,
    the estimate is projected on the target, ``10 log10(|s_t|^2 / |e - s_t|^2)``."""
    if estimate.shape != target.shape:
        raise ValueError(f"SI-SNR inputs differ in shape: {estimate.shape} vs {target.shape}")
    est = estimate.double() - estimate.double().mean(-1, keepdim=True)
    tgt = target.double() - target.double().mean(-1, keepdim=True)
    scale = (est * tgt).sum(-1, keepdim=True) / (tgt.pow(2).sum(-1, keepdim=True) + eps)
    s_target = scale * tgt
    noise = est - s_target
    return 10 * torch.log10((s_target.pow(2).sum(-1) + eps) / (noise.pow(2).sum(-1) + eps))


def mel_distance(
    estimate: torch.Tensor,
    target: torch.Tensor,
    sample_rate: int,
    n_fft: int = 1024,
    hop: int = 256,
    n_mels: int = 80,
) -> float:
    """Mean absolute difference of log10 mel spectrograms (1024-point STFT, hop 256, 80 bands)."""
    spec = MelSpectrogram(sample_rate, n_fft, hop, n_mels).to(estimate.device)
    return float((log_mel(spec(estimate)) - log_mel(spec(target))).abs().mean().item())
