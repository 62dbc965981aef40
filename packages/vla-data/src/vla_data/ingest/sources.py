"""Turn SRC arguments (paths, directories, globs, fsspec URLs) into typed input files."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO

import fsspec

from vla_data.ingest import actions, audio, image, text
from vla_data.ingest.base import FileContext, Record
from vla_data.mesh import ingest as mesh
from vla_data.rig.reader import claim_rig_files, read_rig
from vla_data.speech.transcripts import read_transcript_sidecar

COMPRESSION = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}
Reader = Callable[[FileContext, IO[bytes]], Iterator[Record]]

READERS: dict[str, tuple[str, Reader]] = {
    ".jsonl": ("text", text.read_jsonl),
    ".ndjson": ("text", text.read_jsonl),
    ".json": ("text", text.read_json),
    ".parquet": ("text", text.read_parquet),
    ".txt": ("text", text.read_txt),
    ".wav": ("audio", audio.read_audio),
    ".flac": ("audio", audio.read_audio),
    ".mp3": ("audio", audio.read_audio),
    ".ogg": ("audio", audio.read_audio),
    ".opus": ("audio", audio.read_audio),
    ".jpg": ("image", image.read_image),
    ".jpeg": ("image", image.read_image),
    ".png": ("image", image.read_image),
    ".webp": ("image", image.read_image),
    ".npy": ("actions", actions.read_actions),
    ".csv": ("actions", actions.read_actions),
    ".rig": ("rig", read_rig),  # a folder with rig.json (see vla_data.rig.layout)
    ".transcript.json": ("transcript", read_transcript_sidecar),  # read with its audio file
    ".lab": ("transcript", read_transcript_sidecar),
    ".py": ("mesh", mesh.read_blend_script),  # procedural Blender script, run sandboxed
    ".obj": ("mesh", mesh.read_obj),
    ".ply": ("mesh", mesh.read_ply_file),
    ".pcd": ("mesh", mesh.read_pcd),
    ".x3d": ("mesh", mesh.read_x3d),
}


class SourceError(ValueError):
    """A SRC argument that names nothing."""


@dataclass(frozen=True)
class InputFile:
    url: str
    size: int
    fingerprint: str
    suffix: str
    compression: str | None

    @property
    def kind(self) -> str:
        return READERS[self.suffix][0] if self.suffix in READERS else "unknown"

    def open(self) -> IO[bytes]:
        return fsspec.open(self.url, "rb", compression=self.compression).open()


def classify(path: str) -> tuple[str, str | None]:
    """(format suffix, compression) of a path; compression only for text formats."""
    name = path.rsplit("/", 1)[-1].lower()
    if name.endswith(".transcript.json"):
        return ".transcript.json", None
    stem, dot, last = name.rpartition(".")
    if not dot:
        return "", None
    codec = COMPRESSION.get(f".{last}")
    if codec and "." in stem:
        inner = f".{stem.rpartition('.')[2]}"
        if READERS.get(inner, ("",))[0] == "text":
            return inner, codec
    return f".{last}", None


def _fingerprint(info: dict) -> str:
    stamp = (
        info.get("mtime") or info.get("LastModified") or info.get("ETag") or info.get("etag") or ""
    )
    return f"{info.get('size')}:{stamp}"


def discover(sources: list[str]) -> list[InputFile]:
    """Expand every SRC into files (directories recursively, globs, URLs); sorted, unique."""
    found: dict[str, InputFile] = {}
    for src in sources:
        fs, path = fsspec.core.url_to_fs(src)
        if any(ch in path for ch in "*?["):
            paths = fs.glob(path)
        elif fs.isdir(path):
            paths = fs.find(path)
        elif fs.exists(path):
            paths = [path]
        else:
            raise SourceError(f"input {src!r} does not exist")
        if not paths:
            raise SourceError(f"input {src!r} matches no files")
        local = fs.protocol in ("file", ("file", "local")) or "file" in fs.protocol
        paths, rigs = claim_rig_files(fs, paths, _fingerprint)  # a rig folder is one input
        for p in paths:
            info = fs.info(p)
            if info.get("type") == "directory":
                continue
            base = p.rsplit("/", 1)[-1]
            if base.startswith("."):
                continue  # hidden files (editor swap files, .DS_Store, our own temp files)
            url = os.path.abspath(p) if local else fs.unstrip_protocol(p)
            suffix, compression = classify(p)
            size, fingerprint = int(info.get("size") or 0), _fingerprint(info)
            if p in rigs:
                (size, fingerprint), suffix = rigs[p], ".rig"
            found[url] = InputFile(url, size, fingerprint, suffix, compression)
    return [found[u] for u in sorted(found)]
