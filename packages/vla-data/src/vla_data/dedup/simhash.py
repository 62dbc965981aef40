"""64-bit SimHash (Charikar) and a Hamming-threshold deduper over permuted/banded tables.

Candidate search follows Manku et al.: the 64 bits are cut into ``blocks`` contiguous blocks;
two fingerprints within Hamming distance ``k`` agree on at least ``blocks - k`` blocks, so one
table per choice of ``blocks - k`` blocks (its key is the fingerprint masked to those blocks)
finds every such pair. Buckets are grouped through the same sorted-run spill as MinHash, then
each candidate pair's exact distance is checked. Works for any 64-bit fingerprint, e.g. the
perceptual image hashes in :mod:`vla_data.dedup.image_hash`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import combinations, islice
from math import comb
from pathlib import Path
from typing import cast

import numpy as np

from vla_data.dedup.clusters import DedupResult, UnionFind, group_pairs, star_edges
from vla_data.dedup.hashing import popcount64
from vla_data.dedup.spill import SpillIndex
from vla_data.dedup.text_norm import DEFAULT_NORM, NormConfig, ShingleHasher

MAX_TABLES = 4096


@dataclass(frozen=True)
class SimHashConfig:
    """Feature n-gram size, Hamming threshold and normalisation of text SimHash."""

    ngram: int = 3
    threshold: int = 3
    blocks: int | None = None
    norm: NormConfig = field(default=DEFAULT_NORM)


def hamming_distance(a: int, b: int) -> int:
    """Number of differing bits of two 64-bit fingerprints."""
    return (int(a) ^ int(b)).bit_count()


def table_masks(threshold: int, blocks: int | None = None) -> np.ndarray:
    """Bit masks of the permuted tables for ``threshold`` (``blocks`` defaults to threshold+2)."""
    blocks = threshold + 2 if blocks is None else blocks
    if threshold < 0 or not threshold < blocks <= 64:
        raise ValueError(f"need 0 <= threshold < blocks <= 64, got {threshold=}, {blocks=}")
    if comb(blocks, threshold) > MAX_TABLES:
        raise ValueError(f"{comb(blocks, threshold)} tables; choose fewer blocks")
    edges = np.linspace(0, 64, blocks + 1).round().astype(int)
    bounds = zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True)
    block_masks = [(1 << hi) - (1 << lo) for lo, hi in bounds]
    chosen = combinations(range(blocks), blocks - threshold)
    masks = [sum(block_masks[i] for i in c) for c in chosen]
    return np.array(masks, dtype=np.uint64)


class SimHasher:
    """Vectorised text SimHash: each feature (word n-gram hash, counted with multiplicity) votes
    +1/-1 per bit; a bit is set when more than half of the features have it set."""

    def __init__(self, config: SimHashConfig = SimHashConfig()) -> None:
        self.config = config
        self.shingler = ShingleHasher(config.ngram, config.norm)

    def fingerprints(self, texts: Sequence[str] | Iterable[str]) -> np.ndarray:
        """uint64 fingerprints (0 for documents without tokens)."""
        hashes, offsets = self.shingler.hash_batch(texts)
        return fingerprints_from_features(hashes, offsets)


def fingerprints_from_features(hashes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """SimHash of documents whose 64-bit feature hashes are delimited by ``offsets``."""
    counts = np.diff(offsets)
    out = np.zeros(len(counts), dtype=np.uint64)
    nonempty = np.flatnonzero(counts)
    if nonempty.size == 0:
        return out
    as_bytes = hashes.astype("<u8").view(np.uint8).reshape(-1, 8)
    bits = np.unpackbits(as_bytes, axis=1, bitorder="little")
    votes = np.add.reduceat(bits, offsets[nonempty], axis=0, dtype=np.int32)
    set_bits = 2 * votes > counts[nonempty, None]
    packed = np.packbits(set_bits, axis=1, bitorder="little")
    out[nonempty] = packed.view("<u8").ravel()
    return out


def simhash(text: str, config: SimHashConfig = SimHashConfig()) -> int:
    """64-bit SimHash of one text."""
    return int(SimHasher(config).fingerprints([text])[0])


class HammingDeduper:
    """Streaming clustering of 64-bit fingerprints within Hamming distance ``threshold``.

    Memory: ``chunk_size`` docs x ``n_tables`` records of 24 bytes, the merge buffer, one
    int32 per document. Run files are deleted by :meth:`finish`/:meth:`close`.
    """

    def __init__(
        self,
        threshold: int = 3,
        *,
        blocks: int | None = None,
        spill_dir: str | Path | None = None,
        chunk_size: int = 200_000,
        merge_buffer: int = 1 << 21,
    ) -> None:
        self.threshold = threshold
        self.masks = table_masks(threshold, blocks)
        self.index = SpillIndex(
            len(self.masks),
            with_aux=True,
            spill_dir=spill_dir,
            chunk_size=chunk_size,
            merge_buffer=merge_buffer,
        )

    @property
    def n_docs(self) -> int:
        """Fingerprints added so far."""
        return self.index.n_docs

    @property
    def run_files(self) -> list[Path]:
        """Sorted run files currently on disk."""
        return self.index.run_files

    def add(
        self, fingerprints: Iterable[int] | np.ndarray, valid: np.ndarray | None = None
    ) -> None:
        """Index the next fingerprints; rows with ``valid`` False are never matched."""
        fp = np.asarray(
            fingerprints if isinstance(fingerprints, np.ndarray) else list(fingerprints),
            dtype=np.uint64,
        ).ravel()
        self.index.add(fp[:, None] & self.masks[None, :], aux=fp, valid=valid)

    def finish(self) -> DedupResult:
        """Find all pairs within the threshold, cluster them, clean up."""
        try:
            uf = UnionFind(self.n_docs)
            for table in range(len(self.masks)):
                for b in self.index.batches(table):
                    aux = cast(np.ndarray, b.aux)
                    if table == 0:  # identical fingerprints share every key: link them once
                        uf.union(*star_edges(b.doc, b.key, aux))
                    first = np.r_[True, (b.key[1:] != b.key[:-1]) | (aux[1:] != aux[:-1])]
                    key, fp, doc = b.key[first], aux[first], b.doc[first]
                    for i, j in group_pairs(key):
                        close = popcount64(fp[i] ^ fp[j]) <= self.threshold
                        uf.union(doc[i[close]], doc[j[close]])
            return DedupResult(uf.roots())
        finally:
            self.close()

    def close(self) -> None:
        """Delete spill files."""
        self.index.close()

    def __enter__(self) -> HammingDeduper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SimHashDeduper(HammingDeduper):
    """:class:`HammingDeduper` fed with texts through :class:`SimHasher`."""

    def __init__(
        self, config: SimHashConfig = SimHashConfig(), *, batch_size: int = 1024, **kwargs: object
    ) -> None:
        super().__init__(config.threshold, blocks=config.blocks, **kwargs)  # type: ignore[arg-type]
        self.hasher = SimHasher(config)
        self.batch_size = batch_size

    def add_texts(self, texts: Iterable[str]) -> None:
        """Fingerprint and index documents; documents without tokens are never matched."""
        it = iter(texts)
        while batch := list(islice(it, self.batch_size)):
            hashes, offsets = self.hasher.shingler.hash_batch(batch)
            fp = fingerprints_from_features(hashes, offsets)
            self.add(fp, valid=np.diff(offsets) > 0)


def simhash_dedup(
    texts: Iterable[str], config: SimHashConfig = SimHashConfig(), **kwargs: object
) -> DedupResult:
    """Cluster texts whose SimHashes are within ``config.threshold`` bits."""
    deduper = SimHashDeduper(config, **kwargs)
    deduper.add_texts(texts)
    return deduper.finish()
