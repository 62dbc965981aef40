"""64-bit hashing primitives shared by the dedup algorithms (numpy-vectorised, wrapping uint64)."""

from __future__ import annotations

import hashlib

import numpy as np

MASK64 = (1 << 64) - 1
_C1 = np.uint64(0xBF58476D1CE4E5B9)
_C2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
#: Odd multiplier used to fold sequences of 64-bit values (golden-ratio constant).
GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def hash_bytes(data: bytes, bits: int = 64) -> int:
    """Unsigned ``bits``-bit (64 or 128) BLAKE2b hash of ``data``."""
    if bits not in (64, 128):
        raise ValueError(f"bits must be 64 or 128, not {bits}")
    return int.from_bytes(hashlib.blake2b(data, digest_size=bits // 8).digest(), "little")


def hash_str_signed(text: str) -> int:
    """64-bit BLAKE2b hash of a string's UTF-8 bytes as a *signed* int (fits np.int64)."""
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def fmix64(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """SplitMix64 finaliser: a bijective avalanche mix of every element of a uint64 array."""
    z = np.array(x, dtype=np.uint64, copy=True) if out is None else out
    if out is not None and out is not x:
        np.copyto(z, x)
    z ^= z >> _S30
    z *= _C1
    z ^= z >> _S27
    z *= _C2
    z ^= z >> _S31
    return z


def popcount64(x: np.ndarray) -> np.ndarray:
    """Number of set bits of each element of a uint64 array (SWAR, no numpy>=2 needed)."""
    v = np.asarray(x, dtype=np.uint64).copy()
    v -= (v >> np.uint64(1)) & np.uint64(0x5555555555555555)
    v = (v & np.uint64(0x3333333333333333)) + ((v >> np.uint64(2)) & np.uint64(0x3333333333333333))
    v = (v + (v >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    v *= np.uint64(0x0101010101010101)
    return (v >> np.uint64(56)).astype(np.int64)
