"""Rig video through the video codec: per tubelet and camera, a span of codes (RigHandler)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vla_tokenizers.codecs.presets import codec_config
from vla_tokenizers.codecs.tokens import rig_tubelets
from vla_tokenizers.codecs.video import VideoCodec
from vla_tokenizers.processor import RIG_FILLED_WARNING

TICKS = 8  # 0.67 s at 12 Hz: two tubelets of 4 ticks
SIZE = 16  # video_size: 2 x 2 latent positions per tubelet with the tiny codec (8x spatial)


@pytest.fixture(scope="module")
def rig_sample(tmp_path_factory):
    from vla_data.rig import load_rig
    from vla_data.rig.synthetic import synthetic_rig
    from vla_data.sample import Sample

    folder = synthetic_rig(
        tmp_path_factory.mktemp("rig") / "r", seconds=TICKS / 12, width=32, height=24,
        drop={"front": [2]}, seed=3,
    )  # fmt: skip
    rig = load_rig(str(folder))
    return Sample.create(
        id="rig", source="file:///rig", license="cc0", meta=rig.meta(), payloads=rig.payloads()
    )


@pytest.fixture(scope="module")
def codec_bundle(bundle):
    torch.manual_seed(0)
    return bundle.with_codecs(VideoCodec(codec_config("video", "tiny")))


def _frames(sample) -> np.ndarray:
    import io

    return np.load(io.BytesIO(sample.payloads["frames.npy"]))


def test_rig_tubelets_fill_dropped_frames_and_pad_the_tail():
    fi = np.array(
        [[0, 0, -1], [1, -1, -1], [-1, -1, -1], [3, 3, -1], [4, 4, 0], [5, -1, 1]]
    )  # 6 ticks, 3 cameras, tubelet 4 -> blocks [0, 4) and [4, 6)
    b0, b1 = rig_tubelets(fi, 4)
    assert (b0.start, b0.stop, b1.start, b1.stop) == (0, 4, 4, 6)
    assert b0.frames[0].tolist() == [0, 1, 1, 3]  # tick 2: ticks 1 and 3 tie, the earlier wins
    assert b0.frames[1].tolist() == [0, 0, 3, 3]  # ticks 1, 2: nearest frames 0 and 3
    assert b0.filled == {0: 1, 1: 2} and 2 not in b0.frames  # no frame in the block: no tubelet
    assert b1.frames[0].tolist() == [4, 5, 5, 5]  # short last block: last frame repeated
    assert b1.frames[1].tolist() == [4, 4, 4, 4] and b1.filled[1] == 1
    assert b1.frames[2].tolist() == [0, 1, 1, 1] and b1.filled[2] == 0


def test_rig_video_becomes_codec_spans_per_camera_and_tubelet(codec_bundle, rig_sample):
    from vla_data.rig.layout import CAMERAS

    proc = codec_bundle.processor(video_size=SIZE)
    enc = proc.encode(rig_sample)
    lay = codec_bundle.layout
    vision = lay.range("vision")
    codec = codec_bundle.codecs["video"]
    dec = proc.decode(enc.ids)
    visual, actions = dec.of("visual"), dec.of("actions")
    tubelets = -(-TICKS // codec.config.temporal_factor)
    assert len(_frames(rig_sample)) == TICKS
    assert len(visual) == len(CAMERAS) * tubelets
    assert [v.camera for v in visual] == list(CAMERAS) * tubelets  # time-major, CAMERAS order
    assert [a.values.shape[0] for a in actions] == [4, 4]  # one action span per tubelet
    assert [s.kind for s in dec.spans[:8]] == ["visual"] * 6 + ["actions", "visual"]
    per_span = (SIZE // 8) ** 2 * codec.quantizer.depth
    for v in visual:
        assert v.pad == "video" and v.codes is not None and len(v.codes) == per_span
    codes = enc.ids[(enc.ids >= vision.start) & (enc.ids < vision.end)]
    assert codes.size == len(visual) * per_span
    assert codes.max() < vision.start + codec.quantizer.vocab_size
    assert visual[0].time_s == 0 and visual[6].time_s == pytest.approx(4 / 12, abs=0.021)
    # deterministic: a fresh processor (fresh encoder) gives the same ids
    again = codec_bundle.processor(video_size=SIZE).encode(rig_sample)
    assert np.array_equal(enc.ids, again.ids)


def test_a_dropped_frame_repeats_the_nearest_frame(codec_bundle, rig_sample):
    from vla_tokenizers.codecs.data import decode_video_frames

    frames = _frames(rig_sample)
    assert frames[2, 0] == -1  # the front camera dropped its frame at tick 2
    proc = codec_bundle.processor(video_size=SIZE)
    enc = proc.encode(rig_sample)
    assert RIG_FILLED_WARNING in enc.warnings
    front = proc.decode(enc.ids).of("visual")[0]
    assert front.camera == "front" and front.frame == 0
    # the span holds the codes of the tubelet [f0, f1, f1, f3'] (tick 2 filled by tick 1's frame)
    idx = [int(frames[t, 0]) for t in (0, 1, 1, 3)]
    decoded = decode_video_frames(rig_sample.payloads["front.mp4"], idx, (SIZE, SIZE))
    clip = np.stack([decoded[i] for i in idx])
    expected = proc.vision_encoder().clips([clip])[0]
    assert np.array_equal(front.codes, expected)


def test_without_a_codec_rig_spans_stay_per_tick_and_unfilled(bundle, rig_sample):
    dec = bundle.processor().decode(bundle.processor().encode(rig_sample).ids)
    frames = _frames(rig_sample)
    visual = dec.of("visual")
    assert len(visual) == int((frames >= 0).sum()) and all(v.codes is None for v in visual)
    assert len(dec.of("actions")) == TICKS


def test_media_are_batched_across_samples(codec_bundle, rig_sample):
    proc = codec_bundle.processor(video_size=SIZE)
    one = proc.encode(rig_sample)
    calls = []
    enc = proc.vision_encoder()
    original = enc.clips

    def counting(clips):
        calls.append(len(clips))
        return original(clips)

    enc.clips = counting
    both = proc.encode_batch([rig_sample, rig_sample])
    assert calls == [2 * 12]  # one call for the tubelets of both samples
    assert np.array_equal(both[0].ids, one.ids) and np.array_equal(both[1].ids, one.ids)
    with pytest.raises(ValueError, match="not a multiple of the video codec's spatial factor"):
        codec_bundle.processor(video_size=20)
