"""Shared fixtures: a small bundle built from vla-data's multilingual sentences and synthetic drives."""

from __future__ import annotations

from pathlib import Path

import pytest

from vla_tokenizers import TokenizerBundle
from vla_tokenizers.testing import corpus_texts, drives


@pytest.fixture(scope="session")
def bundle() -> TokenizerBundle:
    return TokenizerBundle.build(
        corpus_texts(), vocab_size=1200, min_frequency=1, action_streams=drives()
    )


@pytest.fixture(scope="session")
def bundle_dir(bundle, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bundles") / "bundle"
    bundle.save(path)
    return path
