"""Batched media -> codec ids for `VLAProcessor` / token shards (GPU when there is one).

`VisionEncoder` turns uint8 images (H, W, 3) or clips (T, H, W, 3) into *local* vision ids
(``level * codebook_size + code``, in ``[0, vocab_size)``), the form `SpanWriter.visual(codes=...)`
takes; `AudioEncoder` does the same for mono waveforms or encoded audio bytes and
`SpanWriter.audio(codes=...)`. Both batch inputs of equal shape through the codec at once
(`batch_size` per forward pass: 64 on CUDA, 16 on CPU by default) and check on construction that
the codec's ids fit the layout's range. The device is CUDA when torch sees a GPU, else the CPU
(or the `device` given); `VLAProcessor` creates them lazily, once per processor.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from vla_tokenizers.codecs.tokens import CodecTokenError, codes_to_ids


def _device(device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _batch(batch_size: int | None, device: torch.device) -> int:
    return batch_size or (64 if device.type == "cuda" else 16)


def check_layout_fits(codec, layout) -> None:
    """Raise `CodecTokenError` unless the codec's ids fit the layout's vision/audio range."""
    name = "vision" if codec.config.kind == "video" else "audio"
    r = layout.range(name)
    if codec.quantizer.vocab_size > r.size:
        raise CodecTokenError(
            f"{name} codec needs {codec.quantizer.vocab_size} ids "
            f"({codec.quantizer.depth} x {codec.quantizer.codebook_size}), "
            f"the layout's {name} range has {r.size}"
        )


class VisionEncoder:
    """Images and clips -> local vision ids (raster order, RVQ levels innermost)."""

    def __init__(self, codec, layout=None, device=None, batch_size: int | None = None):
        if codec.config.kind != "video":
            raise ValueError("VisionEncoder needs a video codec")
        if layout is not None:
            check_layout_fits(codec, layout)
        self.device = _device(device)
        self.codec = codec.to(self.device).eval()
        self.batch_size = _batch(batch_size, self.device)

    @property
    def codebook_size(self) -> int:
        return self.codec.quantizer.codebook_size

    def _encode(self, clips: np.ndarray) -> list[np.ndarray]:
        from vla_tokenizers.codecs.video import frames_to_tensor

        out = []
        for i in range(0, len(clips), self.batch_size):
            raw = torch.as_tensor(np.ascontiguousarray(clips[i : i + self.batch_size]))
            x = frames_to_tensor(raw.to(self.device))  # uint8 over the bus, floats on the device
            codes = self.codec.encode(x).cpu().numpy()
            out += [codes_to_ids(c, self.codebook_size) for c in codes]
        return out

    def images(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Local ids of each image (H, W, 3) uint8 (one static tubelet: h * w * depth ids).
        Images of one size are batched; sizes must be multiples of the spatial factor."""
        return self.clips([np.asarray(im)[None] for im in images])

    def clips(self, clips: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Local ids of each clip (T, H, W, 3) uint8, grouped by shape for batching."""
        result: list[np.ndarray | None] = [None] * len(clips)
        groups: dict[tuple, list[int]] = {}
        for i, c in enumerate(clips):
            c = np.asarray(c)
            if c.dtype != np.uint8 or c.ndim != 4 or c.shape[-1] != 3:
                raise ValueError(f"clip {i} must be uint8 (T, H, W, 3), got {c.dtype} {c.shape}")
            groups.setdefault(c.shape, []).append(i)
        for idx in groups.values():
            stacked = np.stack([np.asarray(clips[i]) for i in idx])
            for i, ids in zip(idx, self._encode(stacked), strict=True):
                result[i] = ids
        return result  # type: ignore[return-value]

    def tubelet_ids(self, clip: np.ndarray) -> list[np.ndarray]:
        """Local ids of a clip split per tubelet (one array per latent time step), for
        per-tubelet camera/timestamp spans (`tokens.rig_clip_ids` does the same from codes)."""
        from vla_tokenizers.codecs.video import frames_to_tensor

        x = frames_to_tensor(np.asarray(clip)[None]).to(self.device)
        codes = self.codec.encode(x)[0].cpu().numpy()
        return [codes_to_ids(c, self.codebook_size) for c in codes]


class AudioEncoder:
    """Mono audio -> local audio ids (frame-major, RVQ levels innermost)."""

    def __init__(self, codec, layout=None, device=None, batch_size: int | None = None):
        if codec.config.kind != "audio":
            raise ValueError("AudioEncoder needs an audio codec")
        if layout is not None:
            check_layout_fits(codec, layout)
        self.device = _device(device)
        self.codec = codec.to(self.device).eval()
        self.batch_size = _batch(batch_size, self.device)

    @property
    def sample_rate(self) -> int:
        return self.codec.config.sample_rate

    def waves(self, waves: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Local ids of each float waveform at the codec's rate (equal lengths are batched)."""
        result: list[np.ndarray | None] = [None] * len(waves)
        groups: dict[int, list[int]] = {}
        for i, w in enumerate(waves):
            groups.setdefault(int(np.asarray(w).size), []).append(i)
        k = self.codec.config.codebook_size
        for n, idx in groups.items():
            if n == 0:
                for i in idx:
                    result[i] = np.zeros(0, dtype=np.int64)
                continue
            for s in range(0, len(idx), self.batch_size):
                part = idx[s : s + self.batch_size]
                x = torch.as_tensor(
                    np.stack([np.asarray(waves[i], dtype=np.float32).ravel() for i in part])
                ).unsqueeze(1)
                codes = self.codec.encode(x.to(self.device)).cpu().numpy()
                for i, c in zip(part, codes, strict=True):
                    result[i] = codes_to_ids(c, k)
        return result  # type: ignore[return-value]

    def audio_bytes(self, data: bytes, where: str = "<bytes>") -> np.ndarray:
        """Local ids of encoded audio (FLAC, WAV, ...), decoded and resampled with PyAV."""
        from vla_tokenizers.codecs.data import decode_audio

        return self.waves([decode_audio(data, self.sample_rate, where)])[0]
