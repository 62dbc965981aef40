"""`vla-tok build --vision-codec/--audio-codec`, then `vla-tok shards` through the codecs."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from vla_tokenizers.cli import main
from vla_tokenizers.codecs.audio import AudioCodec
from vla_tokenizers.codecs.checkpoint import save_codec
from vla_tokenizers.codecs.presets import codec_config
from vla_tokenizers.codecs.video import VideoCodec
from vla_tokenizers.testing import corpus_texts


def _flac(rate: int, seconds: float) -> bytes:
    import av

    n = int(rate * seconds)
    wave = (0.3 * np.sin(np.arange(n) * 2 * np.pi * 220 / rate)).astype(np.float32)
    out = io.BytesIO()
    with av.open(out, "w", format="flac") as c:
        s = c.add_stream("flac", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(wave[None], format="fltp", layout="mono")
        frame.sample_rate = rate
        for fr in av.AudioResampler(format="s16", layout="mono", rate=rate).resample(frame):
            c.mux(s.encode(fr))
        c.mux(s.encode(None))
    return out.getvalue()


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    """One .tar shard: a text, an image, a speech clip and a 6-camera rig (8 ticks)."""
    from PIL import Image

    from vla_data.rig import load_rig
    from vla_data.rig.synthetic import synthetic_rig
    from vla_data.sample import AudioMeta, ImageMeta, Sample, TextMeta
    from vla_data.shards import ShardWriter

    root = tmp_path_factory.mktemp("codec_cli")
    rig = load_rig(str(synthetic_rig(root / "rig", seconds=8 / 12, width=32, height=24)))
    png = io.BytesIO()
    Image.fromarray(np.full((24, 40, 3), 90, np.uint8)).save(png, format="PNG")
    text = "Turn left at the second traffic light."
    samples = [
        Sample.create(id="t", source="file:///t.txt", license="cc0",
                      meta=TextMeta(chars=len(text)), payloads={"txt": text.encode()}),
        Sample.create(id="i", source="file:///i.png", license="cc0",
                      meta=ImageMeta(width=40, height=24, mode="RGB", format="PNG"),
                      payloads={"png": png.getvalue()}),
        Sample.create(id="a", source="file:///a.flac", license="cc0",
                      meta=AudioMeta(sample_rate=16000, channels=1, duration_s=0.25,
                                     source_sample_rate=16000, source_codec="flac",
                                     transcript="hello"),
                      payloads={"flac": _flac(16000, 0.25)}),
        Sample.create(id="r", source="file:///rig", license="cc0", meta=rig.meta(),
                      payloads=rig.payloads()),
    ]  # fmt: skip
    with ShardWriter(root / "ds", "shard") as w:
        for s in samples:
            w.write_sample(s)
    texts = root / "texts.txt"
    texts.write_text("\n".join(t.replace("\n", " ") for t in corpus_texts()))
    return {"root": root, "tar": root / "ds" / "shard-000000.tar", "texts": texts}


def test_build_carries_codecs_and_shards_encode_through_them(shard, tmp_path):
    run = CliRunner().invoke
    torch.manual_seed(0)
    video = VideoCodec(codec_config("video", "tiny"))
    vfile = save_codec(video, tmp_path / "video.safetensors")
    # the audio codec as a training run folder (what `codec train` leaves; the optimizer part
    # is not needed to load the codec), exported through the CLI too
    torch.manual_seed(0)
    audio = AudioCodec(codec_config("audio", "tiny"))
    step = tmp_path / "arun" / "step_00000000"
    save_codec(audio, step / "model.safetensors")
    (step / "state.json").write_text("{}")
    (tmp_path / "arun" / "latest.json").write_text('{"checkpoint": "step_00000000", "step": 0}')
    r = run(main, ["codec", "export", str(tmp_path / "arun"), str(tmp_path / "audio.st")])
    assert r.exit_code == 0, r.output

    bundle = tmp_path / "bundle"
    args = ["build", str(bundle), "-d", str(shard["tar"]), "--text", str(shard["texts"])]
    args += ["--vocab-size", "700", "--min-frequency", "1"]
    r = run(main, [*args, "--vision-codec", str(vfile), "--audio-codec", str(tmp_path / "arun")])
    assert r.exit_code == 0, r.output
    assert "audio codec, video codec" in r.output
    summary = json.loads(run(main, ["inspect", str(bundle)]).stdout)
    assert summary["codecs"]["video"]["ids"] == video.quantizer.vocab_size
    assert summary["codecs"]["audio"]["levels"] == audio.config.levels

    out = tmp_path / "tok"
    r = run(
        main,
        ["shards", str(shard["tar"]), "-b", str(bundle), "-o", str(out), "--json",
         "--video-size", "16", "--bucket-by", "modality"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["documents"] == 4 and report["rejected"] == 0

    from vla_data.shards import iter_samples
    from vla_tokenizers.bundle import TokenizerBundle
    from vla_tokenizers.indexed import IndexedReader

    b = TokenizerBundle.load(bundle)
    proc = b.processor(video_size=16)  # what the shards must equal: VLAProcessor's encoding
    vision, aud = b.layout.range("vision"), b.layout.range("audio")
    for s in iter_samples(shard["tar"]):
        m = str(s.meta.modality)
        ids = IndexedReader(out / m)[0]
        assert ids.tolist() == proc.encode(s).ids.tolist()
        if m in ("image", "rig"):
            assert ((ids >= vision.start) & (ids < vision.end)).sum() > 0
        if m == "audio":
            assert ((ids >= aud.start) & (ids < aud.end)).sum() > 0
    settings = json.loads((out / "settings.json").read_text())
    assert settings["processor"]["video_size"] == [16, 16]


def test_build_refuses_codecs_that_do_not_fit(shard, tmp_path):
    run = CliRunner().invoke
    audio = save_codec(AudioCodec(codec_config("audio", "tiny")), tmp_path / "a.safetensors")
    base = ["build", str(tmp_path / "b"), "--text", str(shard["texts"])]
    r = run(main, [*base, "--vision-codec", str(audio)])
    assert r.exit_code == 1 and "holds a audio codec (give it to --audio-codec)" in r.output
    big = AudioCodec(codec_config("audio", "tiny", codebook_size=8192))  # 3 x 8192 > 16384
    r = run(main, [*base, "--audio-codec", str(save_codec(big, tmp_path / "big.safetensors"))])
    assert r.exit_code == 1
    assert "needs 24576 ids (3 levels x 8192 codes) but the layout's audio range has 16384" in (
        r.output
    )
    (tmp_path / "junk.safetensors").write_bytes(b"not a codec")
    r = run(main, [*base, "--vision-codec", str(tmp_path / "junk.safetensors")])
    assert r.exit_code == 1 and "--vision-codec" in r.output and "safetensors" in r.output
    assert not (tmp_path / "b").exists()
