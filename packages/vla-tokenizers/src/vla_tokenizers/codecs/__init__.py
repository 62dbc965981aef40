"""Learned codecs: vision and sound as discrete codes of the unified vocabulary.

- `quantizers`: VQ with EMA codebooks (usage tracking, dead-code restarts), FSQ, residual VQ.
- `video`: 3-D conv image/video codec (8x/16x spatial, 4x temporal tubelets).
- `audio`: 1-D conv audio codec with residual VQ (16/24 kHz, 50/75 Hz frames).
- `ssim`, `mel`, `metrics`: SSIM, mel filterbank and multi-scale mel loss, PSNR, SI-SNR, ...
- `tokens`: codes <-> `VocabLayout` ids, camera/timestamp-wrapped visual spans, audio spans,
  rig tubelet plans (`rig_tubelets`: dropped frames filled from the nearest frame).
- `encoders`: batched images/clips/audio -> ids for `VLAProcessor` and token shards.
- `training`, `checkpoint`, `evaluate`, `data`, `presets`, `cli` (`vla-tok codec`).

Names below load lazily (importing `vla_tokenizers.codecs.cli` does not import torch). The
modules need only torch and numpy at load time; vla-data, PyAV, PIL, matplotlib and safetensors
are imported where they are used.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "AudioCodec": "audio",
    "AudioCodecConfig": "audio",
    "FSQ": "quantizers",
    "Quantizer": "quantizers",
    "QuantizerOutput": "quantizers",
    "ResidualVQ": "quantizers",
    "VectorQuantizerEMA": "quantizers",
    "make_quantizer": "quantizers",
    "VideoCodec": "video",
    "VideoCodecConfig": "video",
    "VisionEncoder": "encoders",
    "AudioEncoder": "encoders",
    "load_codec": "checkpoint",
    "save_codec": "checkpoint",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(f"vla_tokenizers.codecs.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'vla_tokenizers.codecs' has no attribute {name!r}")
