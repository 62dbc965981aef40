"""Train a fastText classifier from labelled files, evaluate it held out, write model + card.

Used by ``vla-data train-classifier`` for any label set (language ID, quality, topic,
toxicity). The held-out split is by a hash of the normalised text, so the same file gives the
same split, and duplicated lines never straddle it.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import time
from collections import Counter
from pathlib import Path

from vla_data.classify.data import Example, read_examples
from vla_data.classify.fasttext_model import FastTextClassifier
from vla_data.dataset import write_json_atomic

HYPER_KEYS = ("epoch", "lr", "dim", "word_ngrams", "minn", "maxn", "bucket", "seed", "threads")


def in_holdout(text: str, fraction: float) -> bool:
    """Whether ``text`` falls in the held-out share ``fraction`` (stable across runs)."""
    digest = hashlib.sha1(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") < fraction * 2**32


def split_examples(examples: list[Example], fraction: float) -> tuple[list[Example], list[Example]]:
    """``(train, held_out)`` by `in_holdout`."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"holdout fraction must be in [0, 1), got {fraction}")
    train, held = [], []
    for pair in examples:
        (held if in_holdout(pair[0], fraction) else train).append(pair)
    return train, held


def train_classifier(
    train_path: str | Path,
    out: str | Path,
    *,
    valid_path: str | Path | None = None,
    holdout: float = 0.1,
    quantize: bool = False,
    cutoff: int = 0,
    text_field: str = "text",
    label_field: str = "label",
    **hyper: float | int,
) -> dict:
    """Train on ``train_path`` (fastText lines or JSONL), evaluate, save ``out`` and ``out.json``.

    Evaluation uses ``valid_path`` when given, else a ``holdout`` share of the training file.
    Returns the model card (labels, counts, hyper-parameters, held-out accuracy per label,
    SHA-256 of the model file).
    """
    unknown = set(hyper) - set(HYPER_KEYS)
    if unknown:
        raise ValueError(f"unknown training options: {', '.join(sorted(unknown))}")
    fields = {"text_field": text_field, "label_field": label_field}
    examples = [p for p in read_examples(train_path, **fields) if p[0]]
    if valid_path is not None:
        train, held = examples, [p for p in read_examples(valid_path, **fields) if p[0]]
    else:
        train, held = split_examples(examples, holdout)
    labels = Counter(label for _, label in train)
    if len(labels) < 2:
        raise ValueError(f"{train_path}: need at least 2 labels to train, found {sorted(labels)}")
    start = time.perf_counter()
    model = FastTextClassifier.train(train, quantize=quantize, cutoff=cutoff, **hyper)
    seconds = time.perf_counter() - start
    out = Path(out)
    model.save(out)
    report = model.evaluate(held) if held else None
    card = {
        "name": out.stem,
        "format": "fastText supervised classifier" + (" (product-quantized)" if quantize else ""),
        "created": datetime.date.today().isoformat(),
        "train_file": str(train_path),
        "eval": str(valid_path) if valid_path else f"held-out {holdout:.0%} of the train file",
        "labels": model.labels,
        "train_counts": dict(sorted(labels.items())),
        "hyper": {k: hyper[k] for k in sorted(hyper)} | {"quantize": quantize, "cutoff": cutoff},
        "train_seconds": round(seconds, 2),
        "size_bytes": out.stat().st_size,
        "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "heldout": (
            {k: report[k] for k in ("n", "accuracy", "macro_accuracy", "per_label")}
            if report
            else None
        ),
    }
    write_json_atomic(out.with_name(out.name + ".json"), card)
    return card


def load_card(model_path: str | Path) -> dict | None:
    """The card written beside a model by `train_classifier`, if any."""
    card = Path(str(model_path) + ".json")
    return json.loads(card.read_text(encoding="utf-8")) if card.is_file() else None
