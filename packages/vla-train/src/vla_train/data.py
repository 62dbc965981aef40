"""Mixture-aware training data over token shards, with megatron-core's dataset stack.

- Token shards: a folder of megatron-core `IndexedDataset` `<bucket>.bin/.idx` (one document per
  sample, each ending with EOD), as `vla-tok shards` writes them.
- Every mixture stage (`vla_data.mixture.MixturePlan`; a plan's stage lengths are scaled to the
  run's length) is one `BlendedDataset` built by `BlendedMegatronDatasetBuilder` over
  `GPTDataset`s with that stage's bucket weights; the stages follow one another.
- Packing: `GPTDataset` concatenates documents (document boundaries = EOD) into
  `seq_length + 1` token windows; positions restart after each EOD (`reset_position_ids`).
- Loss mask: 0 on padding, optionally on EOD, and on tokens between configured span markers.
- Determinism and position: sample `i` of the run is a pure function of (shards, config, seed),
  so the data position is just the number of consumed samples (`step x global_batch_size`).

The index caches megatron-core writes (`.npy`) go to `out_dir/cache` (files this run wrote).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vla_train.config import TrainConfig
from vla_train.modalities import TokenModalities


class DataError(ValueError):
    """Token shards or mixture that cannot be used; names the folder/bucket and the cause."""


def _megatron():
    """Import megatron-core's dataset stack quietly (it warns about missing TE/Apex)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from megatron.core.datasets.blended_megatron_dataset_builder import (
            BlendedMegatronDatasetBuilder,
        )
        from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
        from megatron.core.datasets.indexed_dataset import IndexedDataset
    logging.getLogger("megatron").setLevel(logging.WARNING)
    return BlendedMegatronDatasetBuilder, GPTDataset, GPTDatasetConfig, IndexedDataset


@dataclass(frozen=True)
class BucketInfo:
    name: str
    prefix: str
    documents: int
    tokens: int


def discover_buckets(folder: Path) -> dict[str, BucketInfo]:
    """Every `<bucket>.bin/.idx` pair in `folder`, with document and token counts."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: token-shard folder does not exist")
    _, _, _, IndexedDataset = _megatron()
    out = {}
    for idx in sorted(folder.glob("*.idx")):
        prefix = str(idx.with_suffix(""))
        if not idx.with_suffix(".bin").is_file():
            raise DataError(f"{idx}: has no matching .bin file")
        try:
            ds = IndexedDataset(prefix, mmap=True)
        except Exception as e:  # megatron raises AssertionError on bad headers
            raise DataError(f"{idx}: not a megatron-core IndexedDataset: {e!r}") from None
        lengths = ds.sequence_lengths
        out[idx.stem] = BucketInfo(idx.stem, prefix, len(lengths), int(np.sum(lengths)))
    if not out:
        raise DataError(f"{folder}: no token shards (<bucket>.bin/.idx) found")
    return out


def ensure_process_group() -> None:
    """megatron-core's builder needs a process group: start a one-process gloo group (in-memory
    store) when none is running (under torchrun the engine has already started the real one)."""
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)


class _ShardTokenizer:
    """What `GPTDatasetConfig` needs of a tokenizer: the EOD id (dtype comes from the .idx)."""

    def __init__(self, eod: int) -> None:
        self.eod = eod
        self.vocab_size = None
        self.unique_identifiers = {"class": "vla_train.ShardTokenizer", "eod": eod}


@dataclass(frozen=True)
class StagePlan:
    name: str
    samples: int
    weights: dict[str, float]


def plan_stages(cfg: TrainConfig, buckets: dict[str, BucketInfo]) -> list[StagePlan]:
    """Samples and bucket weights of every stage of the run."""
    total_samples = cfg.schedule.train_steps * cfg.global_batch_size
    data = cfg.data
    names = data.buckets or list(buckets)
    missing = [n for n in names if n not in buckets]
    if missing:
        raise DataError(f"{data.shards}: buckets {missing} not found (have {list(buckets)})")
    if data.mixture is not None:
        from vla_data.mixture import MixturePlan

        plan = MixturePlan.load(data.mixture)
        absent = [b for b in plan.bucket_names if b not in buckets]
        if absent:
            raise DataError(
                f"{data.mixture}: mixture buckets {absent} have no token shards in {data.shards}"
            )
        run_tokens = total_samples * cfg.seq_length
        if plan.stages:
            plan = plan.scaled(max(run_tokens, len(plan.buckets)))
        out, start = [], 0
        stages = plan.stages or [None]
        for i, (stage, (_, end)) in enumerate(zip(stages, plan.stage_boundaries(), strict=True)):
            stop = total_samples if i == len(stages) - 1 else round(end / cfg.seq_length)
            stop = min(max(stop, start), total_samples)
            w = plan.weights(stage)
            out.append(StagePlan(stage.name if stage else "all", stop - start, w))
            start = stop
        return [s for s in out if s.samples > 0]
    if data.weights is not None:
        unknown = [k for k in data.weights if k not in buckets]
        if unknown:
            raise DataError(f"data.weights names buckets {unknown} not in {data.shards}")
        weights = {k: v for k, v in data.weights.items() if k in names}
    else:  # proportional to the tokens on disk
        weights = {n: float(buckets[n].tokens) for n in names}
    z = sum(weights.values())
    if z <= 0:
        raise DataError("every bucket has weight 0")
    return [StagePlan("all", total_samples, {k: v / z for k, v in weights.items()})]


@dataclass
class Batch:
    """One micro-batch: `[micro, seq]` tensors."""

    tokens: torch.Tensor
    labels: torch.Tensor
    positions: torch.Tensor
    loss_mask: torch.Tensor  # float: 1 = counts
    modality: torch.Tensor  # modality code of every label
    bucket: torch.Tensor  # [micro] index into the stage's bucket list (diagnostics)

    def to(self, device: torch.device) -> Batch:
        return Batch(*(t.to(device, non_blocking=True) for t in self.__dict__.values()))


def span_mask(labels: torch.Tensor, start_id: int, end_id: int) -> torch.Tensor:
    """True on tokens strictly between a `start_id` and the next `end_id` (rows independent).
    A window that opens inside a span (first marker is an end) counts as inside from its start."""
    s = (labels == start_id).long()
    e = (labels == end_id).long()
    opened = torch.cumsum(s - e, dim=1) - s + e  # open spans before this token
    first_end = torch.argmax(e, dim=1)
    first_start = torch.where(s.any(1), torch.argmax(s, dim=1), labels.shape[1])
    orphan = (e.any(1) & (first_end < first_start)).long()[:, None]
    return ((opened + orphan) > 0) & (s == 0) & (e == 0)


class MixtureStream:
    """The run's samples in order: `stream[i]` is sample `i`; `batch(indices)` stacks them."""

    def __init__(self, cfg: TrainConfig, modalities: TokenModalities) -> None:
        self.cfg = cfg
        self.modalities = modalities
        self.buckets = discover_buckets(cfg.data.shards)
        eod = cfg.data.eod_id if cfg.data.eod_id is not None else modalities.eod_id()
        if eod is None:
            raise DataError("set data.eod_id or data.vocab_layout (with <|endoftext|>)")
        self.eod = eod
        self.spans = [
            (modalities.token_id(a), modalities.token_id(b)) for a, b in cfg.data.loss_mask_spans
        ]
        self.stages = plan_stages(cfg, self.buckets)
        ensure_process_group()
        self.bounds = np.cumsum([0] + [s.samples for s in self.stages])
        self.datasets = [self._build(i, s) for i, s in enumerate(self.stages)]
        self._fast, self._blended = self._fast_path()
        vocab = modalities.vocab_size
        # modality code of every id (a table lookup instead of a range search per token)
        self._lut = (
            None
            if modalities.layout is None or vocab is None
            else np.asarray(modalities.layout.modality_of(np.arange(vocab)), dtype=np.int64)
        )

    def __len__(self) -> int:
        return int(self.bounds[-1])

    def _build(self, i: int, stage: StagePlan):
        Builder, GPTDataset, GPTDatasetConfig, _ = _megatron()
        names = [k for k, w in stage.weights.items() if w > 0]
        cache = self.cfg.data.cache_dir or (self.cfg.out_dir / "cache")
        config = GPTDatasetConfig(
            random_seed=self.cfg.seed * 1000 + i,
            sequence_length=self.cfg.seq_length,
            blend=([self.buckets[n].prefix for n in names], [stage.weights[n] for n in names]),
            split="1,0,0",
            path_to_cache=str(cache),
            tokenizer=_ShardTokenizer(self.eod),
            reset_position_ids=self.cfg.data.reset_position_ids,
            reset_attention_mask=False,
            eod_mask_loss=self.cfg.data.eod_mask_loss,
            create_attention_mask=False,
            mid_level_dataset_surplus=0.05,
        )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                train, _, _ = Builder(
                    GPTDataset, [stage.samples, 0, 0], lambda: True, config
                ).build()
        except Exception as e:
            raise DataError(f"stage '{stage.name}': megatron-core could not build it: {e!r}") from e
        if train is None or len(train) < stage.samples:
            raise DataError(f"stage '{stage.name}': built {len(train or [])} < {stage.samples}")
        return train

    def stage_of(self, index: int) -> int:
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} outside the run's {len(self)} samples")
        return int(np.searchsorted(self.bounds, index, side="right") - 1)

    def __getitem__(self, index: int) -> dict:
        s = self.stage_of(index)
        return self.datasets[s][index - int(self.bounds[s])]

    def batch(self, indices: list[int]) -> Batch:
        """The samples `indices` as one `[len(indices), seq]` batch.

        Fast path: each sample's token window is read with megatron-core's own sample lookup
        (`BlendedDataset` index -> `GPTDataset` shuffle/sample/document indices -> tokens) into
        one `int64` array, then labels, positions, loss mask and modality codes are computed for
        the whole batch at once (numpy), exactly as `GPTDataset.__getitem__` does per sample.
        Datasets or options it does not cover use the per-sample path (`batch_reference`)."""
        if not self._fast:
            return self.batch_reference(indices)
        n, seq = len(indices), self.cfg.seq_length
        text = np.empty((n, seq + 1), dtype=np.int64)
        pad = np.empty((n, 1), dtype=np.int64)
        bucket = np.zeros(n, dtype=np.int64)
        where = np.asarray(indices, dtype=np.int64)
        if n and (where.min() < 0 or where.max() >= len(self)):
            bad = where[(where < 0) | (where >= len(self))][0]
            raise IndexError(f"sample {bad} outside the run's {len(self)} samples")
        stages = np.searchsorted(self.bounds, where, side="right") - 1
        local = (where - self.bounds[stages]).tolist()
        for r, (s, j) in enumerate(zip(stages.tolist(), local, strict=True)):
            ds = self.datasets[s]
            if self._blended[s]:
                bucket[r] = ds.dataset_index[j]
                j, ds = ds.dataset_sample_index[j], ds.datasets[ds.dataset_index[j]]
            text[r] = ds._query_document_sample_shuffle_indices(j)[0]
            pad[r, 0] = ds._pad_token_id
        tokens, labels = text[:, :-1], text[:, 1:]
        eod = tokens == self.eod
        data = self.cfg.data
        loss_mask = np.ones((n, seq), dtype=np.float32)
        if data.eod_mask_loss:
            loss_mask[eod] = 0.0
        idx = np.arange(seq, dtype=np.int64)
        if data.reset_position_ids:  # positions restart after every EOD
            starts = np.zeros((n, seq), dtype=np.int64)
            starts[:, 1:] = np.where(eod[:, :-1], idx[1:], 0)
            positions = idx - np.maximum.accumulate(starts, axis=1)
        else:
            positions = np.broadcast_to(idx, (n, seq)).copy()
        padded = labels == pad
        loss_mask[padded] = 0.0
        tokens = np.where(tokens == pad, 0, tokens)
        labels = np.where(padded, 0, labels)
        loss_mask_t = torch.from_numpy(loss_mask)
        labels_t = torch.from_numpy(labels)
        for a, b in self.spans:
            loss_mask_t.masked_fill_(span_mask(labels_t, a, b), 0.0)
        return Batch(
            torch.from_numpy(tokens),
            labels_t,
            torch.from_numpy(positions),
            loss_mask_t,
            self._codes(labels),
            torch.from_numpy(bucket),
        )

    def batch_reference(self, indices: list[int]) -> Batch:
        """`batch` through megatron-core's per-sample `__getitem__` (the reference semantics)."""
        items = [self[i] for i in indices]
        tokens = torch.stack([it["tokens"] for it in items])
        labels = torch.stack([it["labels"] for it in items])
        positions = torch.stack([it["position_ids"] for it in items])
        loss_mask = torch.stack([it["loss_mask"] for it in items]).float()
        for a, b in self.spans:
            loss_mask = loss_mask.masked_fill(span_mask(labels, a, b), 0.0)
        bucket = torch.tensor([int(it.get("dataset_id", 0)) for it in items])
        return Batch(tokens, labels, positions, loss_mask, self.modalities.codes(labels), bucket)

    def _codes(self, labels: np.ndarray) -> torch.Tensor:
        """Modality codes of `labels` through the per-id lookup table (one gather)."""
        if self._lut is None:
            return torch.zeros(labels.shape, dtype=torch.long)
        if labels.size and (labels.min() < 0 or labels.max() >= len(self._lut)):
            # let the layout name the bad id
            return self.modalities.codes(torch.from_numpy(labels))
        return torch.from_numpy(self._lut[labels])

    def _fast_path(self) -> tuple[bool, list[bool]]:
        """Whether `batch` may assemble samples itself: plain `GPTDataset`s (or a
        `BlendedDataset` of them) with the options this engine sets."""
        from megatron.core.datasets.blended_dataset import BlendedDataset

        _, GPTDataset, _, _ = _megatron()
        blended, ok = [], True
        for ds in self.datasets:
            is_blend = type(ds) is BlendedDataset
            parts = ds.datasets if is_blend else [ds]
            blended.append(is_blend)
            if is_blend and len(ds) and ds.dataset_index is None:
                ds[0]  # megatron-core maps its index files on first access
            for p in parts:
                c = p.config
                ok &= (
                    type(p) is GPTDataset
                    and c.add_extra_token_to_sequence
                    and not c.reset_attention_mask
                    and not c.create_attention_mask
                    and c.sequence_length == self.cfg.seq_length
                    and c.tokenizer.eod == self.eod
                    and c.reset_position_ids == self.cfg.data.reset_position_ids
                    and c.eod_mask_loss == self.cfg.data.eod_mask_loss
                    and hasattr(p, "_query_document_sample_shuffle_indices")
                )
        return bool(ok), blended


def micro_batch_indices(
    step: int, micro: int, cfg: TrainConfig, rank: int, world_size: int
) -> list[int]:
    """Sample indices of micro-batch `micro` of optimizer step `step` on `rank`."""
    per_rank = cfg.global_batch_size // world_size
    start = step * cfg.global_batch_size + rank * per_rank + micro * cfg.micro_batch_size
    return list(range(start, start + cfg.micro_batch_size))


def unigram_entropy(buckets: dict[str, BucketInfo]) -> float:
    """Entropy (nats/token) of the token distribution over all given shards."""
    _, _, _, IndexedDataset = _megatron()
    counts: np.ndarray | None = None
    for b in buckets.values():
        dtype = IndexedDataset(b.prefix, mmap=True).index.dtype
        arr = np.memmap(b.prefix + ".bin", dtype=dtype, mode="r")
        c = np.bincount(np.asarray(arr, dtype=np.int64))
        counts = c if counts is None else _add(counts, c)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def _add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    n = max(len(a), len(b))
    return np.pad(a, (0, n - len(a))) + np.pad(b, (0, n - len(b)))


__all__ = [
    "Batch",
    "BucketInfo",
    "DataError",
    "MixtureStream",
    "StagePlan",
    "discover_buckets",
    "micro_batch_indices",
    "plan_stages",
    "span_mask",
    "unigram_entropy",
]
