"""Vectorised union-find over document indices and the :class:`DedupResult` it produces."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


class UnionFind:
    """Disjoint sets over ``0..n-1`` whose root is always the set's lowest index.

    Memory: one int32 (int64 past 2**31 documents) per document. ``union`` takes whole edge
    arrays; every link points a root at a smaller root, so there are no cycles and the final
    roots are the clusters' lowest indices regardless of the order edges arrive in.
    """

    def __init__(self, n: int) -> None:
        dtype = np.int32 if n < 2**31 else np.int64
        self.parent = np.arange(n, dtype=dtype)

    def __len__(self) -> int:
        return len(self.parent)

    def find(self, x: np.ndarray) -> np.ndarray:
        """Roots of the elements ``x`` (compressing their paths)."""
        x = np.asarray(x, dtype=self.parent.dtype)
        parent = self.parent
        r = parent[x]
        while True:
            rr = parent[r]
            if np.array_equal(rr, r):
                break
            r = rr
        parent[x] = r
        return r

    def union(self, u: np.ndarray, v: np.ndarray) -> None:
        """Merge the sets of ``u[i]`` and ``v[i]`` for every ``i``."""
        u = np.asarray(u, dtype=self.parent.dtype)
        v = np.asarray(v, dtype=self.parent.dtype)
        while u.size:
            ru, rv = self.find(u), self.find(v)
            differ = ru != rv
            if not differ.any():
                return
            lo = np.minimum(ru[differ], rv[differ])
            hi = np.maximum(ru[differ], rv[differ])
            np.minimum.at(self.parent, hi, lo)
            u, v = lo, hi

    def roots(self) -> np.ndarray:
        """Root of every element (full path compression, in place)."""
        parent = self.parent
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                return parent
            parent = grand
            self.parent = parent


@dataclass
class DedupResult:
    """Cluster assignment of ``N`` documents.

    ``representative[i]`` is the cluster id of document ``i``: the index of the cluster's
    representative, which is its lowest (first in input order) member. Exactly one document per
    cluster, the representative, is kept.
    """

    representative: np.ndarray

    @property
    def n_docs(self) -> int:
        """Number of documents."""
        return int(self.representative.size)

    @property
    def n_clusters(self) -> int:
        """Number of clusters (= documents kept), singletons included."""
        return int(np.count_nonzero(self.keep_mask()))

    @property
    def n_duplicates(self) -> int:
        """Number of documents dropped as duplicates of an earlier one."""
        return self.n_docs - self.n_clusters

    def keep_mask(self) -> np.ndarray:
        """Boolean mask of the documents to keep (the representatives)."""
        return self.representative == np.arange(self.n_docs)

    def is_duplicate(self, i: int) -> bool:
        """Whether document ``i`` is dropped."""
        return bool(self.representative[i] != i)

    def cluster_sizes(self) -> np.ndarray:
        """Size of each document's cluster, per document."""
        return np.bincount(self.representative, minlength=self.n_docs)[self.representative]

    def clusters(self, min_size: int = 2) -> Iterator[np.ndarray]:
        """Sorted members of each cluster of at least ``min_size`` docs, by representative."""
        rep = self.representative
        sizes = np.bincount(rep, minlength=self.n_docs)
        members = np.flatnonzero(sizes[rep] >= min_size)
        if members.size == 0:
            return
        members = members[np.argsort(rep[members], kind="stable")]
        bounds = np.flatnonzero(np.diff(rep[members])) + 1
        yield from np.split(members, bounds)

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """``(duplicate, representative)`` index arrays for every dropped document."""
        dup = np.flatnonzero(~self.keep_mask())
        return dup, self.representative[dup].astype(np.int64)


def star_edges(doc: np.ndarray, *keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges from each group's first record to the group's other records.

    Records must be sorted so equal ``keys`` tuples are adjacent, docs ascending within a group.
    """
    n = doc.size
    if n < 2:
        return doc[:0], doc[:0]
    same = np.ones(n - 1, dtype=bool)
    for key in keys:
        same &= key[1:] == key[:-1]
    first = np.arange(n)
    first[1:][same] = 0
    np.maximum.accumulate(first, out=first)
    tail = np.flatnonzero(same) + 1
    return doc[first[tail]], doc[tail]


def group_pairs(*keys: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """All index pairs ``(i, j)``, ``i < j``, of records in the same group (adjacent equal keys).

    Yields batches by offset ``j - i`` so work and memory are proportional to the pairs produced.
    """
    n = keys[0].size
    if n < 2:
        return
    new = np.ones(n, dtype=bool)
    same = np.ones(n - 1, dtype=bool)
    for key in keys:
        same &= key[1:] == key[:-1]
    new[1:] = ~same
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], n)
    end_of = np.repeat(ends, ends - starts)
    active = np.flatnonzero(end_of > np.arange(n) + 1)
    d = 1
    while active.size:
        yield active, active + d
        d += 1
        active = active[end_of[active] > active + d]
