"""Actions: per-dimension uniform bins and a FAST-style tokenizer, with fitted statistics.

**Bins.** Every dimension has bounds fitted at the 1st/99th percentiles (`ActionStats`); a value
is clipped to its bounds and mapped to one of `bins` equal-width bins (one shared `action` id
range, dimension given by position). Decoding returns bin centres, so a value inside its bounds
comes back within half a bin width; clipped values (about 2% by construction) come back at the
bound, and `roundtrip_error` reports both.

**FAST** (Pertsch et al., 2025). Values are normalised with the same bounds to [-1, 1], cut into
chunks of `chunk` steps (the last one padded by repeating its final step), each chunk is DCT-II
transformed along time per dimension (orthonormal), scaled by `scale`, rounded to integers and
flattened frequency-major (the low frequencies of every dimension first). The integers become
characters and a byte-pair model trained on them (`action_fast` range) compresses the stream.
The rounding error per step is at most `0.5 * sqrt(chunk) / scale` in normalised units, that is
`0.25 * (hi - lo) * sqrt(chunk) / scale` in real units (Cauchy-Schwarz over the orthonormal DCT
columns), usually far less; `error_bound` gives it.

An action span records its action space (the ordered dimension names a fitted space lists) and
its step count, so decoding needs only the ids and the bundle.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, Field
from tokenizers import Tokenizer, models, trainers

_FAST_BASE = 0x4E00  # characters for coefficient values start here (one BMP block, all printable)
_RESERVOIR = 200_000


class ActionError(ValueError):
    pass


class DimStats(BaseModel):
    lo: float
    hi: float
    min: float
    max: float
    mean: float
    std: float
    count: int


class FastParams(BaseModel):
    chunk: int = Field(10, ge=1)
    scale: float = Field(10.0, gt=0)
    vmin: int = 0
    vmax: int = 0
    vocab: int = 0


class ActionStats(BaseModel):
    """Fitted action statistics: bounds per named dimension, known action spaces, FAST params."""

    bins: int
    percentiles: tuple[float, float] = (1.0, 99.0)
    dims: dict[str, DimStats] = Field(default_factory=dict)
    spaces: list[list[str]] = Field(default_factory=list)
    fast: FastParams | None = None

    def space_index(self, dims: Sequence[str]) -> int:
        try:
            return self.spaces.index(list(dims))
        except ValueError:
            missing = [d for d in dims if d not in self.dims]
            if missing:
                raise ActionError(
                    f"action dimension(s) {missing} have no fitted statistics in this bundle"
                ) from None
            raise ActionError(
                f"action space {list(dims)} was not fitted (known: {self.spaces})"
            ) from None

    def bounds(self, dims: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        self.space_index(dims)
        lo = np.array([self.dims[d].lo for d in dims], dtype=np.float64)
        hi = np.array([self.dims[d].hi for d in dims], dtype=np.float64)
        return lo, hi

    def bin_width(self, dims: Sequence[str]) -> np.ndarray:
        lo, hi = self.bounds(dims)
        return (hi - lo) / self.bins


class _Reservoir:
    def __init__(self, cap: int, seed: int = 0):
        self.cap, self.rng, self.seen = cap, np.random.default_rng(seed), 0
        self.values = np.empty(0, dtype=np.float64)
        self.min, self.max, self.sum, self.sumsq = np.inf, -np.inf, 0.0, 0.0

    def add(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64).ravel()
        if not x.size:
            return
        self.min, self.max = min(self.min, float(x.min())), max(self.max, float(x.max()))
        self.sum += float(x.sum())
        self.sumsq += float((x * x).sum())
        self.seen += x.size
        self.values = np.concatenate([self.values, x])
        if self.values.size > self.cap:
            self.values = self.rng.choice(self.values, self.cap, replace=False)


def dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix (n x n): coefficients = D @ x, x = D.T @ coefficients."""
    k = np.arange(n)[:, None]
    t = np.arange(n)[None, :]
    d = np.sqrt(2.0 / n) * np.cos(np.pi * (t + 0.5) * k / n)
    d[0] /= np.sqrt(2.0)
    return d


def fit_action_stats(
    streams: Iterable[tuple[np.ndarray, Sequence[str]]],
    bins: int = 256,
    percentiles: tuple[float, float] = (1.0, 99.0),
    max_spaces: int = 64,
) -> ActionStats:
    """Bounds per dimension name at the given percentiles over every (steps x dims) stream."""
    res: dict[str, _Reservoir] = {}
    spaces: list[list[str]] = []
    for values, dims in streams:
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != len(dims):
            raise ActionError(f"actions of shape {values.shape} do not match dims {list(dims)}")
        if list(dims) not in spaces:
            if len(spaces) >= max_spaces:
                raise ActionError(f"more than {max_spaces} distinct action spaces")
            spaces.append(list(dims))
        for j, d in enumerate(dims):
            res.setdefault(d, _Reservoir(_RESERVOIR, seed=len(res))).add(values[:, j])
    if not res:
        raise ActionError("no action data to fit")
    dims_stats = {}
    for d, r in res.items():
        lo, hi = (float(v) for v in np.percentile(r.values, percentiles))
        if hi - lo < 1e-6:
            lo, hi = lo - 0.5e-6, hi + 0.5e-6
        mean = r.sum / r.seen
        std = float(np.sqrt(max(r.sumsq / r.seen - mean * mean, 0.0)))
        dims_stats[d] = DimStats(
            lo=lo, hi=hi, min=r.min, max=r.max, mean=mean, std=std, count=r.seen
        )
    return ActionStats(bins=bins, percentiles=percentiles, dims=dims_stats, spaces=spaces)


class UniformActionTokenizer:
    """Values (steps x dims) <-> local bin indices (steps x dims) in [0, bins)."""

    def __init__(self, stats: ActionStats):
        self.stats = stats

    def encode(self, values: np.ndarray, dims: Sequence[str]) -> np.ndarray:
        lo, hi = self.stats.bounds(dims)
        x = (np.asarray(values, dtype=np.float64) - lo) / (hi - lo)
        b = np.floor(np.clip(x, 0.0, 1.0) * self.stats.bins).astype(np.int64)
        return np.minimum(b, self.stats.bins - 1)

    def decode(self, bins: np.ndarray, dims: Sequence[str]) -> np.ndarray:
        lo, hi = self.stats.bounds(dims)
        return lo + (np.asarray(bins, dtype=np.float64) + 0.5) * (hi - lo) / self.stats.bins


class FastActionTokenizer:
    """FAST: DCT over time chunks, scale and round, BPE over the coefficient stream."""

    def __init__(self, stats: ActionStats, bpe: Tokenizer):
        if stats.fast is None:
            raise ActionError("action stats have no FAST parameters")
        self.stats, self.p, self.bpe = stats, stats.fast, bpe
        self.dct = dct_matrix(self.p.chunk)
        self._vocab = bpe.get_vocab_size()

    # ---- fitting ----------------------------------------------------------------------------

    @staticmethod
    def fit(
        stats: ActionStats,
        streams: Iterable[tuple[np.ndarray, Sequence[str]]],
        vocab: int = 1024,
        chunk: int = 10,
        scale: float = 10.0,
    ) -> tuple[ActionStats, Tokenizer]:
        """Fit FAST's coefficient range and BPE; returns stats with `fast` set, and the BPE."""
        d = dct_matrix(chunk)
        coeff_chunks = [
            c
            for values, dims in streams
            for c in _coefficients(values, dims, stats, d, chunk, scale)
        ]
        if not coeff_chunks:
            raise ActionError("no action data to fit FAST on")
        allc = np.concatenate([c.ravel() for c in coeff_chunks])
        limit = vocab // 4  # leave most of the vocabulary to merges
        vmin = int(max(np.percentile(allc, 0.1) - 2, -limit))
        vmax = int(min(np.percentile(allc, 99.9) + 2, limit))
        vmin, vmax = min(vmin, -1), max(vmax, 1)
        fast = FastParams(chunk=chunk, scale=scale, vmin=vmin, vmax=vmax, vocab=vocab)
        stats = stats.model_copy(update={"fast": fast})
        alphabet = [chr(_FAST_BASE + v - vmin) for v in range(vmin, vmax + 1)]
        bpe = Tokenizer(models.BPE(unk_token=None))
        trainer = trainers.BpeTrainer(
            vocab_size=vocab,
            min_frequency=2,
            show_progress=False,
            special_tokens=[],
            initial_alphabet=alphabet,
            limit_alphabet=len(alphabet),
        )
        strings = [_to_string(np.clip(c, vmin, vmax), vmin) for c in coeff_chunks]
        bpe.train_from_iterator(strings, trainer=trainer)
        # every coefficient value must have a token, seen in training or not
        missing = [a for a in alphabet if bpe.token_to_id(a) is None]
        if missing:
            raise ActionError(f"FAST BPE lost {len(missing)} alphabet symbols")
        return stats, bpe

    # ---- encode / decode --------------------------------------------------------------------

    def encode(self, values: np.ndarray, dims: Sequence[str]) -> list[int]:
        """Local FAST ids of a (steps x dims) stream."""
        out: list[int] = []
        for c in _coefficients(values, dims, self.stats, self.dct, self.p.chunk, self.p.scale):
            s = _to_string(np.clip(c, self.p.vmin, self.p.vmax), self.p.vmin)
            out += self.bpe.encode(s, add_special_tokens=False).ids
        return out

    def decode(self, ids: Sequence[int], dims: Sequence[str], steps: int) -> np.ndarray:
        s = "".join(self.bpe.id_to_token(int(i)) or "" for i in ids)
        ints = np.array([ord(ch) - _FAST_BASE + self.p.vmin for ch in s], dtype=np.float64)
        per_chunk = self.p.chunk * len(dims)
        n_chunks = -(-steps // self.p.chunk)
        need = n_chunks * per_chunk
        if ints.size < need:  # a model may emit too few; missing high frequencies are zero
            ints = np.concatenate([ints, np.zeros(need - ints.size)])
        coeffs = ints[:need].reshape(n_chunks, self.p.chunk, len(dims)) / self.p.scale
        norm = np.einsum("kt,nkd->ntd", self.dct, coeffs).reshape(-1, len(dims))[:steps]
        lo, hi = self.stats.bounds(dims)
        return lo + (norm + 1.0) * 0.5 * (hi - lo)

    def error_bound(self, dims: Sequence[str]) -> np.ndarray:
        """Worst-case absolute round-trip error per dimension for values inside the bounds."""
        lo, hi = self.stats.bounds(dims)
        return 0.25 * (hi - lo) * np.sqrt(self.p.chunk) / self.p.scale

    def bpe_json(self) -> str:
        return self.bpe.to_str()


def _coefficients(values, dims, stats: ActionStats, d: np.ndarray, chunk: int, scale: float):
    lo, hi = stats.bounds(dims)
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(dims) or x.shape[0] == 0:
        raise ActionError(f"actions of shape {x.shape} do not match dims {list(dims)}")
    norm = 2.0 * (x - lo) / (hi - lo) - 1.0
    pad = -norm.shape[0] % chunk
    if pad:
        norm = np.concatenate([norm, np.repeat(norm[-1:], pad, axis=0)])
    for c in norm.reshape(-1, chunk, len(dims)):
        yield np.rint(d @ c * scale).astype(np.int64)  # (chunk freq x dims), frequency-major


def _to_string(c: np.ndarray, vmin: int) -> str:
    return "".join(chr(_FAST_BASE + int(v) - vmin) for v in c.ravel())


@dataclass
class RoundTrip:
    """Round-trip error per dimension (real units)."""

    dims: list[str]
    max_abs: list[float]
    mean_abs: list[float]
    max_abs_inside: list[float]
    bin_width: list[float]
    clipped_fraction: list[float]

    def to_json(self) -> dict:
        return {
            d: {
                "max_abs": self.max_abs[i],
                "mean_abs": self.mean_abs[i],
                "max_abs_inside_bounds": self.max_abs_inside[i],
                "bin_width": self.bin_width[i],
                "clipped_fraction": self.clipped_fraction[i],
            }
            for i, d in enumerate(self.dims)
        }


def roundtrip_error(
    stats: ActionStats, values: np.ndarray, decoded: np.ndarray, dims: Sequence[str]
) -> RoundTrip:
    values = np.asarray(values, dtype=np.float64)
    lo, hi = stats.bounds(dims)
    err = np.abs(values - decoded)
    inside = (values >= lo) & (values <= hi)
    err_in = np.where(inside, err, 0.0)
    return RoundTrip(
        dims=list(dims),
        max_abs=err.max(axis=0).tolist(),
        mean_abs=err.mean(axis=0).tolist(),
        max_abs_inside=err_in.max(axis=0).tolist(),
        bin_width=((hi - lo) / stats.bins).tolist(),
        clipped_fraction=(1.0 - inside.mean(axis=0)).tolist(),
    )


def stats_json(stats: ActionStats) -> str:
    return json.dumps(stats.model_dump(mode="json"), indent=1) + "\n"
