"""vla-data: ingest, validate, account for and shard multimodal training data."""

from vla_data.ledger import LedgerEntry, Status, read_ledger
from vla_data.sample import (
    ActionsMeta,
    AudioMeta,
    ImageMeta,
    Modality,
    Sample,
    TextMeta,
    sanitize_key,
)
from vla_data.shards import ShardError, ShardWriter, iter_samples

__version__ = "0.1.0"
__all__ = [
    "ActionsMeta",
    "AudioMeta",
    "ImageMeta",
    "LedgerEntry",
    "Modality",
    "Sample",
    "ShardError",
    "ShardWriter",
    "Status",
    "TextMeta",
    "iter_samples",
    "read_ledger",
    "sanitize_key",
]
