"""Transcript pairing: an audio file and its transcript sidecar beside it, same stem.

Sidecars, looked up in this order for `talk.wav` (any audio suffix):

- `talk.transcript.json`: `{"text": "...", "language": "yue", "speaker": "..."}` (`text`
  required; `language` an espeak voice or a label such as `en`, `zh`, `cmn`, `yue`, `hak`;
  `speaker` optional; other keys are refused);
- `talk.lab`: the transcript as plain UTF-8 text (the HTK / Montreal Forced Aligner convention).

`vla-data ingest` gives sidecars their own reader (`read_transcript_sidecar`) that yields no
record when the audio file is there (the pair becomes one audio sample) and quarantines an
orphan sidecar. A sidecar that does not parse quarantines its audio file, naming the sidecar.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

import fsspec
from pydantic import BaseModel, ConfigDict, Field, ValidationError

if TYPE_CHECKING:  # no runtime import: vla_data.ingest imports this module
    from vla_data.ingest.base import FileContext, Record

SIDECAR_SUFFIXES = (".transcript.json", ".lab")
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus")
MAX_SIDECAR_BYTES = 1 << 20


class TranscriptError(ValueError):
    """A sidecar that exists but cannot be used."""


class TranscriptSidecar(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str = Field(max_length=200_000)
    language: str | None = Field(None, min_length=1, max_length=40)
    speaker: str | None = Field(None, max_length=200)


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str | None
    speaker: str | None
    url: str


def _stem(url: str, suffixes: tuple[str, ...]) -> str | None:
    low = url.lower()
    for suffix in suffixes:
        if low.endswith(suffix):
            return url[: -len(suffix)]
    return None


def _read_small(url: str) -> bytes | None:
    fs, path = fsspec.core.url_to_fs(url)
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as f:
        data = f.read(MAX_SIDECAR_BYTES + 1)
    if len(data) > MAX_SIDECAR_BYTES:
        raise TranscriptError(f"transcript sidecar {url} is larger than {MAX_SIDECAR_BYTES} bytes")
    return data


def parse_sidecar(data: bytes, url: str) -> Transcript:
    name = url.rsplit("/", 1)[-1]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise TranscriptError(f"transcript sidecar {name} is not UTF-8 ({e})") from None
    if url.lower().endswith(".lab"):
        return Transcript(" ".join(text.split()), None, None, url)
    try:
        doc = TranscriptSidecar.model_validate(json.loads(text))
    except json.JSONDecodeError as e:
        raise TranscriptError(f"transcript sidecar {name} is not JSON ({e})") from None
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(document)"
        raise TranscriptError(f"transcript sidecar {name}: {where}: {err['msg']}") from None
    return Transcript(doc.text.strip(), doc.language, doc.speaker, url)


def find_transcript(audio_url: str) -> Transcript | None:
    """The transcript sidecar of an audio file, or None; `TranscriptError` if it is unusable."""
    stem = _stem(audio_url, AUDIO_SUFFIXES)
    if stem is None:
        return None
    for suffix in SIDECAR_SUFFIXES:
        url = stem + suffix
        data = _read_small(url)
        if data is not None:
            return parse_sidecar(data, url)
    return None


def read_transcript_sidecar(ctx: FileContext, f: IO[bytes]) -> Iterator[Record]:
    """Reader for sidecars: nothing when its audio file exists (it is read with it), else quarantine."""
    stem = _stem(ctx.url, SIDECAR_SUFFIXES)
    if stem is not None:
        fs, _ = fsspec.core.url_to_fs(stem + ".x")
        for suffix in AUDIO_SUFFIXES:
            for candidate in (stem + suffix, stem + suffix.upper()):
                if fs.exists(fsspec.core.url_to_fs(candidate)[1]):
                    return
    raw = f.read(MAX_SIDECAR_BYTES)
    yield ctx.bad(
        ctx.name,
        "",
        f"transcript sidecar {ctx.name} has no audio file beside it "
        f"(expected one of {', '.join(AUDIO_SUFFIXES)} with the same stem)",
        raw,
    )
