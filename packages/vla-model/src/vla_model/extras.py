"""Optional VLA inputs and outputs: camera/timestamp embeddings, continuous-feature projector,
action-regression head. Built only for the extras switched on in `VLAExtrasConfig`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vla_model.config import VLAExtrasConfig


def _check_ids(name: str, ids: torch.Tensor, size: int, shape: torch.Size) -> None:
    if ids.shape != shape:
        raise ValueError(f"{name} has shape {tuple(ids.shape)}, expected {tuple(shape)}")
    if ids.numel() and (ids.max() >= size or ids.min() < -1):
        raise ValueError(f"{name} must lie in [-1, {size - 1}] (-1 = none)")


class VLAInputs(nn.Module):
    """Adds camera and timestamp embeddings and splices projected continuous features in."""

    def __init__(self, cfg: VLAExtrasConfig, hidden_size: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.camera = nn.Embedding(cfg.num_cameras, hidden_size) if cfg.num_cameras else None
        self.time = (
            nn.Embedding(cfg.num_time_buckets, hidden_size) if cfg.num_time_buckets else None
        )
        if cfg.continuous_input_dim:
            self.projector = nn.Sequential(
                nn.Linear(cfg.continuous_input_dim, hidden_size, bias=True),
                nn.GELU(),
                nn.Linear(hidden_size, hidden_size, bias=True),
            )
        else:
            self.projector = None

    def forward(
        self,
        h: torch.Tensor,
        camera_ids: torch.Tensor | None = None,
        time_ids: torch.Tensor | None = None,
        continuous_features: torch.Tensor | None = None,
        continuous_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`h` is the token embedding `[batch, seq, hidden]`; ids are `[batch, seq]`, -1 = none."""
        shape = h.shape[:2]
        if continuous_features is not None:
            if self.projector is None:
                raise ValueError("continuous_features given but extras.continuous_input_dim is 0")
            if continuous_mask is None or continuous_mask.shape != shape:
                raise ValueError(f"continuous_mask must be a bool tensor of shape {tuple(shape)}")
            projected = self.projector(continuous_features.to(h.dtype))
            h = torch.where(continuous_mask[..., None], projected, h)
        for name, ids, table in (
            ("camera_ids", camera_ids, self.camera),
            ("time_ids", time_ids, self.time),
        ):
            if ids is None:
                continue
            if table is None:
                raise ValueError(f"{name} given but the matching extra is switched off")
            _check_ids(name, ids, table.num_embeddings, shape)
            present = ids >= 0
            h = h + F.embedding(ids.clamp(min=0), table.weight) * present[..., None].to(h.dtype)
        return h


class ActionHead(nn.Module):
    """Linear regression from final hidden states to `[batch, seq, horizon, action_dim]`."""

    def __init__(self, cfg: VLAExtrasConfig, hidden_size: int) -> None:
        super().__init__()
        self.horizon, self.action_dim = cfg.action_horizon, cfg.action_dim
        self.proj = nn.Linear(hidden_size, cfg.action_horizon * cfg.action_dim, bias=True)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.proj(h).view(*h.shape[:2], self.horizon, self.action_dim)
