"""Preallocated key/value cache for incremental decoding."""

from __future__ import annotations

import torch


class LayerKVCache:
    """Keys and values of one attention layer, `[batch, kv_heads, max_len, head_dim]`."""

    def __init__(
        self,
        batch: int,
        num_kv_heads: int,
        head_dim: int,
        max_len: int,
        dtype: torch.dtype,
        device: torch.device | str,
    ) -> None:
        shape = (batch, num_kv_heads, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.length = 0

    @property
    def max_len(self) -> int:
        return self.k.shape[2]

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store new keys/values (`[batch, kv_heads, n, head_dim]`); return all cached so far."""
        n = k.shape[2]
        end = self.length + n
        if end > self.max_len:
            raise ValueError(f"KV cache full: {self.length} + {n} tokens > max_len {self.max_len}")
        self.k[:, :, self.length : end] = k
        self.v[:, :, self.length : end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]


class KVCache:
    """One `LayerKVCache` per decoder layer; `length` is the number of cached positions."""

    def __init__(
        self,
        num_layers: int,
        batch: int,
        num_kv_heads: int,
        head_dim: int,
        max_len: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        self.layers = [
            LayerKVCache(batch, num_kv_heads, head_dim, max_len, dtype, device)
            for _ in range(num_layers)
        ]

    @property
    def length(self) -> int:
        return self.layers[0].length

    def __getitem__(self, i: int) -> LayerKVCache:
        return self.layers[i]
