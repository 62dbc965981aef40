"""A procedural driving simulator for the offline sample corpus: a winding road with traffic,
buildings and trees, an ego car driven by a lane-keeping policy, and six calibrated cameras
rendered at 480p@12Hz with consistent geometry.

```python
from vla_data.sim import Drive

drive = Drive(seed=0, seconds=2.0)                 # world + ego CAN log (100 Hz, its own clock)
drive.frame_times_us["front"]                      # int64 microseconds, 12 Hz with small jitter
image = drive.frame("front_left", 5)               # (480, 640, 3) uint8
drive.calibration()["back"]                        # intrinsic, translation, rotation (w, x, y, z)
drive.can                                          # t_us, steering, throttle, brake, speed, x, y, yaw
```
"""

from __future__ import annotations

import numpy as np

from vla_data.sim.camera import CAMERAS, Camera, make_rig, matrix_from_quaternion
from vla_data.sim.render import render
from vla_data.sim.world import World, drive, make_world

__all__ = [
    "CAMERAS",
    "Camera",
    "Drive",
    "World",
    "make_rig",
    "make_world",
    "matrix_from_quaternion",
]

CAN_RATE_HZ = 100.0


class Drive:
    """One simulated drive: the world, the ego's CAN log and the six cameras' frame clocks.

    Camera frames are nominally at ``fps`` from ``start_us``; each camera's exposures carry an
    independent jitter of up to ``jitter_us``. The CAN log runs at 100 Hz on its own grid,
    starting ``can_offset_us`` after the cameras' start.
    """

    def __init__(
        self,
        seed: int = 0,
        seconds: float = 2.0,
        fps: float = 12.0,
        width: int = 640,
        height: int = 480,
        start_us: int = 1_700_000_000_000_000,
        jitter_us: int = 400,
        can_offset_us: int = 3_000,
    ):
        self.seed, self.fps = seed, fps
        self.world = make_world(seed)
        self.rig = make_rig(width, height)
        self.n_frames = int(round(seconds * fps))
        rng = np.random.default_rng([seed, 0xCA3])
        nominal = start_us + np.round(np.arange(self.n_frames) * 1e6 / fps).astype(np.int64)
        self.frame_times_us = {
            cam: nominal + rng.integers(-jitter_us, jitter_us + 1, self.n_frames) for cam in CAMERAS
        }
        log = drive(self.world, seconds + 0.5, CAN_RATE_HZ)
        self.start_us = start_us
        self.can = {
            "t_us": start_us + can_offset_us + np.round(log.pop("t") * 1e6).astype(np.int64)
        }
        self.can |= log

    def ego_pose(self, t_us: int) -> tuple[float, float, float]:
        """Ego ``(x, y, yaw)`` at ``t_us``, interpolated from the CAN log."""
        t = self.can["t_us"]
        yaw = np.unwrap(self.can["yaw"])
        return (
            float(np.interp(t_us, t, self.can["x"])),
            float(np.interp(t_us, t, self.can["y"])),
            float(np.interp(t_us, t, yaw)),
        )

    def frame(self, camera: str, index: int) -> np.ndarray:
        """Frame ``index`` of ``camera`` as (H, W, 3) uint8."""
        t_us = int(self.frame_times_us[camera][index])
        boxes = self.world.boxes_at((t_us - self.start_us) / 1e6)
        return render(self.rig[camera], self.ego_pose(t_us), self.world.road, boxes)

    def calibration(self) -> dict[str, dict]:
        """Per-camera calibration, JSON-ready (nuScenes conventions)."""
        return {name: cam.calibration() for name, cam in self.rig.items()}

    def actions(self) -> tuple[np.ndarray, np.ndarray]:
        """``(t_us, values)`` of the CAN signals steering, throttle, brake, speed."""
        values = np.stack([self.can[k] for k in ("steering", "throttle", "brake", "speed")], 1)
        return self.can["t_us"], values.astype(np.float32)
