"""Images: fully decoded to check them, EXIF kept as text, GPS stripped without re-encoding JPEG."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import datetime
from typing import IO

from PIL import ExifTags, Image, UnidentifiedImageError

from vla_data.ingest.base import FileContext, Record
from vla_data.sample import ImageMeta

_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
_GPS_TAG = ExifTags.Base.GPSInfo.value
_MAX_EXIF_VALUE = 256
_SOS, _APP1 = 0xDA, 0xE1


def exif_as_text(exif: Image.Exif) -> dict[str, str]:
    """Readable EXIF tags (base IFD and the Exif sub-IFD); long binary values are skipped."""
    out: dict[str, str] = {}
    tags = dict(exif.items())
    tags.update(exif.get_ifd(ExifTags.IFD.Exif))
    for tag, value in tags.items():
        if tag in (_GPS_TAG, ExifTags.Base.ExifOffset.value):
            continue
        name = ExifTags.TAGS.get(tag, f"0x{tag:04x}")
        if isinstance(value, bytes):
            if len(value) > _MAX_EXIF_VALUE:
                continue
            value = value.decode("latin-1").rstrip("\x00")
        text = str(value).replace("\x00", "")
        if len(text) <= _MAX_EXIF_VALUE:
            out[name] = text
    return out


def replace_jpeg_exif(data: bytes, exif_bytes: bytes) -> bytes:
    """Swap the EXIF APP1 segment of a JPEG, leaving the entropy-coded image untouched."""
    if data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG (no SOI marker)")
    out, i = [data[:2]], 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise ValueError(f"JPEG marker expected at byte {i}")
        marker = data[i + 1]
        if marker == _SOS:
            break
        if 0xD0 <= marker <= 0xD7 or marker in (0x01, 0xFF):
            out.append(data[i : i + 2])
            i += 2
            continue
        end = i + 2 + int.from_bytes(data[i + 2 : i + 4], "big")
        segment = data[i:end]
        if marker == _APP1 and segment[4:10] == b"Exif\x00\x00":
            if len(exif_bytes) > 6:
                out.append(b"\xff\xe1" + (len(exif_bytes) + 2).to_bytes(2, "big") + exif_bytes)
        else:
            out.append(segment)
        i = end
    out.append(data[i:])
    return b"".join(out)


def _strip_gps(img: Image.Image, raw: bytes, fmt: str, exif: Image.Exif) -> bytes:
    del exif[_GPS_TAG]
    if fmt == "JPEG":
        return replace_jpeg_exif(raw, exif.tobytes())
    buf = io.BytesIO()
    options = {"lossless": True} if fmt == "WEBP" else {}
    img.save(buf, format=fmt, exif=exif.tobytes(), **options)
    return buf.getvalue()


def _created(exif: dict[str, str]) -> datetime | None:
    value = exif.get("DateTimeOriginal") or exif.get("DateTime")
    try:
        return datetime.strptime(value, "%Y:%m:%d %H:%M:%S") if value else None
    except ValueError:
        return None


def read_image(ctx: FileContext, f: IO[bytes]) -> Iterator[Record]:
    """One record per file; truncated, corrupt and oversized images are quarantined."""
    raw = f.read()
    rid = ctx.name
    if not raw:
        yield ctx.bad(rid, "", "empty file", raw)
        return
    try:
        with Image.open(io.BytesIO(raw)) as img:
            fmt = img.format or ""
            if fmt not in _FORMATS:
                yield ctx.bad(rid, "", f"unsupported image format {fmt or 'unknown'}", raw)
                return
            img.load()
            exif = img.getexif()
            text = exif_as_text(exif)
            has_gps = _GPS_TAG in exif
            payload = _strip_gps(img, raw, fmt, exif) if has_gps and ctx.config.strip_gps else raw
            meta = ImageMeta(
                width=img.width,
                height=img.height,
                mode=img.mode,
                format=fmt,
                exif=text,
                gps_stripped=has_gps and ctx.config.strip_gps,
            )
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
    ) as e:
        yield ctx.bad(rid, "", f"undecodable image: {e}", raw)
        return
    yield ctx.sample(rid, "", meta, {_FORMATS[fmt]: payload}, created=_created(text))
