"""Synchronise a rig's cameras to a reference clock and resample CAN signals and ego pose to it.

Algorithm (all times in microseconds, reference period ``P = 1e6 / rate_hz``):

1. Per camera, timestamps must not go backwards (else the rig is malformed). A frame whose
   timestamp equals its predecessor's is a **duplicated timestamp**; it is set aside.
2. Every frame gets a grid index: the first from its distance to the anchor ``A`` (the median
   of the cameras' first timestamps), each next one by the rounded number of periods since its
   predecessor (at least 1), so slow drift never wraps around.
3. Per camera, the residuals ``t - A - k P`` are fitted by a robust line ``a + b k``: ``a`` is
   the camera's clock offset, ``b`` its drift per tick. The rig's consensus clock is the median
   ``a`` and ``b`` over cameras; a camera more than ``offset_tolerance_ms`` off the consensus has
   a **clock offset**, one whose drift adds up to more than ``drift_tolerance_ms`` over its
   frames has **clock drift**, and one whose median period is off by more than
   ``rate_tolerance`` has a wrong **frame rate** (its drift is then not estimated).
4. With ``correct_clocks``, each camera's own offset and drift are removed; the reference ticks
   are ``A + median(a) + k (P + median(b))`` from the earliest to the latest camera frame.
5. Each tick takes, per camera, the nearest frame within ``tolerance_ms``. A tick left without
   a frame is a **dropped frame** of that camera; a frame that serves no tick is **unsynced**.

Offsets are resolved to within half a period (a camera 50 ms late at 12 Hz is indistinguishable
from one 33 ms early that starts a frame later).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from vla_data.rig.config import RigSyncConfig
from vla_data.rig.layout import CAMERAS, RigError
from vla_data.sample import RigDefect

MAX_WHERE = 100


@dataclass(frozen=True)
class CameraClock:
    camera: str
    frames: int  # timestamps given
    offset_us: float  # against the consensus clock, at the anchor
    drift_ppm: float  # against the consensus clock
    period_us: float  # median frame period
    matched: int  # frames that serve a tick


@dataclass
class SyncResult:
    """Reference ticks, the frame each camera contributes to each tick, and the defects."""

    rate_hz: float
    ticks_us: np.ndarray  # int64 (K,)
    frame_index: np.ndarray  # int32 (K, 6), columns in CAMERAS order, -1 = no frame
    residual_us: np.ndarray  # float32 (K, 6), matched frame time (corrected) minus tick; NaN
    clocks: dict[str, CameraClock]
    missing: list[str]
    corrected: bool
    defects: list[RigDefect] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        if len(self.ticks_us) < 2:
            return 0.0
        return float(self.ticks_us[-1] - self.ticks_us[0]) / 1e6 + 1.0 / self.rate_hz

    def defect_summary(self) -> list[tuple[str, str | None, int]]:
        return [(d.kind, d.camera, d.count) for d in self.defects]


def _defect(
    kind: str, camera: str | None, where=(), count=None, value=None, detail=""
) -> RigDefect:
    where = [int(x) for x in list(where)[:MAX_WHERE]]
    return RigDefect(
        kind=kind,  # type: ignore[arg-type]
        camera=camera,
        count=len(where) if count is None else int(count),
        where=where,
        value=None if value is None else round(float(value), 3),
        detail=detail,
    )


def _robust_line(k: np.ndarray, r: np.ndarray) -> tuple[float, float]:
    """Intercept and slope of ``r ~ a + b k``, refitted without outliers (3 MAD, >= 1 ms)."""
    if len(k) < 3 or k[-1] == k[0]:
        return float(np.median(r)), 0.0
    kf = k.astype(np.float64)
    b, a = np.polyfit(kf, r, 1)
    res = r - (a + b * kf)
    mad = 1.4826 * float(np.median(np.abs(res - np.median(res))))
    keep = np.abs(res) <= max(3 * mad, 1000.0)
    if 3 <= keep.sum() < len(k) and np.ptp(kf[keep]) > 0:
        b, a = np.polyfit(kf[keep], r[keep], 1)
    return float(a), float(b)


def synchronise(
    timestamps: Mapping[str, np.ndarray],
    config: RigSyncConfig | None = None,
    *,
    files: Mapping[str, str] | None = None,
) -> SyncResult:
    """Synchronise the cameras in ``timestamps`` (name -> int64 microseconds per frame).

    Cameras of :data:`CAMERAS` not in ``timestamps`` are reported missing. ``files`` names each
    camera's timestamps file for error messages.
    """
    config = config or RigSyncConfig()
    files = files or {}
    period = 1e6 / config.rate_hz
    tol = config.tolerance_ms * 1000
    defects: list[RigDefect] = []
    unknown = sorted(set(timestamps) - set(CAMERAS))
    if unknown:
        raise ValueError(f"unknown cameras {unknown}")
    present = [c for c in CAMERAS if c in timestamps]
    missing = [c for c in CAMERAS if c not in timestamps]
    for c in missing:
        defects.append(_defect("missing_camera", c, count=1, detail=f"no {c} camera in the rig"))
    if len(present) < config.min_cameras:
        raise RigError(
            "rig.json", f"{len(present)} camera(s) present, at least {config.min_cameras} needed"
        )

    uniq: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # camera -> (original index, times)
    bad_rate: set[str] = set()
    medians: dict[str, float] = {}
    for c in present:
        t = np.asarray(timestamps[c], dtype=np.int64).ravel()
        name = files.get(c, f"{c} timestamps")
        if t.size == 0:
            raise RigError(name, "no timestamps")
        d = np.diff(t)
        if (d < 0).any():
            i = int(np.flatnonzero(d < 0)[0]) + 1
            raise RigError(name, f"timestamps go backwards at frame {i} ({t[i - 1]} -> {t[i]})")
        dup = np.flatnonzero(d == 0) + 1
        if dup.size:
            defects.append(
                _defect(
                    "duplicate_timestamps",
                    c,
                    dup,
                    count=dup.size,
                    detail=f"{dup.size} frame(s) repeat the previous frame's timestamp",
                )
            )
        keep = np.ones(t.size, dtype=bool)
        keep[dup] = False
        idx = np.flatnonzero(keep)
        uniq[c] = (idx, t[keep])
        tu = t[keep]
        medians[c] = float(np.median(np.diff(tu))) if tu.size > 1 else period
        if tu.size >= 3 and abs(medians[c] / period - 1) > config.rate_tolerance:
            bad_rate.add(c)
            defects.append(
                _defect(
                    "frame_rate",
                    c,
                    count=1,
                    value=1e6 / medians[c],
                    detail=f"median period {medians[c] / 1000:.2f} ms "
                    f"({1e6 / medians[c]:.3f} Hz), the reference {config.rate_hz:g} Hz",
                )
            )

    anchor = float(np.median([uniq[c][1][0] for c in present]))
    grid: dict[str, np.ndarray] = {}
    fits: dict[str, tuple[float, float]] = {}
    for c in present:
        tu = uniq[c][1].astype(np.float64)
        k0 = int(np.rint((tu[0] - anchor) / period))
        steps = np.maximum(1, np.rint(np.diff(tu) / period)).astype(np.int64)
        k = k0 + np.concatenate([[0], np.cumsum(steps)])
        grid[c] = k
        r = tu - anchor - k * period
        a, b = _robust_line(k, r)
        fits[c] = (a, 0.0) if c in bad_rate else (a, b)
    good = [c for c in present if c not in bad_rate] or present
    cons_a = float(np.median([fits[c][0] for c in present]))
    cons_b = float(np.median([fits[c][1] for c in good]))
    tick_period = period + cons_b

    clocks_rel: dict[str, tuple[float, float]] = {}
    for c in present:
        da, db = fits[c][0] - cons_a, (fits[c][1] - cons_b if c not in bad_rate else 0.0)
        clocks_rel[c] = (da, db)
        k = grid[c]
        if abs(da) > config.offset_tolerance_ms * 1000:
            defects.append(
                _defect(
                    "clock_offset",
                    c,
                    count=1,
                    value=da / 1000,
                    detail=f"clock {da / 1000:+.1f} ms off the rig's consensus"
                    + (" (corrected)" if config.correct_clocks else ""),
                )
            )
        span = float(k[-1] - k[0])
        if abs(db) * span > config.drift_tolerance_ms * 1000:
            defects.append(
                _defect(
                    "clock_drift",
                    c,
                    count=1,
                    value=db / period * 1e6,
                    detail=f"clock drifts {db / period * 1e6:+.0f} ppm "
                    f"({db * span / 1000:+.1f} ms over {span:.0f} ticks)"
                    + (" (corrected)" if config.correct_clocks else ""),
                )
            )

    kmin = min(int(grid[c][0]) for c in present)
    kmax = max(int(grid[c][-1]) for c in present)
    n_ticks = kmax - kmin + 1
    origin = anchor + cons_a + kmin * tick_period
    ticks = np.rint(origin + np.arange(n_ticks) * tick_period).astype(np.int64)
    frame_index = np.full((n_ticks, len(CAMERAS)), -1, dtype=np.int32)
    residual = np.full((n_ticks, len(CAMERAS)), np.nan, dtype=np.float32)
    clocks: dict[str, CameraClock] = {}
    for c in present:
        col = CAMERAS.index(c)
        idx, tu = uniq[c]
        tc = tu.astype(np.float64)
        if config.correct_clocks:
            da, db = clocks_rel[c]
            tc = tc - (da + db * grid[c])
        j = np.rint((tc - origin) / tick_period).astype(np.int64)
        res = tc - (origin + j * tick_period)
        ok = (np.abs(res) <= tol) & (j >= 0) & (j < n_ticks)
        cand = np.flatnonzero(ok)
        cand = cand[np.argsort(np.abs(res[cand]), kind="stable")]
        _, first = np.unique(j[cand], return_index=True)
        chosen = np.sort(cand[first])
        frame_index[j[chosen], col] = idx[chosen]
        residual[j[chosen], col] = res[chosen]
        unsynced = np.setdiff1d(np.arange(len(idx)), chosen)
        if unsynced.size:
            defects.append(
                _defect(
                    "unsynced_frames",
                    c,
                    idx[unsynced],
                    count=unsynced.size,
                    detail=f"{unsynced.size} frame(s) more than {config.tolerance_ms:g} ms "
                    "from every free tick",
                )
            )
        dropped = np.flatnonzero(frame_index[:, col] < 0)
        if dropped.size:
            defects.append(
                _defect(
                    "dropped_frames",
                    c,
                    dropped,
                    count=dropped.size,
                    detail=f"{dropped.size} tick(s) without a {c} frame",
                )
            )
        da, db = clocks_rel[c]
        clocks[c] = CameraClock(
            camera=c,
            frames=int(np.asarray(timestamps[c]).size),
            offset_us=da,
            drift_ppm=db / period * 1e6,
            period_us=medians[c],
            matched=int(chosen.size),
        )
    order = {k: i for i, k in enumerate(RigDefect.model_fields["kind"].annotation.__args__)}
    defects.sort(key=lambda d: (CAMERAS.index(d.camera) if d.camera else -1, order[d.kind]))
    return SyncResult(
        rate_hz=1e6 / tick_period,
        ticks_us=ticks,
        frame_index=frame_index,
        residual_us=residual,
        clocks=clocks,
        missing=missing,
        corrected=config.correct_clocks,
        defects=defects,
    )


def interpolate_signals(
    t_us: np.ndarray, values: np.ndarray, ticks_us: np.ndarray, *, max_gap_ms: float, what: str
) -> tuple[np.ndarray, list[RigDefect]]:
    """Linear interpolation of each column at the ticks, held at the ends; with the defects:
    ticks outside the signal's time range and gaps longer than ``max_gap_ms`` over the ticks."""
    t = np.asarray(t_us, dtype=np.float64)
    x = np.asarray(ticks_us, dtype=np.float64)
    out = np.stack([np.interp(x, t, values[:, j]) for j in range(values.shape[1])], 1)
    defects = []
    outside = np.flatnonzero((x < t[0]) | (x > t[-1]))
    kind = "actions_out_of_range" if what == "actions" else "ego_pose_out_of_range"
    if outside.size:
        defects.append(
            _defect(
                kind,
                None,
                outside,
                count=outside.size,
                detail=f"{outside.size} tick(s) outside the {what} time range (values held)",
            )
        )
    if what == "actions" and t.size > 1 and x.size:
        gaps = np.flatnonzero(np.diff(t) > max_gap_ms * 1000)
        gaps = gaps[(t[gaps + 1] > x[0]) & (t[gaps] < x[-1])]
        if gaps.size:
            inside = np.flatnonzero(
                np.any((x[:, None] > t[gaps][None]) & (x[:, None] < t[gaps + 1][None]), axis=1)
            )
            defects.append(
                _defect(
                    "can_gap",
                    None,
                    inside,
                    count=gaps.size,
                    value=float(np.max(t[gaps + 1] - t[gaps])) / 1000,
                    detail=f"{gaps.size} CAN gap(s) longer than {max_gap_ms:g} ms "
                    f"covering {inside.size} tick(s)",
                )
            )
    return out, defects


def interpolate_pose(t_us: np.ndarray, pose: np.ndarray, ticks_us: np.ndarray) -> np.ndarray:
    """Ego pose ``(x, y, z, qw, qx, qy, qz)`` at the ticks: translation linear, rotation slerp."""
    t = np.asarray(t_us, dtype=np.float64)
    x = np.clip(np.asarray(ticks_us, dtype=np.float64), t[0], t[-1])
    xyz = np.stack([np.interp(x, t, pose[:, j]) for j in range(3)], 1)
    q = pose[:, 3:7] / np.linalg.norm(pose[:, 3:7], axis=1, keepdims=True)
    if len(t) == 1:
        return np.concatenate([xyz, np.repeat(q, len(x), 0)], 1)
    i = np.clip(np.searchsorted(t, x, side="right") - 1, 0, len(t) - 2)
    u = ((x - t[i]) / (t[i + 1] - t[i]))[:, None]
    q0, q1 = q[i], q[i + 1].copy()
    dot = np.sum(q0 * q1, axis=1)
    q1[dot < 0] *= -1
    dot = np.abs(dot).clip(-1.0, 1.0)[:, None]
    theta = np.arccos(dot)
    small = theta < 1e-6
    sin = np.where(small, 1.0, np.sin(theta))
    w0 = np.where(small, 1 - u, np.sin((1 - u) * theta) / sin)
    w1 = np.where(small, u, np.sin(u * theta) / sin)
    qi = w0 * q0 + w1 * q1
    qi /= np.linalg.norm(qi, axis=1, keepdims=True)
    return np.concatenate([xyz, qi], 1)
