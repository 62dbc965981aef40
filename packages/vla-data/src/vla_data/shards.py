"""WebDataset tar shards: an atomic, rolling writer and a validating reader.

Layout is plain WebDataset: consecutive tar members `<key>.<part>` form one record; the key
is the member name up to the first dot of its basename. Stock `webdataset` reads our shards,
and shards it writes with a `json` member in `Sample` form read here.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from pydantic import BaseModel, ValidationError

from vla_data.sample import KEY_PATTERN, Sample

DEFAULT_MAX_COUNT = 10_000
DEFAULT_MAX_BYTES = 1 << 30
_TAR_BLOCK = 512


class ShardError(ValueError):
    """A shard or one record in it is unreadable or invalid; names the file, key and cause."""

    def __init__(self, path: str | os.PathLike, key: str | None, cause: str):
        self.path, self.key, self.cause = str(path), key, cause
        where = f"{self.path}" + (f" record {key!r}" if key else "")
        super().__init__(f"{where}: {cause}")


class ShardInfo(BaseModel):
    """A finalised shard as recorded in a dataset's state."""

    name: str
    count: int
    bytes: int
    sha256: str


def split_member_name(name: str) -> tuple[str, str]:
    """WebDataset's grouping rule: key is everything before the first dot of the basename."""
    head, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    if not dot or not stem or not ext:
        raise ValueError(f"member {name!r} has no '<key>.<part>' form")
    return (f"{head}/{stem}" if head else stem), ext


class _HashingFile(io.RawIOBase):
    """Write-through file wrapper that hashes and counts what passes."""

    def __init__(self, raw: IO[bytes]):
        self.raw, self.sha, self.size = raw, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        self.sha.update(data)
        self.size += len(data)
        return self.raw.write(data)


@dataclass
class _OpenShard:
    name: str
    tmp_path: Path
    file: IO[bytes]
    hasher: _HashingFile
    count: int = 0
    tar_offset: int = 0
    keys: set[str] = field(default_factory=set)


class ShardWriter:
    """Write record groups into `<prefix>-<index>.tar`, rolling over at a count or byte limit.

    Each shard is written under a hidden temporary name, fsynced and renamed into place when
    it is finalised, so readers never see a partial shard. `finalised` lists closed shards.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        prefix: str = "shard",
        *,
        max_count: int = DEFAULT_MAX_COUNT,
        max_bytes: int = DEFAULT_MAX_BYTES,
        start_index: int = 0,
        on_finalise: Callable[[ShardInfo], None] | None = None,
    ):
        if max_count < 1 or max_bytes < 1:
            raise ValueError("max_count and max_bytes must be positive")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.prefix, self.max_count, self.max_bytes = prefix, max_count, max_bytes
        self.next_index = start_index
        self.on_finalise = on_finalise
        self.finalised: list[ShardInfo] = []
        self._open: _OpenShard | None = None

    @property
    def current_name(self) -> str | None:
        return self._open.name if self._open else None

    def is_full(self) -> bool:
        """True when the open shard reached a limit; the next write starts a new shard."""
        o = self._open
        return o is not None and (o.count >= self.max_count or o.tar_offset >= self.max_bytes)

    def write_sample(self, sample: Sample) -> str:
        """Write a sample (its JSON plus every payload); returns the shard name it went to."""
        payloads = sample.payloads
        if set(payloads) != set(sample.parts):
            raise ValueError(
                f"sample {sample.key!r} has payloads {sorted(payloads)} but parts {sorted(sample.parts)}"
            )
        return self.write_group(sample.key, {"json": sample.to_json_bytes(), **payloads})

    def write_group(self, key: str, members: dict[str, bytes]) -> str:
        """Write one record: members `<key>.<part>` in sorted part order."""
        if not KEY_PATTERN.match(key):
            raise ValueError(f"key {key!r} is not WebDataset-safe")
        if self.is_full():
            self.finalise()
        shard = self._open or self._start()
        if key in shard.keys:
            raise ValueError(f"key {key!r} written twice to shard {shard.name}")
        for part in sorted(members):
            data = members[part]
            shard.tar_offset += _write_member(shard.hasher, f"{key}.{part}", data)
        shard.keys.add(key)
        shard.count += 1
        return shard.name

    def _start(self) -> _OpenShard:
        name = f"{self.prefix}-{self.next_index:06d}.tar"
        self.next_index += 1
        tmp = self.directory / f".{name}.tmp"
        f = open(tmp, "wb")  # noqa: SIM115 - closed in finalise()
        self._open = _OpenShard(name, tmp, f, _HashingFile(f))
        return self._open

    def finalise(self) -> ShardInfo | None:
        """Close the open shard (if any) and atomically move it into place."""
        o, self._open = self._open, None
        if o is None:
            return None
        _write_end(o.hasher, o.tar_offset)
        o.file.flush()
        os.fsync(o.file.fileno())
        o.file.close()
        os.replace(o.tmp_path, self.directory / o.name)
        info = ShardInfo(
            name=o.name, count=o.count, bytes=o.hasher.size, sha256=o.hasher.sha.hexdigest()
        )
        self.finalised.append(info)
        if self.on_finalise:
            self.on_finalise(info)
        return info

    def abort(self) -> None:
        """Drop the open shard without publishing it."""
        o, self._open = self._open, None
        if o is not None:
            o.file.close()
            o.tmp_path.unlink(missing_ok=True)

    def close(self) -> list[ShardInfo]:
        self.finalise()
        return self.finalised

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, *_exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _ustar_header(name: bytes, size: int) -> bytes:
    """A POSIX ustar header for a regular file (mode 644, mtime 0, owner vla)."""
    h = bytearray(_TAR_BLOCK)
    h[0 : len(name)] = name
    h[100:108] = b"0000644\x00"
    h[108:116] = h[116:124] = b"0000000\x00"
    h[124:136] = b"%011o\x00" % size
    h[136:148] = b"00000000000\x00"
    h[148:156] = b" " * 8
    h[156:157] = b"0"
    h[257:265] = b"ustar\x0000"
    h[265:268] = h[297:300] = b"vla"
    h[148:156] = b"%06o\x00 " % sum(h)
    return bytes(h)


def _write_member(out: _HashingFile, name: str, data: bytes) -> int:
    """Append one tar member; returns the bytes written. Long names use GNU long-name records."""
    raw = name.encode()
    if len(raw) < 100 and len(data) < 8 << 30:
        header = _ustar_header(raw, len(data))
    else:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode, info.uname, info.gname = len(data), 0, 0o644, "vla", "vla"
        header = info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
    pad = -len(data) % _TAR_BLOCK
    out.write(header)
    out.write(data)
    if pad:
        out.write(b"\x00" * pad)
    return len(header) + len(data) + pad


def _write_end(out: _HashingFile, offset: int) -> None:
    """Two zero blocks, then zero padding to a whole 10 KiB tar record (as tar(1) writes)."""
    end = offset + 2 * _TAR_BLOCK
    out.write(b"\x00" * (2 * _TAR_BLOCK + (-end % tarfile.RECORDSIZE)))


def _open_stream(path: str | os.PathLike) -> IO[bytes]:
    import fsspec

    return fsspec.open(str(path), "rb").open()


def iter_groups(path: str | os.PathLike) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Yield `(key, {part: bytes})` per record, reading the tar as a stream (nothing extracted).

    Raises ShardError for a corrupt tar, a non-file member, or a record whose members are not
    consecutive (WebDataset requires that).
    """
    seen: set[str] = set()
    key: str | None = None
    members: dict[str, bytes] = {}
    with _open_stream(path) as raw:
        try:
            tar = tarfile.open(fileobj=raw, mode="r|*")  # noqa: SIM115 - a stream over raw
            for info in tar:
                if not info.isfile():
                    raise ShardError(path, None, f"member {info.name!r} is not a regular file")
                try:
                    mkey, part = split_member_name(info.name)
                except ValueError as e:
                    raise ShardError(path, None, str(e)) from None
                if mkey != key:
                    if key is not None:
                        yield key, members
                    if mkey in seen:
                        raise ShardError(
                            path,
                            mkey,
                            "key appears twice in the shard (members not consecutive or doubled)",
                        )
                    seen.add(mkey)
                    key, members = mkey, {}
                if part in members:
                    raise ShardError(path, mkey, f"part {part!r} appears twice")
                fobj = tar.extractfile(info)
                members[part] = fobj.read() if fobj else b""
        except tarfile.TarError as e:
            raise ShardError(path, key, f"corrupt tar: {e}") from None
        if key is not None:
            yield key, members


def sample_from_group(path: str | os.PathLike, key: str, members: dict[str, bytes]) -> Sample:
    """Validate one record group as a Sample (JSON schema, key match, payload hashes)."""
    if "json" not in members:
        raise ShardError(path, key, "record has no .json member")
    payloads = {p: b for p, b in members.items() if p != "json"}
    try:
        sample = Sample.from_json_bytes(members["json"])
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        raise ShardError(
            path, key, f"invalid sample JSON at {loc or '<root>'}: {first['msg']}"
        ) from None
    if sample.key != key:
        raise ShardError(path, key, f"JSON key {sample.key!r} differs from member key")
    try:
        return sample.attach(payloads)
    except ValueError as e:
        raise ShardError(path, key, str(e)) from None


def iter_samples(
    path: str | os.PathLike,
    on_error: Callable[[ShardError, dict[str, bytes]], None] | None = None,
) -> Iterator[Sample]:
    """Yield validated Samples from one shard.

    Without `on_error` the first invalid record raises ShardError; with it, each invalid
    record is passed there (with its raw members, for quarantine) and reading goes on.
    """
    for key, members in iter_groups(path):
        try:
            yield sample_from_group(path, key, members)
        except ShardError as e:
            if on_error is None:
                raise
            on_error(e, members)


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
