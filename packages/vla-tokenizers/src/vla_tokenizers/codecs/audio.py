"""Audio codec: SoundStream/EnCodec-style 1-D conv encoder/decoder with residual VQ.

Mono audio ``(B, 1, n)`` in [-1, 1] at `sample_rate` (16 or 24 kHz) is downsampled by
``hop = prod(strides)`` (default strides 2, 4, 5, 8: hop 320), so the **frame rate** is
``sample_rate / hop``: 50 Hz at 16 kHz, 75 Hz at 24 kHz. Each frame is `levels` codes of a
`codebook_size` residual VQ (default 8 x 1024: 8 tokens per frame, 400 tokens/s at 16 kHz, i.e.
10 bits x 8 x 50 = 4 kbit/s). Lengths that are not a multiple of `hop` are zero-padded at the end
and the reconstruction is cut back.

Loss: ``mel * multi-scale mel loss + l1 * |x - y| + commitment``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from vla_tokenizers.codecs.layers import DecoderBlock1d, EncoderBlock1d
from vla_tokenizers.codecs.mel import MultiScaleMelLoss
from vla_tokenizers.codecs.quantizers import QuantizerOutput, ResidualVQ


@dataclass
class AudioCodecConfig:
    """Architecture, residual VQ and loss weights of an `AudioCodec` (JSON-serialisable)."""

    sample_rate: int = 16_000
    channels: int = 32
    strides: tuple[int, ...] = (2, 4, 5, 8)
    dilations: tuple[int, ...] = (1, 3, 9)
    latent_dim: int = 64
    codebook_size: int = 1024
    levels: int = 8
    ema_decay: float = 0.99
    commitment_beta: float = 0.25
    dead_threshold: float = 0.1
    mel_weight: float = 1.0
    l1_weight: float = 0.1
    mel_n_ffts: tuple[int, ...] = (256, 512, 1024, 2048)
    mel_bands: tuple[int, ...] = (20, 40, 80, 160)
    mel_floor: float = 1e-5
    kind: str = field(default="audio", init=False)

    def __post_init__(self) -> None:
        self.strides = tuple(int(x) for x in self.strides)
        self.dilations = tuple(int(x) for x in self.dilations)
        self.mel_n_ffts = tuple(int(x) for x in self.mel_n_ffts)
        self.mel_bands = tuple(int(x) for x in self.mel_bands)
        if self.sample_rate not in (16_000, 24_000):
            raise ValueError(f"sample_rate must be 16000 or 24000, got {self.sample_rate}")
        if not self.strides or any(s < 1 for s in self.strides):
            raise ValueError(f"strides must be positive integers, got {list(self.strides)}")
        if self.levels < 1 or self.codebook_size < 2:
            raise ValueError("need levels >= 1 and codebook_size >= 2")
        if len(self.mel_n_ffts) != len(self.mel_bands):
            raise ValueError("mel_n_ffts and mel_bands must have the same length")

    @property
    def hop(self) -> int:
        return math.prod(self.strides)

    @property
    def frame_rate(self) -> float:
        """Code frames per second (``sample_rate / hop``)."""
        return self.sample_rate / self.hop

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("strides", "dilations", "mel_n_ffts", "mel_bands"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> AudioCodecConfig:
        d = dict(d)
        if d.pop("kind", "audio") != "audio":
            raise ValueError("config is not an audio codec config")
        return cls(**d)


class AudioEncoder(nn.Module):
    def __init__(self, cfg: AudioCodecConfig):
        super().__init__()
        c = cfg.channels
        layers: list[nn.Module] = [nn.Conv1d(1, c, 7, padding=3)]
        for s in cfg.strides:
            layers.append(EncoderBlock1d(c, 2 * c, s, cfg.dilations))
            c *= 2
        layers += [nn.ELU(), nn.Conv1d(c, cfg.latent_dim, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class AudioDecoder(nn.Module):
    def __init__(self, cfg: AudioCodecConfig):
        super().__init__()
        c = cfg.channels * 2 ** len(cfg.strides)
        layers: list[nn.Module] = [nn.Conv1d(cfg.latent_dim, c, 7, padding=3)]
        for s in reversed(cfg.strides):
            layers.append(DecoderBlock1d(c, c // 2, s, cfg.dilations))
            c //= 2
        layers += [nn.ELU(), nn.Conv1d(c, 1, 7, padding=3), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class AudioCodec(nn.Module):
    """Encoder + residual VQ + decoder; see the module docstring for rates and losses."""

    def __init__(self, config: AudioCodecConfig):
        super().__init__()
        self.config = config
        self.encoder = AudioEncoder(config)
        self.quantizer = ResidualVQ(
            config.latent_dim,
            config.codebook_size,
            config.levels,
            decay=config.ema_decay,
            beta=config.commitment_beta,
            dead_threshold=config.dead_threshold,
        )
        self.decoder = AudioDecoder(config)
        self.mel_loss = MultiScaleMelLoss(
            config.sample_rate, config.mel_n_ffts, config.mel_bands, floor=config.mel_floor
        )

    def frames_for(self, samples: int) -> int:
        """Code frames of a clip of `samples` samples (padded up to whole hops)."""
        return math.ceil(samples / self.config.hop)

    def _prepare(self, audio: torch.Tensor) -> torch.Tensor:
        if audio.dim() == 2:
            audio = audio.unsqueeze(1)
        if audio.dim() != 3 or audio.shape[1] != 1:
            raise ValueError(f"audio must be mono (B, n) or (B, 1, n), got {tuple(audio.shape)}")
        extra = -audio.shape[-1] % self.config.hop
        return F.pad(audio, (0, extra)) if extra else audio

    def quantize(self, audio: torch.Tensor, levels: int | None = None) -> QuantizerOutput:
        return self.quantizer(self.encoder(self._prepare(audio)), levels=levels)

    def forward(
        self, audio: torch.Tensor, levels: int | None = None
    ) -> tuple[torch.Tensor, QuantizerOutput]:
        """Reconstruction (B, 1, n) and the quantizer output (codes (B, frames, levels))."""
        q = self.quantize(audio, levels)
        return self.decoder(q.latents)[..., : audio.shape[-1]], q

    @torch.no_grad()
    def encode(self, audio: torch.Tensor, levels: int | None = None) -> torch.Tensor:
        """Codes (B, frames, levels) of mono audio."""
        return self.quantize(audio, levels).codes

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, samples: int | None = None) -> torch.Tensor:
        """Audio (B, 1, n) from codes (B, frames, k <= levels); `samples` cuts the padding."""
        audio = self.decoder(self.quantizer.decode(codes))
        return audio if samples is None else audio[..., :samples]

    def loss(self, audio: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss of a batch (B, 1, n) and its parts (detached scalars, for logging)."""
        c = self.config
        if audio.dim() == 2:
            audio = audio.unsqueeze(1)
        recon, q = self(audio)
        recon, target = recon.float(), audio.float()
        parts: dict[str, torch.Tensor] = {}
        total = recon.new_zeros(())
        if c.mel_weight:
            parts["mel"] = self.mel_loss(recon, target)
            total = total + c.mel_weight * parts["mel"]
        if c.l1_weight:
            parts["l1"] = F.l1_loss(recon, target)
            total = total + c.l1_weight * parts["l1"]
        for name, value in q.losses.items():
            parts[name] = value.float()
            total = total + parts[name]
        logs = {k: v.detach() for k, v in parts.items()}
        logs["loss"] = total.detach()
        return total, logs
