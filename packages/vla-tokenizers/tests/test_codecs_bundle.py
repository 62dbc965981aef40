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


def test_processor_fills_image_and_audio_spans_with_codec_codes(bundle):
    import io

    import av
    import numpy as np
    from PIL import Image

    from vla_data import Sample
    from vla_data.sample import AudioMeta, ImageMeta

    torch.manual_seed(0)
    video, audio = (
        VideoCodec(codec_config("video", "tiny")),
        AudioCodec(codec_config("audio", "tiny")),
    )
    proc = bundle.with_codecs(video, audio).processor()
    rgb = (np.random.default_rng(0).random((37, 50, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    image = Sample.create(
        id="i",
        source="file:///i.png",
        license="cc0",
        meta=ImageMeta(width=50, height=37, mode="RGB", format="PNG"),
        payloads={"png": buf.getvalue()},
    )
    span = proc.decode(proc.encode(image).ids).spans[0]
    f = video.config.spatial_factor
    assert span.kind == "visual" and span.codes is not None
    assert len(span.codes) == (37 // f) * (50 // f) * video.quantizer.depth
    assert (span.codes >= 0).all() and (span.codes < video.quantizer.vocab_size).all()

    rate = audio.config.sample_rate
    wave = (0.3 * np.sin(np.arange(rate // 2) * 2 * np.pi * 220 / rate)).astype(np.float32)
    out = io.BytesIO()
    with av.open(out, "w", format="flac") as c:
        s = c.add_stream("flac", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(wave[None], format="fltp", layout="mono")
        frame.sample_rate = rate
        for fr in av.AudioResampler(format="s16", layout="mono", rate=rate).resample(frame):
            c.mux(s.encode(fr))
        c.mux(s.encode(None))
    clip = Sample.create(
        id="a",
        source="file:///a.flac",
        license="cc0",
        meta=AudioMeta(
            sample_rate=rate,
            channels=1,
            duration_s=0.5,
            source_sample_rate=rate,
            source_codec="flac",
            transcript="hello",
        ),
        payloads={"flac": out.getvalue()},
    )
    dec = proc.decode(proc.encode(clip).ids)
    assert dec.spans[0].kind == "audio" and dec.spans[0].codes is not None
    assert len(dec.spans[0].codes) > 0 and dec.text == "hello"
