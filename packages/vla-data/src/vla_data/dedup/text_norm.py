"""Text normalisation, CJK-aware tokenisation and vectorised word n-gram (shingle) hashing.

Tokenisation rule: after Unicode normalisation (NFKC by default) and lowercasing, a token is a
maximal run of letters/digits (``strip_punctuation=True``; punctuation and ``_`` separate tokens)
or of non-space characters (``strip_punctuation=False``), **except** that every Han, Hiragana or
Katakana character is a token on its own. Chinese/Japanese text therefore yields word n-grams
that are character n-grams, and mixed text mixes both; Hangul (space-delimited Korean) is
tokenised like any other script. A document with fewer than ``n`` (but at least one) tokens
yields a single shingle of all its tokens; a document with no tokens yields none.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from vla_data.dedup.hashing import GOLDEN, fmix64, hash_str_signed

# Han (unified + ext. A + ext. B-F + compatibility), Hiragana, Katakana (+ phonetic ext.)
CJK_CHARS = "\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff"
_WORD_RE = re.compile(rf"[{CJK_CHARS}]|[^\W_{CJK_CHARS}]+")
_NONSPACE_RE = re.compile(rf"[{CJK_CHARS}]|[^\s{CJK_CHARS}]+")
_PUNCT_RE = re.compile(r"[^\w\s]|_")
# ASCII fast path: every ASCII char that is neither alphanumeric nor whitespace becomes a space
_ASCII_PUNCT = str.maketrans(
    {chr(i): " " for i in range(128) if not chr(i).isalnum() and not chr(i).isspace()}
)


@dataclass(frozen=True)
class NormConfig:
    """How text is normalised before hashing (exact dedup) or tokenising (MinHash, SimHash)."""

    unicode_form: Literal["NFC", "NFKC", "NFD", "NFKD"] | None = "NFKC"
    lowercase: bool = True
    strip_punctuation: bool = True
    collapse_whitespace: bool = True


DEFAULT_NORM = NormConfig()


def _prepare(text: str, config: NormConfig) -> str:
    if config.unicode_form and not text.isascii():
        text = unicodedata.normalize(config.unicode_form, text)
    return text.lower() if config.lowercase else text


def normalize(text: str, config: NormConfig = DEFAULT_NORM) -> str:
    """Unicode-normalise, lowercase, replace punctuation by spaces and collapse whitespace."""
    text = _prepare(text, config)
    if config.strip_punctuation:
        text = text.translate(_ASCII_PUNCT) if text.isascii() else _PUNCT_RE.sub(" ", text)
    if config.collapse_whitespace:
        text = " ".join(text.split())
    return text


def tokenize(text: str, config: NormConfig = DEFAULT_NORM) -> list[str]:
    """Tokens of ``text`` following the module's CJK-aware rule."""
    text = _prepare(text, config)
    if text.isascii():  # same tokens as the regexes, several times faster
        return (text.translate(_ASCII_PUNCT) if config.strip_punctuation else text).split()
    return (_WORD_RE if config.strip_punctuation else _NONSPACE_RE).findall(text)


def ngram_set(text: str, n: int = 5, config: NormConfig = DEFAULT_NORM) -> set[tuple[str, ...]]:
    """Exact set of token n-grams (the reference the hashed shingles approximate)."""
    toks = tokenize(text, config)
    if 0 < len(toks) < n:
        return {tuple(toks)}
    return {tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)}


def jaccard(a: set, b: set) -> float:
    """Jaccard similarity of two sets (1.0 for two empty sets)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


class _WordCache(dict):
    def __missing__(self, word: str) -> int:
        value = hash_str_signed(word)
        self[word] = value
        return value


class ShingleHasher:
    """Hash token n-grams of many documents at once into 64-bit shingle hashes.

    Each distinct token is hashed once with BLAKE2b (memoised in a cache of at most
    ``cache_size`` tokens); n-gram hashes are then folded from token hashes over the whole
    batch with numpy and avalanche-mixed, so the result depends only on each document's text.
    """

    def __init__(
        self, ngram: int = 5, norm: NormConfig = DEFAULT_NORM, cache_size: int = 1 << 18
    ) -> None:
        if ngram < 1:
            raise ValueError("ngram must be >= 1")
        self.ngram = ngram
        self.norm = norm
        self.cache_size = cache_size
        self._cache = _WordCache()

    def token_hashes(self, texts: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        """Per-token 64-bit hashes of all documents concatenated, and ``offsets`` (len n+1)."""
        norm = self.norm
        tokens: list[str] = []
        lengths: list[int] = []
        for text in texts:
            toks = tokenize(text, norm)
            tokens.extend(toks)
            lengths.append(len(toks))
        if len(self._cache) > self.cache_size:
            self._cache.clear()
        cache = self._cache
        hashes = np.fromiter(map(cache.__getitem__, tokens), dtype=np.int64, count=len(tokens))
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return hashes.view(np.uint64), offsets

    def hash_batch(self, texts: Sequence[str] | Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        """Shingle hashes (uint64) of all documents concatenated, and ``offsets`` (len n+1)."""
        words, woff = self.token_hashes(texts)
        return fold_ngrams(words, woff, self.ngram)

    def shingles(self, text: str) -> np.ndarray:
        """Shingle hashes of one document."""
        return self.hash_batch([text])[0]


def fold_ngrams(words: np.ndarray, offsets: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Fold per-token hashes into per-n-gram hashes, never crossing document boundaries."""
    lengths = np.diff(offsets)
    n_docs = len(lengths)
    counts = np.where(lengths >= n, lengths - n + 1, np.minimum(lengths, 1))
    out_off = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(counts, out=out_off[1:])
    total_tokens = len(words)
    if total_tokens >= n:
        acc = words[: total_tokens - n + 1].copy()
        for k in range(1, n):
            acc *= GOLDEN
            acc += words[k : total_tokens - n + 1 + k]
        # position j is a valid n-gram start iff j + n <= end of its document
        doc_of = np.repeat(np.arange(n_docs), lengths)[: total_tokens - n + 1]
        valid = np.arange(total_tokens - n + 1) + n <= offsets[1:][doc_of]
        full = acc[valid]
    else:
        full = np.zeros(0, dtype=np.uint64)
    short = np.flatnonzero((lengths > 0) & (lengths < n))
    if short.size == 0:
        return fmix64(full), out_off
    out = np.empty(int(out_off[-1]), dtype=np.uint64)
    is_short = np.zeros(n_docs, dtype=bool)
    is_short[short] = True
    long_slots = np.repeat(~is_short, counts)
    out[long_slots] = full
    short_vals = []
    for d in short:
        acc_s = np.zeros(1, dtype=np.uint64)
        for w in words[offsets[d] : offsets[d + 1]]:
            acc_s *= GOLDEN
            acc_s += w
        acc_s ^= np.uint64(n)  # keep "a b" (short doc) apart from a longer n-gram prefix
        short_vals.append(acc_s[0])
    out[out_off[short]] = np.array(short_vals, dtype=np.uint64)
    return fmix64(out), out_off
