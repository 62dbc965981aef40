"""Mel spectrograms with `torch.stft` (no torchaudio): filterbank, spectrogram, multi-scale loss.

The filterbank uses the HTK mel scale ``mel = 2595 log10(1 + f / 700)`` with triangular filters
between ``n_mels + 2`` equally spaced mel points, unnormalised (peak 1), like
``torchaudio.functional.melscale_fbanks(norm=None, mel_scale="htk")``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def hz_to_mel(f: torch.Tensor | float) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(f, dtype=torch.float64, device="cpu") / 700.0)


def mel_to_hz(m: torch.Tensor | float) -> torch.Tensor:
    return 700.0 * (10.0 ** (torch.as_tensor(m, dtype=torch.float64, device="cpu") / 2595.0) - 1.0)


def mel_filterbank(
    n_freqs: int, n_mels: int, sample_rate: int, f_min: float = 0.0, f_max: float | None = None
) -> torch.Tensor:
    """Triangular filters, shape (n_freqs, n_mels), for an rFFT of ``2 * (n_freqs - 1)`` points."""
    f_max = sample_rate / 2 if f_max is None else f_max
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(f"need 0 <= f_min < f_max <= {sample_rate / 2}, got {f_min}, {f_max}")
    freqs = torch.linspace(0, sample_rate / 2, n_freqs, dtype=torch.float64, device="cpu")
    mels = torch.linspace(
        float(hz_to_mel(f_min)),
        float(hz_to_mel(f_max)),
        n_mels + 2,
        dtype=torch.float64,
        device="cpu",
    )
    hz = mel_to_hz(mels)
    lower, center, upper = hz[:-2], hz[1:-1], hz[2:]
    f = freqs.unsqueeze(1)
    up = (f - lower) / (center - lower)
    down = (upper - f) / (upper - center)
    return torch.clamp(torch.minimum(up, down), min=0.0).float()


class MelSpectrogram(nn.Module):
    """Magnitude mel spectrogram of (B, n) or (B, 1, n) audio -> (B, n_mels, frames).

    The STFT is frame-normalised (divided by ``sqrt(n_fft)``), so scales are comparable."""

    def __init__(
        self,
        sample_rate: int,
        n_fft: int = 1024,
        hop: int | None = None,
        n_mels: int = 80,
        f_min: float = 0.0,
        f_max: float | None = None,
        power: float = 1.0,
    ):
        super().__init__()
        self.n_fft, self.hop, self.power = n_fft, hop or n_fft // 4, power
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.register_buffer(
            "fbank",
            mel_filterbank(n_fft // 2 + 1, n_mels, sample_rate, f_min, f_max),
            persistent=False,
        )

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        if audio.dim() == 3:
            audio = audio.squeeze(1)
        if audio.dim() != 2:
            raise ValueError(f"audio must be (B, n) or (B, 1, n), got {tuple(audio.shape)}")
        with torch.autocast(device_type=audio.device.type, enabled=False):
            return self._mel(audio)

    def _mel(self, audio: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(
            audio.float(),
            self.n_fft,
            self.hop,
            window=self.window,
            center=True,
            pad_mode="reflect" if audio.shape[-1] > self.n_fft // 2 else "constant",
            normalized=True,
            return_complex=True,
        )
        mag = spec.abs().pow(self.power)
        return torch.einsum("bft,fm->bmt", mag, self.fbank)


def log_mel(mel: torch.Tensor, floor: float = 1e-5) -> torch.Tensor:
    return torch.log10(mel.clamp_min(floor))


class MultiScaleMelLoss(nn.Module):
    """Sum over STFT scales of L1 between log10 mel spectrograms plus L1 between the mel
    magnitudes (as in the DAC codec's mel loss). Default scales at 16 kHz: windows 256..2048
    with 20..160 mel bands (hop = window / 4). `floor` clamps mel magnitudes before the log
    (1e-5 is about the 16-bit noise floor; digital silence would otherwise dominate)."""

    def __init__(
        self,
        sample_rate: int,
        n_ffts: Sequence[int] = (256, 512, 1024, 2048),
        n_mels: Sequence[int] = (20, 40, 80, 160),
        log_weight: float = 1.0,
        mag_weight: float = 1.0,
        floor: float = 1e-5,
    ):
        super().__init__()
        if len(n_ffts) != len(n_mels):
            raise ValueError("n_ffts and n_mels must have the same length")
        self.specs = nn.ModuleList(
            MelSpectrogram(sample_rate, n, n // 4, m) for n, m in zip(n_ffts, n_mels, strict=True)
        )
        self.log_weight, self.mag_weight, self.floor = log_weight, mag_weight, floor

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = pred.new_zeros((), dtype=torch.float32)
        for spec in self.specs:
            p, t = spec(pred), spec(target)
            loss = loss + self.log_weight * F.l1_loss(
                log_mel(p, self.floor), log_mel(t, self.floor)
            )
            loss = loss + self.mag_weight * F.l1_loss(p, t)
        return loss
