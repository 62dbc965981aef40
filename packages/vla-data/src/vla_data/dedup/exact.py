"""Exact deduplication on a hash of the normalised text (first occurrence is kept)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Literal

import numpy as np

from vla_data.dedup.clusters import DedupResult, UnionFind, star_edges
from vla_data.dedup.hashing import MASK64, hash_bytes
from vla_data.dedup.spill import SpillIndex
from vla_data.dedup.text_norm import DEFAULT_NORM, NormConfig, normalize


@dataclass(frozen=True)
class ExactConfig:
    """Hash width and normalisation (``norm=None`` hashes the raw text)."""

    bits: Literal[64, 128] = 64
    norm: NormConfig | None = field(default=DEFAULT_NORM)


def exact_hash(text: str, config: ExactConfig = ExactConfig()) -> int:
    """Unsigned ``config.bits``-bit BLAKE2b hash of the normalised text."""
    if config.norm is not None:
        text = normalize(text, config.norm)
    return hash_bytes(text.encode("utf-8", "surrogatepass"), config.bits)


class ExactDeduper:
    """Streaming exact dedup with the same spill/merge/union-find machinery as MinHash.

    Memory: ``chunk_size`` hashes (8 or 16 bytes each), the merge buffer, and one int32 per
    document; run files are deleted by :meth:`finish`/:meth:`close`.
    """

    def __init__(
        self,
        config: ExactConfig = ExactConfig(),
        *,
        spill_dir: str | Path | None = None,
        chunk_size: int = 1_000_000,
        merge_buffer: int = 1 << 21,
        batch_size: int = 4096,
    ) -> None:
        if config.bits not in (64, 128):
            raise ValueError(f"bits must be 64 or 128, not {config.bits}")
        self.config = config
        self.batch_size = batch_size
        self.index = SpillIndex(
            1,
            with_aux=config.bits == 128,
            spill_dir=spill_dir,
            chunk_size=chunk_size,
            merge_buffer=merge_buffer,
        )

    @property
    def n_docs(self) -> int:
        """Documents added so far."""
        return self.index.n_docs

    def add(self, texts: Iterable[str]) -> None:
        """Hash and index documents."""
        it = iter(texts)
        while batch := list(islice(it, self.batch_size)):
            self.add_hashes([exact_hash(t, self.config) for t in batch])

    def add_hashes(self, hashes: Iterable[int]) -> None:
        """Index precomputed :func:`exact_hash` values (``config.bits`` wide)."""
        hs = list(hashes)
        if self.config.bits == 64:
            self.index.add(np.array(hs, dtype=np.uint64).reshape(-1, 1))
        else:
            hi = np.array([h >> 64 for h in hs], dtype=np.uint64).reshape(-1, 1)
            lo = np.array([h & MASK64 for h in hs], dtype=np.uint64)
            self.index.add(hi, aux=lo)

    def finish(self) -> DedupResult:
        """Group equal hashes and clean up; the first occurrence represents each group."""
        try:
            uf = UnionFind(self.n_docs)
            for b in self.index.batches(0):
                keys = (b.key,) if b.aux is None else (b.key, b.aux)
                uf.union(*star_edges(b.doc, *keys))
            return DedupResult(uf.roots())
        finally:
            self.close()

    def close(self) -> None:
        """Delete spill files."""
        self.index.close()

    def __enter__(self) -> ExactDeduper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def exact_dedup(
    texts: Iterable[str], config: ExactConfig = ExactConfig(), **kwargs: object
) -> DedupResult:
    """Cluster exact (normalised) duplicates; ``kwargs`` go to :class:`ExactDeduper`."""
    deduper = ExactDeduper(config, **kwargs)  # type: ignore[arg-type]
    deduper.add(texts)
    return deduper.finish()
