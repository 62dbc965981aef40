"""fastText classifier wrapper, labelled-data readers, language ID and the shipped model."""

from __future__ import annotations

import hashlib
import json
import os
from itertools import cycle, islice
from pathlib import Path

import pytest

from vla_data.classify import (
    DEFAULT_MACRO,
    FastTextClassifier,
    LanguageID,
    classification_report,
    default_model_card,
    load_default_lid,
    macro_language,
    normalize_text,
    read_examples,
    write_examples,
)
from vla_data.classify.langid import _shipped
from vla_data.corpus import SENTENCES

LANGS = ("en", "de", "fr", "es", "ru", "ar", "hi", "ko", "ja", "zh")
TINY = {"epoch": 20, "dim": 16, "bucket": 20_000, "minn": 1, "maxn": 3}


def fragments(sentence: str) -> list[str]:
    """Every run of 1-3 words (of 2-4 characters for unspaced CJK) of a real sentence."""
    words = sentence.split()
    units, sizes = (words, (1, 2, 3)) if len(words) > 3 else (list(sentence), (2, 3, 4))
    join = " " if units is words else ""
    return [join.join(units[i : i + n]) for n in sizes for i in range(len(units) - n + 1)]


@pytest.fixture(scope="module")
def split() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """100 fragments (cycled) of all but the last sentence per language; the last ones held out."""
    train = []
    for lang in LANGS:
        pieces = [f for s in SENTENCES[lang][:-1] for f in fragments(s)]
        train += [(f, lang) for f in islice(cycle(pieces), 100)]
    held_out = [(SENTENCES[lang][-1], lang) for lang in LANGS]
    return train, held_out


@pytest.fixture(scope="module")
def tiny(split) -> FastTextClassifier:
    return FastTextClassifier.train(split[0], **TINY)


def test_normalize_and_read_examples(tmp_path: Path) -> None:
    assert normalize_text(" Zwei\nZeilen\t und\x00 NUL \r\n") == "Zwei Zeilen und NUL"
    assert normalize_text("ÄB  c", lowercase=True) == "äb c"
    ft = tmp_path / "a.txt"
    ft.write_text("__label__de Guten  Tag\n\n__label__en hello there\n", encoding="utf-8")
    assert list(read_examples(ft)) == [("Guten Tag", "de"), ("hello there", "en")]
    js = tmp_path / "a.jsonl"
    js.write_text('{"body": "Bonjour\\nà tous", "lang": "fr"}\n{"body": "x", "lang": 3}\n')
    pairs = list(read_examples(js, text_field="body", label_field="lang", lowercase=True))
    assert pairs == [("bonjour à tous", "fr"), ("x", "3")]
    js.write_text('{"body": "ok", "lang": "fr"}\n{"body": "no label"}\n')
    with pytest.raises(ValueError, match=r"a\.jsonl:2: missing field 'lang'"):
        list(read_examples(js, text_field="body", label_field="lang"))
    ft.write_text("__label__de ok\nno label here\n")
    with pytest.raises(ValueError, match=r"a\.txt:2: no __label__ label"):
        list(read_examples(ft))
    out = tmp_path / "out.txt"
    assert write_examples([("a\nb", "x"), ("   ", "y")], out) == 1
    assert out.read_text() == "__label__x a b\n"
    with pytest.raises(ValueError, match="whitespace"):
        write_examples([("text", "two words")], out)


def test_tiny_classifier_predicts_held_out_sentences(tiny, split) -> None:
    train, held_out = split
    assert len(train) == 1000 and sorted(tiny.labels) == sorted(LANGS)
    predicted = [tiny.predict(text)[0][0] for text, _ in held_out]
    assert sum(p == lang for p, (_, lang) in zip(predicted, held_out, strict=True)) >= 9
    top = tiny.predict(SENTENCES["de"][-1], k=3)
    assert len(top) == 3 and top[0][1] >= top[1][1] >= top[2][1] and 0 < top[0][1] <= 1


def test_training_is_deterministic(split, tiny, tmp_path: Path) -> None:
    again = FastTextClassifier.train(split[0], **TINY)
    tiny.save(tmp_path / "a.bin")
    again.save(tmp_path / "b.bin")
    assert (tmp_path / "a.bin").read_bytes() == (tmp_path / "b.bin").read_bytes()


def test_predict_newlines_empty_and_batch(tiny) -> None:
    text = SENTENCES["fr"][0]
    assert tiny.predict(text.replace(" ", "\n")) == tiny.predict(text)
    assert tiny.predict("") == [] and tiny.predict(" \n\t ") == []
    batch = tiny.predict_batch(["", SENTENCES["ru"][0], "line one\nline two"], k=2)
    assert batch[0] == [] and batch[1][0][0] == "ru" and len(batch[2]) == 2
    assert batch[1] == tiny.predict(SENTENCES["ru"][0], k=2)
    with pytest.raises(ValueError, match="k must be"):
        tiny.predict("x", k=0)


def test_save_load_round_trip_is_atomic(tiny, tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "sub" / "m.bin"
    tiny.save(path)
    loaded = FastTextClassifier.load(path)
    assert loaded.labels == tiny.labels and loaded.path == path
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    texts = [s for lang in LANGS for s in SENTENCES[lang]]
    assert loaded.predict_batch(texts, k=2) == tiny.predict_batch(texts, k=2)
    before = path.read_bytes()

    def fail(_path: str) -> None:
        Path(_path).write_bytes(b"half a model")
        raise RuntimeError("disk full")

    monkeypatch.setattr(tiny._model, "save_model", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        tiny.save(path)
    assert path.read_bytes() == before  # the old model survives a failed save
    assert [p.name for p in path.parent.iterdir()] == ["m.bin"]  # no temporary file left


def test_load_refuses_missing_and_invalid_files(tiny, tmp_path: Path) -> None:
    missing = tmp_path / "lid.176.bin"
    with pytest.raises(FileNotFoundError, match=r"lid\.176\.bin"):
        FastTextClassifier.load(missing)
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x89PNG not a model" * 10)
    with pytest.raises(ValueError, match=r"garbage\.bin"):
        FastTextClassifier.load(garbage)
    tiny.save(tmp_path / "ok.bin")
    data = (tmp_path / "ok.bin").read_bytes()
    for name, blob in (("cut.bin", data[: len(data) // 2]), ("long.bin", data + b"\0")):
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(ValueError, match=name.replace(".", r"\.")):
            FastTextClassifier.load(tmp_path / name)


def test_classification_report_by_hand(tiny) -> None:
    gold = ["a", "a", "a", "b", "b", "c"]
    pred = ["a", "a", "b", "b", "a", "<none>"]
    r = classification_report(gold, pred)
    assert (r["n"], r["correct"]) == (6, 3) and r["accuracy"] == pytest.approx(0.5)
    assert r["per_label"]["a"] == {
        "n": 3,
        "correct": 2,
        "accuracy": pytest.approx(2 / 3),
        "precision": pytest.approx(2 / 3),
        "f1": pytest.approx(2 / 3),
    }
    assert r["per_label"]["b"]["accuracy"] == 0.5 and r["per_label"]["b"]["precision"] == 0.5
    assert r["per_label"]["c"]["correct"] == 0 and r["per_label"]["c"]["f1"] == 0.0
    assert r["macro_accuracy"] == pytest.approx((2 / 3 + 0.5 + 0) / 3)
    assert r["confusion"] == {"a": {"a": 2, "b": 1}, "b": {"a": 1, "b": 1}, "c": {"<none>": 1}}
    examples = [(SENTENCES["en"][0], "en"), (SENTENCES["ru"][1], "ru"), ("", "de")]
    ev = tiny.evaluate(examples)
    assert ev["n"] == 3 and ev["correct"] == 2 and ev["confusion"]["de"] == {"<none>": 1}


def test_macro_mapping_and_ipa_flag(tiny) -> None:
    cases = {
        "cmn": "zh", "yue": "zh", "wuu": "zh", "nan": "zh", "hak": "zh", "zh": "zh",
        "zh_TW": "zh", "zh_CN": "zh", "zh_HK": "zh", "zh-Hant": "zh", "cmn_Hant": "zh",
        "__label__yue": "zh", "eng": "en", "deu": "de", "en": "en", "arz": "ar", "nb": "no",
        "ug": "ug", "uig": "ug", "bo": "bo", "tib": "bo", "sr@latin": "sr", "pt_BR": "pt",
        "xyz": "xyz",
    }  # fmt: skip
    assert {label: macro_language(label) for label in cases} == cases
    assert DEFAULT_MACRO["cmn"] == "zh" and DEFAULT_MACRO["zh_TW"] == "zh"
    lid = LanguageID(tiny)
    for label in ("yue", "wuu", "nan", "hak", "ug", "uig", "bo", "yue_Hant"):
        assert lid.needs_ipa(label), label
    for label in ("en", "zh", "cmn", "cmn_Hant", "ja", "ar"):
        assert not lid.needs_ipa(label), label
    custom = LanguageID(tiny, macro={"ru": "slavic"}, ipa_fallback={"ru"}, min_prob=0.0)
    result = custom.identify(SENTENCES["ru"][0])
    assert (result.label, result.macro, result.ipa_fallback) == ("ru", "slavic", True)
    assert result.top[0] == (result.label, result.prob) and len(result.top) == 3
    empty = lid.identify("\n")
    assert (empty.label, empty.macro, empty.prob, empty.top) == ("und", "und", 0.0, [])
    assert LanguageID(tiny, min_prob=1.0).identify(SENTENCES["en"][0]).label == "und"


def test_shipped_model() -> None:
    lid = load_default_lid()
    card = default_model_card()
    assert sorted(lid.labels) == card["labels"] and len(card["labels"]) >= 30
    blob = _shipped("lid-small", ".ftz").read_bytes()
    assert len(blob) <= 3_000_000 and hashlib.sha256(blob).hexdigest() == card["sha256"]
    assert lid.model.quantized and {"en", "cmn", "ru", "ar", "ug"} <= set(lid.labels)
    expect = {
        "The weather is lovely today, so we are going for a walk in the park.": ("en", "en"),
        "今天天气很好，我们一起去公园散步吧。": ("cmn", "zh"),
        "Сегодня хорошая погода, поэтому мы идём гулять в парк.": ("ru", "ru"),
        "الطقس جميل اليوم، لذلك سنذهب للتنزه في الحديقة.": ("ar", "ar"),
    }
    for text, (label, macro) in expect.items():
        result = lid.identify(text)
        assert (result.label, result.macro, result.ipa_fallback) == (label, macro, False), text
    uyghur = lid.identify("بۈگۈن ھاۋا ناھايىتى ياخشى، بىز باغچىغا بارىمىز.")
    assert (uyghur.label, uyghur.ipa_fallback) == ("ug", True)
    tibetan = lid.identify("བཀྲ་ཤིས་བདེ་ལེགས། ང་བོད་ཡིག་སློབ་སྦྱོང་བྱེད་ཀྱི་ཡོད།")
    assert tibetan.label in ("bo", "dz") and tibetan.ipa_fallback  # see DEFAULT_IPA_FALLBACK
    assert json.loads(json.dumps(card))["hyperparameters"]["threads"] == 1
