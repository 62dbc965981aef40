"""The six-camera rig: pinhole intrinsics and camera-to-ego extrinsics as in nuScenes.

A camera frame is OpenCV's (x right, y down, z forward); an extrinsic is the translation and the
rotation (quaternion ``w, x, y, z``) of the camera in the ego frame, so a camera point ``p`` is
``R @ p + t`` in the ego frame (nuScenes ``calibrated_sensor``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CAMERAS = ("front", "front_left", "front_right", "back", "back_left", "back_right")
# name: (yaw in the ego frame in degrees, horizontal field of view, mount x, y, z in metres)
RIG_LAYOUT = {
    "front": (0.0, 70.0, 1.7, 0.0, 1.55),
    "front_left": (55.0, 70.0, 1.5, 0.5, 1.55),
    "front_right": (-55.0, 70.0, 1.5, -0.5, 1.55),
    "back": (180.0, 110.0, -1.0, 0.0, 1.55),
    "back_left": (110.0, 70.0, 1.0, 0.5, 1.55),
    "back_right": (-110.0, 70.0, 1.0, -0.5, 1.55),
}
# camera axes in the ego frame for a forward-looking camera: x_cam -> -y, y_cam -> -z, z_cam -> x
_CAM_TO_FORWARD = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def rot_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def quaternion_from_matrix(r: np.ndarray) -> tuple[float, float, float, float]:
    """Unit quaternion ``(w, x, y, z)`` of a rotation matrix, with ``w >= 0``."""
    w = np.sqrt(max(0.0, 1.0 + r[0, 0] + r[1, 1] + r[2, 2])) / 2
    x = np.copysign(np.sqrt(max(0.0, 1.0 + r[0, 0] - r[1, 1] - r[2, 2])) / 2, r[2, 1] - r[1, 2])
    y = np.copysign(np.sqrt(max(0.0, 1.0 - r[0, 0] + r[1, 1] - r[2, 2])) / 2, r[0, 2] - r[2, 0])
    z = np.copysign(np.sqrt(max(0.0, 1.0 - r[0, 0] - r[1, 1] + r[2, 2])) / 2, r[1, 0] - r[0, 1])
    q = np.array([w, x, y, z]) / np.linalg.norm([w, x, y, z])
    return tuple(float(v) for v in q)


def matrix_from_quaternion(q) -> np.ndarray:
    """Rotation matrix of a quaternion ``(w, x, y, z)`` (normalised first)."""
    w, x, y, z = np.asarray(q, dtype=float) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


@dataclass(frozen=True)
class Camera:
    """One calibrated camera of the rig."""

    name: str
    width: int
    height: int
    intrinsic: np.ndarray  # 3x3
    rotation: np.ndarray  # 3x3, camera -> ego
    translation: np.ndarray  # (3,), camera origin in the ego frame

    def calibration(self) -> dict:
        """JSON-ready calibration: intrinsic 3x3, translation, rotation quaternion (w, x, y, z)."""
        return {
            "intrinsic": self.intrinsic.round(6).tolist(),
            "translation": self.translation.round(6).tolist(),
            "rotation": [round(v, 9) for v in quaternion_from_matrix(self.rotation)],
            "width": self.width,
            "height": self.height,
        }


def make_rig(width: int = 640, height: int = 480) -> dict[str, Camera]:
    """The six cameras of `RIG_LAYOUT` at ``width x height`` (square pixels, centred)."""
    rig = {}
    for name in CAMERAS:
        yaw, fov, *mount = RIG_LAYOUT[name]
        f = width / (2 * np.tan(np.radians(fov) / 2))
        k = np.array([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])
        rotation = rot_z(np.radians(yaw)) @ _CAM_TO_FORWARD
        rig[name] = Camera(name, width, height, k, rotation, np.array(mount, dtype=float))
    return rig
