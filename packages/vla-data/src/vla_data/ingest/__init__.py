"""Ingest raw files (text, audio, images, actions) into validated WebDataset shards."""

from vla_data.ingest.config import IngestConfig
from vla_data.ingest.runner import IngestReport, ingest
from vla_data.ingest.sources import READERS, SourceError, discover

__all__ = ["READERS", "IngestConfig", "IngestReport", "SourceError", "discover", "ingest"]
