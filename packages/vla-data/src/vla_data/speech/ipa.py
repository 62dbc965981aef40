"""IPA layer: phonemizer's espeak-ng backend (library and data from `espeakng-loader`, no apt).

One `EspeakBackend` per espeak voice per process, created on first use and reused by every call
(`backend_count()` tells how many were ever created); espeak-ng is not re-entrant, so calls are
serialised by a lock. Language labels map to voices: `en` -> `en-us`, `zh`/`cmn` -> `cmn`,
`yue`, `hak`, ... (`VOICES`; espeak-ng 1.52 has no Min Nan or Wu voice); any espeak voice name
is accepted as is.

`ipa_layer(transcript, language)` gives the `IpaLayer` stored beside a transcript:

- `words`: the transcript's words: runs of letters/digits (apostrophes and hyphens inside a word
  kept), split at spaces and punctuation; each Han character and kana is a word of its own
  (Chinese and Japanese do not write spaces);
- `ipa`: the utterance phonemized in one piece (context matters: tone sandhi, liaison, numbers),
  words separated by spaces, stress marks kept;
- alignment: `aligned` when the utterance IPA has exactly as many words as the transcript (then
  `word_ipa` are its words); otherwise `isolated`, and `word_ipa` holds each word phonemized on
  its own (all words in one backend call), so every word still has its IPA;
- `foreign_words`: words espeak read with another voice (it writes `(en)...(cmn)` flags,
  stripped from the output), e.g. English words in a Chinese transcript, and Han characters
  under a voice that cannot read them: espeak's `hak` voice reads romanised Hakka only, and Han
  text comes out as the English words "Chinese letter" (flagged under `hak`, unflagged under
  `en`) - counted so such IPA can be filtered.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata

from vla_data.sample import IpaLayer

VOICES = {
    "en": "en-us",
    "zh": "cmn",
    "cmn": "cmn",
    "yue": "yue",
    "hak": "hak",
    "fr": "fr-fr",
    "pt": "pt",
    "es": "es",
    "de": "de",
    "ja": "ja",
    "ko": "ko",
    "vi": "vi",
    "ar": "ar",
    "hi": "hi",
    "ru": "ru",
    "nb": "nb",
    "no": "nb",
}
_FLAG = re.compile(r"\(([a-z][a-z0-9\-]*)\)")
HAN_VOICES = frozenset({"cmn", "yue", "cmn-latn-pinyin", "ja"})
_LOCK = threading.Lock()
_BACKENDS: dict[str, object] = {}
_CREATED = [0]
_READY: dict[str, object] = {}


class IpaError(ValueError):
    pass


def _setup() -> None:
    if _READY:
        return
    import espeakng_loader
    import phonemizer
    from phonemizer.backend import EspeakBackend
    from phonemizer.backend.espeak.wrapper import EspeakWrapper

    EspeakWrapper.set_library(espeakng_loader.get_library_path())
    EspeakWrapper.set_data_path(espeakng_loader.get_data_path())
    _READY["voices"] = set(EspeakBackend.supported_languages())
    version = ".".join(str(v) for v in EspeakBackend.version())
    _READY["backend"] = f"espeak-ng {version} via phonemizer {phonemizer.__version__}"


def backend_name() -> str:
    with _LOCK:
        _setup()
    return str(_READY["backend"])


def espeak_voice(language: str | None) -> str | None:
    """The espeak-ng voice for a language label (or voice name), or None if espeak has none."""
    if not language:
        return None
    with _LOCK:
        _setup()
    voices: set[str] = _READY["voices"]  # type: ignore[assignment]
    label = language.strip().replace("_", "-").lower()
    if label in voices:
        return label
    base = label.split("-")[0].split("@")[0]
    voice = VOICES.get(base, base)
    return voice if voice in voices else None


def backend(voice: str):
    """The process-wide `EspeakBackend` for `voice` (created once, on first use)."""
    with _LOCK:
        return _backend_locked(voice)


def _backend_locked(voice: str):
    b = _BACKENDS.get(voice)
    if b is None:
        _setup()
        from phonemizer.backend import EspeakBackend

        quiet = logging.getLogger("vla_data.phonemizer")
        quiet.setLevel(logging.ERROR)
        b = EspeakBackend(
            voice,
            preserve_punctuation=False,
            with_stress=True,
            language_switch="keep-flags",
            words_mismatch="ignore",
            logger=quiet,
        )
        _BACKENDS[voice] = b
        _CREATED[0] += 1
    return b


def backend_count() -> int:
    """How many backends this process has created (one per voice used)."""
    return _CREATED[0]


def _phonemize_raw(lines: list[str], voice: str) -> list[str]:
    from phonemizer.separator import Separator

    out = [""] * len(lines)
    todo = [i for i, t in enumerate(lines) if t.strip()]
    if not todo:
        return out
    with _LOCK:
        b = _backend_locked(voice)
        result = b.phonemize(
            [" ".join(lines[i].split()) for i in todo],
            separator=Separator(phone="", word=" ", syllable=""),
            strip=True,
        )
    for i, r in zip(todo, result, strict=True):
        out[i] = " ".join(r.split())
    return out


def _strip_flags(ipa: str, voice: str) -> tuple[str, int]:
    """IPA without language-switch flags, and how many words were (partly) read in another voice.

    espeak writes `(xx)` where it switches to voice xx and `(voice)` where it switches back.
    """
    home = {voice, voice.split("-")[0]}
    foreign_state = False
    flagged = 0
    for word in ipa.split():
        pieces = _FLAG.split(word)  # text, flag, text, flag, ...
        word_foreign = False
        for k, piece in enumerate(pieces):
            if k % 2:
                foreign_state = piece not in home
            elif piece and foreign_state:
                word_foreign = True
        flagged += word_foreign
    clean = " ".join(t for t in (_FLAG.sub("", w) for w in ipa.split()) if t)
    return clean, flagged


def phonemize(texts: list[str], language: str) -> list[str]:
    """IPA of each text (language-switch flags removed); one backend per voice, reused."""
    voice = espeak_voice(language)
    if voice is None:
        raise IpaError(f"espeak-ng has no voice for language {language!r}")
    return [_strip_flags(r, voice)[0] for r in _phonemize_raw(list(texts), voice)]


def _is_cjk(ch: str) -> bool:
    o = ord(ch)
    return (
        0x3400 <= o <= 0x4DBF
        or 0x4E00 <= o <= 0x9FFF
        or 0xF900 <= o <= 0xFAFF
        or 0x20000 <= o <= 0x3134F
        or 0x3040 <= o <= 0x30FF  # hiragana, katakana
    )


def transcript_words(text: str) -> list[str]:
    """Words of a transcript (see module doc): CJK characters one by one, others by runs."""
    words: list[str] = []
    cur: list[str] = []

    def flush() -> None:
        if cur:
            word = "".join(cur).strip("'’-")
            if word:
                words.append(word)
            cur.clear()

    for ch in unicodedata.normalize("NFC", text):
        if _is_cjk(ch):
            flush()
            words.append(ch)
            continue
        cat = unicodedata.category(ch)
        if ch in "'’-" and cur or cat[0] in "LMN":
            cur.append(ch)
        else:  # space, punctuation, symbols
            flush()
    flush()
    return words


def ipa_layer(transcript: str, language: str) -> IpaLayer:
    """The IPA layer of `transcript` in `language` (raises `IpaError` without an espeak voice)."""
    voice = espeak_voice(language)
    if voice is None:
        raise IpaError(f"espeak-ng has no voice for language {language!r}")
    words = transcript_words(transcript)
    name = backend_name()
    if not words:
        return IpaLayer(
            language=language,
            voice=voice,
            backend=name,
            ipa="",
            words=[],
            word_ipa=[],
            alignment="empty",
            transcript_words=0,
            ipa_words=0,
        )
    raw = _phonemize_raw([transcript], voice)[0]
    ipa, foreign = _strip_flags(raw, voice)
    if voice not in HAN_VOICES:  # e.g. en reads a Han character as "Chinese letter", unflagged
        foreign = max(foreign, sum(1 for w in words if len(w) == 1 and _is_cjk(w)))
    ipa_words = ipa.split()
    if len(ipa_words) == len(words):
        alignment, word_ipa = "aligned", ipa_words
    else:
        alignment = "isolated"
        word_ipa = [_strip_flags(w, voice)[0] for w in _phonemize_raw(words, voice)]
    return IpaLayer(
        language=language,
        voice=voice,
        backend=name,
        ipa=ipa,
        words=words,
        word_ipa=word_ipa,
        alignment=alignment,
        transcript_words=len(words),
        ipa_words=len(ipa_words),
        foreign_words=foreign,
    )
