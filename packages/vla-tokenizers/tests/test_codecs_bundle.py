"""Learned codecs travel inside the tokenizer bundle, covered by its manifest."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vla_tokenizers.bundle import BundleError, TokenizerBundle
from vla_tokenizers.codecs.audio import AudioCodec
from vla_tokenizers.codecs.presets import codec_config
from vla_tokenizers.codecs.video import VideoCodec


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_codecs_round_trip_through_the_bundle_and_tampering_is_refused(bundle, tmp_path):
    torch.manual_seed(0)
    video, audio = (
        VideoCodec(codec_config("video", "tiny")),
        AudioCodec(codec_config("audio", "tiny")),
    )
    with_codecs = bundle.with_codecs(video, audio)
    assert bundle.codecs == {} and set(with_codecs.codecs) == {"video", "audio"}
    with_codecs.save(tmp_path / "b")
    loaded = TokenizerBundle.load(tmp_path / "b")
    assert _same_weights(loaded.codecs["video"], video) and _same_weights(
        loaded.codecs["audio"], audio
    )
    assert TokenizerBundle.load(tmp_path / "b").layout.to_json() == bundle.layout.to_json()

    path = tmp_path / "b" / "vision_codec.safetensors"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(BundleError, match="vision_codec.safetensors: SHA-256 does not match"):
        TokenizerBundle.load(tmp_path / "b")


def test_a_codec_must_fit_its_layout_range(bundle):
    config = dataclasses.replace(
        codec_config("video", "tiny"),
        codebook_size=bundle.layout.range("vision").size + 1,
        quantizer="vq",
    )
    with pytest.raises(BundleError, match="video codec needs .* ids but the layout's vision range"):
        bundle.with_codecs(VideoCodec(config))
    with pytest.raises(BundleError, match="two video codecs"):
        TokenizerBundle(
            bundle.layout,
            bundle.text,
            bundle.stats,
            bundle.fast_bpe,
            codecs={
                "a": VideoCodec(codec_config("video", "tiny")),
                "b": VideoCodec(codec_config("video", "tiny")),
            },
        )
