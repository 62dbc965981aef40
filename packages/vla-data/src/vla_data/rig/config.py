"""`RigSyncConfig`: how rigs are synchronised and what counts as a defect (pydantic, no I/O)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class RigSyncConfig(BaseModel):
    """Synchronisation knobs; a rig's `rig.json` may override any of them under `"sync"`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rate_hz: float = Field(12.0, gt=0, description="reference clock of the synchronised rig")
    tolerance_ms: float = Field(
        20.0, gt=0, description="a frame serves a tick when within this of it (after correction)"
    )
    offset_tolerance_ms: float = Field(
        5.0, ge=0, description="report a camera whose clock is offset more than this"
    )
    drift_tolerance_ms: float = Field(
        5.0, ge=0, description="report a camera whose clock drifts more than this over the rig"
    )
    rate_tolerance: float = Field(
        0.05, gt=0, lt=1, description="report a camera whose median period is off by this share"
    )
    correct_clocks: bool = Field(
        True, description="remove each camera's estimated offset and drift before matching"
    )
    min_cameras: int = Field(1, ge=1, le=6, description="fewer cameras present: quarantine")
    can_max_gap_ms: float = Field(250.0, gt=0, description="report CAN gaps longer than this")
    crf: int = Field(20, ge=0, le=51, description="x264 CRF for image-sequence cameras")
    thread_count: int = Field(1, ge=0, description="decoder threads per camera (0 = auto)")

    @model_validator(mode="after")
    def _tolerance_below_half_period(self) -> RigSyncConfig:
        half = 500.0 / self.rate_hz
        if self.tolerance_ms >= half:
            raise ValueError(
                f"tolerance_ms {self.tolerance_ms} must be below half the reference period "
                f"({half:.1f} ms at {self.rate_hz:g} Hz)"
            )
        return self
