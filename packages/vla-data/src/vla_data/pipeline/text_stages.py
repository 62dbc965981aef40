"""Text stages: adapters from the filters in `vla_data.textfilters` to the pipeline's shape."""

from __future__ import annotations

from typing import ClassVar

from vla_data.pipeline.stage import (
    Outcome,
    Stage,
    Threshold,
    register,
    replace_text,
    sample_text,
)
from vla_data.sample import Sample
from vla_data.textfilters import (
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
    KeywordFilter,
    PiiRedactor,
    load_terms,
)


@register
class TextLength(Stage):
    """Drop texts shorter than `min_chars` or longer than `max_chars` (after stripping)."""

    type = "text_length"
    thresholds = (Threshold("chars", "min_chars", "min"), Threshold("chars", "max_chars", "max"))

    def __init__(self, name: str, seed: int = 0, min_chars: int = 1, max_chars: int = 10_000_000):
        super().__init__(name, seed)
        if min_chars < 0 or max_chars < min_chars:
            raise ValueError(f"need 0 <= min_chars <= max_chars; got {min_chars}, {max_chars}")
        self.min_chars, self.max_chars = min_chars, max_chars

    def apply(self, sample: Sample) -> Outcome:
        chars = len(sample_text(sample).strip())
        scores = {"chars": chars}
        if chars < self.min_chars:
            return Outcome.dropped("too_short", scores)
        if chars > self.max_chars:
            return Outcome.dropped("too_long", scores)
        return Outcome.kept(scores)


def _tuples(value):
    """TOML arrays arrive as lists; the filters' dataclasses want (nested) tuples."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: frozenset(v) if isinstance(v, list) else _tuples(v) for k, v in value.items()}
    return value


class TextFilterStage(Stage):
    """Adapter: a `vla_data.textfilters` filter (`check(text, language)`) as a pipeline stage.

    Parameters are the filter's own fields. Scores go to the ledger under `<stage>.<score>`.
    """

    filter_cls: ClassVar[type]

    def __init__(self, name: str, seed: int = 0, **params):
        super().__init__(name, seed)
        try:
            self.filter = self.filter_cls(**{k: _tuples(v) for k, v in params.items()})
        except TypeError as e:
            raise ValueError(f"{self.type}: {e}") from None

    def param_value(self, param: str):
        return getattr(self.filter, param, None)

    def apply(self, sample: Sample) -> Outcome:
        result = self.filter.check(sample_text(sample), sample.meta.language)
        if result.keep:
            return Outcome.kept(result.scores)
        return Outcome.dropped(result.reason, result.scores)


@register
class GopherQuality(TextFilterStage):
    """Gopher quality rules (Rae et al. 2021), CJK-aware."""

    type = "gopher_quality"
    filter_cls = GopherQualityFilter
    thresholds = (
        Threshold("gopher_n_words", "min_doc_words", "min"),
        Threshold("gopher_avg_word_length", "min_avg_word_length", "min"),
        Threshold("gopher_hash_ratio", "max_symbol_word_ratio", "max"),
        Threshold("gopher_bullet_lines_ratio", "max_bullet_lines_ratio", "max"),
        Threshold("gopher_end_ellipsis_lines_ratio", "max_ellipsis_lines_ratio", "max"),
        Threshold("gopher_alpha_words_ratio", "max_non_alpha_words_ratio", "min"),
        Threshold("gopher_stop_words", "min_stop_words", "min"),
    )


@register
class GopherRepetition(TextFilterStage):
    """Gopher repetition rules: duplicate lines/paragraphs and n-gram character fractions."""

    type = "gopher_repetition"
    filter_cls = GopherRepetitionFilter
    thresholds = tuple(
        Threshold(f"gopher_{p}", p, "max")
        for p in ("dup_line_frac", "dup_para_frac", "dup_line_char_frac", "dup_para_char_frac")
    )


@register
class FineWebQuality(TextFilterStage):
    """FineWeb's line-punctuation, short-line, duplicate-character and newline rules."""

    type = "fineweb_quality"
    filter_cls = FineWebQualityFilter
    thresholds = (
        Threshold("fineweb_line_punct_ratio", "line_punct_thr", "min"),
        Threshold("fineweb_short_line_ratio", "short_line_thr", "max"),
        Threshold("fineweb_char_dup_ratio", "char_duplicates_ratio", "max"),
        Threshold("fineweb_new_line_ratio", "new_line_ratio", "max"),
    )


@register
class C4Quality(TextFilterStage):
    """C4 rules: with `clean` (default) offending lines are removed, then the page is judged."""

    type = "c4_quality"
    filter_cls = C4QualityFilter
    thresholds = (Threshold("c4_sentences", "min_num_sentences", "min"),)

    def __init__(self, name: str, seed: int = 0, clean: bool = True, **params):
        super().__init__(name, seed, **params)
        self.clean = clean

    def apply(self, sample: Sample) -> Outcome:
        if not self.clean:
            return super().apply(sample)
        cleaned = self.filter.clean(sample_text(sample))
        result = cleaned.result
        if not result.keep:
            return Outcome.dropped(result.reason, result.scores)
        counters = {"lines_removed": len(cleaned.removed)}
        new = replace_text(sample, cleaned.text, f"op:{self.name}") if cleaned.removed else None
        return Outcome.kept(result.scores, counters, new)


@register
class Keywords(TextFilterStage):
    """Keyword lists (ads/spam/toxicity): hits and hits per 1000 words; `files` adds lists."""

    type = "keywords"
    filter_cls = KeywordFilter

    def __init__(self, name: str, seed: int = 0, files: list[str] | None = None, **params):
        if files:
            params["terms"] = tuple(params.get("terms", ())) + tuple(load_terms(*files))
        super().__init__(name, seed, **params)
        prefix = self.filter.name
        self.thresholds = (
            Threshold(f"{prefix}_hits_per_1k_words", "max_hits_per_1k_words", "max"),
            Threshold(f"{prefix}_hits", "max_hits", "max"),
        )


@register
class PiiRedact(TextFilterStage):
    """Redacts emails, phones, IPs, CN resident IDs and payment cards; counts per type.

    Drops a document only when `max_matches_per_1k_words` is set and exceeded.
    """

    type = "pii_redact"
    filter_cls = PiiRedactor
    thresholds = (Threshold("pii_per_1k_words", "max_matches_per_1k_words", "max"),)

    def apply(self, sample: Sample) -> Outcome:
        text = sample_text(sample)
        result = self.filter.check(text, sample.meta.language)
        if not result.keep:
            return Outcome.dropped(result.reason, result.scores)
        redacted, counts = self.filter.redact(text)
        counters = {kind.lower(): n for kind, n in counts.items() if n}
        new = replace_text(sample, redacted, f"op:{self.name}") if redacted != text else None
        return Outcome.kept(result.scores, counters, new)


@register
class WorkedMath(Stage):
    """Drop texts whose worked arithmetic is wrong (`vla_data.textbook.check_equations`):
    more than `max_wrong` steps ``<expression> = <number>`` that do not hold. Scores the number
    of steps found and wrong; texts without steps pass (`min_equations` to require them)."""

    type = "worked_math"
    thresholds = (Threshold("wrong", "max_wrong", "max"),)

    def __init__(self, name: str, seed: int = 0, max_wrong: int = 0, min_equations: int = 0):
        super().__init__(name, seed)
        self.max_wrong, self.min_equations = max_wrong, min_equations

    def apply(self, sample: Sample) -> Outcome:
        from vla_data.textbook import check_equations

        steps = check_equations(sample_text(sample))
        wrong = sum(not e.ok for e in steps)
        scores = {"equations": len(steps), "wrong": wrong}
        counters = {"equations": len(steps), "wrong_steps": wrong}
        if wrong > self.max_wrong:
            return Outcome.dropped("worked_math_wrong_step", scores, counters)
        if len(steps) < self.min_equations:
            return Outcome.dropped("worked_math_too_few_steps", scores, counters)
        return Outcome.kept(scores, counters)
