"""Token shards for the tests, made here from real text (vla-data's sample-corpus sentences and
textbook lessons) with a byte-level BPE trained by `tokenizers`, written with megatron-core's
`IndexedDatasetBuilder` -- independent of vla-tokenizers' `vla-tok shards`."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

EOD = 0  # "<|endoftext|>" is the BPE's first special token
VOCAB = 512


def corpus_texts() -> dict[str, list[str]]:
    from vla_data.corpus import SENTENCES
    from vla_data.textbook import lessons

    rng = np.random.default_rng(0)
    pool = [s for group in SENTENCES.values() for s in group]
    news = [
        " ".join(rng.choice(pool, size=int(rng.integers(1, 4)), replace=False)) for _ in range(300)
    ]
    return {"news__text": news, "textbook__text": [d["text"] for d in lessons(24, 0)]}


def write_shards(folder: Path, vocab: int = VOCAB) -> dict[str, int]:
    """Train a BPE on the texts and write one bucket per source; returns tokens per bucket."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    texts = corpus_texts()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([t for ts in texts.values() for t in ts], trainer)
    assert tok.token_to_id("<|endoftext|>") == EOD
    folder.mkdir(parents=True, exist_ok=True)
    counts = {}
    for bucket, docs in texts.items():
        builder = IndexedDatasetBuilder(str(folder / f"{bucket}.bin"), dtype=np.uint16)
        n = 0
        for enc in tok.encode_batch(docs):
            ids = enc.ids + [EOD]
            builder.add_document(torch.tensor(ids, dtype=torch.int64), [len(ids)])
            n += len(ids)
        builder.finalize(str(folder / f"{bucket}.idx"))
        counts[bucket] = n
    tok.save(str(folder / "tokenizer.json"))
    return counts


@pytest.fixture(scope="session")
def shards(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("shards")
    write_shards(folder)
    return folder


def tiny_config(shards: Path, out: Path, **over) -> dict:
    """A TrainConfig dict for the tiny-dense preset over the test shards."""
    cfg = {
        "out_dir": str(out),
        "seed": 0,
        "seq_length": 64,
        "micro_batch_size": 4,
        "global_batch_size": 8,
        "model": {"preset": "tiny-dense", "overrides": {"vocab_size": VOCAB}},
        "data": {"shards": str(shards), "eod_id": EOD},
        "optimizer": {"lr": 3e-3, "min_lr": 3e-4, "weight_decay": 0.01},
        "schedule": {"train_steps": 20, "warmup_steps": 2},
        "checkpoint": {"every": 5, "keep_last": 2},
        "logging": {"tensorboard": False, "progress": False},
    }
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k] = {**cfg[k], **v}
        else:
            cfg[k] = v
    return cfg


@pytest.fixture
def make_config():
    """`make_config(shards, out, **section_overrides)` -> TrainConfig dict."""
    return tiny_config
