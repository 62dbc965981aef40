"""The procedural driving simulator: clocks, calibration, policy and consistent geometry."""

import numpy as np
import pytest

from vla_data.sim import CAMERAS, Drive, matrix_from_quaternion
from vla_data.sim.camera import quaternion_from_matrix, rot_z
from vla_data.sim.world import LANE_WIDTH


@pytest.fixture(scope="module")
def drive() -> Drive:
    return Drive(seed=0, seconds=2.0, width=160, height=120)


def test_clocks_and_actions(drive):
    for cam in CAMERAS:
        t = drive.frame_times_us[cam]
        assert len(t) == 24 and t.dtype == np.int64
        assert np.all(np.abs(np.diff(t) - 1e6 / 12) <= 800 + 1)  # 12 Hz with <= 400 us jitter
    can_t, values = drive.actions()
    assert np.all(np.diff(can_t) == 10_000) and values.shape == (len(can_t), 4)
    assert can_t[0] > drive.frame_times_us["front"][0]  # its own clock, offset
    assert np.isfinite(values).all() and (values[:, 1:3] >= 0).all() and (values[:, 1:3] <= 1).all()


def test_policy_keeps_the_right_lane():
    d = Drive(seed=3, seconds=20.0, width=64, height=48)
    lateral = d.world.road.lateral(d.can["x"], d.can["y"])
    assert np.all(np.abs(lateral - (-LANE_WIDTH / 2)) < 0.6)
    assert d.can["speed"].max() > 5 and np.all(np.diff(d.can["x"]) > 0)


def test_calibration_quaternions_round_trip(drive):
    for name, calib in drive.calibration().items():
        r = matrix_from_quaternion(calib["rotation"])
        np.testing.assert_allclose(r, drive.rig[name].rotation, atol=1e-8)
        assert np.linalg.det(r) == pytest.approx(1.0)
    r = rot_z(2.5) @ rot_z(0.3).T
    np.testing.assert_allclose(matrix_from_quaternion(quaternion_from_matrix(r)), r, atol=1e-12)
    # the back camera looks backwards: its optical axis (camera z) is -x in the ego frame
    np.testing.assert_allclose(drive.rig["back"].rotation @ [0, 0, 1], [-1, 0, 0], atol=1e-12)


def test_geometry_is_consistent_across_cameras_and_deterministic(drive):
    """A vehicle seen by the front camera lands where its calibration projects it."""
    index = 12
    t_us = int(drive.frame_times_us["front"][index])
    ex, ey, eyaw = drive.ego_pose(t_us)
    boxes = drive.world.boxes_at((t_us - drive.start_us) / 1e6)
    cam = drive.rig["front"]
    image = drive.frame("front", index)
    assert np.array_equal(
        image, Drive(seed=0, seconds=2.0, width=160, height=120).frame("front", index)
    )
    r_world = rot_z(eyaw) @ cam.rotation
    origin = np.array([ex, ey, 0.0]) + rot_z(eyaw) @ cam.translation
    seen = []  # vehicles whose centre projects into the image, nearest first
    for box in boxes:
        p = (np.array([*box.center, box.size[2] / 2]) - origin) @ r_world
        u, v, w = cam.intrinsic @ p
        if (
            box.kind == "vehicle"
            and 5 < p[2] < 60
            and 0 <= u / w < cam.width
            and 0 <= v / w < cam.height
        ):
            seen.append((p[2], int(u / w), int(v / w), box))
    assert seen, "no vehicle in front of the ego"
    _, u, v, box = min(seen, key=lambda s: s[0])  # the nearest one is not occluded by traffic
    pixel = image[v, u].astype(int)
    hue = np.array(box.color) / max(box.color)
    assert np.abs(pixel / max(1, pixel.max()) - hue).max() < 0.35, (box, pixel)
    assert not np.array_equal(drive.frame("front", 0), drive.frame("back", 0))
