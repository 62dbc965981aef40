"""Pure text-quality heuristics and PII redaction (standard library only).

Every filter is a frozen dataclass of thresholds with ``measure`` / ``decide`` / ``check``
(see :mod:`vla_data.textfilters.base`); reasons are stable ``<family>_<rule>`` strings.
"""

from vla_data.textfilters.base import FilterResult, TextFilter
from vla_data.textfilters.c4 import C4Cleaned, C4QualityFilter
from vla_data.textfilters.fineweb import FineWebQualityFilter
from vla_data.textfilters.gopher import (
    DEFAULT_STOP_WORDS,
    EN_STOP_WORDS,
    ZH_STOP_WORDS,
    GopherQualityFilter,
    GopherRepetitionFilter,
)
from vla_data.textfilters.keywords import (
    DEFAULT_AD_SPAM_TERMS,
    KeywordFilter,
    KeywordMatcher,
    c4_badwords_filter,
    load_terms,
)
from vla_data.textfilters.pii import PII_TYPES, PiiMatch, PiiRedactor, detect_pii, redact
from vla_data.textfilters.words import (
    count_sentences,
    count_words,
    split_sentences,
    split_words,
)

__all__ = [
    "C4Cleaned",
    "C4QualityFilter",
    "DEFAULT_AD_SPAM_TERMS",
    "DEFAULT_STOP_WORDS",
    "EN_STOP_WORDS",
    "FilterResult",
    "FineWebQualityFilter",
    "GopherQualityFilter",
    "GopherRepetitionFilter",
    "KeywordFilter",
    "KeywordMatcher",
    "PII_TYPES",
    "PiiMatch",
    "PiiRedactor",
    "TextFilter",
    "ZH_STOP_WORDS",
    "c4_badwords_filter",
    "count_sentences",
    "count_words",
    "detect_pii",
    "load_terms",
    "redact",
    "split_sentences",
    "split_words",
]
