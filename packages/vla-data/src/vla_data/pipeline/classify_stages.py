"""fastText stages: language identification (with macro table and IPA flag) and classifiers."""

from __future__ import annotations

from vla_data.classify import FastTextClassifier, LanguageID
from vla_data.pipeline.stage import Outcome, Stage, Threshold, register, sample_text
from vla_data.sample import Sample


@register
class LanguageIdStage(Stage):
    """Sets `meta.language` (fine label) and `meta.ipa_fallback`; counts languages by macro.

    `model`: a fastText LID model path (default: the shipped lid-small; lid.176.bin works).
    `keep`: macro or fine labels to keep (default: all). `min_prob`: below it, dropped.
    """

    type = "language_id"
    thresholds = (Threshold("prob", "min_prob", "min"),)

    def __init__(
        self,
        name: str,
        seed: int = 0,
        model: str | None = None,
        keep: list[str] | None = None,
        min_prob: float = 0.0,
        macro: dict[str, str] | None = None,
        ipa_fallback: list[str] | None = None,
    ):
        super().__init__(name, seed)
        self.lid = LanguageID(model, macro=macro, ipa_fallback=ipa_fallback)
        self.keep = frozenset(keep) if keep else None
        self.min_prob = min_prob

    def apply(self, sample: Sample) -> Outcome:
        result = self.lid.identify(sample_text(sample))
        scores = {"prob": result.prob}
        counters = {f"lang_{result.macro}": 1}
        if result.prob < self.min_prob:
            return Outcome.dropped("language_low_confidence", scores, counters)
        if self.keep is not None and not {result.macro, result.label} & self.keep:
            return Outcome.dropped("language_not_kept", scores, counters)
        meta = sample.meta.model_copy(
            update={"language": result.label, "ipa_fallback": result.ipa_fallback}
        )
        return Outcome.kept(scores, counters, sample.with_payloads({}, meta=meta))


@register
class FastTextLabel(Stage):
    """A supervised fastText classifier (quality, topic, toxicity): keeps a sample when the
    probability of `label` is at least `min_prob` (or, with `drop_label`, drops it when the
    probability of that label reaches `min_prob`)."""

    type = "fasttext"
    thresholds = (Threshold("prob", "min_prob", "min"),)

    def __init__(
        self, name: str, seed: int = 0, model: str = "", label: str = "", min_prob: float = 0.5,
        drop_label: bool = False,
    ):
        super().__init__(name, seed)
        self.model = FastTextClassifier.load(model)
        if label not in self.model.labels:
            raise ValueError(f"{model}: no label {label!r} (has {', '.join(self.model.labels)})")
        self.label, self.min_prob, self.drop_label = label, min_prob, drop_label
        if drop_label:
            self.thresholds = (Threshold("prob", "min_prob", "max"),)

    def apply(self, sample: Sample) -> Outcome:
        probs = dict(self.model.predict(sample_text(sample), k=len(self.model.labels)))
        prob = probs.get(self.label, 0.0)
        scores = {"prob": prob}
        if self.drop_label and prob >= self.min_prob:
            return Outcome.dropped(f"{self.name}_{self.label}", scores)
        if not self.drop_label and prob < self.min_prob:
            return Outcome.dropped(f"{self.name}_below_threshold", scores)
        return Outcome.kept(scores)
