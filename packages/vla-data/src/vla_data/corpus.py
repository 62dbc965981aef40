"""A small, deterministic, offline sample corpus of raw inputs for `vla-data ingest`.

`generate_corpus(out)` writes multilingual text (JSON Lines, gzip JSON Lines, a JSON array,
Parquet, plain .txt, textbook lessons in English and Chinese with computed answers), synthetic speech-like audio (WAV, FLAC, MP3, Ogg), generated images (JPEG
with EXIF and GPS, PNG, WebP) and driving action streams (.npy, structured .npy, .csv), plus,
with `corrupt=True`, one file of each kind of bad input under `bad/`. Everything is made with
numpy, PyAV, Pillow and pyarrow from a seed, so the same seed gives the same bytes.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import ExifTags, Image, ImageDraw

from vla_data.textbook import lessons

MANIFEST_NAME = "manifest.json"
ACTION_FIELDS = ("steering", "throttle", "brake", "speed")

_KINDS = {
    ".jsonl": "text",
    ".ndjson": "text",
    ".json": "text",
    ".parquet": "text",
    ".txt": "text",
    ".wav": "audio",
    ".flac": "audio",
    ".mp3": "audio",
    ".ogg": "audio",
    ".opus": "audio",
    ".jpg": "image",
    ".jpeg": "image",
    ".png": "image",
    ".webp": "image",
    ".npy": "actions",
    ".csv": "actions",
    ".py": "mesh",  # a procedural Blender script
    ".obj": "mesh",
    ".x3d": "mesh",
    ".ply": "mesh",
}

# Original sentences, a few per language, mixed into text records.
SENTENCES: dict[str, tuple[str, ...]] = {
    "en": (
        "The morning train to the coast was delayed by twenty minutes because of fog.",
        "She planted tomatoes along the south wall, where the sun lingers longest.",
        "Our robot learned to open the drawer after watching a handful of demonstrations.",
        "A gentle rain fell on the market while the vendors packed away their fruit.",
        "He checked the tyre pressure before the long drive over the mountain pass.",
        "The library stays open late on Thursdays for students preparing for exams.",
        "Turn left at the second traffic light and park beside the bakery.",
        "Wind turbines on the ridge turned slowly against the orange evening sky.",
    ),
    "zh": (
        "今天早上雾很大，去海边的火车晚了二十分钟。",
        "她在南墙边种了西红柿，那里的阳光最充足。",
        "机器人看了几次示范以后，就学会了打开抽屉。",
        "请在第二个红绿灯左转，然后把车停在面包店旁边。",
        "图书馆每周四开到很晚，方便学生准备考试。",
        "傍晚的风很凉，我们沿着河边慢慢地走回家。",
    ),
    "yue": (
        "今朝好大雾，去海邊嘅火車遲咗二十分鐘。",
        "你食咗飯未呀？我哋一陣去飲茶啦。",
        "呢部機械人睇咗幾次示範，就識得開櫃桶喇。",
        "落緊雨，記得帶遮出門呀。",
        "佢哋喺街市買咗啲新鮮嘅菜同埋魚。",
    ),
    "de": (
        "Der Zug nach Hamburg fährt heute ausnahmsweise von Gleis sieben ab.",
        "Im Herbst sammeln die Kinder bunte Blätter im Park.",
        "Bitte schließen Sie das Fenster, bevor Sie das Büro verlassen.",
        "Das Auto bremste sanft, als die Ampel auf Gelb sprang.",
    ),
    "fr": (
        "Le marché du samedi attire des producteurs de toute la région.",
        "Il a oublié son parapluie au café, juste avant l'averse.",
        "La voiture ralentit doucement à l'approche du virage.",
        "Nous avons dîné sur la terrasse en regardant le coucher du soleil.",
    ),
    "es": (
        "El autobús llegó tarde porque había mucho tráfico en el centro.",
        "Mi abuela prepara la mejor tortilla de patatas del barrio.",
        "El robot aprendió a doblar toallas con muy pocos ejemplos.",
        "Las montañas seguían cubiertas de nieve a principios de abril.",
    ),
    "ja": (
        "今朝は霧が濃くて、海辺へ行く電車が二十分遅れました。",
        "駅の近くに新しいパン屋さんができたそうです。",
        "このロボットは数回の実演を見て、引き出しを開けられるようになった。",
        "週末は友達と山に登る予定です。",
    ),
    "ar": (
        "تأخر القطار المتجه إلى الساحل بسبب الضباب الكثيف.",
        "زرعت جدتي أشجار الليمون في حديقة المنزل.",
        "يرجى إغلاق النافذة قبل مغادرة المكتب.",
    ),
    "hi": (
        "आज सुबह घना कोहरा था, इसलिए ट्रेन देर से आई।",
        "मेरी दादी हर रविवार को स्वादिष्ट खीर बनाती हैं।",
        "कृपया दूसरी बत्ती पर बाएँ मुड़ें और बेकरी के पास गाड़ी रोकें।",
    ),
    "ko": (
        "오늘 아침에는 안개가 짙어서 기차가 늦게 도착했어요.",
        "주말에 친구들과 함께 바다에 갈 거예요.",
    ),
    "ru": (
        "Поезд опоздал на двадцать минут из-за густого тумана.",
        "Вечером мы гуляли вдоль реки и говорили о книгах.",
    ),
}

POEM_EN = """Morning on the Ring Road

Grey light unrolls along the lane,
the wipers keep a patient time;
a cyclist threads the quiet rain,
and every signal turns to green in rhyme.

We carry coffee, maps and doubt,
the engine hums a lower key;
the city slowly reasons out
the shape of what it wants to be.
"""

POEM_ZH = """夜行

城市的灯一盏一盏亮起，
雨点在车窗上写着细小的字。
司机轻轻转动方向盘，
像在翻一本熟悉的旧书。

路的尽头有一座小桥，
桥下的河水不说话，
只把月亮慢慢地
送回远方的家。
"""

_LICENSES = ("CC-BY-4.0", "CC0-1.0", "CC-BY-SA-4.0")


@dataclass(frozen=True)
class AudioClip:
    """One generated audio file: name, length and the encoders to try, in order."""

    stem: str
    suffix: str
    seconds: float
    channels: int
    codecs: tuple[tuple[str, int], ...]  # (encoder, sample rate)


AUDIO_CLIPS: tuple[AudioClip, ...] = (
    AudioClip("speech_a", ".wav", 1.5, 1, (("pcm_s16le", 22050),)),
    AudioClip("speech_b", ".flac", 2.0, 2, (("flac", 44100),)),
    AudioClip("speech_c", ".mp3", 2.5, 1, (("libmp3lame", 44100),)),
    AudioClip("speech_d", ".ogg", 1.2, 1, (("libvorbis", 44100), ("libopus", 48000))),
    AudioClip("speech_e", ".wav", 3.0, 2, (("pcm_s16le", 22050),)),
)
_CONTAINERS = {".wav": "wav", ".flac": "flac", ".mp3": "mp3", ".ogg": "ogg"}


@dataclass(frozen=True)
class CorpusManifest:
    """What `generate_corpus` wrote and what an ingest of it must report."""

    root: Path
    files: dict[str, str]
    expected_records: int
    expected_quarantined: int
    corrupt: dict[str, str]

    @property
    def sources(self) -> list[str]:
        """The top-level input folders to ingest (everything except `manifest.json`)."""
        tops = sorted({PurePosixPath(rel).parts[0] for rel in self.files})
        return [str(self.root / top) for top in tops]

    def to_json(self) -> dict:
        """The manifest as JSON; `root` is left out (it is the folder holding the file)."""
        return {
            "files": dict(sorted(self.files.items())),
            "expected_records": self.expected_records,
            "expected_quarantined": self.expected_quarantined,
            "corrupt": dict(sorted(self.corrupt.items())),
        }

    @classmethod
    def load(cls, root: str | Path) -> CorpusManifest:
        """Read `<root>/manifest.json` back."""
        doc = json.loads((Path(root) / MANIFEST_NAME).read_text(encoding="utf-8"))
        return cls(
            root=Path(root),
            files=doc["files"],
            expected_records=doc["expected_records"],
            expected_quarantined=doc["expected_quarantined"],
            corrupt=doc["corrupt"],
        )


def kind_of(rel: str) -> str:
    """The input kind of a path, by extension (a `.gz` on a text format is looked through)."""
    name = rel.lower().removesuffix(".gz")
    if name.endswith(".transcript.json"):
        return "transcript"
    return _KINDS.get(PurePosixPath(name).suffix, "unknown")


class _Writer:
    """Writes files under the root and keeps the counts for the manifest."""

    def __init__(self, root: Path):
        self.root = root
        self.files: dict[str, str] = {}
        self.corrupt: dict[str, str] = {}
        self.records = 0
        self.quarantined = 0

    def add(self, rel: str, data: bytes, *, records: int = 1, bad: int = 0, why: str = "") -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.files[rel] = kind_of(rel)
        self.records += records
        self.quarantined += bad
        if why:
            self.corrupt[rel] = why


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def _copy_name(stem: str, copy: int) -> str:
    return stem if copy == 0 else f"{stem}_{copy:03d}"


# --- text -------------------------------------------------------------------------------------

_POOL = [s for group in SENTENCES.values() for s in group]


def _sentences(rng: np.random.Generator, lead: str) -> str:
    """A sentence in language `lead`, then up to three more from any language."""
    first = SENTENCES[lead][int(rng.integers(len(SENTENCES[lead])))]
    more = rng.choice(len(_POOL), size=int(rng.integers(0, 4)), replace=False)
    return " ".join([first, *(_POOL[i] for i in more if _POOL[i] != first)])


def _records(rng: np.random.Generator, prefix: str, n: int, license: str | None) -> list[dict]:
    """`n` records; `license` None leaves the field out, "mixed" picks one per record."""
    out = []
    langs = list(SENTENCES)
    for i in range(1, n + 1):
        rec = {"id": f"{prefix}-{i:05d}", "text": _sentences(rng, langs[i % len(langs)])}
        if license is not None:
            rec["license"] = license if license != "mixed" else str(rng.choice(_LICENSES))
        out.append(rec)
    return out


def _jsonl(records: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()


def _parquet(records: list[dict]) -> bytes:
    table = pa.table({k: [r[k] for r in records] for k in ("id", "text", "license")})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def _write_text(w: _Writer, seed: int, scale: int) -> None:
    news = _records(_rng(seed, "news"), "news", 30 * scale, "mixed")
    web = _records(_rng(seed, "web"), "web", 20 * scale, None)
    wiki = _records(_rng(seed, "wiki"), "wiki", 10 * scale, "CC-BY-SA-4.0")
    books = _records(_rng(seed, "books"), "book", 20 * scale, "CC0-1.0")
    w.add("text/news.jsonl", _jsonl(news), records=len(news))
    web_gz = gzip.compress(_jsonl(web), compresslevel=6, mtime=0)  # mtime=0: reproducible
    w.add("text/web.jsonl.gz", web_gz, records=len(web))
    wiki_doc = json.dumps(wiki, ensure_ascii=False, indent=1) + "\n"
    w.add("text/wiki.json", wiki_doc.encode(), records=len(wiki))
    w.add("text/books.parquet", _parquet(books), records=len(books))
    textbook = [
        {"id": d["id"], "text": d["text"], "license": "CC0-1.0"} for d in lessons(12 * scale, seed)
    ]
    w.add("text/textbook.jsonl", _jsonl(textbook), records=len(textbook))
    w.add("text/poem_en.txt", POEM_EN.encode())
    w.add("text/poem_zh.txt", POEM_ZH.encode())


# --- audio ------------------------------------------------------------------------------------


def speech_like(rng: np.random.Generator, seconds: float, rate: int, channels: int) -> np.ndarray:
    """Syllable-like voiced bursts (gliding pitch, harmonics, envelope) between silences.

    Returns float32 of shape (channels, round(seconds * rate)), peak 0.6.
    """
    n = round(seconds * rate)
    mono = np.zeros(n)
    pos = rng.uniform(0.08, 0.2)
    while True:
        dur = rng.uniform(0.12, 0.32)
        if pos + dur > seconds - 0.08:
            break
        start, m = int(pos * rate), int(dur * rate)
        f0 = np.linspace(rng.uniform(110, 230), rng.uniform(90, 250), m)
        phase = 2 * np.pi * np.cumsum(f0) / rate
        formant = rng.uniform(400, 1400)
        voiced = sum(
            np.sin(k * phase) / k * (0.3 + np.exp(-(((k * f0 - formant) / 350) ** 2)))
            for k in range(1, 8)
        )
        envelope = np.sin(np.pi * np.arange(m) / m) ** 2
        breath = 0.02 * rng.standard_normal(m)
        mono[start : start + m] += envelope * (voiced + breath)
        pos += dur + (rng.uniform(0.25, 0.4) if rng.random() < 0.2 else rng.uniform(0.03, 0.15))
    mono *= 0.6 / max(np.abs(mono).max(), 1e-9)
    if channels == 1:
        return mono[None].astype(np.float32)
    right = 0.8 * np.concatenate([np.zeros(7), mono[:-7]])
    return np.stack([mono, right]).astype(np.float32)


def _encoder_available(name: str) -> bool:
    try:
        av.Codec(name, "w")
    except Exception:  # PyAV raises different types for unknown or decode-only codecs
        return False
    return True


def encode_audio(samples: np.ndarray, rate: int, codec: str, container: str) -> bytes:
    """Encode float32 (channels, n) samples with a PyAV encoder; bit-exact for reproducibility."""
    layout = "mono" if samples.shape[0] == 1 else "stereo"
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    buf = io.BytesIO()
    with av.open(buf, "w", format=container, container_options={"fflags": "+bitexact"}) as out:
        stream = out.add_stream(codec, rate=rate, options={"flags": "+bitexact"})
        stream.layout = layout
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout=layout)
        frame.sample_rate = rate
        frame.pts = 0
        fmt = stream.codec_context.format.name
        resampler = av.AudioResampler(format=fmt, layout=layout, rate=rate)
        for converted in resampler.resample(frame) + resampler.resample(None):
            out.mux(stream.encode(converted))
        out.mux(stream.encode(None))
    return buf.getvalue()


def _write_audio(w: _Writer, seed: int, scale: int) -> None:
    for copy in range(scale):
        for clip in AUDIO_CLIPS:
            choice = next(((c, r) for c, r in clip.codecs if _encoder_available(c)), None)
            if choice is None:
                continue  # e.g. no MP3 encoder in this PyAV build: leave the file out
            codec, rate = choice
            name = _copy_name(clip.stem, copy)
            samples = speech_like(_rng(seed, f"audio/{name}"), clip.seconds, rate, clip.channels)
            data = encode_audio(samples, rate, codec, _CONTAINERS[clip.suffix])
            w.add(f"audio/{name}{clip.suffix}", data)


# --- images -----------------------------------------------------------------------------------


def _gradient(w: int, h: int, top: tuple, bottom: tuple, mode: str = "RGB") -> Image.Image:
    a = np.linspace(0.0, 1.0, h)[:, None, None]
    rows = (1 - a) * np.array(top, float) + a * np.array(bottom, float)
    return Image.fromarray(np.repeat(rows, w, axis=1).round().astype(np.uint8), mode)


def _street(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    img = _gradient(w, h, (70, 130, 200), (210, 225, 240))
    d = ImageDraw.Draw(img)
    horizon = int(h * rng.uniform(0.45, 0.6))
    d.rectangle([0, horizon, w, h], fill=(90, 120, 70))
    cx = int(w * rng.uniform(0.4, 0.6))
    d.polygon([(cx - 4, horizon), (cx + 4, horizon), (w * 0.9, h), (w * 0.1, h)], fill=(70, 70, 75))
    for k in range(4):
        y0 = horizon + (h - horizon) * k / 4
        y1 = y0 + (h - horizon) / 8
        x1 = cx + (w / 2 - cx) * (y1 - horizon) / (h - horizon)
        d.line([(cx, y0), (x1, y1)], fill="white", width=2)
    sx, sy = int(w * rng.uniform(0.1, 0.9)), int(horizon * rng.uniform(0.2, 0.6))
    r = max(4, w // 16)
    d.ellipse([sx - r, sy - r, sx + r, sy + r], fill=(255, 220, 120))
    return img


def _shapes(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    img = _gradient(w, h, (240, 240, 230), (180, 200, 220))
    d = ImageDraw.Draw(img)
    for _ in range(6):
        x0, y0 = rng.integers(0, w - 16), rng.integers(0, h - 16)
        x1, y1 = x0 + rng.integers(10, w // 2), y0 + rng.integers(10, h // 2)
        colour = tuple(int(c) for c in rng.integers(30, 230, 3))
        draw = d.ellipse if rng.random() < 0.5 else d.rectangle
        draw([x0, y0, x1, y1], fill=colour, outline="black")
    return img


def _icon(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot((xx - w / 2) / (w / 2), (yy - h / 2) / (h / 2))
    hue = rng.integers(60, 230, 3)
    rgb = hue * (1.2 - 0.6 * np.clip(r, 0, 1))[..., None]
    alpha = np.where(r < 0.92, 255, 0)[..., None]
    pixels = np.concatenate([np.clip(rgb, 0, 255), alpha], axis=-1).round().astype(np.uint8)
    img = Image.fromarray(pixels, "RGBA")
    d = ImageDraw.Draw(img)
    triangle = [(w / 2, h * 0.25), (w * 0.75, h * 0.7), (w * 0.25, h * 0.7)]
    d.polygon(triangle, fill=(255, 255, 255, 200))
    return img


def _grid(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    cell = int(rng.integers(8, 17))
    yy, xx = np.mgrid[0:h, 0:w]
    checker = ((yy // cell + xx // cell) % 2).astype(float)
    base = np.stack([xx / w, yy / h, 1 - xx / w], axis=-1) * 200 + 30
    pixels = base * (0.6 + 0.4 * checker[..., None])
    return Image.fromarray(pixels.round().astype(np.uint8), "RGB")


def _exif(gps: bool, seconds: int) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Northwind Optics"
    exif[ExifTags.Base.Model] = "DashCam N2"
    exif[ExifTags.Base.DateTime] = f"2023:06:01 08:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    if gps:
        ifd = exif.get_ifd(ExifTags.IFD.GPSInfo)
        ifd[ExifTags.GPS.GPSLatitudeRef] = "N"
        ifd[ExifTags.GPS.GPSLatitude] = (52.0, 31.0, 12.5)
        ifd[ExifTags.GPS.GPSLongitudeRef] = "E"
        ifd[ExifTags.GPS.GPSLongitude] = (13.0, 24.0, 3.25)
    return exif


def _image_bytes(img: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **options)
    return buf.getvalue()


# name, suffix, painter, (w, h), save options (EXIF is added per copy)
_IMAGES: tuple[tuple[str, str, Callable, tuple[int, int], dict], ...] = (
    ("street_gps", ".jpg", _street, (192, 128), {"quality": 88, "gps": True}),
    ("dashcam", ".jpg", _street, (160, 120), {"quality": 80, "gps": False}),
    ("plain", ".jpg", _shapes, (96, 96), {"quality": 75}),
    ("shapes", ".png", _shapes, (128, 128), {}),
    ("icon", ".png", _icon, (64, 64), {}),
    ("sunset", ".webp", _street, (200, 120), {"quality": 80}),
    ("grid", ".webp", _grid, (96, 96), {"lossless": True}),
)
_PIL_FORMATS = {".jpg": "JPEG", ".png": "PNG", ".webp": "WEBP"}


def _write_images(w: _Writer, seed: int, scale: int) -> None:
    for copy in range(scale):
        for i, (stem, suffix, paint, (width, height), options) in enumerate(_IMAGES):
            name = _copy_name(stem, copy)
            img = paint(_rng(seed, f"images/{name}"), width, height)
            options = dict(options)
            if "gps" in options:
                options["exif"] = _exif(options.pop("gps"), copy * 60 + i)
            w.add(f"images/{name}{suffix}", _image_bytes(img, _PIL_FORMATS[suffix], **options))


# --- actions ----------------------------------------------------------------------------------


def driving_signals(rng: np.random.Generator, steps: int, dt: float) -> np.ndarray:
    """Smooth steering/throttle/brake/speed of shape (steps, 4), float64."""
    t = np.arange(steps) * dt
    steering = 0.25 * np.sin(2 * np.pi * t / rng.uniform(4, 9) + rng.uniform(0, 2 * np.pi))
    steering += 0.05 * np.sin(2 * np.pi * t / rng.uniform(1.5, 3))
    accel = np.sin(2 * np.pi * t / rng.uniform(5, 12) + rng.uniform(0, 2 * np.pi))
    throttle = 0.6 * np.clip(accel, 0, 1)
    brake = 0.5 * np.clip(-accel - 0.2, 0, 1)
    speed = np.empty(steps)
    v = rng.uniform(5, 15)
    for k in range(steps):
        speed[k] = v
        v = float(np.clip(v + (4 * throttle[k] - 8 * brake[k] - 0.05 * v) * dt, 0, 35))
    return np.stack([steering, throttle, brake, speed], axis=1)


def _npy(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


def _csv(rows: list[list], header: list[str] | None = None) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if header:
        writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode()


def _driving_csv(t: np.ndarray, values: np.ndarray) -> bytes:
    rows = [[f"{ti:.3f}", *(f"{x:.4f}" for x in row)] for ti, row in zip(t, values, strict=True)]
    return _csv(rows, ["t", *ACTION_FIELDS])


def _write_actions(w: _Writer, seed: int, scale: int) -> None:
    structured = np.dtype([(f, "<f4") for f in ACTION_FIELDS])
    for copy in range(scale):
        for stem, suffix, hz in (
            ("drive_a", ".npy", 10),
            ("drive_b", ".npy", 10),
            ("drive_c", ".csv", 10),
            ("drive_d", ".csv", 20),
        ):
            name = _copy_name(stem, copy)
            rng = _rng(seed, f"actions/{name}")
            steps = int(rng.integers(20, 101))
            values = driving_signals(rng, steps, 1 / hz)
            if stem == "drive_a":
                data = _npy(values.astype(np.float32))
            elif stem == "drive_b":
                table = np.zeros(steps, dtype=structured)
                for j, field in enumerate(ACTION_FIELDS):
                    table[field] = values[:, j]
                data = _npy(table)
            else:
                data = _driving_csv(np.arange(steps) / hz, values)
            w.add(f"actions/{name}{suffix}", data)


# --- corrupt inputs ---------------------------------------------------------------------------


def _write_corrupt(w: _Writer, seed: int) -> None:
    rng = _rng(seed, "bad")
    good = _records(rng, "bad", 6, "CC0-1.0")

    w.add("bad/invalid_utf8.txt", b"Caf\xe9 au lait \xff\xfe\n", bad=1, why="invalid UTF-8 bytes")
    w.add("bad/empty.txt", b"", bad=1, why="empty text file")
    w.add("bad/empty.jsonl", b"", bad=1, why="empty JSON Lines file")
    cut = b'{"id": "bad-cut", "text": "The morning train to the co'
    w.add(
        "bad/truncated.jsonl",
        _jsonl(good[:3]) + cut,
        records=4,
        bad=1,
        why="last line cut mid-JSON",
    )
    bad_line = b'{"id": "bad-line", "text": "caf\xe9 \xc3\x28 cr\xe8me"}\n'
    badline = _jsonl(good[3:4]) + bad_line + _jsonl(good[4:5])
    w.add("bad/badline.jsonl", badline, records=3, bad=1, why="line 2 is not UTF-8")
    notext = [{"id": "no-text", "body": good[5]["text"]}, good[5]]
    w.add("bad/notext.jsonl", _jsonl(notext), records=2, bad=1, why="record 1 has no text field")

    flac = encode_audio(speech_like(rng, 1.0, 44100, 1), 44100, "flac", "flac")
    w.add("bad/truncated.flac", flac[:30], bad=1, why="FLAC cut to its first 30 bytes")
    w.add("bad/garbage.wav", rng.bytes(4096), bad=1, why="random bytes")
    w.add("bad/empty.mp3", b"", bad=1, why="empty audio file")

    jpeg = _image_bytes(_street(rng, 128, 96), "JPEG", quality=85)
    w.add(
        "bad/truncated.jpg", jpeg[: len(jpeg) * 6 // 10], bad=1, why="JPEG cut to 60% of its bytes"
    )
    w.add(
        "bad/garbage.png",
        b"\x89PNG\r\n\x1a\n" + rng.bytes(2048),
        bad=1,
        why="PNG signature then random bytes",
    )

    w.add(
        "bad/wrong_shape.npy",
        _npy(rng.standard_normal((5, 8, 4)).astype(np.float32)),
        bad=1,
        why="3-D action array",
    )
    nan = driving_signals(rng, 30, 0.1).astype(np.float32)
    nan[12, 1] = np.nan
    w.add("bad/nan.npy", _npy(nan), bad=1, why="NaN at step 12")
    inf = [[f"{i / 10:.1f}", "0.1", "0.3", "0.0", "inf" if i == 4 else "12.5"] for i in range(8)]
    w.add("bad/inf.csv", _csv(inf, ["t", *ACTION_FIELDS]), bad=1, why="inf at step 4")
    ragged = [
        ["0.0", "0.1", "0.3", "0.0", "12.5"],
        ["0.1", "0.1", "0.3"],
        ["0.2", "0.1", "0.3", "0.0", "12.6", "9"],
    ]
    w.add(
        "bad/ragged.csv",
        _csv(ragged, ["t", *ACTION_FIELDS]),
        bad=1,
        why="rows with 3 and 6 fields under a 5-field header",
    )
    pickled = np.array([{"steering": 0.1}, [0.2, 0.3], "brake"], dtype=object)
    w.add(
        "bad/pickled.npy",
        _npy(pickled, allow_pickle=True),
        bad=1,
        why="object array that only loads by unpickling",
    )

    w.add(
        "bad/unknown.xyz",
        b"XYZ1\x00\x01 not a format anyone reads\n",
        bad=1,
        why="unknown file extension",
    )


# --- speech and 3D ---------------------------------------------------------------------------

# (language code of the transcript, espeak-ng voice): IPA-layer languages incl. a dialect (yue)
SPEECH_VOICES = (("en", "en-us"), ("cmn", "cmn"), ("yue", "yue"), ("de", "de"), ("fr", "fr"))
_SENTENCE_KEY = {"cmn": "zh"}


def _write_speech(w: _Writer, seed: int, scale: int) -> None:
    """Sentences spoken by espeak-ng (padded with silence) as FLAC + transcript sidecars."""
    from vla_data.speech.synth import synthesize

    rng = _rng(seed, "speech")
    for copy in range(scale):
        for lang, voice in SPEECH_VOICES:
            pool = SENTENCES[_SENTENCE_KEY.get(lang, lang)]
            text = pool[int(rng.integers(len(pool)))]
            pcm, rate = synthesize(text, voice, words_per_minute=int(rng.integers(140, 180)))
            pad = np.zeros(int(0.3 * rate), dtype=np.float32)
            wave = np.concatenate([pad, pcm.astype(np.float32) / 32768.0, pad])[None]
            stem = _copy_name(f"speech/{lang}_{voice.replace('-', '_')}", copy)
            w.add(f"{stem}.flac", encode_audio(wave, rate, "flac", "flac"))
            sidecar = {"text": text, "language": lang, "speaker": f"espeak-ng:{voice}"}
            w.add(f"{stem}.transcript.json", _jsonl([sidecar]), records=0)


def _write_objects(w: _Writer, seed: int) -> None:
    """Parametric Blender scripts, their OBJ (run in the sandbox here) and X3D, and a render."""
    from vla_data.corpus_objects import blender_scripts, render_mesh
    from vla_data.mesh.obj import parse_obj
    from vla_data.mesh.sandbox import run_script
    from vla_data.mesh.x3d import write_x3d

    for name, script in blender_scripts(_rng(seed, "objects")).items():
        obj = run_script(script).obj
        mesh = parse_obj(obj)
        w.add(f"objects/{name}.blend.py", script.encode())
        w.add(f"objects/{name}.obj", obj)
        w.add(f"objects/{name}.x3d", write_x3d(mesh, title=f"{name} (vla-data sample corpus)"))
        w.add(f"images/objects/{name}.png", render_mesh(mesh))


# --- driving rigs -----------------------------------------------------------------------------

SIZES = {
    "tiny": {"scale": 1, "rigs": 1, "rig_seconds": 2.0},
    "small": {"scale": 4, "rigs": 3, "rig_seconds": 10.0},
}


def _register_folder(w: _Writer, folder: Path, records: int, bad: int = 0, why: str = "") -> None:
    """Account for a folder written by another writer (a rig: one record for all its files)."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(w.root).as_posix()
        w.files[rel] = "rig" if path.name == "rig.json" else "rig-member"
    w.records += records
    w.quarantined += bad
    if why:
        w.corrupt[(folder / "rig.json").relative_to(w.root).as_posix()] = why


def _write_rigs(w: _Writer, seed: int, n: int, seconds: float) -> None:
    """``n`` simulated drives: six cameras at 480p@12Hz (H.264), timestamps, CAN, ego pose."""
    from vla_data.rig.synthetic import synthetic_rig

    for i in range(n):
        folder = w.root / "rigs" / f"drive_{i:03d}"
        synthetic_rig(
            folder,
            seconds=seconds,
            width=640,
            height=480,
            content="sim",
            seed=seed * 1000 + i,
            rig_id=f"sim-drive-{seed}-{i}",
        )
        _register_folder(w, folder, records=1)


def _write_bad_rig(w: _Writer, seed: int) -> None:
    from vla_data.rig.synthetic import synthetic_rig

    folder = w.root / "bad" / "rig_truncated"
    synthetic_rig(folder, seconds=1.0, width=64, height=48, seed=seed)
    mp4 = folder / json.loads((folder / "rig.json").read_text())["cameras"]["front"]["video"]
    mp4.write_bytes(mp4.read_bytes()[: mp4.stat().st_size // 3])
    _register_folder(w, folder, records=1, bad=1, why="rig whose front camera mp4 is truncated")


def generate_corpus(
    out: str | Path,
    *,
    corrupt: bool = False,
    seed: int = 0,
    scale: int | None = None,
    size: str = "tiny",
) -> CorpusManifest:
    """Write the sample corpus (and `manifest.json`) into `out`, which must be empty or absent.

    `seed` picks the content (same seed, same bytes; an H.264 clip may rarely differ by a byte,
    libx264 being not quite bit-stable on identical frames). `size` is `tiny` (one 2 s simulated
    6-camera drive; the README's main job and the tests) or `small` (scale 4, three 10 s drives);
    `scale` overrides its multiplier of the good records: text files get `scale` times the
    records, audio, image and action files `scale` copies.
    `corrupt=True` adds `bad/`, one file per kind of bad input, each one quarantined record
    (the JSON Lines ones also hold good records). Ingest `manifest.sources`, not `out`:
    `manifest.json` is not an input.
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    scale = SIZES[size]["scale"] if scale is None else scale
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    root = Path(out).absolute()
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty")
    root.mkdir(parents=True, exist_ok=True)
    w = _Writer(root)
    _write_text(w, seed, scale)
    _write_audio(w, seed, scale)
    _write_images(w, seed, scale)
    _write_actions(w, seed, scale)
    _write_speech(w, seed, scale)
    _write_objects(w, seed)
    _write_rigs(w, seed, SIZES[size]["rigs"], SIZES[size]["rig_seconds"])
    if corrupt:
        _write_corrupt(w, seed)
        _write_bad_rig(w, seed)
    manifest = CorpusManifest(
        root=root,
        files=dict(sorted(w.files.items())),
        expected_records=w.records,
        expected_quarantined=w.quarantined,
        corrupt=dict(sorted(w.corrupt.items())),
    )
    text = json.dumps(manifest.to_json(), ensure_ascii=False, indent=2) + "\n"
    (root / MANIFEST_NAME).write_text(text, encoding="utf-8")
    return manifest
