"""Named codec configurations: ``tiny`` (CPU tests, seconds) and ``small`` (GPU, minutes).

Token budgets (vision range 65536 ids, audio range 16384 ids of the default layout):

- video ``small``: 8x spatial, 4x temporal, EMA VQ with 1024 codes, so a 8 x 128 x 128 clip is
  2 x 16 x 16 = 512 tokens (10 bits each, 0.039 bits/pixel); ``small-fsq`` uses FSQ levels
  (8, 5, 5, 5) = 1000 codes; ``small-16x`` 16x spatial with 4096 codes (128 tokens per clip).
- audio ``small``: 16 kHz, hop 320 (50 Hz), residual VQ 8 x 1024 (8192 audio ids, 4 kbit/s);
  ``small-24k``: 24 kHz, hop 320 (75 Hz), 8 x 1024 (6 kbit/s).
"""

from __future__ import annotations

from vla_tokenizers.codecs.audio import AudioCodecConfig
from vla_tokenizers.codecs.video import VideoCodecConfig

VIDEO_PRESETS: dict[str, dict] = {
    "tiny": dict(
        spatial_factor=8, channels=8, channel_mult=(1, 1, 2), latent_dim=4, codebook_size=64
    ),
    "tiny-fsq": dict(
        spatial_factor=8,
        channels=8,
        channel_mult=(1, 1, 2),
        quantizer="fsq",
        latent_dim=3,
        fsq_levels=(4, 4, 4),
    ),
    "tiny-rvq": dict(
        spatial_factor=8,
        channels=8,
        channel_mult=(1, 1, 2),
        quantizer="rvq",
        latent_dim=4,
        codebook_size=32,
        rvq_levels=2,
    ),
    "small": dict(
        spatial_factor=8, channels=64, channel_mult=(1, 2, 2), latent_dim=8, codebook_size=1024
    ),
    "small-fsq": dict(
        spatial_factor=8,
        channels=64,
        channel_mult=(1, 2, 2),
        quantizer="fsq",
        latent_dim=4,
        fsq_levels=(8, 5, 5, 5),
    ),
    "small-16x": dict(
        spatial_factor=16,
        channels=64,
        channel_mult=(1, 2, 2, 4),
        latent_dim=8,
        codebook_size=4096,
    ),
}

AUDIO_PRESETS: dict[str, dict] = {
    "tiny": dict(
        channels=4,
        strides=(2, 4, 5, 8),
        dilations=(1, 3),
        latent_dim=8,
        codebook_size=32,
        levels=3,
        mel_n_ffts=(256, 512),
        mel_bands=(20, 40),
    ),
    "small": dict(channels=32, latent_dim=64, codebook_size=1024, levels=8),
    "small-24k": dict(sample_rate=24_000, channels=32, latent_dim=64, codebook_size=1024, levels=8),
}


def codec_config(kind: str, preset: str, **overrides):
    """The config of a preset (``kind`` video | audio) with field overrides."""
    table, cls = (
        (VIDEO_PRESETS, VideoCodecConfig) if kind == "video" else (AUDIO_PRESETS, AudioCodecConfig)
    )
    if kind not in ("video", "audio"):
        raise ValueError(f"codec kind must be video or audio, got {kind!r}")
    if preset not in table:
        raise ValueError(f"unknown {kind} preset {preset!r} (choose from {', '.join(table)})")
    fields = set(cls.__dataclass_fields__) - {"kind"}
    unknown = set(overrides) - fields
    if unknown:
        raise ValueError(f"unknown {kind} codec settings {sorted(unknown)}")
    return cls(**(table[preset] | overrides))
