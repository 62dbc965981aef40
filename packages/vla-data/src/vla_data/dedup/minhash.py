"""MinHash-LSH near-duplicate detection (FineWeb defaults: word 5-grams, 14 bands x 8 rows).

Shingles are hashed to 64 bits (:class:`~vla_data.dedup.text_norm.ShingleHasher`) and reduced to
61 bits; permutation ``k`` is the universal hash ``(a_k * x + b_k) mod (2**61 - 1)``, computed
exactly in uint64 by splitting operands into 31/30-bit halves, over a whole batch of shingles
at once. The signature is the per-permutation minimum; each band of ``rows`` minima is hashed
to 64 bits; documents sharing a band hash are candidates (optionally verified by the
signatures' estimated Jaccard) and are clustered with union-find through a
:class:`~vla_data.dedup.spill.SpillIndex`, so only ``chunk_size`` documents' band hashes and
one int per document are ever held in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np

from vla_data.dedup.clusters import DedupResult, UnionFind, group_pairs, star_edges
from vla_data.dedup.hashing import GOLDEN, fmix64
from vla_data.dedup.spill import SpillIndex
from vla_data.dedup.text_norm import DEFAULT_NORM, NormConfig, ShingleHasher

MERSENNE61 = (1 << 61) - 1
_P = np.uint64(MERSENNE61)
_M31 = np.uint64((1 << 31) - 1)
_U3, _U30, _U31, _U61 = np.uint64(3), np.uint64(30), np.uint64(31), np.uint64(61)
#: Signature value of a document without shingles.
EMPTY = np.uint64(2**64 - 1)


@dataclass(frozen=True)
class MinHashConfig:
    """MinHash-LSH parameters. ``threshold`` > 0 keeps only candidate pairs whose estimated
    Jaccard (fraction of equal signature entries) reaches it; 0 keeps every band collision."""

    ngram: int = 5
    bands: int = 14
    rows: int = 8
    seed: int = 1
    threshold: float = 0.0
    norm: NormConfig = field(default=DEFAULT_NORM)

    @property
    def num_perm(self) -> int:
        """Number of permutations (``bands * rows``)."""
        return self.bands * self.rows


class MinHasher:
    """Pure, vectorised MinHash signatures and LSH band hashes for batches of documents.

    ``block`` shingles are permuted at a time (three ``num_perm x block`` uint64 buffers).
    """

    def __init__(self, config: MinHashConfig = MinHashConfig(), block: int = 1024) -> None:
        if config.bands < 1 or config.rows < 1:
            raise ValueError("bands and rows must be >= 1")
        self.config = config
        self.block = block
        self.shingler = ShingleHasher(config.ngram, config.norm)
        rng = np.random.Generator(np.random.PCG64(config.seed))
        k = config.num_perm
        self.a = rng.integers(1, MERSENNE61, size=k, dtype=np.uint64)
        self.b = rng.integers(0, MERSENNE61, size=k, dtype=np.uint64)
        self._a_hi = (self.a >> _U31)[:, None]
        self._a_hi2 = (self._a_hi << np.uint64(1)).copy()
        self._a_lo = (self.a & _M31)[:, None]
        self._b = self.b[:, None]
        self._band_seeds = fmix64(np.arange(1, config.bands + 1, dtype=np.uint64))

    def signatures(self, texts: Sequence[str] | Iterable[str]) -> np.ndarray:
        """``(n, num_perm)`` uint64 signatures; rows of documents without tokens are ``EMPTY``."""
        hashes, offsets = self.shingler.hash_batch(texts)
        return self.signatures_from_shingles(hashes, offsets)

    def signatures_from_shingles(self, hashes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """Signatures from 64-bit shingle hashes of documents delimited by ``offsets``."""
        k = self.config.num_perm
        n_docs = len(offsets) - 1
        sig = np.full((n_docs, k), EMPTY, dtype=np.uint64)
        total = len(hashes)
        if total == 0:
            return sig
        x = hashes >> _U3  # 61-bit field elements
        doc_of = np.repeat(np.arange(n_docs), np.diff(offsets))
        bsz = self.block
        bufs = [np.empty((k, bsz), dtype=np.uint64) for _ in range(3)]
        for start in range(0, total, bsz):
            stop = min(start + bsz, total)
            m = stop - start
            s, t1, t2 = (buf[:, :m] for buf in bufs)
            xb = x[start:stop]
            x_hi, x_lo = xb >> _U31, xb & _M31
            # a*x = a_hi*x_hi*2^62 + (a_hi*x_lo + a_lo*x_hi)*2^31 + a_lo*x_lo, and 2^61 = 1 (mod p)
            np.multiply(self._a_lo, x_hi, out=t1)
            np.multiply(self._a_hi, x_lo, out=t2)
            t1 += t2  # mid < 2^62
            np.multiply(self._a_hi2, x_hi, out=s)  # 2*a_hi*x_hi < 2^61
            np.right_shift(t1, _U30, out=t2)
            s += t2
            t1 <<= _U31
            t1 &= _P
            s += t1
            np.multiply(self._a_lo, x_lo, out=t1)
            s += t1
            s += self._b  # s < 2^64, s = (a*x + b) mod p
            np.right_shift(s, _U61, out=t1)
            s &= _P
            s += t1  # s <= p + 7: an injective representative of the residue
            docs = doc_of[start:stop]
            seg = np.flatnonzero(np.r_[True, docs[1:] != docs[:-1]])
            part = np.minimum.reduceat(s, seg, axis=1).T
            ids = docs[seg]
            np.minimum(sig[ids], part, out=part)
            sig[ids] = part
        empty = np.diff(offsets) == 0
        folded = (sig & _P) + (sig >> _U61)  # canonical residue (p stands for 0)
        folded[empty] = EMPTY
        return folded

    def band_hashes(self, signatures: np.ndarray) -> np.ndarray:
        """``(n, bands)`` uint64 hashes of each band's ``rows`` signature values."""
        cfg = self.config
        sig = np.asarray(signatures, dtype=np.uint64).reshape(-1, cfg.bands, cfg.rows)
        h = np.broadcast_to(self._band_seeds, sig.shape[:2]).copy()
        for r in range(cfg.rows):
            h ^= sig[:, :, r]
            h *= GOLDEN
            fmix64(h, out=h)
        return h


def estimate_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray | float:
    """Estimated Jaccard similarity: fraction of equal signature entries (row-wise for 2-D)."""
    eq = np.asarray(sig_a) == np.asarray(sig_b)
    return eq.mean(axis=-1) if eq.ndim > 1 else float(eq.mean())


class MinHashDeduper:
    """Streaming MinHash-LSH deduplication with bounded memory.

    Feed documents with :meth:`add` (any number of calls; indices are assigned in order), then
    call :meth:`finish` once. Memory: the current hashing batch, ``chunk_size`` documents' band
    hashes (16 bytes per band), the merge buffer, and one int32 per document for union-find.
    Run files (and, when ``threshold`` > 0, a raw signature file of ``8 * num_perm`` bytes per
    document) live in a private temp directory under ``spill_dir`` and are deleted by
    :meth:`finish`/:meth:`close`. The result does not depend on batch or chunk sizes.
    """

    def __init__(
        self,
        config: MinHashConfig = MinHashConfig(),
        *,
        spill_dir: str | Path | None = None,
        chunk_size: int = 200_000,
        merge_buffer: int = 1 << 21,
        batch_size: int = 1024,
    ) -> None:
        self.config = config
        self.hasher = MinHasher(config)
        self.batch_size = batch_size
        self.index = SpillIndex(
            config.bands, spill_dir=spill_dir, chunk_size=chunk_size, merge_buffer=merge_buffer
        )
        self._sig_file = self.index.dir / "signatures.u64" if config.threshold > 0 else None

    @property
    def n_docs(self) -> int:
        """Documents added so far."""
        return self.index.n_docs

    @property
    def run_files(self) -> list[Path]:
        """Sorted run files currently on disk."""
        return self.index.run_files

    def add(self, texts: Iterable[str]) -> None:
        """Hash and index documents (streamed in batches of ``batch_size``)."""
        it = iter(texts)
        while batch := list(islice(it, self.batch_size)):
            self.add_signatures(self.hasher.signatures(batch))

    def add_signatures(self, signatures: np.ndarray) -> None:
        """Index precomputed signatures (e.g. from :class:`MinHasher` in worker processes)."""
        sig = np.asarray(signatures, dtype=np.uint64).reshape(-1, self.config.num_perm)
        valid = sig[:, 0] != EMPTY
        self.index.add(self.hasher.band_hashes(sig), valid=valid)
        if self._sig_file is not None:
            with open(self._sig_file, "ab") as f:
                f.write(np.ascontiguousarray(sig, dtype="<u8").tobytes())

    def finish(self) -> DedupResult:
        """Merge the runs band by band, cluster candidates and clean up; returns the clusters."""
        try:
            uf = UnionFind(self.n_docs)
            sigs = None
            if self._sig_file is not None and self.n_docs:
                sigs = np.memmap(
                    self._sig_file, dtype="<u8", mode="r", shape=(self.n_docs, self.config.num_perm)
                )
            for band in range(self.config.bands):
                for batch in self.index.batches(band):
                    if sigs is None:
                        uf.union(*star_edges(batch.doc, batch.key))
                    else:
                        self._verified_union(uf, sigs, batch.doc, batch.key)
            return DedupResult(uf.roots())
        finally:
            self.close()

    def _verified_union(
        self, uf: UnionFind, sigs: np.ndarray, doc: np.ndarray, key: np.ndarray
    ) -> None:
        for i, j in group_pairs(key):
            u, v = doc[i], doc[j]
            todo = uf.find(u) != uf.find(v)
            u, v = u[todo], v[todo]
            if u.size == 0:
                continue
            est = estimate_jaccard(np.asarray(sigs[u]), np.asarray(sigs[v]))
            ok = np.atleast_1d(est) >= self.config.threshold
            uf.union(u[ok], v[ok])

    def close(self) -> None:
        """Delete spill files."""
        self.index.close()

    def __enter__(self) -> MinHashDeduper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def minhash_dedup(
    texts: Iterable[str], config: MinHashConfig = MinHashConfig(), **kwargs: object
) -> DedupResult:
    """Cluster near-duplicate ``texts`` with MinHash-LSH (``kwargs``: :class:`MinHashDeduper`)."""
    deduper = MinHashDeduper(config, **kwargs)  # type: ignore[arg-type]
    deduper.add(texts)
    return deduper.finish()
