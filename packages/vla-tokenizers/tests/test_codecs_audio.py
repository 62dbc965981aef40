"""Audio codec: frame rate, shapes, RVQ level prefixes, layout ids, training on speech-like audio."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vla_tokenizers.codecs.audio import AudioCodec, AudioCodecConfig
from vla_tokenizers.codecs.data import decode_audio, synthetic_speech
from vla_tokenizers.codecs.presets import codec_config
from vla_tokenizers.codecs.tokens import audio_span, ids_to_codes
from vla_tokenizers.codecs.training import AudioBatches, TrainConfig, Trainer

torch.set_num_threads(1)


def tiny() -> AudioCodec:
    torch.manual_seed(0)
    return AudioCodec(codec_config("audio", "tiny")).eval()


def test_frame_rates_of_the_presets():
    assert codec_config("audio", "small").frame_rate == 50.0
    assert codec_config("audio", "small").hop == 320
    assert codec_config("audio", "small-24k").frame_rate == 75.0
    with pytest.raises(ValueError, match="16000 or 24000"):
        AudioCodecConfig(sample_rate=22050)


def test_shapes_padding_and_level_prefixes():
    codec = tiny()
    x = 0.1 * torch.randn(2, 1, 3333)
    recon, q = codec(x)
    assert recon.shape == x.shape
    assert q.codes.shape == (2, 11, 3) and codec.frames_for(3333) == 11
    codes = codec.encode(x)
    assert torch.equal(codes, q.codes)
    assert codec.decode(codes, samples=3333).shape == x.shape
    assert codec.decode(codes[..., :1]).shape == (2, 1, 11 * 320)
    assert torch.equal(codec.encode(x, levels=2), codes[..., :2])
    with pytest.raises(ValueError, match="mono"):
        codec.encode(torch.zeros(1, 2, 320))


def test_determinism():
    a, b = tiny(), tiny()
    x = 0.1 * torch.randn(1, 1, 1600)
    assert torch.equal(a.encode(x), b.encode(x))
    assert torch.equal(a(x)[0], b(x)[0])


def test_audio_span_ids_in_the_audio_range(bundle):
    lay = bundle.layout
    codec = tiny()
    codes = codec.encode(0.1 * torch.randn(1, 1, 3200))[0].numpy()  # (10, 3)
    span = audio_span(lay, codes, codec.config.codebook_size)
    r = lay.range("audio")
    body = span[2:-1]
    assert len(body) == 30 and all(t in r for t in body)
    assert np.array_equal(ids_to_codes(body, 32, 3, r.start), codes)
    decoded = bundle.processor().decode(span + [lay.id_of("<|endoftext|>")])
    (audio,) = decoded.of("audio")
    assert np.array_equal(audio.codes, np.asarray(body) - r.start)


def test_decode_audio_resamples_flac():
    from vla_data.corpus import encode_audio

    wave = synthetic_speech(1, 0.5, 44_100, seed=3)[0]
    flac = encode_audio(wave[None], 44_100, "flac", "flac")
    out = decode_audio(flac, 16_000)
    assert abs(out.size - 8000) <= 32 and out.dtype == np.float32
    assert 0.3 < float(np.abs(out).max()) < 0.8


def test_loss_decreases_on_speech_like_audio():
    torch.manual_seed(0)
    codec = AudioCodec(codec_config("audio", "tiny"))
    waves = synthetic_speech(4, 1.0, 16_000, seed=0)
    held = AudioBatches(waves, 8, 3200, seed=99)(0)  # a fixed batch, scored before and after

    def mel_loss() -> float:
        codec.eval()
        with torch.no_grad():
            return float(codec.loss(held)[1]["mel"])

    before = mel_loss()
    trainer = Trainer(
        codec,
        AudioBatches(waves, 4, 3200, seed=0),
        TrainConfig(steps=30, lr=3e-3, warmup=3, log_every=10),
        log=lambda s: None,
    )
    trainer.train()
    assert mel_loss() < 0.95 * before


def test_audio_encoder_batches_and_decodes_bytes(bundle):
    from vla_data.corpus import encode_audio
    from vla_tokenizers.codecs.encoders import AudioEncoder

    enc = AudioEncoder(tiny(), bundle.layout, device="cpu")
    waves = synthetic_speech(3, 0.2, 16_000, seed=1)
    ids = enc.waves([*waves, waves[0][:1000]])
    assert [len(i) for i in ids] == [30, 30, 30, 12]
    assert np.array_equal(enc.waves([waves[1]])[0], ids[1])
    flac = encode_audio(waves[0][None], 16_000, "flac", "flac")
    assert (enc.audio_bytes(flac) == ids[0]).mean() > 0.9  # 16-bit FLAC: (nearly) the same codes
    proc = bundle.processor()
    w = proc.writer()
    w.audio(codes=ids[0])
    (encoding,) = proc.finish([w])
    (audio,) = proc.decode(encoding.ids).of("audio")
    assert np.array_equal(audio.codes, ids[0])
