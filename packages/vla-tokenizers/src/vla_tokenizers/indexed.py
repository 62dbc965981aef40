"""megatron-core `IndexedDataset` files (`.bin` + `.idx`), written and read with numpy alone.

The format is megatron-core's `MMIDIDX` index (version 1), byte for byte what
`megatron.core.datasets.indexed_dataset.IndexedDatasetBuilder` writes:

```
.idx: b"MMIDIDX\\x00\\x00"  <Q version=1  <B dtype code
      <Q sequence count   <Q document-index count
      int32[sequences] lengths   int64[sequences] byte pointers   int64[documents+1] document index
.bin: the tokens of every sequence, back to back, in the index dtype
```

Here every document is one sequence (one Sample). Writers publish atomically: both files are
written under temporary names and renamed (.bin first, then .idx, which readers open first).
"""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import numpy as np

HEADER = b"MMIDIDX\x00\x00"
DTYPE_CODES = {
    np.dtype(np.uint8): 1,
    np.dtype(np.int8): 2,
    np.dtype(np.int16): 3,
    np.dtype(np.int32): 4,
    np.dtype(np.int64): 5,
    np.dtype(np.float64): 6,
    np.dtype(np.float32): 7,
    np.dtype(np.uint16): 8,
}
CODE_DTYPES = {v: k for k, v in DTYPE_CODES.items()}


class IndexedError(ValueError):
    pass


def token_dtype(vocab_size: int) -> np.dtype:
    """megatron's rule: uint16 below 65500 ids, int32 otherwise."""
    return np.dtype(np.uint16 if vocab_size < 65500 else np.int32)


def _fsync_replace(tmp: Path, final: Path) -> None:
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)


class IndexedWriter:
    """Append documents (1-D id arrays), then `finalize()` to publish `<prefix>.bin/.idx`."""

    def __init__(self, prefix: str | os.PathLike, dtype: np.dtype):
        self.prefix = Path(prefix)
        self.dtype = np.dtype(dtype)
        if self.dtype not in DTYPE_CODES:
            raise IndexedError(f"dtype {self.dtype} has no IndexedDataset code")
        self.prefix.parent.mkdir(parents=True, exist_ok=True)
        self._bin_tmp = self.prefix.with_name(f".{self.prefix.name}.bin.tmp")
        self._bin = open(self._bin_tmp, "wb")  # noqa: SIM115 - closed in finalize/abort
        self.lengths: list[int] = []
        self.tokens = 0

    def add_document(self, ids) -> None:
        a = np.asarray(ids)
        if a.ndim != 1:
            raise IndexedError("a document must be a 1-D id array")
        if a.size and (a.min() < np.iinfo(self.dtype).min or a.max() > np.iinfo(self.dtype).max):
            raise IndexedError(f"ids do not fit {self.dtype}")
        self._bin.write(a.astype(self.dtype, copy=False).tobytes(order="C"))
        self.lengths.append(int(a.size))
        self.tokens += int(a.size)

    def add_dataset(self, reader: IndexedReader) -> None:
        """Append every document of another dataset of the same dtype (streamed copy)."""
        if reader.dtype != self.dtype:
            raise IndexedError(f"{reader.prefix}: dtype {reader.dtype} != {self.dtype}")
        with open(f"{reader.prefix}.bin", "rb") as f:
            shutil.copyfileobj(f, self._bin, 1 << 20)
        self.lengths.extend(reader.lengths.tolist())
        self.tokens += int(reader.lengths.sum())

    def finalize(self) -> None:
        self._bin.close()
        n = len(self.lengths)
        lengths = np.array(self.lengths, dtype=np.int32)
        pointers = np.zeros(n, dtype=np.int64)
        if n:
            pointers[1:] = np.cumsum(lengths[:-1].astype(np.int64)) * self.dtype.itemsize
        docs = np.arange(n + 1, dtype=np.int64)
        idx_tmp = self.prefix.with_name(f".{self.prefix.name}.idx.tmp")
        with open(idx_tmp, "wb") as f:
            f.write(HEADER)
            f.write(struct.pack("<Q", 1))
            f.write(struct.pack("<B", DTYPE_CODES[self.dtype]))
            f.write(struct.pack("<Q", n))
            f.write(struct.pack("<Q", n + 1))
            f.write(lengths.tobytes())
            f.write(pointers.tobytes())
            f.write(docs.tobytes())
        _fsync_replace(self._bin_tmp, Path(f"{self.prefix}.bin"))
        _fsync_replace(idx_tmp, Path(f"{self.prefix}.idx"))

    def abort(self) -> None:
        self._bin.close()
        self._bin_tmp.unlink(missing_ok=True)


class IndexedReader:
    """Read `<prefix>.bin/.idx` (memory-mapped): `len`, `[i]` -> ids of document i."""

    def __init__(self, prefix: str | os.PathLike):
        self.prefix = Path(prefix)
        idx_path = Path(f"{self.prefix}.idx")
        raw = idx_path.read_bytes()
        if raw[:9] != HEADER:
            raise IndexedError(f"{idx_path}: not an MMIDIDX index")
        (version,) = struct.unpack_from("<Q", raw, 9)
        if version != 1:
            raise IndexedError(f"{idx_path}: index version {version} is not supported")
        (code,) = struct.unpack_from("<B", raw, 17)
        self.dtype = CODE_DTYPES[code]
        n, d = struct.unpack_from("<QQ", raw, 18)
        off = 34
        self.lengths = np.frombuffer(raw, np.int32, n, off)
        off += 4 * n
        self.pointers = np.frombuffer(raw, np.int64, n, off)
        off += 8 * n
        self.document_indices = np.frombuffer(raw, np.int64, d, off)
        bin_path = Path(f"{self.prefix}.bin")
        size = bin_path.stat().st_size
        expect = int(self.lengths.sum()) * self.dtype.itemsize
        if size != expect:
            raise IndexedError(f"{bin_path}: {size} bytes, index says {expect}")
        self.tokens = (
            np.memmap(bin_path, dtype=self.dtype, mode="r") if size else np.zeros(0, self.dtype)
        )

    def __len__(self) -> int:
        return int(self.lengths.size)

    def __getitem__(self, i: int) -> np.ndarray:
        start = int(self.pointers[i]) // self.dtype.itemsize
        return np.asarray(self.tokens[start : start + int(self.lengths[i])])
