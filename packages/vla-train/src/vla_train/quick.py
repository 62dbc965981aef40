"""A ready-made small run: the tiny preset on a folder of token shards, a few hundred CPU steps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from vla_train.config import TrainConfig


def find_layout(shards: Path) -> Path | None:
    """A `vocab_layout.json` in the shard folder, beside it, or in a sibling `bundle/`."""
    for p in (
        shards / "vocab_layout.json",
        shards.parent / "vocab_layout.json",
        shards.parent / "bundle" / "vocab_layout.json",
    ):
        if p.is_file():
            return p
    return None


def shards_vocab(shards: Path, layout_path: Path | None = None) -> tuple[int, int | None]:
    """`(vocab size, eod id)` of a token-shard folder: from its vocab layout (given or found by
    `find_layout`), else `vla-tok shards`' `index.json`, else the largest id on disk."""
    shards = Path(shards)
    layout_path = layout_path or find_layout(shards)
    if layout_path is not None:
        from vla_tokenizers import VocabLayout

        layout = VocabLayout.load(layout_path)
        eod = layout.id_of("<|endoftext|>") if layout.has_token("<|endoftext|>") else None
        return int(layout.vocab_size), eod
    index = shards / "index.json"
    if index.is_file():
        return int(json.loads(index.read_text())["vocab_size"]), None
    from vla_train.data import _megatron, discover_buckets

    _, _, _, IndexedDataset = _megatron()
    top = 0
    for b in discover_buckets(shards).values():
        dtype = IndexedDataset(b.prefix, mmap=True).index.dtype
        arr = np.memmap(b.prefix + ".bin", dtype=dtype, mode="r")
        top = max(top, int(arr.max()) if arr.size else 0)
    return top + 1, None


def tiny_config(
    shards: str | Path,
    out_dir: str | Path,
    steps: int = 300,
    eod_id: int | None = None,
    vocab_layout: str | Path | None = None,
    seq_length: int = 64,
    micro_batch_size: int = 4,
    **overrides: Any,
) -> TrainConfig:
    """A `TrainConfig` for the `tiny-dense` preset (vocab sized to the shards) over `shards`:
    256 tokens per step, checkpoints every 100 steps. With a real bundle's ~100k-id vocabulary
    the output layer dominates; 300 steps take ~1-3 min on 2 CPU cores. The vocab layout (given, or found by `find_layout`) sizes the vocabulary, gives
    the EOD id (unless `eod_id`) and the per-modality losses."""
    shards = Path(shards)
    vocab_layout = Path(vocab_layout) if vocab_layout else find_layout(shards)
    vocab, layout_eod = shards_vocab(shards, vocab_layout)
    eod = eod_id if eod_id is not None else layout_eod
    data: dict[str, Any] = {"shards": str(shards), "eod_id": eod}
    if vocab_layout is not None:
        data["vocab_layout"] = str(vocab_layout)
    cfg: dict[str, Any] = {
        "out_dir": str(out_dir),
        "seq_length": seq_length,
        "micro_batch_size": micro_batch_size,
        "global_batch_size": micro_batch_size,
        "model": {"preset": "tiny-dense", "overrides": {"vocab_size": vocab}},
        "data": data,
        "optimizer": {"lr": 3e-3, "min_lr": 3e-4, "weight_decay": 0.01},
        "schedule": {"train_steps": steps, "warmup_steps": min(20, steps)},
        "checkpoint": {"every": 100, "keep_last": 2},
    }
    cfg.update(overrides)
    return TrainConfig.from_dict(cfg, "tiny_config")


def train_tiny(shards: str | Path, out_dir: str | Path, steps: int = 300, **kw: Any):
    """Train the tiny preset on `shards` for `steps` steps (resuming if `out_dir` has
    checkpoints); returns the `TrainResult` (its `losses` show the fall)."""
    from vla_train.engine import Trainer

    return Trainer(tiny_config(shards, out_dir, steps, **kw)).train()
