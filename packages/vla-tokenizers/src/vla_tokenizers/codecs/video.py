"""Image/video codec: a 3-D convolutional encoder/decoder around a quantizer (VQ | FSQ | RVQ).

Video ``(B, 3, T, H, W)`` in [-1, 1] is compressed ``spatial_factor`` (8 or 16) times in H and W
and ``temporal_factor`` (tubelets of 4 frames by default) times in T: a clip of T frames at H x W
becomes ``T/4 x H/8 x W/8`` latent positions, each ``depth`` codes (1 for VQ/FSQ, the levels for
RVQ).

How lengths that are not a multiple of the tubelet are handled: the clip is padded at the end by
repeating its last frame (`pad_time`), encoded, and the decoder's output is cut back to the
original length. **A single image is a one-frame clip**: it is repeated into one static tubelet
(`encode_image`), so it costs one latent frame of codes (``H/8 x W/8``), and `decode_image`
averages the tubelet's decoded frames back into one image. H and W must be multiples of the
spatial factor (crop or pad before encoding).

Encoder: stem conv, then one stage per factor of 2 in space (``log2(spatial_factor)`` stages,
``channel_mult[i] * channels`` wide, `res_blocks` residual blocks then a strided conv; the last
``log2(temporal_factor)`` stages also halve T), residual blocks, and a 1x1x1 conv to
``latent_dim`` channels. The decoder mirrors it: per stage a nearest upsampling + conv to the
stage's width, then residual blocks.
Loss: ``l1 * |x - y| + l2 * (x - y)^2 + ssim * (1 - SSIM) + commitment``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from vla_tokenizers.codecs.layers import Downsample3d, ResBlock3d, Upsample3d, group_norm
from vla_tokenizers.codecs.quantizers import QUANTIZERS, Quantizer, QuantizerOutput, make_quantizer
from vla_tokenizers.codecs.ssim import ssim


@dataclass
class VideoCodecConfig:
    """Architecture, quantizer and loss weights of a `VideoCodec` (JSON-serialisable)."""

    spatial_factor: int = 8
    temporal_factor: int = 4
    channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 2)
    res_blocks: int = 1
    latent_dim: int = 8
    quantizer: str = "vq"
    codebook_size: int = 1024
    rvq_levels: int = 2
    fsq_levels: tuple[int, ...] = (8, 5, 5, 5)
    ema_decay: float = 0.99
    commitment_beta: float = 0.25
    dead_threshold: float = 0.1
    l1_weight: float = 1.0
    l2_weight: float = 0.0
    ssim_weight: float = 0.2
    kind: str = field(default="video", init=False)

    def __post_init__(self) -> None:
        self.channel_mult = tuple(int(x) for x in self.channel_mult)
        self.fsq_levels = tuple(int(x) for x in self.fsq_levels)
        if self.spatial_factor not in (2, 4, 8, 16):
            raise ValueError(
                f"spatial_factor must be 8 or 16 (2, 4 for tests), got {self.spatial_factor}"
            )
        if self.temporal_factor not in (1, 2, 4):
            raise ValueError(f"temporal_factor must be 1, 2 or 4, got {self.temporal_factor}")
        if len(self.channel_mult) != self.stages:
            raise ValueError(
                f"channel_mult needs one entry per spatial stage ({self.stages} for "
                f"spatial_factor {self.spatial_factor}), got {list(self.channel_mult)}"
            )
        if self.time_stages > self.stages:
            raise ValueError("temporal_factor needs at most as many stages as spatial_factor")
        if self.quantizer not in QUANTIZERS:
            raise ValueError(f"quantizer must be one of {QUANTIZERS}, got {self.quantizer!r}")
        if self.quantizer == "fsq" and self.latent_dim != len(self.fsq_levels):
            raise ValueError(
                f"FSQ levels {list(self.fsq_levels)} need latent_dim {len(self.fsq_levels)}"
            )

    @property
    def stages(self) -> int:
        return int(math.log2(self.spatial_factor))

    @property
    def time_stages(self) -> int:
        return int(math.log2(self.temporal_factor))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channel_mult"], d["fsq_levels"] = list(self.channel_mult), list(self.fsq_levels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> VideoCodecConfig:
        d = dict(d)
        if d.pop("kind", "video") != "video":
            raise ValueError("config is not a video codec config")
        return cls(**d)


class VideoEncoder(nn.Module):
    def __init__(self, cfg: VideoCodecConfig):
        super().__init__()
        widths = [cfg.channels * m for m in cfg.channel_mult]
        self.stem = nn.Conv3d(3, widths[0], 3, padding=1)
        blocks: list[nn.Module] = []
        cin = widths[0]
        for i, w in enumerate(widths):
            for _ in range(cfg.res_blocks):
                blocks.append(ResBlock3d(cin, w))
                cin = w
            blocks.append(Downsample3d(w, time=i >= cfg.stages - cfg.time_stages))
        blocks.append(ResBlock3d(cin, cin))
        self.blocks = nn.Sequential(*blocks)
        self.norm = group_norm(cin)
        self.out = nn.Conv3d(cin, cfg.latent_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.silu(self.norm(self.blocks(self.stem(x)))))


class VideoDecoder(nn.Module):
    def __init__(self, cfg: VideoCodecConfig):
        super().__init__()
        widths = [cfg.channels * m for m in cfg.channel_mult][::-1]
        self.inp = nn.Conv3d(cfg.latent_dim, widths[0], 3, padding=1)
        blocks: list[nn.Module] = [ResBlock3d(widths[0], widths[0])]
        cin = widths[0]
        for i, w in enumerate(widths):
            blocks.append(Upsample3d(cin, w, time=i < cfg.time_stages))
            cin = w
            for _ in range(cfg.res_blocks):
                blocks.append(ResBlock3d(w, w))
        self.blocks = nn.Sequential(*blocks)
        self.norm = group_norm(cin)
        self.out = nn.Conv3d(cin, 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(F.silu(self.norm(self.blocks(self.inp(z)))))


def frames_to_tensor(frames) -> torch.Tensor:
    """uint8 frames (B, T, H, W, 3) (numpy or torch) -> float (B, 3, T, H, W) in [-1, 1]."""
    t = torch.as_tensor(frames)
    if t.dim() != 5 or t.shape[-1] != 3:
        raise ValueError(f"frames must be (B, T, H, W, 3), got {tuple(t.shape)}")
    return t.permute(0, 4, 1, 2, 3).float().div(127.5).sub(1.0)


def tensor_to_frames(video: torch.Tensor) -> torch.Tensor:
    """float (B, 3, T, H, W) in [-1, 1] -> uint8 (B, T, H, W, 3) (rounded, clamped)."""
    return (
        ((video.detach().float().clamp(-1, 1) + 1) * 127.5)
        .round()
        .to(torch.uint8)
        .permute(0, 2, 3, 4, 1)
    )


class VideoCodec(nn.Module):
    """Encoder + quantizer + decoder; see the module docstring for shapes and losses."""

    def __init__(self, config: VideoCodecConfig):
        super().__init__()
        self.config = config
        self.encoder = VideoEncoder(config)
        self.quantizer: Quantizer = make_quantizer(
            config.quantizer,
            dim=config.latent_dim,
            codebook_size=config.codebook_size,
            levels=config.rvq_levels,
            fsq_levels=config.fsq_levels,
            decay=config.ema_decay,
            beta=config.commitment_beta,
            dead_threshold=config.dead_threshold,
        )
        self.decoder = VideoDecoder(config)

    # ---- shapes -----------------------------------------------------------------------------

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """(t, h, w) latent positions of a clip (frames padded up to whole tubelets)."""
        c = self.config
        self.check_size(height, width)
        return (
            math.ceil(frames / c.temporal_factor),
            height // c.spatial_factor,
            width // c.spatial_factor,
        )

    def codes_per_clip(self, frames: int, height: int, width: int) -> int:
        t, h, w = self.latent_shape(frames, height, width)
        return t * h * w * self.quantizer.depth

    def check_size(self, height: int, width: int) -> None:
        f = self.config.spatial_factor
        if height % f or width % f:
            raise ValueError(f"frame size {height}x{width} is not a multiple of {f}")

    def pad_time(self, video: torch.Tensor) -> torch.Tensor:
        """Repeat the last frame until T is a multiple of the tubelet length."""
        extra = -video.shape[2] % self.config.temporal_factor
        if extra:
            video = torch.cat([video, video[:, :, -1:].expand(-1, -1, extra, -1, -1)], dim=2)
        return video

    # ---- encode / decode --------------------------------------------------------------------

    def quantize(self, video: torch.Tensor) -> QuantizerOutput:
        if video.dim() != 5 or video.shape[1] != 3:
            raise ValueError(f"video must be (B, 3, T, H, W), got {tuple(video.shape)}")
        self.check_size(video.shape[3], video.shape[4])
        return self.quantizer(self.encoder(self.pad_time(video)))

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, QuantizerOutput]:
        """Reconstruction (same shape as `video`) and the quantizer output."""
        q = self.quantize(video)
        recon = self.decoder(q.latents)[:, :, : video.shape[2]]
        return recon, q

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """Codes (B, t, h, w, depth) of a clip (B, 3, T, H, W) in [-1, 1]."""
        return self.quantize(video).codes

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, frames: int | None = None) -> torch.Tensor:
        """Video (B, 3, T, H, W) from codes; `frames` cuts the padded tubelets back."""
        video = self.decoder(self.quantizer.decode(codes))
        return video if frames is None else video[:, :, :frames]

    @torch.no_grad()
    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """Codes (B, 1, h, w, depth) of images (B, 3, H, W): one static tubelet each."""
        if image.dim() != 4:
            raise ValueError(f"image must be (B, 3, H, W), got {tuple(image.shape)}")
        return self.encode(image.unsqueeze(2))

    @torch.no_grad()
    def decode_image(self, codes: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W): the mean of the decoded tubelet's frames."""
        return self.decode(codes).mean(dim=2)

    # ---- training -----------------------------------------------------------------------------

    def loss(self, video: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss of a batch and its parts (detached scalars, for logging)."""
        c = self.config
        recon, q = self(video)
        recon = recon.float()
        target = video.float()
        parts: dict[str, torch.Tensor] = {}
        total = recon.new_zeros(())
        if c.l1_weight:
            parts["l1"] = F.l1_loss(recon, target)
            total = total + c.l1_weight * parts["l1"]
        if c.l2_weight:
            parts["l2"] = F.mse_loss(recon, target)
            total = total + c.l2_weight * parts["l2"]
        if c.ssim_weight:
            parts["ssim"] = ssim((recon + 1) / 2, (target + 1) / 2, data_range=1.0)
            total = total + c.ssim_weight * (1 - parts["ssim"])
        for name, value in q.losses.items():
            parts[name] = value.float()
            total = total + parts[name]
        logs = {k: v.detach() for k, v in parts.items()}
        logs["loss"] = total.detach()
        return total, logs
