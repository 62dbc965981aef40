"""IPA: phonemizer (espeak-ng) output as a symbol-inventory token range, exactly reversible.

`phonemize(texts, language)` runs espeak-ng through phonemizer with one shared backend per
voice (created once per process, reused by every call; espeak-ng is not re-entrant, so calls are
serialised by a lock). Language labels from vla-data (`en`, `zh`, `yue`, `de-CH`, ...) map to
espeak voices via `espeak_voice`.

An IPA string is cut into symbols: a base character with its combining marks (a tie bar joins
the next character) and trailing length/secondary-articulation modifiers (`tʃ`, `aː`, `tʰ`,
`t͡ʃ`). The inventory (`IpaInventory`) lists the symbols seen in phonemizer output by frequency,
then single IPA code points as a base set, up to the `ipa` range size. A symbol outside the
inventory is written as text BPE ids inside the IPA span, so every string round-trips exactly.
"""

from __future__ import annotations

import logging
import threading
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence

from pydantic import BaseModel, Field

# vla-data language label (base) -> espeak-ng voice
VOICES = {
    "en": "en-us",
    "zh": "cmn",
    "cmn": "cmn",
    "yue": "yue",
    "hak": "hak",
    "fr": "fr-fr",
    "pt": "pt",
    "vi": "vi",
    "fa": "fa",
    "ms": "ms",
    "nb": "nb",
    "no": "nb",
}

_MODIFIERS = set("ːˑʰʲʷˠˤⁿˡ̚ʼ˞")
_TIE = {"\u0361", "\u035c"}


class IpaError(ValueError):
    pass


def espeak_voice(language: str | None) -> str | None:
    """espeak-ng voice for a language label, or None when espeak has none."""
    if not language:
        return None
    _setup_espeak()
    supported = _supported()
    label = language.replace("_", "-").lower()
    if label in supported:
        return label
    base = label.split("-")[0].split("@")[0]
    voice = VOICES.get(base, base)
    return voice if voice in supported else None


_LOCK = threading.Lock()
_BACKENDS: dict[str, object] = {}
_SUPPORTED: set[str] | None = None
_READY = False


def _setup_espeak() -> None:
    global _READY
    if _READY:
        return
    import espeakng_loader
    from phonemizer.backend.espeak.wrapper import EspeakWrapper

    EspeakWrapper.set_library(espeakng_loader.get_library_path())
    EspeakWrapper.set_data_path(espeakng_loader.get_data_path())
    _READY = True


def _supported() -> set[str]:
    global _SUPPORTED
    if _SUPPORTED is None:
        from phonemizer.backend import EspeakBackend

        _SUPPORTED = set(EspeakBackend.supported_languages())
    return _SUPPORTED


def backend(voice: str):
    """The process-wide espeak backend for `voice` (created on first use)."""
    with _LOCK:
        b = _BACKENDS.get(voice)
        if b is None:
            _setup_espeak()
            from phonemizer.backend import EspeakBackend

            quiet = logging.getLogger("vla_tokenizers.phonemizer")
            quiet.setLevel(logging.ERROR)
            b = EspeakBackend(
                voice,
                preserve_punctuation=False,
                with_stress=True,
                language_switch="remove-flags",
                words_mismatch="ignore",
                logger=quiet,
            )
            _BACKENDS[voice] = b
        return b


def phonemize(texts: Sequence[str], language: str) -> list[str]:
    """IPA of each text (one output per input; newlines inside a text are treated as spaces)."""
    voice = espeak_voice(language)
    if voice is None:
        raise IpaError(f"espeak-ng has no voice for language {language!r}")
    from phonemizer.separator import Separator

    b = backend(voice)
    lines = [" ".join(t.split()) for t in texts]
    todo = [i for i, t in enumerate(lines) if t]
    out = [""] * len(lines)
    if todo:
        with _LOCK:
            result = b.phonemize(
                [lines[i] for i in todo], separator=Separator(phone="", word=" "), strip=True
            )
        for i, r in zip(todo, result, strict=True):
            out[i] = r
    return out


def ipa_symbols(ipa: str) -> list[str]:
    """Cut an IPA string into symbols (base + combining marks / tie + modifiers)."""
    out: list[str] = []
    i, n = 0, len(ipa)
    while i < n:
        j = i + 1
        while j < n:
            c = ipa[j]
            if c in _TIE and j + 1 < n:
                j += 2
            elif unicodedata.combining(c) or c in _MODIFIERS:
                j += 1
            else:
                break
        out.append(ipa[i:j])
        i = j
    return out


def base_symbols() -> list[str]:
    """Single code points always in the inventory (after the fitted symbols), in a fixed order."""
    chars = [" ", ".", "-", "ˈ", "ˌ", "ː", "|", "‖"]
    chars += [chr(c) for c in range(ord("a"), ord("z") + 1)]
    chars += [str(d) for d in range(10)]
    chars += [chr(c) for c in range(0x0250, 0x02B0)]  # IPA extensions
    chars += [chr(c) for c in range(0x02B0, 0x0300)]  # spacing modifier letters
    chars += list("æçðøŋœβθχɐᵻᵿ")
    seen: set[str] = set()
    return [c for c in chars if not (c in seen or seen.add(c))]


class IpaInventory(BaseModel):
    symbols: list[str] = Field(default_factory=list)
    languages: list[str] = Field(default_factory=list)
    fitted_strings: int = 0


def fit_inventory(
    ipa_strings: Iterable[str], size: int, languages: Sequence[str] = ()
) -> IpaInventory:
    """Inventory: symbols seen (most frequent first), then the base code points, `size` at most."""
    counts: Counter[str] = Counter()
    n = 0
    for s in ipa_strings:
        counts.update(ipa_symbols(s))
        n += 1
    symbols = [s for s, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    seen = set(symbols)
    symbols += [c for c in base_symbols() if c not in seen]
    return IpaInventory(symbols=symbols[:size], languages=list(languages), fitted_strings=n)


class IpaTokenizer:
    """IPA string <-> ids (ipa range ids; text BPE ids for symbols outside the inventory)."""

    def __init__(self, layout, text, inventory: IpaInventory):
        self.r = layout.range("ipa")
        if len(inventory.symbols) > self.r.size:
            raise IpaError(
                f"IPA inventory has {len(inventory.symbols)} symbols but the layout reserves {self.r.size}"
            )
        self.text, self.text_size = text, layout.text_size
        self.symbols = inventory.symbols
        self.index = {s: self.r.start + i for i, s in enumerate(inventory.symbols)}

    def encode(self, ipa: str) -> list[int]:
        out: list[int] = []
        unknown: list[str] = []
        for sym in ipa_symbols(ipa):
            tid = self.index.get(sym)
            if tid is None:
                unknown.append(sym)
                continue
            if unknown:
                out += self.text.encode("".join(unknown))
                unknown = []
            out.append(tid)
        if unknown:
            out += self.text.encode("".join(unknown))
        return out

    def decode(self, ids: Sequence[int]) -> str:
        parts: list[str] = []
        run: list[int] = []
        for t in ids:
            t = int(t)
            if t < self.text_size:
                run.append(t)
                continue
            if run:
                parts.append(self.text.decode(run))
                run = []
            if t not in self.r:
                raise IpaError(f"token {t} is neither an IPA symbol nor text")
            local = t - self.r.start
            if local >= len(self.symbols):
                raise IpaError(f"IPA token {t} is beyond the fitted inventory")
            parts.append(self.symbols[local])
        if run:
            parts.append(self.text.decode(run))
        return "".join(parts)
