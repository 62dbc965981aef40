"""Structural similarity (Wang et al., 2004) in torch, differentiable, for images and video.

Gaussian window (11 taps, sigma 1.5; shrunk to the image for tiny inputs), constants
``C1 = (0.01 L)^2`` and ``C2 = (0.03 L)^2`` with ``L = data_range``, local statistics over the
*valid* part of the image (no padding; the same numbers as scikit-image's
``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``).
Channels are computed separately and averaged; video ``(B, C, T, H, W)`` is scored per frame.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gaussian_window(size: int, sigma: float, dtype=torch.float32, device=None) -> torch.Tensor:
    """Normalised 1-D Gaussian of `size` taps."""
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _as_frames(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 5:  # (B, C, T, H, W) -> (B*T, C, H, W)
        b, c, t, h, w = x.shape
        return x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    if x.dim() == 4:
        return x
    raise ValueError(f"SSIM needs (B, C, H, W) or (B, C, T, H, W), got {tuple(x.shape)}")


def ssim_map(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 1.0,
    window_size: int = 11,
    sigma: float = 1.5,
) -> torch.Tensor:
    """Per-pixel SSIM over the valid region, shape (N, C, H', W') (always in fp32)."""
    if x.shape != y.shape:
        raise ValueError(f"SSIM inputs differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
    with torch.autocast(device_type=x.device.type, enabled=False):
        return _ssim_map(
            _as_frames(x).float(), _as_frames(y).float(), data_range, window_size, sigma
        )


def _ssim_map(x, y, data_range: float, window_size: int, sigma: float) -> torch.Tensor:
    _, c, h, w = x.shape
    size = min(window_size, h, w)
    if size % 2 == 0:
        size -= 1
    g = gaussian_window(size, sigma, device=x.device)
    kh = g.view(1, 1, size, 1).expand(c, 1, size, 1)
    kw = g.view(1, 1, 1, size).expand(c, 1, 1, size)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, kh, groups=c), kw, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x**2
    syy = blur(y * y) - mu_y**2
    sxy = blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    return ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 1.0,
    window_size: int = 11,
    sigma: float = 1.5,
    reduction: str = "mean",
) -> torch.Tensor:
    """Mean SSIM (``reduction="mean"``) or one value per image/frame (``"none"``)."""
    m = ssim_map(x, y, data_range, window_size, sigma)
    per_image = m.mean(dim=(1, 2, 3))
    if reduction == "none":
        return per_image
    if reduction == "mean":
        return per_image.mean()
    raise ValueError(f"reduction must be mean or none, got {reduction!r}")
