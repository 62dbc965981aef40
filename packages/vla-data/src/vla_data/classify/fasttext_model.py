"""A small wrapper over fastText supervised classifiers: train, save atomically, load, predict.

Built on ``fasttext-wheel`` 0.9.2 (needs numpy < 2 for ``predict``). Training with
``threads=1`` and a fixed ``seed`` gives the same model bytes for the same examples; with more
threads fastText's lock-free SGD makes the result depend on scheduling.
"""

from __future__ import annotations

import mmap
import os
import struct
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import fasttext

from vla_data.classify.data import Example, as_examples, normalize_text, write_examples

FASTTEXT_MAGIC = 793712314  # first int32 of every .bin/.ftz model
NO_LABEL = "<none>"  # predicted label of an empty text in `evaluate`


def _check_layout(path: Path) -> None:
    """Walk a fastText model file's layout (format <= v12) and check it ends where the file does.

    fastText itself reads truncated files without complaint, so a half-written model would load
    and predict garbage; this raises ``ValueError`` naming the file instead.
    """
    with path.open("rb") as f:
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if path.stat().st_size else b""
    pos = 0

    def take(fmt: str) -> tuple:
        nonlocal pos
        size = struct.calcsize(fmt)
        if pos + size > len(data):
            raise ValueError(f"truncated fastText model (ends at byte {len(data)}): {path}")
        pos += size
        return struct.unpack_from(fmt, data, pos - size)

    def skip(nbytes: int) -> None:
        nonlocal pos
        if nbytes < 0 or pos + nbytes > len(data):
            raise ValueError(f"truncated or corrupt fastText model: {path}")
        pos += nbytes

    def quantizer() -> None:  # dim, nsubq, dsub, lastdsub; then dim x 256 float centroids
        skip(take("<4i")[0] * 256 * 4)

    def matrix(quantized: bool) -> None:
        if not quantized:
            rows, cols = take("<qq")
            skip(4 * rows * cols if rows >= 0 and cols >= 0 else -1)
            return
        qnorm, rows, _, codesize = take("<?qqi")
        skip(codesize)
        quantizer()
        if qnorm:  # one norm code per row, then the norm quantizer
            skip(rows)
            quantizer()

    try:
        magic, version = take("<ii")
        if magic != FASTTEXT_MAGIC or not 0 <= version <= 12:
            raise ValueError(f"not a fastText model (bad magic number or version): {path}")
        take("<12id")  # Args
        size, _, _, _, prune_size = take("<iiiqq")  # Dictionary
        for _ in range(max(size, 0)):
            end = data.find(b"\0", pos)
            skip(end + 1 - pos + 9 if end >= 0 else -1)  # word, int64 count, int8 type
        skip(8 * max(prune_size, 0))
        quant_input = take("<?")[0]
        matrix(quant_input)
        quant_output = take("<?")[0]
        matrix(quant_input and quant_output)
        if pos != len(data):
            raise ValueError(f"corrupt fastText model ({len(data) - pos} trailing bytes): {path}")
    finally:
        if isinstance(data, mmap.mmap):
            data.close()


def _file_mode(path: Path) -> int:
    """Permissions for a new ``path``: those of the file it replaces, else 0666 less umask."""
    if path.exists():
        return path.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


class FastTextClassifier:
    """A fastText supervised model; labels are reported without the ``__label__`` prefix."""

    def __init__(self, model: fasttext.FastText._FastText, path: Path | None = None):
        self._model = model
        self.path = path
        self._prefix = model.f.getArgs().label
        self.labels: list[str] = [self._strip(x) for x in model.get_labels()]

    def _strip(self, label: str) -> str:
        return label[len(self._prefix) :] if label.startswith(self._prefix) else label

    def __repr__(self) -> str:
        where = f", path={str(self.path)!r}" if self.path else ""
        return f"FastTextClassifier(labels={len(self.labels)}, quantized={self.quantized}{where})"

    @property
    def quantized(self) -> bool:
        """Whether the model is product-quantized (a ``.ftz`` model)."""
        return bool(self._model.is_quantized())

    @classmethod
    def train(
        cls,
        examples: Iterable[Example] | str | Path,
        *,
        epoch: int = 25,
        lr: float = 0.5,
        dim: int = 32,
        word_ngrams: int = 2,
        minn: int = 1,
        maxn: int = 4,
        bucket: int = 200_000,
        seed: int = 0,
        threads: int = 1,
        quantize: bool = False,
        cutoff: int = 0,
    ) -> FastTextClassifier:
        """Train on ``(text, label)`` pairs or a fastText/JSONL file (softmax loss).

        ``quantize=True`` then product-quantizes the model (``qnorm``, retrained on the same
        data); ``cutoff > 0`` also keeps only the ``cutoff`` most important words and n-grams.
        """
        with tempfile.TemporaryDirectory(prefix="vla-fasttext-") as tmp:
            train_file = os.path.join(tmp, "train.txt")
            if write_examples(examples, train_file) == 0:
                raise ValueError("no training examples (every text was empty)")
            model = fasttext.train_supervised(
                input=train_file,
                epoch=epoch,
                lr=lr,
                dim=dim,
                wordNgrams=word_ngrams,
                minn=minn,
                maxn=maxn,
                bucket=bucket,
                seed=seed,
                thread=threads,
                loss="softmax",
                verbose=0,
            )
            if quantize:
                model.quantize(
                    input=train_file, qnorm=True, retrain=True, cutoff=cutoff, thread=threads
                )
        return cls(model)

    @classmethod
    def load(cls, path: str | Path) -> FastTextClassifier:
        """Load any fastText supervised model (``.bin`` or ``.ftz``, e.g. ``lid.176.bin``)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"fastText model not found: {path}")
        _check_layout(path)
        try:
            model = fasttext.FastText._FastText(model_path=str(path))
        except Exception as e:  # fastText raises ValueError/RuntimeError/MemoryError
            raise ValueError(f"cannot load fastText model {path}: {e}") from e
        if model.f.getArgs().model != fasttext.FastText.model_name.supervised:
            raise ValueError(f"not a supervised fastText model: {path}")
        return cls(model, path)

    def save(self, path: str | Path) -> None:
        """Write the model atomically: to a temporary file next to ``path``, then rename."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            self._model.save_model(tmp)
            os.chmod(tmp, _file_mode(path))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.path = path

    def _pairs(self, labels: Sequence[str], probs: Iterable[float]) -> list[tuple[str, float]]:
        return [(self._strip(a), min(1.0, float(p))) for a, p in zip(labels, probs, strict=True)]

    def predict(self, text: str, k: int = 1) -> list[tuple[str, float]]:
        """The ``k`` most probable ``(label, probability)``; ``[]`` for empty/blank text."""
        _check_k(k)
        line = normalize_text(text)
        if not line:
            return []
        labels, probs = self._model.predict(line, k=k)
        return self._pairs(labels, probs)

    def predict_batch(self, texts: Sequence[str], k: int = 1) -> list[list[tuple[str, float]]]:
        """`predict` for many texts in one call."""
        _check_k(k)
        lines = [normalize_text(t) for t in texts]
        todo = [i for i, line in enumerate(lines) if line]
        out: list[list[tuple[str, float]]] = [[] for _ in lines]
        if todo:
            labels, probs = self._model.predict([lines[i] for i in todo], k=k)
            for i, lab, prob in zip(todo, labels, probs, strict=True):
                out[i] = self._pairs(lab, prob)
        return out

    def evaluate(self, examples: Iterable[Example] | str | Path) -> dict:
        """Top-1 accuracy overall and per label, with confusion counts (see `classification_report`)."""
        pairs = list(as_examples(examples))
        preds = self.predict_batch([text for text, _ in pairs])
        return classification_report(
            [label for _, label in pairs], [p[0][0] if p else NO_LABEL for p in preds]
        )


def classification_report(gold: Sequence[str], predicted: Sequence[str]) -> dict:
    """Accuracy, per-label support/recall/precision/F1 and ``confusion[gold][predicted]`` counts.

    ``per_label[x]["accuracy"]`` is the recall of ``x`` (the share of its examples predicted as
    ``x``); ``macro_accuracy`` is its mean over the gold labels.
    """
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold labels but {len(predicted)} predictions")
    confusion: dict[str, Counter[str]] = {}
    for g, p in zip(gold, predicted, strict=True):
        confusion.setdefault(g, Counter())[p] += 1
    n_predicted = Counter(predicted)
    per_label = {}
    for label in sorted(confusion):
        n, correct = sum(confusion[label].values()), confusion[label][label]
        recall = correct / n
        precision = correct / n_predicted[label] if n_predicted[label] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label[label] = {
            "n": n,
            "correct": correct,
            "accuracy": recall,
            "precision": precision,
            "f1": f1,
        }
    correct = sum(v["correct"] for v in per_label.values())
    return {
        "n": len(gold),
        "correct": correct,
        "accuracy": correct / len(gold) if gold else 0.0,
        "macro_accuracy": (
            sum(v["accuracy"] for v in per_label.values()) / len(per_label) if per_label else 0.0
        ),
        "per_label": per_label,
        "confusion": {g: dict(sorted(c.items())) for g, c in sorted(confusion.items())},
    }
