"""Convolutional building blocks shared by the video (3-D) and audio (1-D) codecs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with the largest of 32/16/8/4/2/1 groups that divides `channels`."""
    groups = next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0 and channels >= g)
    return nn.GroupNorm(groups, channels, eps=1e-6)


class ResBlock3d(nn.Module):
    """Pre-activation residual block: (GroupNorm, SiLU, 3x3x3 conv) x 2, 1x1x1 skip if needed."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1, self.conv1 = group_norm(cin), nn.Conv3d(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = group_norm(cout), nn.Conv3d(cout, cout, 3, padding=1)
        self.skip = nn.Conv3d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Downsample3d(nn.Module):
    """Strided 3-D conv halving H and W, and T when `time`."""

    def __init__(self, channels: int, time: bool):
        super().__init__()
        stride = (2 if time else 1, 2, 2)
        self.conv = nn.Conv3d(channels, channels, 3, stride=stride, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample3d(nn.Module):
    """Nearest-neighbour upsampling (x2 in H, W, and T when `time`) followed by a 3x3x3 conv
    from `cin` to `cout` channels."""

    def __init__(self, cin: int, cout: int, time: bool):
        super().__init__()
        self.scale = (2.0 if time else 1.0, 2.0, 2.0)
        self.conv = nn.Conv3d(cin, cout, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=self.scale, mode="nearest"))


class ResUnit1d(nn.Module):
    """Dilated residual unit of SoundStream: ELU, 7-tap dilated conv, ELU, 1x1 conv."""

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.conv1 = nn.Conv1d(channels, channels, 7, dilation=dilation, padding=3 * dilation)
        self.conv2 = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.elu(self.conv1(F.elu(x))))


class EncoderBlock1d(nn.Module):
    """Residual units then a strided conv (kernel 2*stride) that divides the length by `stride`."""

    def __init__(self, cin: int, cout: int, stride: int, dilations: tuple[int, ...]):
        super().__init__()
        self.units = nn.Sequential(*(ResUnit1d(cin, d) for d in dilations))
        self.down = nn.Conv1d(
            cin, cout, 2 * stride, stride=stride, padding=(stride + 1) // 2, bias=True
        )
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.down(F.elu(self.units(x)))
        return y[..., : x.shape[-1] // self.stride]


class DecoderBlock1d(nn.Module):
    """A transposed conv that multiplies the length by `stride`, then residual units."""

    def __init__(self, cin: int, cout: int, stride: int, dilations: tuple[int, ...]):
        super().__init__()
        self.up = nn.ConvTranspose1d(cin, cout, 2 * stride, stride=stride, padding=stride // 2)
        self.units = nn.Sequential(*(ResUnit1d(cout, d) for d in dilations))
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.up(F.elu(x))[..., : x.shape[-1] * self.stride]
        return self.units(y)
