"""Text stages: adapters from the filters in `vla_data.textfilters` to the pipeline's shape."""

from __future__ import annotations

from vla_data.pipeline.stage import Outcome, Stage, Threshold, register, sample_text
from vla_data.sample import Sample


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
