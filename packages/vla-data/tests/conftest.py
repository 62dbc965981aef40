"""Shared fixtures: small, real input files made on the fly."""

from __future__ import annotations

import io
import json
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from vla_data.sample import Sample, TextMeta


def write_wav(path: Path, seconds: float = 1.0, rate: int = 22050, channels: int = 1) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    wave = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype(np.int16)
    layout = "mono" if channels == 1 else "stereo"
    with av.open(str(path), "w") as c:
        s = c.add_stream("pcm_s16le", rate=rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(
            np.repeat(wave, channels)[None, :], format="s16", layout=layout
        )
        frame.sample_rate = rate
        for p in s.encode(frame):
            c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


def jpeg_with_gps(path: Path) -> Path:
    img = Image.new("RGB", (64, 48))
    img.putdata([(x * 4 % 256, y * 5 % 256, 128) for y in range(48) for x in range(64)])
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    exif[0x0132] = "2024:05:06 07:08:09"
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)}
    img.save(path, exif=exif.tobytes(), quality=90)
    return path


def text_sample(i: int, text: str = "hello") -> Sample:
    return Sample.create(
        id=f"doc.{i}",
        source=f"file:///x.jsonl#L{i}",
        license="cc-by-4.0",
        meta=TextMeta(chars=len(text)),
        payloads={"txt": text.encode()},
    )


@pytest.fixture
def mixed_inputs(tmp_path: Path) -> Path:
    """A folder with a few good files of every kind and a few bad ones."""
    src = tmp_path / "src"
    src.mkdir()
    lines = [
        json.dumps({"id": f"n{i}", "text": f"line {i} 文本", "license": "cc0"}) for i in range(12)
    ]
    (src / "docs.jsonl").write_text("\n".join(lines) + "\n")
    (src / "poem.txt").write_text("Roses are red.\n")
    (src / "broken.txt").write_bytes(b"ok \xff\xfe")
    write_wav(src / "tone.wav")
    jpeg_with_gps(src / "photo.jpg")
    buf = io.BytesIO()
    np.save(buf, np.linspace(0, 1, 30, dtype=np.float32).reshape(10, 3))
    (src / "act.npy").write_bytes(buf.getvalue())
    (src / "mystery.xyz").write_bytes(b"??")
    return src
