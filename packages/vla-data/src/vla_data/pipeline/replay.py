"""Threshold replay: what a stage would keep at other thresholds, before paying for a re-run.

Against a labelled sample (JSONL: `text` and `label` — 1/true/"keep" for records that should be
kept), the stage is run once to get each record's score; sweeping the threshold then gives
precision and recall of "kept" and the kept fraction. With a filtered dataset folder, the kept
fraction on the real data comes from the scores its ledger recorded (run with `score_all` to
have every record scored by every stage).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vla_data.ledger import read_ledger
from vla_data.pipeline.config import PipelineConfig
from vla_data.pipeline.stage import Stage, Threshold
from vla_data.sample import Sample, TextMeta

_TRUE = {"1", "true", "keep", "good", "yes", "pos", "positive"}
_FALSE = {"0", "false", "drop", "bad", "no", "neg", "negative"}


@dataclass
class ReplayCurve:
    stage: str
    score: str
    direction: str
    current: float | None
    thresholds: list[float]
    precision: list[float]
    recall: list[float]
    kept_fraction: list[float]
    dataset_kept_fraction: list[float] | None
    labelled: int
    positives: int

    def best_f1(self) -> dict:
        p, r = np.array(self.precision), np.array(self.recall)
        f1 = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0.0)
        i = int(np.argmax(f1))
        return {
            "threshold": self.thresholds[i],
            "f1": float(f1[i]),
            "precision": float(p[i]),
            "recall": float(r[i]),
        }


def _label(value, path: Path, line: int) -> bool:
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{path}:{line}: label {value!r} is not one of keep/drop, 1/0, true/false")


def read_labelled(path: str | Path, text_field: str = "text", label_field: str = "label"):
    """(texts, labels) from a labelled JSONL file; errors name the file and line."""
    path = Path(path)
    texts, labels = [], []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{line_no}: invalid JSON: {e.msg}") from None
            if not isinstance(obj.get(text_field), str) or label_field not in obj:
                raise ValueError(
                    f"{path}:{line_no}: needs a string {text_field!r} and a {label_field!r}"
                )
            texts.append(obj[text_field])
            labels.append(_label(obj[label_field], path, line_no))
    if not texts or all(labels) or not any(labels):
        raise ValueError(f"{path}: needs labelled records of both classes")
    return texts, np.array(labels)


def _scores(stage: Stage, score: str, texts: list[str]) -> np.ndarray:
    values = []
    for i, text in enumerate(texts):
        sample = Sample.create(
            id=f"labelled-{i}",
            source="replay",
            license="unknown",
            meta=TextMeta(chars=len(text)),
            payloads={"txt": text.encode()},
        )
        outcome = stage.apply(sample)
        values.append(outcome.scores.get(score, np.nan))
    return np.array(values, dtype=np.float64)


def _keeps(threshold: Threshold, scores: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Boolean matrix (thresholds × records): kept at each threshold; unscored records are kept."""
    s = scores[None, :]
    t = values[:, None]
    kept = s >= t if threshold.direction == "min" else s <= t
    return kept | np.isnan(s)


def replay(
    config: PipelineConfig,
    stage_name: str,
    score: str,
    labelled: str | Path,
    dataset: str | Path | None = None,
    points: int = 101,
) -> ReplayCurve:
    """Sweep one scored stage's threshold against a labelled sample (and a dataset's scores)."""
    stages = {s.name: s for s in config.build()}
    if stage_name not in stages:
        raise ValueError(f"no stage {stage_name!r} in the pipeline (has: {', '.join(stages)})")
    stage = stages[stage_name]
    try:
        threshold = stage.threshold(score)
    except KeyError as e:
        raise ValueError(e.args[0]) from None
    texts, labels = read_labelled(labelled)
    scores = _scores(stage, score, texts)
    finite = scores[np.isfinite(scores)]
    if finite.size == 0:
        raise ValueError(f"stage {stage_name!r} gave no {score!r} score on the labelled sample")
    values = np.unique(np.quantile(finite, np.linspace(0, 1, points)))
    kept = _keeps(threshold, scores, values)
    tp = (kept & labels).sum(1)
    precision = np.where(kept.sum(1) > 0, tp / np.maximum(kept.sum(1), 1), 1.0)
    recall = tp / labels.sum()
    dataset_fraction = None
    if dataset is not None:
        key = f"{stage_name}.{score}"
        recorded = np.array(
            [
                e.scores[key]
                for e in read_ledger(Path(dataset) / "ledger")
                if e.scores and key in e.scores
            ]
        )
        if recorded.size == 0:
            raise ValueError(f"{dataset}: its ledger recorded no {key!r} scores")
        dataset_fraction = _keeps(threshold, recorded, values).mean(1).tolist()
    current = stage.param_value(threshold.param)
    return ReplayCurve(
        stage=stage_name,
        score=score,
        direction=threshold.direction,
        current=float(current) if current is not None else None,
        thresholds=values.tolist(),
        precision=precision.tolist(),
        recall=recall.tolist(),
        kept_fraction=kept.mean(1).tolist(),
        dataset_kept_fraction=dataset_fraction,
        labelled=len(texts),
        positives=int(labels.sum()),
    )


def plot(curve: ReplayCurve, path: str | Path) -> None:
    """Precision, recall and kept fraction against the threshold, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    x = curve.thresholds
    ax.plot(x, curve.precision, label="precision (kept)")
    ax.plot(x, curve.recall, label="recall (kept)")
    ax.plot(x, curve.kept_fraction, "--", label="kept fraction (labelled)")
    if curve.dataset_kept_fraction is not None:
        ax.plot(x, curve.dataset_kept_fraction, ":", label="kept fraction (dataset)")
    if curve.current is not None:
        ax.axvline(curve.current, color="grey", lw=1, label=f"current {curve.current:g}")
    rule = "keep if score >=" if curve.direction == "min" else "keep if score <="
    ax.set(xlabel=f"{curve.stage}.{curve.score} threshold ({rule} t)", ylim=(-0.02, 1.02))
    ax.set_title(f"replay: {curve.stage}.{curve.score} on {curve.labelled} labelled records")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
