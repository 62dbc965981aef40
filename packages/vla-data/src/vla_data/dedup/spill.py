"""Disk-backed bucket index: sorted run files (pass 1) and a per-table k-way merge (pass 2).

Records are ``(key: uint64[, aux: uint64], doc: int64)`` per table (a MinHash band, a SimHash
permuted table, ...). Pass 1 buffers at most ``chunk_size`` documents' records, sorts each
table's records by ``(key, aux)`` (docs stay ascending within ties) and writes them with
``np.save(..., allow_pickle=False)`` as ``run{R:06d}-t{T:03d}.npy`` in a private temp directory.
Pass 2 memory-maps one table's runs, reads ``merge_buffer / n_runs`` records at a time from each,
and yields batches holding only *complete* key groups, sorted by ``(key, aux, doc)``. Memory is
O(chunk_size * tables) in pass 1 and O(merge_buffer + largest key group) in pass 2.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Batch:
    """Sorted records of complete key groups of one table."""

    key: np.ndarray
    aux: np.ndarray | None
    doc: np.ndarray


class SpillIndex:
    """Append per-document table keys; spill sorted runs; merge them back table by table."""

    def __init__(
        self,
        n_tables: int,
        *,
        with_aux: bool = False,
        spill_dir: str | Path | None = None,
        chunk_size: int = 200_000,
        merge_buffer: int = 1 << 21,
    ) -> None:
        if n_tables < 1 or chunk_size < 1 or merge_buffer < 1:
            raise ValueError("n_tables, chunk_size and merge_buffer must be positive")
        self.n_tables = n_tables
        self.with_aux = with_aux
        self.chunk_size = chunk_size
        self.merge_buffer = merge_buffer
        if spill_dir is not None:
            Path(spill_dir).mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix="vla-dedup-", dir=spill_dir))
        fields = [("key", "<u8")] + ([("aux", "<u8")] if with_aux else []) + [("doc", "<i8")]
        self.dtype = np.dtype(fields)
        self.n_docs = 0
        self.n_runs = 0
        self._runs: list[list[Path]] = [[] for _ in range(n_tables)]
        self._pending: list[tuple[np.ndarray, np.ndarray | None, np.ndarray]] = []
        self._pending_docs = 0
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the index was closed (finish() runs once); build a new one")

    @property
    def run_files(self) -> list[Path]:
        """Run files written so far (all tables)."""
        return [p for paths in self._runs for p in paths]

    def add(
        self, keys: np.ndarray, aux: np.ndarray | None = None, valid: np.ndarray | None = None
    ) -> np.ndarray:
        """Index the next ``len(keys)`` documents; return their document indices.

        ``keys`` is ``(n, n_tables)`` uint64; ``aux`` is ``(n,)`` or ``(n, n_tables)`` uint64
        (required iff ``with_aux``); rows with ``valid`` False get an index but no records.
        """
        self._check_open()
        keys = np.array(keys, dtype=np.uint64).reshape(-1, self.n_tables)  # own copy
        n = len(keys)
        if (aux is None) == self.with_aux:
            raise ValueError("aux must be given exactly when the index was built with_aux")
        if aux is not None:
            aux = np.array(aux, dtype=np.uint64)
            aux = np.broadcast_to(aux.reshape(n, -1), (n, self.n_tables))
        docs = np.arange(self.n_docs, self.n_docs + n, dtype=np.int64)
        self.n_docs += n
        if valid is not None:
            valid = np.asarray(valid, dtype=bool)
            keys, docs = keys[valid], docs[valid]
            aux = aux[valid] if aux is not None else None
        start = 0
        while start < n:
            take_docs = min(self.chunk_size - self._pending_docs, n - start)
            lo = np.searchsorted(docs, self.n_docs - n + start)
            hi = np.searchsorted(docs, self.n_docs - n + start + take_docs)
            self._pending.append((keys[lo:hi], None if aux is None else aux[lo:hi], docs[lo:hi]))
            self._pending_docs += take_docs
            start += take_docs
            if self._pending_docs >= self.chunk_size:
                self.flush()
        return np.arange(self.n_docs - n, self.n_docs, dtype=np.int64)

    def flush(self) -> None:
        """Write buffered records as one sorted run per table."""
        if not self._pending:
            return
        keys = np.concatenate([p[0] for p in self._pending])
        aux = np.concatenate([p[1] for p in self._pending]) if self.with_aux else None
        docs = np.concatenate([p[2] for p in self._pending])
        self._pending.clear()
        self._pending_docs = 0
        if docs.size == 0:
            return
        run = self.n_runs
        self.n_runs += 1
        for t in range(self.n_tables):
            k = keys[:, t]
            order = np.argsort(k, kind="stable") if aux is None else np.lexsort((aux[:, t], k))
            rec = np.empty(docs.size, dtype=self.dtype)
            rec["key"] = k[order]
            if aux is not None:
                rec["aux"] = aux[order, t]
            rec["doc"] = docs[order]
            path = self.dir / f"run{run:06d}-t{t:03d}.npy"
            np.save(path, rec, allow_pickle=False)
            self._runs[t].append(path)

    def batches(self, table: int) -> Iterator[Batch]:
        """Merged records of ``table`` in batches of complete key groups, sorted."""
        self._check_open()
        self.flush()
        runs = [np.load(p, mmap_mode="r", allow_pickle=False) for p in self._runs[table]]
        keys = [r["key"] for r in runs]
        pos = [0] * len(runs)
        block = max(64, self.merge_buffer // max(1, len(runs)))
        live = [i for i, r in enumerate(runs) if len(r)]
        while live:
            ends = {i: min(pos[i] + block, len(runs[i])) for i in live}
            bounded = [i for i in live if ends[i] < len(runs[i])]
            cut = dict(ends)
            if bounded:
                cutoff = min(keys[i][ends[i] - 1] for i in bounded)
                for i in live:
                    cut[i] = pos[i] + int(np.searchsorted(keys[i][pos[i] : ends[i]], cutoff))
                if all(cut[i] == pos[i] for i in live):
                    # every buffer starts with the cutoff key: take that whole group
                    for i in live:
                        cut[i] = pos[i] + int(np.searchsorted(keys[i][pos[i] :], cutoff, "right"))
            parts = [np.asarray(runs[i][pos[i] : cut[i]]) for i in live]
            for i in live:
                pos[i] = cut[i]
            live = [i for i in live if pos[i] < len(runs[i])]
            rec = np.concatenate(parts)
            if self.with_aux:
                rec = rec[np.lexsort((rec["aux"], rec["key"]))]
            else:
                rec = rec[np.argsort(rec["key"], kind="stable")]
            yield Batch(rec["key"], rec["aux"] if self.with_aux else None, rec["doc"])

    def close(self) -> None:
        """Delete all run files and the temp directory."""
        shutil.rmtree(self.dir, ignore_errors=True)
        self._closed = True
        self._runs = [[] for _ in range(self.n_tables)]
        self._pending.clear()

    def __enter__(self) -> SpillIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
