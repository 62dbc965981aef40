"""Driving rigs: layout validation, clock synchronisation, defects, ingest and quarantine."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from vla_data.cli import main
from vla_data.ingest import IngestConfig, discover, ingest
from vla_data.ledger import Status, read_ledger
from vla_data.quarantine import iter_quarantine
from vla_data.rig import (
    CAMERAS,
    RigError,
    RigSyncConfig,
    interpolate_pose,
    load_rig,
    parse_manifest,
    synchronise,
)
from vla_data.rig.synthetic import START_US, synthetic_rig, texture_frames
from vla_data.sample import RigMeta
from vla_data.shards import iter_samples
from vla_data.verify import verify

PERIOD = 1e6 / 12


def samples_of(root):
    return [s for p in sorted((root / "shards").glob("*.tar")) for s in iter_samples(p)]


def quarantined(root):
    return {
        r.source.rsplit("/", 2)[-2]: r.error
        for p in sorted((root / "quarantine").glob("*.tar"))
        for r, _ in iter_quarantine(p)
    }


def defects(meta_or_sync):
    return sorted((d.kind, d.camera, d.count, tuple(d.where)) for d in meta_or_sync.defects)


def npy(sample, part):
    return np.load(io.BytesIO(sample.payloads[part]), allow_pickle=False)


# ------------------------------------------------------------------ acceptance


def test_rig_with_exactly_three_defects_is_ingested_reporting_exactly_those(tmp_path):
    """One dropped frame, a 40 ms clock offset on one camera and a missing camera."""
    synthetic_rig(
        tmp_path / "src" / "scene-1",
        drop={"front_left": [10]},
        offset_us={"back": 40_000},
        missing=["back_right"],
        rig_id="scene-1",
    )
    out = tmp_path / "ds"
    report = ingest([str(tmp_path / "src")], out, IngestConfig(workers=1))
    assert (report.kept, report.quarantined, report.by_kind) == (1, 0, {"rig": 1})
    assert verify(out).ok
    (sample,) = samples_of(out)
    meta = sample.meta
    assert isinstance(meta, RigMeta) and sample.modality.value == "rig"
    assert defects(meta) == [
        ("clock_offset", "back", 1, ()),
        ("dropped_frames", "front_left", 1, (10,)),
        ("missing_camera", "back_right", 1, ()),
    ]
    offset = next(d for d in meta.defects if d.kind == "clock_offset")
    assert offset.value == pytest.approx(40.0, abs=0.5)
    assert meta.missing_cameras == ["back_right"]
    assert meta.cameras["back"].offset_ms == pytest.approx(40.0, abs=0.5)
    assert (meta.ticks, meta.rate_hz) == (24, pytest.approx(12.0, rel=1e-3))
    # the sample: 5 mp4 members, per-camera timestamps, ticks, frame map, actions, CAN, ego pose
    present = [c for c in CAMERAS if c != "back_right"]
    assert set(sample.parts) == {f"{c}.mp4" for c in present} | {
        f"{c}.timestamps.npy" for c in present
    } | {"timestamps.npy", "frames.npy", "actions.npy", "can.npy", "ego_pose.npy"}
    frames = npy(sample, "frames.npy")
    assert frames.shape == (24, 6) and frames.dtype == np.int32
    assert (frames[:, CAMERAS.index("back_right")] == -1).all()
    fl = frames[:, CAMERAS.index("front_left")]
    assert (
        fl[10] == -1
        and fl[:10].tolist() == list(range(10))
        and fl[11:].tolist() == list(range(10, 23))
    )
    assert (frames[:, CAMERAS.index("back")] == np.arange(24)).all()  # offset corrected
    assert npy(sample, "front_left.timestamps.npy").shape == (23,)
    assert npy(sample, "actions.npy").shape == (24, 4)
    assert npy(sample, "ego_pose.npy").shape == (24, 7)
    assert meta.cameras["front"].intrinsic[0][0] > 0 and len(meta.cameras["front"].rotation) == 4


def test_clean_rig_has_no_defects_and_actions_follow_can(tmp_path):
    rig = load_rig(str(synthetic_rig(tmp_path / "r")))
    assert rig.defects == [] and rig.sync.missing == []
    ticks = rig.sync.ticks_us
    assert len(ticks) == 24 and np.allclose(np.diff(ticks), PERIOD, atol=50)
    assert abs(ticks[0] - START_US) < 500
    s = (ticks - START_US) / 1e6
    assert np.allclose(rig.actions[:, 0], 0.1 * np.sin(s), atol=1e-4)  # steering
    assert np.allclose(rig.actions[:, 3], 8 + 0.5 * s, atol=1e-4)  # speed
    assert (rig.sync.frame_index == np.arange(24)[:, None]).all()
    assert all(c.quality.ok for c in rig.cameras.values())
    assert np.nanmax(np.abs(rig.sync.residual_us)) < 1_000


def test_duplicated_timestamp_and_drift_are_reported(tmp_path):
    rig = load_rig(
        str(
            synthetic_rig(
                tmp_path / "r",
                duplicate={"front": [5]},
                drift_ppm={"front_right": 5000},  # 5 ms per second: 10 ms over the rig
            )
        )
    )
    assert defects(rig) == [
        ("clock_drift", "front_right", 1, ()),
        ("dropped_frames", "front", 1, (5,)),  # the duplicate serves no tick of its own
        ("duplicate_timestamps", "front", 1, (5,)),
    ]
    drift = next(d for d in rig.defects if d.kind == "clock_drift")
    assert drift.value == pytest.approx(5000, rel=0.1)
    assert (rig.sync.frame_index[:, CAMERAS.index("front_right")] == np.arange(24)).all()


def test_without_clock_correction_the_offset_camera_does_not_sync(tmp_path):
    folder = synthetic_rig(tmp_path / "r", offset_us={"back": 40_000})
    rig = load_rig(str(folder), RigSyncConfig(correct_clocks=False))
    kinds = {(d.kind, d.camera): d.count for d in rig.defects}
    assert kinds == {
        ("clock_offset", "back"): 1,
        ("unsynced_frames", "back"): 24,
        ("dropped_frames", "back"): 24,
    }
    loose = load_rig(str(folder), RigSyncConfig(correct_clocks=False, tolerance_ms=41))
    assert {(d.kind, d.camera) for d in loose.defects} == {("clock_offset", "back")}


def test_sampling_policy_returns_frames_by_tick(tmp_path):
    from vla_data.video import SamplingPolicy

    folder = synthetic_rig(tmp_path / "r", drop={"front": [6]})
    rig = load_rig(str(folder), policy=SamplingPolicy(kind="fps", fps=2))
    assert sorted(rig.sampled_frames("back")) == [0, 6, 12, 18]
    # every camera samples the same ticks; the front camera has no frame at tick 6
    assert sorted(rig.sampled_frames("front")) == [0, 12, 18]
    assert all(sorted(rig.sampled_frames(c)) == [0, 6, 12, 18] for c in CAMERAS[1:])
    keyed = load_rig(str(folder), policy=SamplingPolicy(kind="keyframes"))
    assert sorted(keyed.cameras["back"].images) == [0, 12]
    assert rig.sampled_frames("back")[6].shape == (48, 64, 3)


# ------------------------------------------------------------------ sync unit tests


def grid(n=24, jitter=0, seed=0):
    rng = np.random.default_rng(seed)
    t = START_US + np.round(np.arange(n) * PERIOD).astype(np.int64)
    return t + (rng.integers(-jitter, jitter + 1, n) if jitter else 0)


def test_sync_detects_gaps_at_the_edges_and_wrong_frame_rates():
    ts = {c: grid(jitter=300, seed=i) for i, c in enumerate(CAMERAS)}
    ts["front"] = ts["front"][2:]  # starts two frames late
    ts["back"] = START_US + np.round(np.arange(20) * 1e5).astype(np.int64)  # 10 Hz
    r = synchronise(ts)
    kinds = {(d.kind, d.camera): d for d in r.defects}
    assert kinds[("dropped_frames", "front")].where == [0, 1]
    assert kinds[("frame_rate", "back")].value == pytest.approx(10.0)
    assert set(kinds) == {
        ("dropped_frames", "front"),
        ("frame_rate", "back"),
        ("unsynced_frames", "back"),
        ("dropped_frames", "back"),
    }


def test_sync_refuses_backwards_time_and_bad_tolerance():
    ts = {c: grid() for c in CAMERAS}
    ts["front_right"] = ts["front_right"][::-1].copy()
    with pytest.raises(RigError, match=r"fr.txt: timestamps go backwards at frame 1"):
        synchronise(ts, files={"front_right": "fr.txt"})
    with pytest.raises(ValueError, match="below half the reference period"):
        RigSyncConfig(tolerance_ms=45)
    with pytest.raises(RigError, match="at least 3 needed"):
        synchronise({"front": grid(), "back": grid()}, RigSyncConfig(min_cameras=3))


def test_pose_interpolation_is_slerp():
    t = np.array([0, 1_000_000])
    yaw = np.radians([0.0, 90.0])
    pose = np.zeros((2, 7))
    pose[:, 0] = [0, 10]
    pose[:, 3], pose[:, 6] = np.cos(yaw / 2), np.sin(yaw / 2)
    out = interpolate_pose(t, pose, np.array([500_000, 2_000_000]))
    assert out[0, 0] == pytest.approx(5)
    assert out[0, 3:] == pytest.approx([np.cos(np.pi / 8), 0, 0, np.sin(np.pi / 8)])
    assert out[1, 0] == 10  # held past the end


# ------------------------------------------------------------------ layout validation


def manifest(**overrides):
    cam = {
        "video": "front.mp4",
        "timestamps": "front.txt",
        "intrinsic": [[50, 0, 32], [0, 50, 24], [0, 0, 1]],
        "translation": [1, 0, 1.5],
        "rotation": [0.5, -0.5, 0.5, -0.5],
    }
    data = {"cameras": {"front": cam | overrides}, "can": "can.csv"}
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"rotation": [1, 1, 0, 0]}, "cameras.front.rotation: rotation must be a unit quaternion"),
        (
            {"intrinsic": [[50, 0, 32], [0, 50, 24]]},
            "cameras.front.intrinsic: intrinsic must be a 3x3",
        ),
        ({"intrinsic": [[-5, 0, 32], [0, 50, 24], [0, 0, 1]]}, "focal lengths must be positive"),
        ({"video": "../../etc/passwd"}, "must be relative and stay inside the rig folder"),
        ({"timestamps": None}, "a video camera needs 'timestamps'"),
        ({"frames": "front/"}, "exactly one of 'video'"),
        ({"width": 20}, "principal point cx=32.0 is outside the image width 20"),
    ],
)
def test_manifest_validation_names_field_and_cause(override, message):
    with pytest.raises(RigError) as e:
        parse_manifest(manifest(**override))
    assert str(e.value).startswith("rig.json: ") and message in str(e.value)


def test_manifest_rejects_unknown_cameras_and_bad_json():
    with pytest.raises(RigError, match="unknown camera"):
        parse_manifest(b'{"cameras": {"roof": null}, "can": "can.csv"}')
    with pytest.raises(RigError, match="not valid JSON"):
        parse_manifest(b"{nope")
    assert parse_manifest(manifest()).missing == [c for c in CAMERAS if c != "front"]


# ------------------------------------------------------------------ ingest + quarantine


def _edit(folder, fn):
    path = folder / "rig.json"
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def test_malformed_rigs_are_quarantined_naming_file_and_cause(tmp_path):
    src = tmp_path / "src"
    good = synthetic_rig(src / "good")
    for name in ("truncated", "garbage", "calib", "count", "missing", "can", "escape"):
        shutil.copytree(good, src / name)
    mp4 = (good / "front.mp4").read_bytes()
    (src / "truncated" / "front.mp4").write_bytes(mp4[: len(mp4) // 2])
    (src / "garbage" / "back_left.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\xff" * 4000)
    _edit(src / "calib", lambda d: d["cameras"]["front"].update(rotation=[1, 0, 0, 0.5]))
    (src / "count" / "back.timestamps.txt").write_text(
        (src / "count" / "back.timestamps.txt").read_text() + f"{START_US + 10**7}\n"
    )
    (src / "missing" / "front_right.mp4").unlink()
    (src / "can" / "can.csv").write_text("t_us,steering,throttle,brake\n1,0,0,0\n")
    _edit(src / "escape", lambda d: d["cameras"]["back"].update(video="../good/back.mp4"))
    out = tmp_path / "ds"
    report = ingest([str(src)], out, IngestConfig(workers=1))
    assert (report.kept, report.quarantined) == (1, 7)
    assert verify(out).ok
    errors = quarantined(out)
    assert errors["truncated"].startswith("front.mp4: undecodable video: ")
    assert errors["garbage"].startswith("back_left.mp4: undecodable video: ")
    assert errors["calib"].startswith("rig.json: cameras.front.rotation: ")
    assert (
        errors["count"] == "back.mp4: 24 decoded frames but back.timestamps.txt has 25 timestamps"
    )
    assert errors["missing"] == "front_right.mp4: file not found"
    assert (
        errors["can"]
        == "can.csv: missing column(s) ['speed']; header is ['t_us', 'steering', 'throttle', 'brake']"
    )
    assert errors["escape"].startswith("rig.json: cameras.back.video: path '../good/back.mp4'")
    # the quarantined bytes are the offending file's
    raw = {
        r.source.rsplit("/", 2)[-2]: data
        for p in (out / "quarantine").glob("*.tar")
        for r, data in iter_quarantine(p)
    }
    assert raw["truncated"] == mp4[: len(mp4) // 2]
    assert raw["calib"] == (src / "calib" / "rig.json").read_bytes()
    statuses = [e.status for e in read_ledger(out / "ledger")]
    assert statuses.count(Status.QUARANTINED) == 7


def test_rig_folder_is_one_input_and_reruns_resume(tmp_path):
    src = tmp_path / "src"
    synthetic_rig(src / "a")
    synthetic_rig(src / "b", seed=1)
    (src / "notes.txt").write_text("not part of a rig\n")
    files = discover([str(src)])
    assert [(f.url.rsplit("/", 2)[-2:], f.kind) for f in files] == [
        (["a", "rig.json"], "rig"),
        (["b", "rig.json"], "rig"),
        (["src", "notes.txt"], "text"),
    ]
    rig_a = files[0]
    assert rig_a.size == sum(p.stat().st_size for p in (src / "a").iterdir())
    out = tmp_path / "ds"
    first = ingest([str(src)], out, IngestConfig(workers=1))
    assert (first.kept, first.quarantined) == (3, 0)
    again = ingest([str(src)], out, IngestConfig(workers=1))
    assert (again.files, again.files_skipped) == (0, 3)
    (src / "a" / "front.timestamps.txt").write_text(
        (src / "a" / "front.timestamps.txt").read_text()
    )  # touched: the rig's fingerprint covers every file of the folder
    assert discover([str(src / "a" / "rig.json")])[0].fingerprint != rig_a.fingerprint


def test_image_sequence_camera_with_timestamps_in_file_names(tmp_path):
    folder = synthetic_rig(tmp_path / "r")
    ts = [int(x) for x in (folder / "back.timestamps.txt").read_text().split()]
    (folder / "back.mp4").unlink()
    (folder / "back.timestamps.txt").unlink()
    (folder / "cam_back").mkdir()
    for t, img in zip(ts, texture_frames("back", 24, 64, 48), strict=True):
        Image.fromarray(img).save(folder / "cam_back" / f"n015__CAM_BACK__{t}.png")
    _edit(
        folder,
        lambda d: d["cameras"]["back"].update(video=None, timestamps=None, frames="cam_back/"),
    )
    rig = load_rig(str(folder))
    back = rig.cameras["back"]
    assert (back.source, back.codec, len(back.timestamps)) == ("images", "png", 24)
    assert back.timestamps.tolist() == ts
    assert rig.defects == []
    from vla_data.video import probe_video

    assert probe_video(back.mp4).codec == "h264" and probe_video(back.mp4).frames == 24
    (folder / "cam_back" / f"n015__CAM_BACK__{ts[3]}.png").write_bytes(b"not a png")
    with pytest.raises(RigError, match=rf"cam_back/n015__CAM_BACK__{ts[3]}.png: undecodable image"):
        load_rig(str(folder))


def test_rig_json_sync_overrides_config(tmp_path):
    folder = synthetic_rig(tmp_path / "r", offset_us={"back": 40_000})
    _edit(folder, lambda d: d.update(sync={"offset_tolerance_ms": 50}))
    assert load_rig(str(folder)).defects == []
    _edit(folder, lambda d: d.update(sync={"tolerance_ms": 90}))
    with pytest.raises(RigError, match="rig.json: sync"):
        load_rig(str(folder))


def test_rig_check_command(tmp_path):
    folder = synthetic_rig(tmp_path / "r", missing=["back"])
    runner = CliRunner()
    r = runner.invoke(main, ["rig-check", str(folder)])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["missing_cameras"] == ["back"] and out["ticks"] == 24
    assert [d["kind"] for d in out["defects"]] == ["missing_camera"]
    (folder / "front.mp4").write_bytes(b"junk")
    r = runner.invoke(main, ["rig-check", str(folder)])
    assert r.exit_code == 1 and "front.mp4: undecodable video" in r.output
