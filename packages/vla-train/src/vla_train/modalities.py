"""Adapter from token ids to modalities and marker ids, over vla-tokenizers' `VocabLayout`.

Token shards carry no side channel: the modality of a token follows from its id through the
layout (`VocabLayout.modality_of`). Without a layout every id counts as `text`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


class TokenModalities:
    """Modality codes of token ids, plus resolution of marker strings to ids."""

    def __init__(self, layout=None) -> None:
        self.layout = layout
        if layout is None:
            self.names: tuple[str, ...] = ("text",)
        else:
            from vla_tokenizers.layout import MODALITIES

            self.names = tuple(MODALITIES)

    @classmethod
    def from_path(cls, path: Path | None) -> TokenModalities:
        if path is None:
            return cls(None)
        from vla_tokenizers import VocabLayout

        return cls(VocabLayout.load(path))

    def codes(self, ids: torch.Tensor) -> torch.Tensor:
        """Modality code (index into `names`) of every id, same shape, int64."""
        if self.layout is None:
            return torch.zeros_like(ids, dtype=torch.long)
        arr = self.layout.modality_of(ids.cpu().numpy())
        return torch.from_numpy(np.asarray(arr, dtype=np.int64)).to(ids.device)

    def code(self, name: str) -> int:
        if name not in self.names:
            raise KeyError(f"unknown modality '{name}' (known: {', '.join(self.names)})")
        return self.names.index(name)

    def token_id(self, token: int | str) -> int:
        """An id as is, or the id of a special-token string in the layout."""
        if isinstance(token, int):
            return token
        if self.layout is None:
            raise KeyError(f"token '{token}' given by name but data.vocab_layout is not set")
        return int(self.layout.id_of(token))

    def eod_id(self) -> int | None:
        if self.layout is not None and self.layout.has_token("<|endoftext|>"):
            return int(self.layout.id_of("<|endoftext|>"))
        return None

    @property
    def vocab_size(self) -> int | None:
        return None if self.layout is None else int(self.layout.vocab_size)
