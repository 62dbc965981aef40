"""Video processing: shot cuts, sampling policies, quality checks, clip near-dup, cost model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageFilter

from vla_data.cli import main
from vla_data.rig.synthetic import texture_frames
from vla_data.video import (
    CostInputs,
    SamplingPolicy,
    ShotConfig,
    VideoError,
    check_quality,
    clip_dedup,
    clip_distance,
    clip_signature,
    detect_cuts,
    encode_h264,
    estimate_cost,
    frame_features,
    iter_frames,
    policy_want,
    sample_fixed_fps,
    sample_shots,
    scan_video,
)

W, H = 160, 120


def scene(seed: int, n: int, *, bright: bool = False) -> list[np.ndarray]:
    frames = texture_frames("front", n, W, H, seed=seed)
    if bright:  # another shot: different layout and a brighter, lower-contrast palette
        frames = [(f // 2 + 110).astype(np.uint8) for f in frames]
    return frames


def blur(img: np.ndarray, radius: float = 2.5) -> np.ndarray:
    return np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(radius)))


@pytest.fixture(scope="module")
def clip() -> bytes:
    return encode_h264(scene(1, 36), 12, crf=20)


# ------------------------------------------------------------------ decode + shots


def test_scan_reports_stream_facts_keyframes_and_features(clip):
    scan = scan_video(clip)
    assert (scan.info.codec, scan.info.width, scan.info.height, scan.info.frames) == (
        "h264",
        W,
        H,
        36,
    )
    assert np.flatnonzero(scan.keyframes).tolist() == [0, 12, 24]  # gop = 1 s at 12 fps
    assert np.allclose(np.diff(scan.pts_s), 1 / 12)
    assert len(scan.features) == 36 and scan.images == {}


def test_planted_shot_cut_is_found_and_nothing_else():
    frames = scene(1, 20) + scene(2, 16, bright=True)
    data = encode_h264(frames, 12)
    assert detect_cuts(data) == [20]
    assert detect_cuts(encode_h264(scene(3, 36), 12)) == []  # steady panning: no cut
    hist_only = ShotConfig(method="hist", threshold=0.3)
    assert detect_cuts(data, hist_only) == [20]


def test_hash_score_catches_a_cut_with_equal_histograms():
    # two textures drawn from the same palette: histograms match, layouts do not
    frames = scene(4, 12) + scene(5, 12)
    feats = frame_features(frames)
    assert np.flatnonzero(feats.cut).tolist() == [12]
    assert feats.cut_score[12] > 3 * np.median(feats.cut_score[1:12])


# ------------------------------------------------------------------ sampling


def test_fixed_fps_sampling_keeps_gaps_and_never_repeats_a_frame():
    t = np.round(np.arange(24) * 1e6 / 12).astype(np.int64)
    assert sample_fixed_fps(t, 2.0).tolist() == [0, 6, 12, 18]
    gappy = np.delete(t, [6, 7])  # 1/6 s missing around 0.5 s
    picked = sample_fixed_fps(gappy, 2.0)
    assert gappy[picked].tolist() == [t[0], t[5], t[12], t[18]]  # nearest within half a period
    assert sample_fixed_fps(t, 24.0).tolist() == list(range(24))  # upsampling repeats nothing
    assert sample_shots([20, 0, 99], 36).tolist() == [0, 20]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (SamplingPolicy(kind="fps", fps=3), [0, 4, 8, 12, 16, 20, 24, 28, 32]),
        (SamplingPolicy(kind="keyframes"), [0, 12, 24]),
        (SamplingPolicy(kind="shots"), [0]),
    ],
)
def test_policies_plug_into_one_decode_pass(clip, policy, expected):
    scan = scan_video(clip, want=policy_want(policy))
    assert sorted(scan.images) == expected
    assert all(img.shape == (H, W, 3) for img in scan.images.values())


def test_policy_needs_fps():
    with pytest.raises(ValueError, match="needs fps"):
        SamplingPolicy(kind="fps")


# ------------------------------------------------------------------ quality


def test_black_frozen_and_blurred_frames_are_flagged_exactly():
    frames = scene(6, 30)
    frames[5] = np.zeros_like(frames[5])
    frames[6] = np.full_like(frames[6], 8)  # near-black
    frames[12] = frames[11].copy()  # frozen: repeats its predecessor
    frames[13] = frames[11].copy()
    frames[20] = blur(frames[20])
    frames[21] = blur(frames[21], 4)
    report = check_quality(frame_features(frames))
    assert report.black == [5, 6]
    assert report.frozen == [12, 13]
    assert report.blurry == [20, 21]
    # the same through H.264 (decoded luma, not the source pixels)
    coded = check_quality(scan_video(encode_h264(frames, 12, crf=18)).features)
    assert (coded.black, coded.frozen, coded.blurry) == ([5, 6], [12, 13], [20, 21])
    assert check_quality(frame_features(scene(7, 12))).ok


# ------------------------------------------------------------------ near-dup


def reencode(data: bytes, **kw) -> bytes:
    return encode_h264(iter_frames(data), 12, **kw)


def test_near_duplicate_clip_found_after_reencode(clip):
    copy = reencode(clip, crf=None, bitrate_kbps=150, gop=7)  # other bitrate and GOP
    assert np.flatnonzero(scan_video(copy).keyframes).tolist() != [0, 12, 24]
    a, b = clip_signature(clip), clip_signature(copy)
    other = clip_signature(encode_h264(scene(9, 36), 12))
    assert len(a) == len(b) == 3
    dist, shift, overlap = clip_distance(a, b)
    assert dist <= 4 and shift == 0 and overlap == 3
    assert clip_distance(a, other)[0] > 16
    trimmed = clip_signature(encode_h264(scene(1, 36)[12:], 12))  # starts 1 s later
    d, shift, _ = clip_distance(a, trimmed)
    assert d <= 4 and shift == 1
    result = clip_dedup([a, other, b, trimmed])
    assert result.representative.tolist() == [0, 1, 0, 0]
    keyed = clip_signature(clip, policy=SamplingPolicy(kind="keyframes"))
    assert len(keyed) == 3


def test_malformed_video_raises_with_cause(clip):
    with pytest.raises(VideoError, match="not a readable video container"):
        scan_video(b"\x00\x00\x00\x18ftypmp42" + b"junk" * 100)
    with pytest.raises(VideoError):
        scan_video(clip[: len(clip) // 3])


# ------------------------------------------------------------------ cost


def test_cost_model_numbers():
    est = estimate_cost(CostInputs(hours=1000, codec="h264", bitrate_kbps=1000))
    video = 1000e3 / 8 * 3600 * 6 * 1.01
    assert est["video_bytes_per_hour"] == round(video)
    assert 0 < est["metadata_bytes_per_hour"] < 0.02 * video
    assert est["total_bytes"] == round(est["bytes_per_hour"] * 1000)
    c = est["cost_usd"]
    assert c["storage"] == pytest.approx(est["total_bytes"] / 1e9 * 0.023 * 12, rel=1e-3)
    assert c["total"] == pytest.approx(
        c["storage"] + c["put_requests"] + c["get_requests"], abs=0.02
    )
    default = estimate_cost(CostInputs(hours=1, codec="h265"))
    assert default["bitrate_kbps_per_camera"] == pytest.approx(0.09 * 640 * 480 * 12 / 1e3, abs=0.1)
    assert any("bits/pixel" in a for a in default["assumptions"])


def test_cost_command_prints_assumptions():
    runner = CliRunner()
    r = runner.invoke(main, ["cost", "--hours", "100", "--codec", "h264", "--bitrate-kbps", "800"])
    assert r.exit_code == 0, r.output
    assert "per hour" in r.output and "assumptions:" in r.output
    assert "800 kbit/s per camera (given)" in r.output
    r = runner.invoke(main, ["cost", "--hours", "2", "--json"])
    assert r.exit_code == 0
    assert json.loads(r.output)["inputs"]["cameras"] == 6
    r = runner.invoke(main, ["cost", "--hours", "-1"])
    assert r.exit_code != 0 and "--hours" in r.output
