"""Exact and near-duplicate detection: documents (or images) in, cluster assignments out.

Every deduper is streaming (``add`` any number of times, then ``finish`` once), memory-bounded
(sorted run files on disk, k-way merged, plus one int per document for union-find) and returns a
:class:`DedupResult` whose ``representative[i]`` is the lowest index of document ``i``'s cluster.
"""

from vla_data.dedup.clusters import DedupResult, UnionFind
from vla_data.dedup.exact import ExactConfig, ExactDeduper, exact_dedup, exact_hash
from vla_data.dedup.image_hash import dhash, image_dedup, image_hashes, phash
from vla_data.dedup.minhash import (
    MinHashConfig,
    MinHashDeduper,
    MinHasher,
    estimate_jaccard,
    minhash_dedup,
)
from vla_data.dedup.simhash import (
    HammingDeduper,
    SimHashConfig,
    SimHashDeduper,
    SimHasher,
    hamming_distance,
    simhash,
    simhash_dedup,
    table_masks,
)
from vla_data.dedup.spill import SpillIndex
from vla_data.dedup.text_norm import (
    NormConfig,
    ShingleHasher,
    jaccard,
    ngram_set,
    normalize,
    tokenize,
)

__all__ = [
    "DedupResult",
    "ExactConfig",
    "ExactDeduper",
    "HammingDeduper",
    "MinHashConfig",
    "MinHashDeduper",
    "MinHasher",
    "NormConfig",
    "ShingleHasher",
    "SimHashConfig",
    "SimHashDeduper",
    "SimHasher",
    "SpillIndex",
    "UnionFind",
    "dhash",
    "estimate_jaccard",
    "exact_dedup",
    "exact_hash",
    "hamming_distance",
    "image_dedup",
    "image_hashes",
    "jaccard",
    "minhash_dedup",
    "ngram_set",
    "normalize",
    "phash",
    "simhash",
    "simhash_dedup",
    "table_masks",
    "tokenize",
]
