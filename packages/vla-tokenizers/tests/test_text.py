from __future__ import annotations

import json

import pytest

from vla_tokenizers.specials import ALL_SPECIALS
from vla_tokenizers.testing import MIXED, corpus_texts
from vla_tokenizers.text import QWEN2_PATTERN, TextTokenizer, TextTokenizerError


@pytest.fixture(scope="module")
def tok() -> TextTokenizer:
    return TextTokenizer.train(corpus_texts(), vocab_size=800, min_frequency=1)


@pytest.mark.parametrize(
    "text", [*MIXED, "", " ", "\n", "\x00\x01 control", "\ud7ff\ue000\U0010ffff"]
)
def test_round_trip_is_exact(tok, text):
    assert tok.decode(tok.encode(text)) == text


def test_batch_equals_single(tok):
    assert tok.encode_batch(MIXED) == [tok.encode(t) for t in MIXED]


def test_qwen2_pretokenizer_splits_digits_one_by_one(tok):
    pieces = [p for p, _ in tok.plain.pre_tokenizer.pre_tokenize_str("year 2024, x12")]
    assert pieces == ["year", "Ġ", "2", "0", "2", "4", ",", "Ġx", "1", "2"]
    cfg = json.loads(tok.to_str())
    assert cfg["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] == QWEN2_PATTERN
    assert cfg["normalizer"] is None and tok.lossless


def test_special_strings_in_raw_text_stay_text(tok):
    ids = tok.encode("a <|endoftext|> b")
    assert all(i < tok.size for i in ids)
    assert tok.full.encode("<|endoftext|>").ids == [tok.size]


def test_specials_follow_qwen_order(tok):
    assert [s.content for s in tok.added] == [s.content for s in ALL_SPECIALS]
    assert tok.token_to_id("<|endoftext|>") == tok.size
    assert tok.token_to_id("<|im_end|>") == tok.size + 2


def test_adopt_keeps_ids_and_appends_missing_specials(tok, tmp_path):
    # a "foreign" tokenizer: BPE + only Qwen2.5's first three specials, NFC normaliser like Qwen
    data = json.loads(tok.to_str())
    data["added_tokens"] = data["added_tokens"][:3]
    data["normalizer"] = {"type": "NFC"}
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(data))
    adopted = TextTokenizer.adopt(path)
    assert adopted.size == tok.size
    assert adopted.token_to_id("<|im_end|>") == tok.size + 2
    assert [s.content for s in adopted.added] == [s.content for s in ALL_SPECIALS]
    assert not adopted.lossless  # NFC: composed text round-trips, decomposed comes back composed
    assert adopted.decode(adopted.encode("café")) == "café"
    assert adopted.encode("plain text") == tok.encode("plain text")


def test_adopt_refuses_unreadable_file(tmp_path):
    (tmp_path / "junk.json").write_text("{")
    with pytest.raises(TextTokenizerError, match="junk.json"):
        TextTokenizer.adopt(tmp_path / "junk.json")
