"""Video codec: shapes (tubelets, single images), determinism, layout ids and spans, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vla_tokenizers.codecs.data import render_drive_clips
from vla_tokenizers.codecs.presets import codec_config
from vla_tokenizers.codecs.tokens import (
    CodecTokenError,
    camera_token_id,
    codes_to_ids,
    ids_to_codes,
    rig_clip_ids,
    vision_span,
    wrap_camera_codes,
)
from vla_tokenizers.codecs.training import ClipBatches, TrainConfig, Trainer
from vla_tokenizers.codecs.video import (
    VideoCodec,
    VideoCodecConfig,
    frames_to_tensor,
    tensor_to_frames,
)
from vla_tokenizers.layout import VocabLayout
from vla_tokenizers.specials import ALL_SPECIALS

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def layout() -> VocabLayout:
    return VocabLayout.build(text_size=300, specials=ALL_SPECIALS)


@pytest.fixture(scope="module")
def clips() -> dict:
    return render_drive_clips([0, 1], frames=4, width=32, height=32, cameras=["front", "back"])


def tiny(preset: str = "tiny", **kw) -> VideoCodec:
    torch.manual_seed(0)
    return VideoCodec(codec_config("video", preset, **kw)).eval()


@pytest.mark.parametrize(("preset", "depth"), [("tiny", 1), ("tiny-fsq", 1), ("tiny-rvq", 2)])
def test_shapes_tubelets_and_padding(preset, depth):
    codec = tiny(preset)
    x = torch.rand(2, 3, 6, 32, 48) * 2 - 1  # 6 frames: padded to 8 = two tubelets
    recon, q = codec(x)
    assert recon.shape == x.shape
    assert q.codes.shape == (2, 2, 4, 6, depth)
    assert codec.latent_shape(6, 32, 48) == (2, 4, 6)
    assert codec.codes_per_clip(6, 32, 48) == 2 * 4 * 6 * depth
    codes = codec.encode(x)
    assert codec.decode(codes, frames=6).shape == x.shape
    assert int(codes.min()) >= 0 and int(codes.max()) < codec.quantizer.codebook_size


def test_single_image_is_one_static_tubelet():
    codec = tiny()
    img = torch.rand(3, 3, 32, 32) * 2 - 1
    codes = codec.encode_image(img)
    assert codes.shape == (3, 1, 4, 4, 1)
    # identical to encoding the image repeated over a whole tubelet
    assert torch.equal(codes, codec.encode(img.unsqueeze(2).expand(-1, -1, 4, -1, -1)))
    assert codec.decode_image(codes).shape == img.shape


def test_sixteen_x_spatial():
    cfg = VideoCodecConfig(
        spatial_factor=16, channels=4, channel_mult=(1, 1, 1, 1), codebook_size=16
    )
    codec = VideoCodec(cfg).eval()
    assert codec.encode(torch.zeros(1, 3, 4, 32, 64)).shape == (1, 1, 2, 4, 1)


def test_bad_inputs_are_refused():
    codec = tiny()
    with pytest.raises(ValueError, match="multiple of 8"):
        codec.encode(torch.zeros(1, 3, 4, 30, 32))
    with pytest.raises(ValueError, match=r"\(B, 3, T, H, W\)"):
        codec.encode(torch.zeros(1, 4, 32, 32))
    with pytest.raises(ValueError, match="channel_mult"):
        VideoCodecConfig(spatial_factor=16, channel_mult=(1, 2))
    with pytest.raises(ValueError, match="FSQ"):
        VideoCodecConfig(quantizer="fsq", latent_dim=8, fsq_levels=(8, 5))


def test_determinism():
    a, b = tiny(), tiny()
    for (na, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(pa, pb), na
    x = torch.rand(2, 3, 4, 32, 32) * 2 - 1
    assert torch.equal(a.encode(x), b.encode(x))
    assert torch.equal(a.decode(a.encode(x)), a.decode(a.encode(x)))
    # batch composition does not change a clip's codes (GroupNorm is per sample)
    assert torch.equal(a.encode(x[:1]), a.encode(x)[:1])


def test_frame_conversion_round_trip(clips):
    frames = clips["frames"]
    t = frames_to_tensor(frames)
    assert t.shape == (4, 3, 4, 32, 32) and float(t.min()) >= -1 and float(t.max()) <= 1
    assert np.array_equal(tensor_to_frames(t).numpy(), frames)


def test_codes_land_in_the_vision_range(layout):
    codec = tiny("tiny-rvq")
    codes = codec.encode(torch.rand(1, 3, 4, 32, 32) * 2 - 1)[0]  # (1, 4, 4, 2)
    r = layout.range("vision")
    ids = codes_to_ids(codes.numpy(), codec.quantizer.codebook_size, r.start, r.size)
    assert ids.size == 32
    assert all(i in r for i in ids.tolist())
    assert set(layout.modality_names(ids)) == {"vision"}
    # level 1 codes sit in the second block of codebook_size ids
    assert bool((ids[1::2] >= r.start + 32).all()) and bool((ids[0::2] < r.start + 32).all())
    back = ids_to_codes(ids, 32, 2, r.start)
    assert np.array_equal(back, codes.reshape(-1, 2).numpy())
    with pytest.raises(CodecTokenError, match="need"):
        codes_to_ids(np.zeros((4, 2), dtype=np.int64), 40000, r.start, r.size)


def test_vision_span_follows_the_processor_template(layout, bundle):
    codec = tiny()
    codes = codec.encode(torch.rand(1, 3, 4, 32, 32) * 2 - 1)[0, 0]  # one tubelet (4, 4, 1)
    span = vision_span(layout, codes.numpy(), 64, camera="back", time_s=0.52, frame=4)
    assert span[1] == layout.id_of("camera:back")
    assert layout.token_name(span[2]) == "<|time_13|>"
    assert layout.token_name(span[3]) == "<|frame_4|>"
    assert layout.token_name(span[4]) == "<|video_pad|>"
    # the conftest bundle has its own layout: re-build the span there and decode it
    blay = bundle.layout
    span = vision_span(blay, codes.numpy(), 64, camera="front", time_s=0.52, frame=4)
    decoded = bundle.processor().decode(span + [blay.id_of("<|endoftext|>")])
    (visual,) = decoded.of("visual")
    assert (visual.pad, visual.camera, visual.frame) == ("video", "front", 4)
    assert visual.time_s == pytest.approx(0.52)
    assert np.array_equal(visual.codes, codes.reshape(-1).numpy())


def test_wrap_camera_codes_without_a_layout():
    ids = wrap_camera_codes(
        [7, 8], vision_start_id=1, vision_end_id=2, pad_id=3, camera_id=4, time_id=5
    )
    assert ids == [1, 4, 5, 3, 7, 8, 2]


def test_rig_clip_ids_time_major_per_camera(layout):
    codes = {
        "front": np.zeros((2, 2, 2, 1), dtype=np.int64),
        "back": np.ones((2, 2, 2, 1), dtype=np.int64),
    }
    times = {"front": np.arange(8) / 12, "back": np.arange(8) / 12 + 0.001}
    ids = rig_clip_ids(layout, codes, times, codebook_size=64, tubelet=4)
    start = layout.id_of("<|vision_start|>")
    spans = [i for i, t in enumerate(ids) if t == start]
    assert len(spans) == 4 and len(ids) == 4 * (5 + 4 + 1)
    cams = [ids[i + 1] for i in spans]
    assert cams == [layout.id_of(f"camera:{c}") for c in ("front", "back", "front", "back")]
    assert layout.token_name(ids[spans[2] + 2]) == "<|time_8|>"  # frame 4 at 0.333 s
    with pytest.raises(CodecTokenError, match="unknown camera"):
        camera_token_id(layout, "roof")


def test_loss_decreases_on_simulator_clips(clips):
    torch.manual_seed(0)
    codec = VideoCodec(codec_config("video", "tiny"))
    batches = ClipBatches(clips["frames"], 4, 4, seed=0)
    trainer = Trainer(
        codec, batches, TrainConfig(steps=40, lr=3e-3, warmup=5, log_every=10), log=lambda s: None
    )
    history = trainer.train()
    assert history[-1]["loss"] < 0.75 * history[0]["loss"], history
    assert history[-1]["ssim"] > history[0]["ssim"]


def test_vision_encoder_feeds_the_processor(bundle):
    from vla_tokenizers.codecs.encoders import VisionEncoder, check_layout_fits

    codec = tiny("tiny-rvq")
    enc = VisionEncoder(codec, bundle.layout, device="cpu")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(3)]
    images.append(rng.integers(0, 256, (16, 24, 3), dtype=np.uint8))
    ids = enc.images(images)
    assert [len(i) for i in ids] == [32, 32, 32, 2 * 3 * 2]
    assert all(int(i.max()) < codec.quantizer.vocab_size for i in ids)
    # batched and one-by-one encoding agree
    assert np.array_equal(enc.images(images[1:2])[0], ids[1])
    proc = bundle.processor()
    w = proc.writer()
    w.visual("image", camera="front", codes=ids[0])
    (encoding,) = proc.finish([w])
    (visual,) = proc.decode(encoding.ids).of("visual")
    assert np.array_equal(visual.codes, ids[0])
    assert len(enc.tubelet_ids(rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8))) == 2
    big = VideoCodec(codec_config("video", "tiny", codebook_size=70_000))
    with pytest.raises(CodecTokenError, match="vision range"):
        check_layout_fits(big, bundle.layout)
