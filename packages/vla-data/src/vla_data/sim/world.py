"""A procedural road world and its traffic: a winding two-lane road, parked and moving vehicles,
buildings and trees beside the road, and an ego car driven by a lane-keeping policy.

Frames follow nuScenes: the world and ego frames are right-handed with z up; the ego frame has x
forward and y left. The road centreline is ``y = A sin(2 pi x / L)``; lanes are 3.5 m wide, the
ego drives in the right-hand lane (negative lateral offset), oncoming traffic in the left one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

LANE_WIDTH = 3.5
WHEELBASE = 2.8  # m, kinematic bicycle model


@dataclass(frozen=True)
class Road:
    """A sinusoidal two-lane road: centreline ``y = amplitude * sin(2 pi x / wavelength)``."""

    amplitude: float = 6.0
    wavelength: float = 240.0

    def center_y(self, x: np.ndarray | float) -> np.ndarray | float:
        return self.amplitude * np.sin(2 * np.pi * np.asarray(x) / self.wavelength)

    def heading(self, x: np.ndarray | float) -> np.ndarray | float:
        """Direction of travel (rad) of the centreline at ``x``."""
        slope = self.amplitude * 2 * np.pi / self.wavelength
        return np.arctan(slope * np.cos(2 * np.pi * np.asarray(x) / self.wavelength))

    def lateral(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Signed offset of ``(x, y)`` from the centreline, left positive (small-slope approx.)."""
        return (y - self.center_y(x)) * np.cos(self.heading(x))

    def lane_point(self, x: float, offset: float) -> tuple[float, float]:
        """The point at ``offset`` metres left of the centreline at abscissa ``x``."""
        h = float(self.heading(x))
        return x - offset * np.sin(h), float(self.center_y(x)) + offset * np.cos(h)


@dataclass(frozen=True)
class Box:
    """An axis-aligned (in its own yaw) box on the ground: a vehicle, building or tree."""

    kind: str  # "vehicle" | "building" | "tree"
    center: tuple[float, float]  # x, y of the footprint centre at t = 0
    size: tuple[float, float, float]  # length, width, height
    yaw: float
    color: tuple[int, int, int]
    speed: float = 0.0  # m/s along the road (vehicles), positive = same direction as ego
    lane: float = 0.0  # lateral offset of its lane (vehicles)

    def at(self, road: Road, t: float) -> Box:
        """The box at time ``t`` (moving vehicles follow their lane)."""
        if self.speed == 0.0:
            return self
        x = self.center[0] + self.speed * t
        cx, cy = road.lane_point(x, self.lane)
        yaw = float(road.heading(x)) + (0.0 if self.speed > 0 else np.pi)
        return Box(self.kind, (cx, cy), self.size, yaw, self.color, self.speed, self.lane)

    def corners(self) -> np.ndarray:
        """The 8 corners (8, 3) in world coordinates; bottom four first."""
        length, width, height = self.size
        dx, dy = np.array([1, 1, -1, -1]) * length / 2, np.array([1, -1, -1, 1]) * width / 2
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        x = self.center[0] + c * dx - s * dy
        y = self.center[1] + s * dx + c * dy
        bottom = np.stack([x, y, np.zeros(4)], axis=1)
        return np.concatenate([bottom, bottom + [0, 0, height]])


@dataclass
class World:
    """The road and every box in it, generated from a seed."""

    road: Road
    boxes: list[Box] = field(default_factory=list)

    def boxes_at(self, t: float) -> list[Box]:
        return [b.at(self.road, t) for b in self.boxes]


_CAR_COLORS = [(180, 30, 30), (30, 60, 160), (220, 220, 220), (30, 30, 30), (200, 160, 20)]


def make_world(seed: int, length: float = 400.0) -> World:
    """A road of ``length`` metres with vehicles (moving, oncoming, parked), buildings, trees."""
    rng = np.random.default_rng([seed, 0x5EED])
    road = Road(amplitude=float(rng.uniform(3, 8)), wavelength=float(rng.uniform(180, 320)))
    boxes: list[Box] = []
    right, left = -LANE_WIDTH / 2, LANE_WIDTH / 2
    for x in np.arange(25.0, length, float(rng.uniform(35, 60))):  # traffic ahead, same lane
        color = _CAR_COLORS[int(rng.integers(len(_CAR_COLORS)))]
        boxes.append(Box("vehicle", (float(x), 0.0), (4.5, 1.9, 1.5), 0.0, color, 8.0, right))
    for x in np.arange(60.0, length + 200, float(rng.uniform(30, 50))):  # oncoming
        color = _CAR_COLORS[int(rng.integers(len(_CAR_COLORS)))]
        boxes.append(Box("vehicle", (float(x), 0.0), (4.6, 1.9, 1.6), 0.0, color, -10.0, left))
    for x in np.arange(-30.0, length, 9.0):  # roadside: buildings, trees, parked cars
        for side in (-1, 1):
            r = rng.uniform()
            offset = side * (LANE_WIDTH + rng.uniform(4, 14))
            cx, cy = road.lane_point(float(x), float(offset))
            yaw = float(road.heading(x))
            if r < 0.25:
                h = float(rng.uniform(6, 18))
                shade = int(rng.integers(110, 200))
                boxes.append(
                    Box("building", (cx, cy), (8.0, 7.0, h), yaw, (shade, shade - 20, shade - 40))
                )
            elif r < 0.55:
                green = int(rng.integers(80, 140))
                boxes.append(
                    Box("tree", (cx, cy), (1.6, 1.6, rng.uniform(4, 8)), yaw, (30, green, 40))
                )
            elif r < 0.65:
                px, py = road.lane_point(float(x), side * (LANE_WIDTH + 1.2))
                color = _CAR_COLORS[int(rng.integers(len(_CAR_COLORS)))]
                boxes.append(Box("vehicle", (px, py), (4.4, 1.8, 1.5), yaw, color))
    return World(road, boxes)


@dataclass
class EgoState:
    x: float
    y: float
    yaw: float
    speed: float


def drive(
    world: World, seconds: float, rate_hz: float = 100.0, target_speed: float = 11.0
) -> dict[str, np.ndarray]:
    """Drive the ego car along the right lane; return its CAN log at ``rate_hz``.

    The policy is pure pursuit on the lane centre (lookahead 2 s, at least 6 m) with a
    proportional speed controller that keeps 2 s headway to the vehicle ahead. Returns arrays
    ``t`` (s), ``x, y, yaw`` (ego pose), ``steering`` (rad, road-wheel angle), ``throttle``
    and ``brake`` (0..1) and ``speed`` (m/s).
    """
    road, lane = world.road, -LANE_WIDTH / 2
    x0, y0 = road.lane_point(0.0, lane)
    ego = EgoState(x0, y0, float(road.heading(0.0)), target_speed * 0.8)
    dt, n = 1.0 / rate_hz, int(round(seconds * rate_hz)) + 1
    log = {k: np.zeros(n) for k in ("t", "x", "y", "yaw", "steering", "throttle", "brake", "speed")}
    for i in range(n):
        t = i * dt
        lookahead = max(6.0, 2.0 * ego.speed)
        gx, gy = road.lane_point(ego.x + lookahead, lane)
        alpha = np.arctan2(gy - ego.y, gx - ego.x) - ego.yaw
        steering = float(np.clip(np.arctan2(2 * WHEELBASE * np.sin(alpha), lookahead), -0.5, 0.5))
        gaps = [
            b.center[0] - ego.x
            for b in world.boxes_at(t)
            if b.kind == "vehicle" and b.speed > 0 and b.center[0] > ego.x
        ]
        want = target_speed if not gaps else min(target_speed, max(0.0, (min(gaps) - 8.0) / 2.0))
        accel = float(np.clip(0.8 * (want - ego.speed), -4.0, 2.0))
        throttle, brake = (accel / 2.0, 0.0) if accel >= 0 else (0.0, -accel / 4.0)
        for key, value in zip(
            log, (t, ego.x, ego.y, ego.yaw, steering, throttle, brake, ego.speed), strict=True
        ):
            log[key][i] = value
        ego.x += ego.speed * np.cos(ego.yaw) * dt
        ego.y += ego.speed * np.sin(ego.yaw) * dt
        ego.yaw += ego.speed / WHEELBASE * np.tan(steering) * dt
        ego.speed = max(0.0, ego.speed + accel * dt)
    return log
