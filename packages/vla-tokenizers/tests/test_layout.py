from __future__ import annotations

import numpy as np
import pytest

from vla_tokenizers.layout import MODALITIES, LayoutConfig, LayoutError, VocabLayout
from vla_tokenizers.specials import ALL_SPECIALS, QWEN_SPECIALS


def test_ranges_are_contiguous_and_cover_the_vocabulary():
    lay = VocabLayout.build(151643, ALL_SPECIALS)
    pos = 0
    for r in lay.ranges:
        assert r.start == pos
        pos = r.end
    assert pos == lay.vocab_size and lay.vocab_size % 128 == 0
    # Qwen ids are kept when the text part is Qwen-sized
    assert lay.id_of("<|endoftext|>") == 151643
    assert lay.id_of("<|im_start|>") == 151644
    assert lay.id_of("<|vision_start|>") == 151652
    assert lay.id_of("</think>") == 151643 + len(QWEN_SPECIALS) - 1
    assert lay.id_of("camera:front") == lay.range("camera").start


def test_modality_of_is_vectorised():
    lay = VocabLayout.build(1000, ALL_SPECIALS)
    ids = np.array(
        [
            [0, 999, 1000],
            [lay.range("vision").start, lay.range("action").end - 1, lay.vocab_size - 1],
        ]
    )
    codes = lay.modality_of(ids)
    assert codes.shape == ids.shape
    names = [MODALITIES[c] for c in codes.ravel()]
    assert names == ["text", "text", "special", "vision", "action", "reserved"]
    big = np.arange(lay.vocab_size)
    got = lay.modality_of(big)
    for r in lay.ranges:
        assert (got[r.start : r.end] == MODALITIES.index(r.modality)).all()
    with pytest.raises(LayoutError, match="outside the vocabulary"):
        lay.modality_of([lay.vocab_size])
    with pytest.raises(LayoutError):
        lay.modality_of([-1])


def test_json_round_trip_and_validation(tmp_path):
    lay = VocabLayout.build(500, ALL_SPECIALS, LayoutConfig(action_bins=128, pad_to_multiple=64))
    lay.save(tmp_path / "vocab_layout.json")
    again = VocabLayout.load(tmp_path / "vocab_layout.json")
    assert again == lay
    assert again.range("action").size == 128 and again.vocab_size % 64 == 0
    data = lay.model_dump(mode="json")
    data["ranges"][3]["start"] += 1
    (tmp_path / "bad.json").write_text(__import__("json").dumps(data))
    with pytest.raises(LayoutError, match="bad.json.*gap or overlap"):
        VocabLayout.load(tmp_path / "bad.json")


def test_token_names():
    lay = VocabLayout.build(500, ALL_SPECIALS)
    assert lay.token_name(500) == "<|endoftext|>"
    assert lay.token_name(lay.range("action").start + 17) == "<|action_17|>"
    assert lay.token_name(lay.id_of("camera:back")) == "<|camera:back|>"
    assert lay.token_name(lay.id_of("x3d:N:Shape")) == "<|x3d:N:Shape|>"
