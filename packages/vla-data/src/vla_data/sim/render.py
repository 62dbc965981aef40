"""Render one camera view of the world: ray-cast ground (road, lane marks, verges) and sky,
then the boxes (vehicles, buildings, trees) as shaded polygons, far to near, with distance fog.

Every camera sees the same world at the same instant through its own calibration, so objects
move consistently between views and over time.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from vla_data.sim.camera import Camera, rot_z
from vla_data.sim.world import LANE_WIDTH, Box, Road

SKY_TOP, SKY_HORIZON = np.array([70, 120, 200]), np.array([190, 205, 225])
FOG_DISTANCE = 220.0  # m at which fog reaches 1 - 1/e
DRAW_DISTANCE = 150.0
NEAR = 0.3  # near clipping plane, m
LIGHT = np.array([0.4, 0.3, 0.85]) / np.linalg.norm([0.4, 0.3, 0.85])
_FACES = ((0, 1, 2, 3), (4, 7, 6, 5), (0, 4, 5, 1), (1, 5, 6, 2), (2, 6, 7, 3), (3, 7, 4, 0))
_RAYS: dict[tuple, np.ndarray] = {}


def _rays(camera: Camera) -> np.ndarray:
    """Per-pixel ray directions (H, W, 3) in the camera frame (cached per calibration)."""
    key = (camera.width, camera.height, camera.intrinsic.tobytes())
    if key not in _RAYS:
        u, v = np.meshgrid(np.arange(camera.width) + 0.5, np.arange(camera.height) + 0.5)
        pix = np.stack([u, v, np.ones_like(u)], axis=-1)
        _RAYS[key] = pix @ np.linalg.inv(camera.intrinsic).T
    return _RAYS[key]


def _noise(x: np.ndarray, y: np.ndarray, scale: float) -> np.ndarray:
    """Deterministic value noise in [0, 1) on a ``1/scale`` metre grid (integer hash)."""
    ix = np.floor(x * scale).astype(np.int64)
    iy = np.floor(y * scale).astype(np.int64)
    h = (ix * 73856093) ^ (iy * 19349663)
    h = (h ^ (h >> 13)) * 1274126177
    return ((h >> 8) & 0xFFFF) / 65536.0


def _ground(road: Road, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Colour (N, 3) of ground points: asphalt, lane marks, gravel verge, grass."""
    lateral = road.lateral(px, py)
    side = np.abs(lateral)
    n = _noise(px, py, 4.0)[:, None]
    grass = np.array([70, 115, 50]) * (0.8 + 0.4 * _noise(px, py, 1.5)[:, None])
    color = np.where(
        (side < LANE_WIDTH + 1.0)[:, None], np.array([150, 140, 120]) * (0.85 + 0.3 * n), grass
    )
    color = np.where((side < LANE_WIDTH)[:, None], np.array([78, 78, 82]) * (0.85 + 0.3 * n), color)
    dashes = (np.mod(px, 9.0) < 3.0) & (side < 0.08)
    edges = np.abs(side - (LANE_WIDTH - 0.15)) < 0.08
    color[dashes] = (225, 200, 60)
    color[edges] = (235, 235, 235)
    return color


def _clip_near(points: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman clip of a polygon (k, 3) in camera coordinates to ``z >= NEAR``."""
    out = []
    for i in range(len(points)):
        a, b = points[i], points[(i + 1) % len(points)]
        if a[2] >= NEAR:
            out.append(a)
        if (a[2] >= NEAR) != (b[2] >= NEAR):
            s = (NEAR - a[2]) / (b[2] - a[2])
            out.append(a + s * (b - a))
    return np.array(out)


def render(
    camera: Camera, ego_pose: tuple[float, float, float], road: Road, boxes: list[Box]
) -> np.ndarray:
    """The image (H, W, 3) uint8 that ``camera`` sees with the ego at ``(x, y, yaw)``."""
    ex, ey, eyaw = ego_pose
    r_world = rot_z(eyaw) @ camera.rotation  # camera -> world
    origin = np.array([ex, ey, 0.0]) + rot_z(eyaw) @ camera.translation
    d = _rays(camera) @ r_world.T
    h, w = camera.height, camera.width
    elevation = np.clip(d[..., 2] / np.linalg.norm(d, axis=-1), -1, 1)
    sky = SKY_HORIZON + (SKY_TOP - SKY_HORIZON) * np.clip(elevation, 0, 1)[..., None] ** 0.6
    image = sky.reshape(-1, 3)
    down = d[..., 2].reshape(-1) < -1e-4
    t = -origin[2] / d.reshape(-1, 3)[down, 2]
    points = origin + t[:, None] * d.reshape(-1, 3)[down]
    dist = t * np.linalg.norm(d.reshape(-1, 3)[down], axis=-1)
    fog = 1 - np.exp(-dist / FOG_DISTANCE)
    ground = _ground(road, points[:, 0], points[:, 1])
    image[down] = ground * (1 - fog[:, None]) + SKY_HORIZON * fog[:, None]
    canvas = Image.fromarray(image.reshape(h, w, 3).clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)

    near_boxes = [
        (float(np.hypot(b.center[0] - origin[0], b.center[1] - origin[1])), b) for b in boxes
    ]
    near_boxes = [(r, b) for r, b in near_boxes if r < DRAW_DISTANCE]
    for r, box in sorted(near_boxes, key=lambda rb: -rb[0]):  # painter's order, far to near
        corners = box.corners()
        cam_pts = (corners - origin) @ r_world  # world -> camera: R^T (p - o)
        if (cam_pts[:, 2] < NEAR).all():
            continue
        centre = corners.mean(axis=0)
        fog = 1 - np.exp(-r / FOG_DISTANCE)
        for face in _FACES:
            quad = corners[list(face)]
            normal = np.cross(quad[1] - quad[0], quad[3] - quad[0])
            normal /= np.linalg.norm(normal)
            if np.dot(normal, quad.mean(axis=0) - centre) < 0:
                normal = -normal  # outward
            if np.dot(normal, quad.mean(axis=0) - origin) >= 0:
                continue  # facing away
            poly = _clip_near(cam_pts[list(face)])
            if len(poly) < 3:
                continue
            uv = poly @ camera.intrinsic.T
            uv = uv[:, :2] / uv[:, 2:3]
            shade = 0.55 + 0.45 * max(0.0, float(normal @ LIGHT))
            color = np.array(box.color) * shade * (1 - fog) + SKY_HORIZON * fog
            draw.polygon([tuple(p) for p in uv.round(1)], fill=tuple(int(c) for c in color))
    return np.asarray(canvas)
