"""Shrink a CUDA shared library for carrying: zero the GPU code of every architecture but the
ones kept, leaving every header, size and offset as it was.

A CUDA library's `.nv_fatbin` section is a run of fat binaries (magic 0xBA55ED50), one per
compilation unit, each a list of entries (PTX or an ELF cubin) tagged with an SM architecture.
The runtime loads, per fat binary, the entry that matches the device; the other entries are never
read. Zeroing their payloads keeps the library byte-for-byte the same size and layout (nothing is
relinked) but lets it compress to a fraction: `libtransformer_engine.so` of
transformer-engine-cu13 2.11.0 is 463 MB (440 MB of it fat binaries for sm_75 to sm_120) and
xz-compresses to 134 MB; kept to sm_90 it compresses to 20 MB, so the TE core fits one device call
together with megatron-core.

Refuses (exit 1) when a fat binary would keep no entry of a kept architecture: its kernels would
then have no code for the device at all.

    python3 prune_fatbin.py libtransformer_engine.so pruned.so --keep 90
"""

from __future__ import annotations

import argparse
import struct
import sys
from pathlib import Path

FATBIN_MAGIC = 0xBA55ED50
ENTRY_KIND = {1: "ptx", 2: "elf"}


def section(data: bytes, name: str) -> tuple[int, int]:
    """(file offset, size) of the ELF64 little-endian section `name`."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF file")
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    str_off = struct.unpack_from("<Q", data, shoff + shstrndx * shentsize + 0x18)[0]
    for i in range(shnum):
        h = shoff + i * shentsize
        name_off = struct.unpack_from("<I", data, h)[0]
        end = data.index(b"\0", str_off + name_off)
        if data[str_off + name_off : end].decode() == name:
            off, size = struct.unpack_from("<QQ", data, h + 0x18)
            return off, size
    raise ValueError(f"no {name} section")


def fat_binaries(data: bytes, off: int, size: int):
    """Yield, per fat binary in [off, off+size), a list of entries
    (kind, arch, payload offset, payload size)."""
    pos, end = off, off + size
    while pos < end:
        magic, _ver, hsz, fsz = struct.unpack_from("<IHHQ", data, pos)
        if magic != FATBIN_MAGIC:  # alignment padding between fat binaries
            pos += 8
            continue
        p, e, entries = pos + hsz, pos + hsz + fsz, []
        while p < e:
            kind, _unk, ehsz, psize = struct.unpack_from("<HHIQ", data, p)
            arch = struct.unpack_from("<I", data, p + 28)[0]
            entries.append((ENTRY_KIND.get(kind, str(kind)), arch, p + ehsz, psize))
            p += ehsz + psize
        yield entries
        pos = e


def prune(data: bytearray, keep: set[int]) -> dict:
    """Zero, in place, the payload of every fat-binary entry whose arch is not in `keep`."""
    off, size = section(data, ".nv_fatbin")
    kept = zeroed = count = 0
    for i, entries in enumerate(fat_binaries(data, off, size)):
        count += 1
        if not any(arch in keep for _, arch, _, _ in entries):
            raise ValueError(f"fat binary {i} has no entry for sm {sorted(keep)}: {entries}")
        for _kind, arch, start, n in entries:
            if arch in keep:
                kept += n
            else:
                data[start : start + n] = bytes(n)
                zeroed += n
    return {"fat_binaries": count, "kept_bytes": kept, "zeroed_bytes": zeroed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--keep", default="90", help="comma-separated SM numbers (90 = H100/H200)")
    args = ap.parse_args()
    data = bytearray(args.src.read_bytes())
    try:
        stats = prune(data, {int(a) for a in args.keep.split(",")})
    except ValueError as e:
        sys.exit(f"{args.src}: {e}")
    args.dst.write_bytes(data)
    print(stats)


if __name__ == "__main__":
    main()
