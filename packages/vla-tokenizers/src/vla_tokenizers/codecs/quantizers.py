"""Quantizers turning continuous latents into integer codes: VQ (EMA codebook), FSQ, residual VQ.

One interface (`Quantizer`):

- ``forward(z)`` with ``z`` of shape ``(B, C, *positions)`` (channels first, as conv layers give
  them) returns a `QuantizerOutput`: straight-through latents of ``z``'s shape (the forward value
  is the quantized latent, the gradient flows to ``z``), integer ``codes`` of shape
  ``(B, *positions, depth)`` with values in ``[0, codebook_size)``, and a ``losses`` dict of scalar
  tensors to add to the training loss (``commitment`` for VQ/RVQ, empty for FSQ).
- ``decode(codes)`` maps codes back to latents ``(B, C, *positions)``.

``depth`` is 1 for VQ and FSQ and the number of levels for residual VQ. A position's token ids are
``codes[..., d] + d * codebook_size`` (see `tokens.py`), so a quantizer spans ``vocab_size =
depth * codebook_size`` ids.

VQ follows van den Oord et al. (2017) with the EMA codebook of the VQ-VAE-2 paper: codebook
vectors are exponential moving averages of the encoder outputs assigned to them (Laplace-smoothed
counts), the encoder is pulled to its codes by the commitment loss ``beta * ||z - sg(q)||^2``.
The codebook is initialised from the first training batch's encoder outputs. ``usage`` is the
EMA (same decay) of each code's share of a batch's assignments; a code whose usage falls below
``dead_threshold / codebook_size`` (default 0.1: a tenth of a uniform share; with decay 0.99 an
unused code gets there after ~230 steps) is restarted at a random encoder output of the
current batch (``restarts`` counts them). FSQ is Mentzer et al. (2023): each channel is bounded with tanh
and rounded to ``levels[i]`` values; the code id is the mixed-radix number of the per-channel
digits (channel 0 least significant).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class QuantizerOutput:
    latents: torch.Tensor  # straight-through quantized latents, shape of the input
    codes: torch.Tensor  # int64 (B, *positions, depth)
    losses: dict[str, torch.Tensor] = field(default_factory=dict)


def _channels_last(z: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    """(B, C, *pos) -> ((N, C) rows, (B, *pos))."""
    if z.dim() < 2:
        raise ValueError(f"latents must be (B, C, ...), got shape {tuple(z.shape)}")
    c = z.shape[1]
    moved = z.movedim(1, -1)
    return moved.reshape(-1, c), tuple(moved.shape[:-1])


def full_precision(t: torch.Tensor):
    """Context that turns autocast off on `t`'s device (distances, EMA and bounds stay fp32)."""
    return torch.autocast(device_type=t.device.type, enabled=False)


def _channels_first(rows: torch.Tensor, lead: tuple[int, ...]) -> torch.Tensor:
    return rows.reshape(*lead, rows.shape[-1]).movedim(-1, 1)


class Quantizer(nn.Module, ABC):
    """Common base: `dim` latent channels, `codebook_size` codes per level, `depth` levels."""

    dim: int
    codebook_size: int
    depth: int = 1

    @property
    def vocab_size(self) -> int:
        """Token ids this quantizer needs (``depth * codebook_size``)."""
        return self.depth * self.codebook_size

    @abstractmethod
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Integer codes ``(B, *positions, depth)`` -> latents ``(B, dim, *positions)``."""

    def _check_codes(self, codes: torch.Tensor) -> torch.Tensor:
        if codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise ValueError(f"codes must be an integer tensor, got {codes.dtype}")
        if codes.dim() < 2 or codes.shape[-1] != self.depth:
            raise ValueError(
                f"codes must have shape (B, ..., {self.depth}), got {tuple(codes.shape)}"
            )
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(f"codes must lie in [0, {self.codebook_size})")
        return codes.long()


class VectorQuantizerEMA(Quantizer):
    """VQ with an EMA-updated codebook, commitment loss, usage tracking and dead-code restarts."""

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        *,
        decay: float = 0.99,
        beta: float = 0.25,
        eps: float = 1e-5,
        dead_threshold: float = 0.1,
        data_init: bool = True,
    ):
        super().__init__()
        if codebook_size < 2:
            raise ValueError("codebook_size must be at least 2")
        if not 0.0 < decay < 1.0:
            raise ValueError("decay must lie in (0, 1)")
        self.dim, self.codebook_size = dim, codebook_size
        self.decay, self.beta, self.eps = decay, beta, eps
        self.dead_threshold, self.data_init = dead_threshold, data_init
        embed = torch.randn(codebook_size, dim) / math.sqrt(dim)
        self.register_buffer("embed", embed)
        self.register_buffer("ema_count", torch.ones(codebook_size))
        self.register_buffer("ema_sum", embed.clone())
        # EMA of each code's share of the assignments (sums to ~1): the usage tracker.
        self.register_buffer("usage", torch.full((codebook_size,), 1.0 / codebook_size))
        self.register_buffer("restarts", torch.zeros((), dtype=torch.int64))
        self.register_buffer("initialized", torch.tensor(not data_init))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, codebook_size={self.codebook_size}, decay={self.decay}"

    def nearest(self, rows: torch.Tensor) -> torch.Tensor:
        """Index of the nearest codebook vector (squared L2) for each row of (N, dim)."""
        embed = self.embed.to(rows.dtype)
        d = (
            rows.pow(2).sum(1, keepdim=True)
            - 2 * rows @ embed.t()
            + embed.pow(2).sum(1).unsqueeze(0)
        )
        return d.argmin(1)

    @torch.no_grad()
    def _init_from(self, rows: torch.Tensor) -> None:
        picks = torch.randint(0, rows.shape[0], (self.codebook_size,), device=rows.device)
        chosen = rows[picks] + 1e-4 * torch.randn_like(rows[picks])
        self.embed.copy_(chosen)
        self.ema_sum.copy_(chosen)
        self.ema_count.fill_(1.0)
        self.initialized.fill_(True)

    @torch.no_grad()
    def _ema_update(self, rows: torch.Tensor, codes: torch.Tensor) -> None:
        onehot = F.one_hot(codes, self.codebook_size).to(rows.dtype)
        counts = onehot.sum(0)
        sums = onehot.t() @ rows
        self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.ema_count.sum()
        smoothed = (self.ema_count + self.eps) / (n + self.codebook_size * self.eps) * n
        self.embed.copy_(self.ema_sum / smoothed.unsqueeze(1))
        self.usage.mul_(self.decay).add_(counts / counts.sum(), alpha=1 - self.decay)

    @torch.no_grad()
    def restart_dead_codes(self, rows: torch.Tensor) -> int:
        """Move codes whose EMA usage is below ``dead_threshold / codebook_size`` onto random
        rows of ``rows`` (encoder outputs); returns how many were restarted."""
        dead = torch.nonzero(self.usage < self.dead_threshold / self.codebook_size).squeeze(1)
        if dead.numel() == 0:
            return 0
        picks = torch.randint(0, rows.shape[0], (dead.numel(),), device=rows.device)
        new = rows[picks].to(self.embed.dtype)
        self.embed[dead] = new
        self.ema_sum[dead] = new
        self.ema_count[dead] = 1.0
        self.usage[dead] = 1.0 / self.codebook_size
        self.restarts.add_(dead.numel())
        return int(dead.numel())

    def quantize_rows(self, rows: torch.Tensor, update: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, dim) rows -> (quantized rows (no gradient), codes (N,)); EMA update if `update`."""
        with full_precision(rows):
            rows_f = rows.detach().float()
            if update and not bool(self.initialized):
                self._init_from(rows_f)
            codes = self.nearest(rows_f)
            q = F.embedding(codes, self.embed).to(rows.dtype)  # before this batch's update
            if update:
                self._ema_update(rows_f, codes)
                self.restart_dead_codes(rows_f)
            return q, codes

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        rows, lead = _channels_last(z)
        if rows.shape[1] != self.dim:
            raise ValueError(f"latents have {rows.shape[1]} channels, quantizer expects {self.dim}")
        q, codes = self.quantize_rows(rows, update=self.training)
        commitment = self.beta * F.mse_loss(rows, q.detach())
        st = rows + (q - rows).detach()
        return QuantizerOutput(
            _channels_first(st, lead), codes.reshape(*lead, 1), {"commitment": commitment}
        )

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        codes = self._check_codes(codes)
        return F.embedding(codes[..., 0], self.embed).movedim(-1, 1)


class ResidualVQ(Quantizer):
    """Residual VQ (SoundStream/EnCodec): level k quantizes what levels < k left over.

    Codes are ``(B, *positions, levels)``; decoding sums the levels' codebook vectors.
    ``forward(z, levels=k)`` and ``decode(codes[..., :k])`` use only the first k levels.
    """

    def __init__(self, dim: int, codebook_size: int, levels: int, **vq_options):
        super().__init__()
        if levels < 1:
            raise ValueError("levels must be at least 1")
        self.dim, self.codebook_size, self.depth = dim, codebook_size, levels
        self.layers = nn.ModuleList(
            VectorQuantizerEMA(dim, codebook_size, **vq_options) for _ in range(levels)
        )

    def forward(self, z: torch.Tensor, levels: int | None = None) -> QuantizerOutput:
        rows, lead = _channels_last(z)
        if rows.shape[1] != self.dim:
            raise ValueError(f"latents have {rows.shape[1]} channels, quantizer expects {self.dim}")
        n = self.depth if levels is None else levels
        if not 1 <= n <= self.depth:
            raise ValueError(f"levels must lie in [1, {self.depth}], got {n}")
        residual = rows
        total = torch.zeros_like(rows)
        codes, commitment = [], rows.new_zeros(())
        for layer in self.layers[:n]:
            q, c = layer.quantize_rows(residual.detach(), update=self.training)
            # Each level commits what is left of z after the previous levels (gradient to z).
            commitment = commitment + layer.beta * F.mse_loss(residual, q)
            total = total + q
            residual = residual - q
            codes.append(c)
        st = rows + (total - rows).detach()
        return QuantizerOutput(
            _channels_first(st, lead),
            torch.stack(codes, -1).reshape(*lead, n),
            {"commitment": commitment},
        )

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        if codes.dim() < 2 or not 1 <= codes.shape[-1] <= self.depth:
            raise ValueError(
                f"codes must have shape (B, ..., k) with 1 <= k <= {self.depth}, "
                f"got {tuple(codes.shape)}"
            )
        if codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise ValueError(f"codes must be an integer tensor, got {codes.dtype}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(f"codes must lie in [0, {self.codebook_size})")
        codes = codes.long()
        out = sum(F.embedding(codes[..., k], self.layers[k].embed) for k in range(codes.shape[-1]))
        return out.movedim(-1, 1)


class FSQ(Quantizer):
    """Finite scalar quantization: channel i takes ``levels[i]`` values; no codebook, no loss."""

    def __init__(self, levels: Sequence[int], eps: float = 1e-3):
        super().__init__()
        levels = [int(x) for x in levels]
        if not levels or any(x < 2 for x in levels):
            raise ValueError(f"FSQ levels must be integers >= 2, got {levels}")
        self.levels_list = levels
        self.dim = len(levels)
        self.codebook_size = math.prod(levels)
        self.eps = eps
        lv = torch.tensor(levels, dtype=torch.int64)
        basis = torch.cumprod(torch.cat([torch.ones(1, dtype=torch.int64), lv[:-1]]), 0)
        self.register_buffer("_levels", lv, persistent=False)
        self.register_buffer("_basis", basis, persistent=False)

    def extra_repr(self) -> str:
        return f"levels={self.levels_list}"

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """Squash channels-last ``z`` into (-L/2, L/2) with the even-level offset of the paper."""
        lv = self._levels.to(z.dtype)
        half_l = (lv - 1) * (1 + self.eps) / 2
        offset = torch.where(self._levels % 2 == 0, 0.5, 0.0).to(z.dtype)
        shift = torch.atanh(offset / half_l)
        return torch.tanh(z + shift) * half_l - offset

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        rows, lead = _channels_last(z)
        if rows.shape[1] != self.dim:
            raise ValueError(f"latents have {rows.shape[1]} channels, FSQ expects {self.dim}")
        with full_precision(rows):
            bounded = self.bound(rows.float())
        rounded = bounded + (torch.round(bounded) - bounded).detach()
        half_width = (self._levels // 2).to(rounded.dtype)
        normalized = rounded / half_width
        digits = (torch.round(rounded).long() + self._levels // 2).clamp_min(0)
        codes = (digits * self._basis).sum(-1)
        return QuantizerOutput(
            _channels_first(normalized.to(z.dtype), lead), codes.reshape(*lead, 1), {}
        )

    def codes_to_digits(self, codes: torch.Tensor) -> torch.Tensor:
        """Mixed-radix digits (..., dim) of code ids (...)."""
        return (codes.long().unsqueeze(-1) // self._basis) % self._levels

    def digits_to_codes(self, digits: torch.Tensor) -> torch.Tensor:
        return (digits.long() * self._basis).sum(-1)

    def codes_from_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Codes (B, *positions, 1) of already-quantized latents (B, dim, *positions)."""
        rows, lead = _channels_last(latents)
        half_width = self._levels // 2
        digits = torch.round(rows.float() * half_width) + half_width
        if bool(((digits < 0) | (digits >= self._levels)).any()):
            raise ValueError("latents are outside the FSQ grid")
        return self.digits_to_codes(digits).reshape(*lead, 1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        codes = self._check_codes(codes)
        digits = self.codes_to_digits(codes[..., 0])
        half_width = self._levels // 2
        return ((digits - half_width).float() / half_width.float()).movedim(-1, 1)


QUANTIZERS = ("vq", "fsq", "rvq")


def make_quantizer(
    kind: str,
    *,
    dim: int,
    codebook_size: int = 1024,
    levels: int = 1,
    fsq_levels: Sequence[int] = (8, 5, 5, 5),
    decay: float = 0.99,
    beta: float = 0.25,
    dead_threshold: float = 0.1,
) -> Quantizer:
    """Build a quantizer by name: ``vq`` | ``fsq`` | ``rvq``. For FSQ, ``dim`` must equal
    ``len(fsq_levels)``."""
    if kind == "vq":
        return VectorQuantizerEMA(
            dim, codebook_size, decay=decay, beta=beta, dead_threshold=dead_threshold
        )
    if kind == "rvq":
        return ResidualVQ(
            dim, codebook_size, levels, decay=decay, beta=beta, dead_threshold=dead_threshold
        )
    if kind == "fsq":
        if dim != len(fsq_levels):
            raise ValueError(f"FSQ with levels {list(fsq_levels)} needs dim {len(fsq_levels)}")
        return FSQ(fsq_levels)
    raise ValueError(f"unknown quantizer {kind!r} (choose from {', '.join(QUANTIZERS)})")
