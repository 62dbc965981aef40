"""Speech: VAD on planted speech, loudness (BS.1770), clipping/silence, resampling, transcript
pairing with the IPA layer in ingest, and malformed audio / sidecars quarantined."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from vla_data.ingest import IngestConfig, ingest
from vla_data.quarantine import iter_quarantine
from vla_data.sample import AudioMeta, Sample
from vla_data.shards import iter_samples
from vla_data.speech import (
    backend_count,
    check_decoded,
    clipping,
    decode,
    detect,
    integrated_loudness,
    ipa_layer,
    peak_dbfs,
    phonemize,
    resample,
    rms_dbfs,
    segment_chunks,
)
from vla_data.speech import ipa as ipa_mod
from vla_data.speech.audio import Decoded
from vla_data.speech.levels import k_weight, k_weighting
from vla_data.speech.synth import synthesize
from vla_data.verify import verify


def write_audio(path: Path, samples: np.ndarray, rate: int, codec: str = "pcm_s16le") -> Path:
    """Mono float samples in [-1, 1] -> a file (WAV by default, FLAC with codec='flac')."""
    pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16)
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm[None, :], format="s16", layout="mono")
        frame.sample_rate = rate
        for p in s.encode(frame):
            c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


def planted(rate: int = 22050, seed: int = 0):
    """Silence (-60 dBFS noise), English speech, a pause, Mandarin speech, silence."""
    en, r1 = synthesize("The morning train to the coast was delayed by fog.", "en-us")
    zh, r2 = synthesize("今天早上雾很大，火车晚了二十分钟。", "cmn")
    assert r1 == r2 == rate
    gap = lambda s: np.zeros(int(s * rate))  # noqa: E731
    pieces = [gap(1.2), en / 32768, gap(1.5), 0.5 * zh / 32768, gap(1.0)]
    x = np.concatenate(pieces)
    x = x + np.random.default_rng(seed).normal(0, 10 ** (-60 / 20), len(x))
    t0 = 1.2
    spans = [(t0, t0 + len(en) / rate)]
    t1 = spans[0][1] + 1.5
    spans.append((t1, t1 + len(zh) / rate))
    return x.astype(np.float32), rate, spans


# --- VAD --------------------------------------------------------------------------------------


def test_vad_finds_planted_speech_segments():
    x, rate, spans = planted()
    mono16 = resample(x, rate, 16_000)
    segs = detect(mono16, 16_000)
    assert len(segs) == 2, segs
    for (s, t), (ps, pt) in zip(segs, spans, strict=True):
        # espeak pads each utterance with a little silence of its own: detections sit inside
        assert ps - 0.1 <= s <= ps + 0.35 and pt - 0.35 <= t <= pt + 0.1, (segs, spans)
    # nothing in the pure-silence stretches
    assert segs[0][0] > 1.0 and segs[-1][1] < len(x) / rate - 0.8


def test_vad_silence_tones_and_chunks():
    rate = 16_000
    assert detect(np.zeros(rate * 2), rate) == []
    noise = np.random.default_rng(1).normal(0, 10 ** (-70 / 20), rate * 2)
    assert detect(noise, rate) == []
    # voiced-like bursts: harmonic tone with a 4 Hz syllable envelope, 0.6 s on / 0.8 s off
    t = np.arange(int(rate * 0.6)) / rate
    burst = (
        sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 6))
        * np.sin(np.pi * 4 * t) ** 2
        * 0.3
    )
    x = np.concatenate(
        [np.zeros(int(0.8 * rate)), burst, np.zeros(int(0.8 * rate)), burst, np.zeros(rate)]
    )
    segs = detect(x + np.random.default_rng(2).normal(0, 1e-4, len(x)), rate)
    assert len(segs) == 2 and abs(segs[0][0] - 0.8) < 0.15 and abs(segs[1][1] - 2.8) < 0.15
    assert segment_chunks([(0, 10), (11, 20), (21, 50)], max_s=25) == [
        (0, 20),
        (21, 35.5),
        (35.5, 50),
    ]


# --- levels and checks ------------------------------------------------------------------------


def test_bs1770_loudness_calibration_and_gating():
    (b1, a1), (b2, a2) = k_weighting(48_000)  # the table of ITU-R BS.1770-4
    assert np.allclose(b1, [1.53512485958697, -2.69169618940638, 1.19839281085285], atol=1e-8)
    assert np.allclose(a1, [1.0, -1.69065929318241, 0.73248077421585], atol=1e-8)
    assert np.allclose(a2, [1.0, -1.99004745483398, 0.99007225036621], atol=1e-8)
    for rate in (48_000, 44_100, 16_000):
        t = np.arange(rate * 4) / rate
        sine = np.sin(2 * np.pi * 1000 * t)
        assert integrated_loudness(sine[None], rate) == pytest.approx(-3.01, abs=0.05)
    rate = 48_000
    t = np.arange(rate * 10) / rate
    s = 0.1 * np.sin(2 * np.pi * 997 * t)  # -20 dBFS in both channels: -20 LUFS
    assert integrated_loudness(np.stack([s, s]), rate) == pytest.approx(-20.0, abs=0.02)
    quiet = np.concatenate([s, 0.001 * s])  # the -60 dB half falls under the relative gate
    assert integrated_loudness(np.stack([quiet, quiet]), rate) == pytest.approx(-20.0, abs=0.1)
    assert integrated_loudness(np.zeros((1, rate)), rate) is None  # all gated
    assert integrated_loudness(np.ones((1, 100)), rate) is None  # shorter than a block
    assert rms_dbfs(s) == pytest.approx(-23.01, abs=0.01) and peak_dbfs(s) == pytest.approx(
        -20, abs=0.01
    )


def test_k_weighting_by_fft_equals_the_iir_filter():
    rng = np.random.default_rng(0)
    for rate in (8_000, 48_000):
        x = rng.normal(size=3_000)
        y = x
        for b, a in k_weighting(rate):  # the difference equation, sample by sample
            out, x1, x2, y1, y2 = np.zeros_like(y), 0.0, 0.0, 0.0, 0.0
            for i, v in enumerate(y):
                o = b[0] * v + b[1] * x1 + b[2] * x2 - a[1] * y1 - a[2] * y2
                x2, x1, y2, y1 = x1, v, y1, o
                out[i] = o
            y = out
        assert np.allclose(k_weight(x[None], rate)[0], y, atol=1e-9)
        assert np.allclose(k_weight(x[None], rate, block=700)[0], y, atol=1e-9)  # overlap-add


def test_clipping_and_silence_checks():
    rate = 16_000
    t = np.arange(rate * 2) / rate
    clean = 0.5 * np.sin(2 * np.pi * 220 * t)
    assert clipping(clean) == (0.0, 0)
    spike = clean.copy()
    spike[100] = 1.0  # a lone full-scale sample is not clipping
    assert clipping(spike)[1] == 0
    clipped = np.clip(2.0 * np.sin(2 * np.pi * 220 * t), -1, 1)
    fraction, runs = clipping(clipped)
    assert fraction > 0.3 and runs > 100
    checks = check_decoded(Decoded(clipped[None].astype(np.float32), rate, rate, 1, "pcm"))
    assert "clipping" in checks.issues and checks.clipped_runs == runs
    silent = check_decoded(Decoded(np.zeros((1, rate), np.float32), rate, rate, 1, "pcm"))
    assert "silent" in silent.issues and silent.segments == [] and silent.peak_dbfs == -120.0
    x, src_rate, spans = planted()
    speech = check_decoded(Decoded(x[None], src_rate, src_rate, 1, "pcm"))
    assert speech.issues == [] and len(speech.segments) == 2
    assert -35 < speech.loudness_lufs < -15 and 0.3 < speech.speech_ratio < 0.9
    assert speech.leading_silence_s == pytest.approx(speech.segments[0][0])


def test_resampling_keeps_pitch_and_length():
    rate = 44_100
    t = np.arange(rate) / rate
    x = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    y = resample(x, rate, 16_000)
    assert abs(len(y) - 16_000) <= 32
    spectrum = np.abs(np.fft.rfft(y[:16_000]))
    assert abs(np.argmax(spectrum) * 16_000 / 16_000 - 1000) <= 1
    stereo = resample(np.stack([x, -x]), rate, 22_050)
    assert stereo.shape[0] == 2 and np.allclose(stereo[0], -stereo[1], atol=1e-4)


# --- IPA --------------------------------------------------------------------------------------


def test_ipa_non_empty_deterministic_one_backend_per_voice():
    texts = {
        "cmn": "今天早上雾很大，去海边的火车晚了二十分钟。",
        "yue": "你食咗飯未呀？我哋一陣去飲茶啦。",
        "en": "The morning train to the coast was delayed by twenty minutes.",
    }
    first = {lang: ipa_layer(t, lang) for lang, t in texts.items()}
    created = backend_count()
    backends = {v: ipa_mod.backend(v) for v in ("cmn", "yue", "en-us")}
    for _ in range(3):
        for lang, t in texts.items():
            again = ipa_layer(t, lang)
            assert again == first[lang]  # deterministic
    assert phonemize([texts["cmn"]], "zh") == [first["cmn"].ipa]  # alias, same backend
    assert backend_count() == created  # no backend re-created per call
    assert all(ipa_mod.backend(v) is b for v, b in backends.items())
    for layer in first.values():
        assert layer.ipa and len(layer.word_ipa) == len(layer.words) and all(layer.word_ipa)
        assert layer.foreign_words == 0 and layer.backend.startswith("espeak-ng")
    assert first["en"].alignment == "aligned" and first["en"].ipa.split() == first["en"].word_ipa
    assert first["yue"].voice == "yue" and first["cmn"].voice == "cmn"
    assert first["cmn"].words[:4] == ["今", "天", "早", "上"]
    assert any(ch.isdigit() for ch in first["cmn"].ipa)  # tone numbers


def test_ipa_hakka_and_foreign_words():
    han = ipa_layer("今晡日天氣當好", "hak")  # espeak's hak voice reads romanised Hakka only
    assert han.foreign_words == han.transcript_words == 7
    roman = ipa_layer("Ngài he Hak-kâ-ngìn", "hak")
    assert roman.foreign_words == 0 and roman.words == ["Ngài", "he", "Hak-kâ-ngìn"]
    mixed = ipa_layer("我喜欢 computer", "cmn")
    assert mixed.foreign_words == 1 and "(" not in mixed.ipa
    assert ipa_layer("...!", "en").alignment == "empty"
    with pytest.raises(ipa_mod.IpaError):
        ipa_layer("hello", "xx-nonexistent")
    assert ipa_mod.transcript_words("Don't stop—it's 20 km, ok?") == [
        "Don't",
        "stop",
        "it's",
        "20",
        "km",
        "ok",
    ]


def test_espeak_synthesis_is_deterministic():
    a, rate = synthesize("Hello there.", "en-us")
    b, _ = synthesize("Hello there.", "en-us")
    assert rate == 22050 and len(a) > rate // 2 and np.array_equal(a, b)


# --- ingest: transcript pairing, IPA, checks, quarantine ---------------------------------------


def _quarantine(root: Path) -> dict[str, str]:
    return {
        rec.id: rec.error
        for p in sorted((root / "quarantine").glob("*.tar"))
        for rec, _raw in iter_quarantine(p)
    }


def test_ingest_pairs_transcripts_and_quarantines_bad_audio(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    x, rate, _spans = planted()
    write_audio(src / "talk.wav", x, rate)
    (src / "talk.transcript.json").write_text(
        json.dumps({"text": "The morning train to the coast was delayed by fog.", "language": "en"})
    )
    zh, _ = synthesize("你食咗飯未呀", "yue")
    write_audio(
        src / "cantonese.flac",
        np.concatenate([np.zeros(rate), zh / 32768, np.zeros(rate)]),
        rate,
        "flac",
    )
    (src / "cantonese.lab").write_text("你食咗飯未呀？\n", encoding="utf-8")
    write_audio(src / "plain.wav", x, rate)  # no transcript: checks only
    write_audio(src / "badside.wav", x, rate)
    (src / "badside.transcript.json").write_text('{"text": "hi", "lang": "en"}')
    write_audio(src / "notjson.wav", x, rate)
    (src / "notjson.transcript.json").write_text("{not json")
    (src / "orphan.lab").write_text("nobody speaks")
    good_flac = write_audio(tmp_path / "ok.flac", x, rate, "flac").read_bytes()
    (src / "truncated.flac").write_bytes(good_flac[:40])
    (src / "garbage.flac").write_bytes(np.random.default_rng(3).bytes(4096))
    (src / "empty.flac").write_bytes(b"")
    out = tmp_path / "ds"
    config = IngestConfig(workers=1, tasks=1, transcript_language="yue")
    report = ingest([str(src)], out, config)
    assert verify(out).ok
    errors = _quarantine(out)
    assert set(errors) == {
        "badside.wav",
        "notjson.wav",
        "orphan.lab",
        "truncated.flac",
        "garbage.flac",
        "empty.flac",
    }, errors
    assert "badside.transcript.json: lang: Extra inputs are not permitted" in errors["badside.wav"]
    assert "notjson.transcript.json is not JSON" in errors["notjson.wav"]
    assert "orphan.lab has no audio file beside it" in errors["orphan.lab"]
    assert errors["truncated.flac"].startswith("undecodable audio")
    assert errors["garbage.flac"].startswith("undecodable audio")
    assert errors["empty.flac"] == "empty file"
    assert report.kept == 3
    samples = {s.id: s for p in sorted((out / "shards").glob("*.tar")) for s in iter_samples(p)}
    talk = samples["talk.wav"].meta
    assert talk.transcript.startswith("The morning") and talk.language == "en"
    assert talk.ipa.voice == "en-us" and talk.ipa.alignment == "aligned" and talk.ipa.ipa
    assert talk.speech.issues == [] and len(talk.speech.segments) == 2
    assert talk.speech.vad == "energy-zcr-v1" and talk.sample_rate == 16_000
    yue = samples["cantonese.flac"].meta
    assert yue.language == "yue" and yue.ipa.voice == "yue"  # from --transcript-language
    assert yue.ipa.words == list("你食咗飯未呀") and yue.ipa.alignment == "aligned"
    plain = samples["plain.wav"].meta
    assert plain.transcript is None and plain.ipa is None and plain.speech is not None


def test_old_audio_metadata_still_validates():
    meta = AudioMeta(
        sample_rate=16_000,
        channels=1,
        duration_s=1.0,
        source_sample_rate=16_000,
        source_codec="flac",
    )
    s = Sample.create(
        id="a.wav", source="file:///a.wav", license="cc0", meta=meta, payloads={"flac": b"x"}
    )
    raw = json.loads(s.to_json_bytes())
    for key in ("ipa", "speech", "language"):
        raw["meta"].pop(key)
    assert Sample.from_json_bytes(json.dumps(raw).encode()).meta == meta


def test_decode_reports_source_facts(tmp_path):
    x, rate, _ = planted()
    path = write_audio(tmp_path / "a.flac", x, rate, "flac")
    d = decode(path.read_bytes())
    assert (d.rate, d.source_rate, d.codec, d.samples.shape[0]) == (rate, rate, "flac", 1)
    d16 = decode(path.read_bytes(), rate=16_000, mono=True)
    assert d16.rate == 16_000 and abs(d16.duration_s - d.duration_s) < 0.01
    with pytest.raises((ValueError, av.FFmpegError)):
        decode(b"RIFF0000WAVEjunk")
