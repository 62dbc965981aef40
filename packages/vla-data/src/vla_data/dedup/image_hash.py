"""Perceptual 64-bit image hashes (pHash, dHash) and Hamming-threshold image clustering.

Images (PIL images or ``(H, W)`` / ``(H, W, C)`` numpy arrays) are converted to grayscale with
the ITU-R 601-2 luma weights PIL uses (alpha is ignored), as 32-bit floats, and resized with
Lanczos filtering. Bits are packed row-major, the first bit in the most significant position.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Literal

import numpy as np
from PIL import Image

from vla_data.dedup.clusters import DedupResult
from vla_data.dedup.simhash import HammingDeduper

ImageLike = Image.Image | np.ndarray
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _gray(image: ImageLike) -> Image.Image:
    if isinstance(image, Image.Image):
        if image.mode in ("L", "F"):
            return image.convert("F")
        if image.mode in ("I", "I;16", "I;16B", "I;16L"):
            return Image.fromarray(np.asarray(image, dtype=np.float32), mode="F")
        return image.convert("RGB").convert("L").convert("F")
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = arr[..., :3].astype(np.float32) @ _LUMA
    elif arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"expected a (H, W) or (H, W, C) image array, got shape {arr.shape}")
    return Image.fromarray(np.ascontiguousarray(arr, dtype=np.float32), mode="F")


def _small(image: ImageLike, width: int, height: int) -> np.ndarray:
    small = _gray(image).resize((width, height), Image.Resampling.LANCZOS)
    return np.asarray(small, dtype=np.float64)


@cache
def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    m = np.cos(np.pi * (2 * np.arange(n)[None, :] + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m  # orthonormal DCT-II: coeffs = M @ x


def _pack(bits: np.ndarray) -> int:
    value = 0
    for b in bits.ravel():
        value = (value << 1) | int(b)
    return value


def phash(image: ImageLike) -> int:
    """DCT perceptual hash: 32x32 grayscale, 2-D DCT, top-left 8x8 coefficients > their median."""
    d = _dct_matrix(32)
    coeffs = d @ _small(image, 32, 32) @ d.T
    low = coeffs[:8, :8]
    return _pack(low > np.median(low))


def dhash(image: ImageLike) -> int:
    """Difference hash: 9x8 grayscale, bit set where a pixel is brighter than its left neighbour."""
    px = _small(image, 9, 8)
    return _pack(px[:, 1:] > px[:, :-1])


def image_hashes(
    images: Iterable[ImageLike], method: Literal["phash", "dhash"] = "phash"
) -> np.ndarray:
    """uint64 hashes of many images."""
    fn = {"phash": phash, "dhash": dhash}[method]
    return np.fromiter((fn(im) for im in images), dtype=np.uint64)


def image_dedup(
    images: Iterable[ImageLike],
    *,
    method: Literal["phash", "dhash"] = "phash",
    threshold: int = 6,
    **kwargs: object,
) -> DedupResult:
    """Cluster images whose perceptual hashes are within ``threshold`` bits (streamed).

    ``kwargs`` go to :class:`~vla_data.dedup.simhash.HammingDeduper` (``blocks``, ``spill_dir``,
    ``chunk_size``, ``merge_buffer``).
    """
    fn = {"phash": phash, "dhash": dhash}[method]
    deduper = HammingDeduper(threshold, **kwargs)  # type: ignore[arg-type]
    batch: list[int] = []
    for im in images:
        batch.append(fn(im))
        if len(batch) >= 4096:
            deduper.add(batch)
            batch = []
    deduper.add(batch)
    return deduper.finish()
