from __future__ import annotations

import pytest

from vla_tokenizers.ipa import (
    IpaError,
    backend,
    espeak_voice,
    fit_inventory,
    ipa_symbols,
    phonemize,
)


def test_one_shared_backend_per_voice():
    assert backend("en-us") is backend("en-us")
    assert espeak_voice("en") == "en-us" and espeak_voice("zh") == "cmn"
    assert espeak_voice("yue") == "yue" and espeak_voice("xx-unknown") is None


def test_phonemize_keeps_one_output_per_input():
    out = phonemize(["Hello world.", "", "Line one\nline two", "!!!"], "en")
    assert len(out) == 4 and out[1] == "" and "h" in out[0] and out[3] == ""
    with pytest.raises(IpaError, match="no voice"):
        phonemize(["x"], "xx-unknown")


def test_symbols_group_diacritics_and_length():
    assert ipa_symbols("t͡ʃˈaːtʰ ə") == ["t͡ʃ", "ˈ", "aː", "tʰ", " ", "ə"]
    assert "".join(ipa_symbols("tɕhˈy5 ŋ̍")) == "tɕhˈy5 ŋ̍"


def test_inventory_is_fitted_from_phonemizer_output(bundle):
    inv = bundle.stats.ipa
    assert {"en", "zh", "yue", "de"} <= set(inv.languages)
    assert inv.fitted_strings > 0
    assert "ə" in inv.symbols and "aː" in inv.symbols
    assert len(inv.symbols) <= bundle.layout.range("ipa").size
    small = fit_inventory(["ab", "ba", "aa"], 40)
    assert small.symbols[:2] == ["a", "b"] and len(small.symbols) == 40


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("The train was delayed by twenty minutes because of fog.", "en"),
        ("今天早上雾很大，去海边的火车晚了二十分钟。", "zh"),
        ("你食咗飯未呀？我哋一陣去飲茶啦。", "yue"),
        ("Der Zug nach Hamburg fährt heute von Gleis sieben ab.", "de"),
    ],
)
def test_ipa_round_trip_is_exact(bundle, text, lang):
    ipa = phonemize([text], lang)[0]
    ids = bundle.ipa.encode(ipa)
    r = bundle.layout.range("ipa")
    assert all(i in r for i in ids)  # every symbol is in the fitted inventory
    assert bundle.ipa.decode(ids) == ipa


def test_unknown_symbols_fall_back_to_text_and_stay_exact(bundle):
    weird = "ǃxóõ ʘ̃ 🙂 q͡ʟ̥ ˥˩"
    ids = bundle.ipa.encode(weird)
    assert any(i < bundle.layout.text_size for i in ids)
    assert bundle.ipa.decode(ids) == weird
