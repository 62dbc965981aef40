import pytest
from pydantic import ValidationError

from vla_data.sample import AudioMeta, Sample, TextMeta, sanitize_key

from .conftest import text_sample


def test_sanitize_key_keeps_safe_ids_and_removes_dots():
    assert sanitize_key("abc_DEF-1") == "abc_DEF-1"
    k = sanitize_key("dir/file.name.jsonl:3")
    assert "." not in k and "/" not in k
    assert sanitize_key("a.b") != sanitize_key("a_b")  # no collisions after sanitising


def test_create_fills_parts_and_keeps_original_id():
    s = text_sample(3, "héllo")
    assert s.key != s.id and "." not in s.key
    assert s.id == "doc.3"
    assert s.parts["txt"].bytes == len("héllo".encode())
    assert s.modality == "text"


def test_json_round_trip_checks_payload_hash():
    s = text_sample(1, "hello")
    back = Sample.from_json_bytes(s.to_json_bytes()).attach({"txt": b"hello"})
    assert back.model_dump() == s.model_dump()
    with pytest.raises(ValueError, match="SHA-256"):
        Sample.from_json_bytes(s.to_json_bytes()).attach({"txt": b"HELLO"})
    with pytest.raises(ValueError, match="do not match parts"):
        Sample.from_json_bytes(s.to_json_bytes()).attach({"txt": b"hello", "wav": b""})


@pytest.mark.parametrize(
    "change, message",
    [
        ({"key": "has.dot"}, "not WebDataset-safe"),
        ({"license": ""}, "at least 1 character"),
        (
            {
                "meta": {
                    "modality": "audio",
                    "sample_rate": 0,
                    "channels": 1,
                    "duration_s": 1,
                    "source_sample_rate": 1,
                    "source_codec": "x",
                }
            },
            "greater than 0",
        ),
        ({"modality": "image"}, "disagrees"),
        ({"surprise": 1}, "Extra inputs"),
    ],
)
def test_invalid_records_are_refused_on_read(change, message):
    data = text_sample(1).model_dump(mode="json") | change
    with pytest.raises(ValidationError, match=message):
        Sample.model_validate(data)


def test_meta_is_typed_by_modality():
    s = Sample.create(
        id="a",
        source="s",
        license="l",
        payloads={"flac": b"x"},
        meta=AudioMeta(
            sample_rate=16000,
            channels=1,
            duration_s=1.5,
            source_sample_rate=44100,
            source_codec="mp3",
        ),
    )
    assert s.modality == "audio" and isinstance(s.meta, AudioMeta)
    with pytest.raises(ValueError, match="no payload"):
        Sample.create(id="a", source="s", license="l", payloads={}, meta=TextMeta(chars=0))
