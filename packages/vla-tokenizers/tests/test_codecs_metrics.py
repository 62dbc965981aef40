"""PSNR, SSIM, SI-SNR, mel filterbank / distance and codebook statistics on hand-checkable cases."""

from __future__ import annotations

import math

import pytest
import torch

from vla_tokenizers.codecs.mel import (
    MelSpectrogram,
    MultiScaleMelLoss,
    hz_to_mel,
    mel_filterbank,
    mel_to_hz,
)
from vla_tokenizers.codecs.metrics import (
    CodeCounter,
    codebook_perplexity,
    codebook_usage,
    mel_distance,
    psnr,
    si_snr,
)
from vla_tokenizers.codecs.ssim import ssim

torch.set_num_threads(1)


def test_psnr_hand_values():
    x = torch.zeros(2, 3, 8, 8)
    assert psnr(x, x + 0.1) == pytest.approx(20.0)  # MSE 0.01, peak 1
    assert psnr(x, x + 2.55, data_range=255.0) == pytest.approx(40.0)  # MSE 6.5025
    assert psnr(x, x) == math.inf
    with pytest.raises(ValueError, match="shape"):
        psnr(x, x[:1])


def test_ssim_of_constant_images_is_the_luminance_term():
    a, b = 0.2, 0.6
    x = torch.full((1, 3, 16, 16), a)
    y = torch.full((1, 3, 16, 16), b)
    c1 = 0.01**2
    assert float(ssim(x, y)) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-5)
    assert float(ssim(x, x)) == pytest.approx(1.0, abs=1e-6)


def test_ssim_structure_terms():
    torch.manual_seed(0)
    x = torch.rand(2, 1, 32, 32)
    assert float(ssim(x, x)) == pytest.approx(1.0, abs=1e-5)
    # a negated image (same mean 0.5 when mirrored around it) has negative structure
    assert float(ssim(x, 1 - x)) < 0
    noisy = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    noisier = (x + 0.3 * torch.randn_like(x)).clamp(0, 1)
    assert 1 > float(ssim(x, noisy)) > float(ssim(x, noisier)) > 0
    assert float(ssim(x, noisy)) == pytest.approx(float(ssim(noisy, x)), abs=1e-6)
    per = ssim(x, noisy, reduction="none")
    assert per.shape == (2,)


def test_ssim_matches_a_direct_computation_on_one_window():
    # An 11x11 image has exactly one valid window: SSIM is the formula on Gaussian-weighted stats.
    torch.manual_seed(1)
    x, y = torch.rand(1, 1, 11, 11), torch.rand(1, 1, 11, 11)
    g = torch.exp(-((torch.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    w = torch.outer(g, g) / torch.outer(g, g).sum()
    mx, my = (w * x).sum(), (w * y).sum()
    vx, vy = (w * x * x).sum() - mx**2, (w * y * y).sum() - my**2
    cxy = (w * x * y).sum() - mx * my
    c1, c2 = 0.01**2, 0.03**2
    expected = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    assert float(ssim(x, y)) == pytest.approx(float(expected), rel=1e-5)


def test_ssim_video_is_scored_per_frame_and_differentiable():
    torch.manual_seed(0)
    v = torch.rand(2, 3, 4, 16, 16, requires_grad=True)
    w = torch.rand(2, 3, 4, 16, 16)
    assert ssim(v, w, reduction="none").shape == (8,)
    ssim(v, w).backward()
    assert v.grad is not None and float(v.grad.abs().sum()) > 0


def test_si_snr_hand_values():
    s = torch.tensor([1.0, -1.0, 1.0, -1.0])
    n = 0.1 * torch.tensor([1.0, 1.0, -1.0, -1.0])  # zero-mean, orthogonal to s
    assert float(si_snr(s + n, s)) == pytest.approx(20.0, abs=1e-4)
    # scale invariance: 2s + n projects to 2s, noise n -> 10 log10(16 / 0.04)
    assert float(si_snr(2 * s + n, s)) == pytest.approx(10 * math.log10(400), abs=1e-4)
    assert float(si_snr(s, s)) > 60
    assert si_snr(torch.stack([s + n, s]), torch.stack([s, s])).shape == (2,)


def test_mel_scale_and_filterbank():
    assert float(hz_to_mel(700.0)) == pytest.approx(2595 * math.log10(2))
    assert float(mel_to_hz(hz_to_mel(1234.5))) == pytest.approx(1234.5)
    fb = mel_filterbank(513, 40, 16_000)
    assert fb.shape == (513, 40)
    assert float(fb.min()) >= 0 and float(fb.max()) <= 1 + 1e-6
    peaks = fb.argmax(0)
    assert bool((peaks[1:] > peaks[:-1]).all())  # centres increase
    assert bool((fb.sum(0) > 0).all())  # no empty filter at this resolution


def test_mel_spectrogram_puts_a_tone_in_the_right_band():
    sr = 16_000
    t = torch.arange(sr) / sr
    spec = MelSpectrogram(sr, 1024, 256, 40)
    fb_centres = mel_to_hz(torch.linspace(0, float(hz_to_mel(sr / 2)), 42, dtype=torch.float64))
    for f in (300.0, 1000.0, 4000.0):
        m = spec(torch.sin(2 * math.pi * f * t).view(1, -1))
        band = int(m[0].mean(1).argmax())
        assert abs(float(fb_centres[band + 1]) - f) < 0.15 * f + 60


def test_mel_distance_and_multiscale_loss():
    torch.manual_seed(0)
    x = 0.1 * torch.randn(1, 8000)
    assert mel_distance(x, x, 16_000) == 0.0
    assert mel_distance(x * 0.5, x, 16_000) == pytest.approx(math.log10(2), rel=0.05)
    loss = MultiScaleMelLoss(16_000)
    assert float(loss(x, x)) == 0.0
    assert float(loss(x + 0.05 * torch.randn_like(x), x)) > 0


def test_codebook_usage_and_perplexity():
    counts = torch.tensor([2, 1, 0, 1])
    assert codebook_usage(counts) == 0.75
    assert codebook_perplexity(counts) == pytest.approx(2**1.5)  # entropy 1.5 bits
    assert codebook_perplexity(torch.tensor([5, 5, 5, 5])) == pytest.approx(4.0)
    assert codebook_perplexity(torch.tensor([7, 0, 0])) == pytest.approx(1.0)
    counter = CodeCounter(4, depth=2)
    counter.update(torch.tensor([[0, 1], [1, 1], [3, 1]]))
    s = counter.summary()
    assert s["positions"] == 3
    assert [lv["usage"] for lv in s["per_level"]] == [0.75, 0.25]
    assert s["codebook_usage"] == 0.5
