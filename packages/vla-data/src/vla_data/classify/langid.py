"""Language identification on a fastText model: fine label, macrolanguage, IPA-fallback flag.

Fine labels are whatever the model predicts: the shipped ``lid-small`` model uses ISO 639-1
codes (ISO 639-3 where there is none) and ``cmn`` for Mandarin / Standard Written Chinese in
either script; external models such as fastText's ``lid.176`` use Wikipedia codes (``en``,
``zh``, ``yue``, ``wuu``, ``arz`` ...). `macro_language` maps any of these, and locale-style
labels (``zh_TW``, ``zh-Hant``, ``sr@latin``), to one macrolanguage code.

**IPA fallback.** `DEFAULT_IPA_FALLBACK` lists languages whose text also goes through the IPA
layer (phonemes): the Sinitic varieties other than Mandarin are written with the same Han
characters as Mandarin, so the text tokens do not carry how they are spoken (and they are what
the dialect speech data is in), and Uyghur and Tibetan are scarce in the text data and spelled far
from how they are pronounced, so the shared phonetic alphabet carries more of them than their own
script does. Dzongkha is listed with Tibetan: same script, same reasons, and the shipped model,
which saw ~16x more Dzongkha than Tibetan, labels much Tibetan text outside software-UI wording
``dz``. The shipped model has no offline training text for yue/wuu/nan/hak (see its model card):
telling those apart from Mandarin needs an external model (``lid.176`` knows yue and wuu).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from vla_data.classify.fasttext_model import FastTextClassifier

UNDETERMINED = "und"  # ISO 639 code for "undetermined"
DEFAULT_MODEL = "lid-small"

# ISO 639-3 (and 639-2/B) codes of the 184 languages that have an ISO 639-1 code (iso-codes 4.15).
_ISO3_TO_1 = """
aar:aa abk:ab afr:af aka:ak amh:am ara:ar arg:an asm:as ava:av ave:ae aym:ay aze:az bak:ba
bam:bm bel:be ben:bn bis:bi bod:bo bos:bs bre:br bul:bg cat:ca ces:cs cha:ch che:ce chu:cu
chv:cv cor:kw cos:co cre:cr cym:cy dan:da deu:de div:dv dzo:dz ell:el eng:en epo:eo est:et
eus:eu ewe:ee fao:fo fas:fa fij:fj fin:fi fra:fr fry:fy ful:ff gla:gd gle:ga glg:gl glv:gv
grn:gn guj:gu hat:ht hau:ha hbs:sh heb:he her:hz hin:hi hmo:ho hrv:hr hun:hu hye:hy ibo:ig
ido:io iii:ii iku:iu ile:ie ina:ia ind:id ipk:ik isl:is ita:it jav:jv jpn:ja kal:kl kan:kn
kas:ks kat:ka kau:kr kaz:kk khm:km kik:ki kin:rw kir:ky kom:kv kon:kg kor:ko kua:kj kur:ku
lao:lo lat:la lav:lv lim:li lin:ln lit:lt ltz:lb lub:lu lug:lg mah:mh mal:ml mar:mr mkd:mk
mlg:mg mlt:mt mon:mn mri:mi msa:ms mya:my nau:na nav:nv nbl:nr nde:nd ndo:ng nep:ne nld:nl
nno:nn nob:nb nor:no nya:ny oci:oc oji:oj ori:or orm:om oss:os pan:pa pli:pi pol:pl por:pt
pus:ps que:qu roh:rm ron:ro run:rn rus:ru sag:sg san:sa sin:si slk:sk slv:sl sme:se smo:sm
sna:sn snd:sd som:so sot:st spa:es sqi:sq srd:sc srp:sr ssw:ss sun:su swa:sw swe:sv tah:ty
tam:ta tat:tt tel:te tgk:tg tgl:tl tha:th tir:ti ton:to tsn:tn tso:ts tuk:tk tur:tr twi:tw
uig:ug ukr:uk urd:ur uzb:uz ven:ve vie:vi vol:vo wln:wa wol:wo xho:xh yid:yi yor:yo zha:za
zho:zh zul:zu
alb:sq arm:hy baq:eu bur:my chi:zh cze:cs dut:nl fre:fr geo:ka ger:de gre:el ice:is mac:mk
mao:mi may:ms per:fa rum:ro slo:sk tib:bo wel:cy
"""

# Members of ISO 639-3 macrolanguages that are usually treated as one language for data
# (Chinese, Arabic, Persian, Norwegian, ...). Deliberately absent: id (a member of `ms` in
# ISO 639-3), hr/bs/sr (of `sh`), and `als` (Tosk Albanian in ISO 639-3, Alemannic in lid.176).
_MEMBERS = {
    "zh": "cmn yue wuu nan hak gan hsn cjy cdo cpx czh czo mnp cnp csp lzh",
    "ar": "arb arz ary arq aeb apc ajp acm acq acw acx ayl ayn ayp ars afb apd abv shu ssh auz "
    "avl adf aec abh aao ayh pga",
    "fa": "pes prs",
    "ms": "zsm",
    "no": "nb nn nob nno",
    "et": "ekk",
    "lv": "lvs",
    "sq": "aln",
    "sw": "swh swc",
    "uz": "uzn uzs",
    "mn": "khk mvf",
    "ku": "kmr ckb sdh",
    "yi": "ydd yih",
    "az": "azj azb",
    "ne": "npi dty",
    "or": "ory",
    "ps": "pbt pbu pst",
    "mg": "plt",
    "gn": "gug",
    "kok": "gom",
}
_CHINESE_LOCALES = "zh_CN zh_TW zh_HK zh_SG zh_MO zh_Hans zh_Hant cmn_Hans cmn_Hant"


def _default_macro() -> dict[str, str]:
    table = dict(pair.split(":") for pair in _ISO3_TO_1.split())
    table.update({two: two for two in set(table.values())})
    for macro, members in _MEMBERS.items():
        table.update(dict.fromkeys(members.split(), macro))
    table.update(dict.fromkeys(_CHINESE_LOCALES.split(), "zh"))
    return dict(sorted(table.items()))


DEFAULT_MACRO: dict[str, str] = _default_macro()
"""Fine label -> macrolanguage (ISO 639-1 where one exists): ``cmn``/``yue``/``zh_TW`` -> ``zh``,
``deu`` -> ``de``, ``arz`` -> ``ar``, ``nb`` -> ``no``; every ISO 639-1 code maps to itself."""

# Sinitic varieties other than Mandarin (Cantonese, Wu, Southern Min, Hakka, Gan, Xiang, Jin,
# Eastern Min, Pu-Xian, Hui, Central Min), Uyghur, Tibetan and Dzongkha: see the module docstring.
DEFAULT_IPA_FALLBACK: frozenset[str] = frozenset(
    "yue wuu nan hak gan hsn cjy cdo cpx czh mnp ug bo dz".split()
)


def _base(label: str) -> str:
    return re.split(r"[-_@.]", label, maxsplit=1)[0].lower()


def macro_language(label: str, table: Mapping[str, str] = DEFAULT_MACRO) -> str:
    """The macrolanguage of a fine label; locale/script suffixes (``_TW``, ``-Hant``) ignored.

    The full label is looked up first, then its base code; an unknown base code is its own
    macrolanguage.
    """
    label = label.removeprefix("__label__")
    if label in table:
        return table[label]
    base = _base(label)
    return table.get(base, base)


@dataclass(frozen=True)
class LangResult:
    """One identification: fine label, its macrolanguage, probability, IPA flag, top-k."""

    label: str
    macro: str
    prob: float
    ipa_fallback: bool
    top: list[tuple[str, float]]


class LanguageID:
    """Language identification with any fastText LID model (default: the shipped ``lid-small``).

    ``macro`` replaces `DEFAULT_MACRO` and ``ipa_fallback`` replaces `DEFAULT_IPA_FALLBACK`. A top
    probability below ``min_prob`` (and empty text) gives the label ``und``.
    """

    def __init__(
        self,
        model: FastTextClassifier | str | Path | None = None,
        macro: dict[str, str] | None = None,
        ipa_fallback: Iterable[str] | None = None,
        min_prob: float = 0.0,
    ):
        if model is None:
            model = load_shipped_model()
        self.model = (
            model if isinstance(model, FastTextClassifier) else FastTextClassifier.load(model)
        )
        self.macro = DEFAULT_MACRO if macro is None else macro
        self.ipa_fallback = (
            DEFAULT_IPA_FALLBACK if ipa_fallback is None else frozenset(ipa_fallback)
        )
        if not 0.0 <= min_prob <= 1.0:
            raise ValueError(f"min_prob must be in [0, 1], got {min_prob}")
        self.min_prob = min_prob

    @property
    def labels(self) -> list[str]:
        """The fine labels the model can predict."""
        return self.model.labels

    def macro_of(self, label: str) -> str:
        """`macro_language` with this instance's table (``und`` stays ``und``)."""
        return macro_language(label, self.macro)

    def needs_ipa(self, label: str) -> bool:
        """Whether text in ``label`` gets the IPA layer (label, base code or its macro listed)."""
        base = _base(label)
        return bool({label, base, self.macro.get(base, base)} & self.ipa_fallback)

    def _result(self, top: list[tuple[str, float]]) -> LangResult:
        if not top or top[0][1] < self.min_prob:
            return LangResult(UNDETERMINED, UNDETERMINED, top[0][1] if top else 0.0, False, top)
        label, prob = top[0]
        return LangResult(label, self.macro_of(label), prob, self.needs_ipa(label), top)

    def identify(self, text: str, k: int = 3) -> LangResult:
        """Identify the language of ``text``; ``top`` holds the ``k`` best fine labels."""
        return self._result(self.model.predict(text, k=k))

    def identify_batch(self, texts: Sequence[str], k: int = 3) -> list[LangResult]:
        """`identify` for many texts in one fastText call."""
        return [self._result(top) for top in self.model.predict_batch(texts, k=k)]


def _shipped(name: str, suffix: str) -> Traversable:
    return resources.files("vla_data").joinpath("models", f"{name}{suffix}")


def load_shipped_model(name: str = DEFAULT_MODEL) -> FastTextClassifier:
    """A model shipped in ``vla_data/models`` (``<name>.ftz``)."""
    with resources.as_file(_shipped(name, ".ftz")) as path:
        return FastTextClassifier.load(path)


def default_model_card(name: str = DEFAULT_MODEL) -> dict:
    """The model card (``<name>.json``) of a shipped model."""
    return json.loads(_shipped(name, ".json").read_text("utf-8"))


@functools.cache
def load_default_lid() -> LanguageID:
    """The shipped ``lid-small`` model with the default macro table and IPA set (cached)."""
    return LanguageID(load_shipped_model())
