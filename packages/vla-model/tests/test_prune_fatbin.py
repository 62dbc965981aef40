"""gpu/prune_fatbin.py on a synthetic ELF with a `.nv_fatbin` section."""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "gpu" / "prune_fatbin.py"
_spec = importlib.util.spec_from_file_location("prune_fatbin", _PATH)
prune_fatbin = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(prune_fatbin)


def fat_binary(entries: list[tuple[int, int, bytes]]) -> bytes:
    """A fat binary of (kind, arch, payload) entries with 64-byte entry headers."""
    body = b""
    for kind, arch, payload in entries:
        head = bytearray(64)
        struct.pack_into("<HHIQ", head, 0, kind, 0x0101, 64, len(payload))
        struct.pack_into("<I", head, 28, arch)
        body += bytes(head) + payload
    return struct.pack("<IHHQ", prune_fatbin.FATBIN_MAGIC, 1, 16, len(body)) + body


def elf_with(section_data: bytes, name: bytes = b".nv_fatbin") -> bytes:
    """A minimal ELF64 LE file: a null section, `name` holding `section_data`, .shstrtab."""
    strtab = b"\0" + name + b"\0.shstrtab\0"
    data_off = 64
    str_off = data_off + len(section_data)
    shoff = str_off + len(strtab)
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", header, 0x28, shoff)
    struct.pack_into("<HHH", header, 0x3A, 64, 3, 2)

    def shdr(name_off: int, off: int, size: int) -> bytes:
        h = bytearray(64)
        struct.pack_into("<I", h, 0, name_off)
        struct.pack_into("<QQ", h, 0x18, off, size)
        return bytes(h)

    sections = shdr(0, 0, 0) + shdr(1, data_off, len(section_data))
    sections += shdr(2 + len(name), str_off, len(strtab))
    return bytes(header) + section_data + strtab + sections


def test_only_kept_architectures_keep_their_code() -> None:
    sm80, sm90, ptx90 = b"\x80" * 40, b"\x90" * 24, b"P" * 8
    fatbins = fat_binary([(2, 80, sm80), (2, 90, sm90), (1, 90, ptx90)])
    fatbins += b"\0" * 8 + fat_binary([(2, 120, b"\x12" * 16), (2, 90, sm90)])  # padding between
    lib = elf_with(fatbins)
    data = bytearray(lib)
    stats = prune_fatbin.prune(data, {90})
    assert stats == {"fat_binaries": 2, "kept_bytes": 2 * 24 + 8, "zeroed_bytes": 40 + 16}
    assert len(data) == len(lib)
    assert sm90 in data and ptx90 in data and b"\x80" * 40 not in data and b"\x12" * 16 not in data
    changed = [i for i in range(len(lib)) if lib[i] != data[i]]
    assert len(changed) == 40 + 16  # headers, sizes and every other byte untouched


def test_a_fat_binary_without_a_kept_architecture_is_refused() -> None:
    data = bytearray(elf_with(fat_binary([(2, 80, b"x" * 8), (1, 75, b"p" * 8)])))
    with pytest.raises(ValueError, match="fat binary 0 has no entry for sm"):
        prune_fatbin.prune(data, {90})


def test_a_library_without_gpu_code_is_refused() -> None:
    with pytest.raises(ValueError, match="no .nv_fatbin section"):
        prune_fatbin.prune(bytearray(elf_with(b"abc", name=b".text")), {90})
    with pytest.raises(ValueError, match="not a 64-bit"):
        prune_fatbin.prune(bytearray(b"MZ" + bytes(100)), {90})
