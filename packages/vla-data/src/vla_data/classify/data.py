"""Labelled text for fastText: read fastText or JSONL files, write fastText training files.

An example is a ``(text, label)`` pair. On disk it is either a fastText line,
``__label__<label> <text>``, or a JSON Lines record with configurable text and label fields.
`normalize_text` is the one normalisation fastText needs: one line, whitespace collapsed,
optionally lowercased (fastText splits on whitespace and its ``predict`` rejects newlines).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Literal

LABEL_PREFIX = "__label__"
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")

Example = tuple[str, str]


def normalize_text(text: str, *, lowercase: bool = False) -> str:
    """Collapse every whitespace run (newlines, tabs, NUL, Unicode spaces) to one space; strip."""
    text = " ".join(text.replace("\x00", " ").split())
    return text.lower() if lowercase else text


def format_line(text: str, label: str, *, lowercase: bool = False) -> str:
    """One fastText training line (without the newline); raises on a label with whitespace."""
    if not label or label != "".join(label.split()):
        raise ValueError(f"label must be non-empty and have no whitespace: {label!r}")
    return f"{LABEL_PREFIX}{label} {normalize_text(text, lowercase=lowercase)}"


def _open(path: Path) -> IO[str]:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def _parse_fasttext(line: str, where: str) -> Example:
    tokens = line.split()
    labels = [t[len(LABEL_PREFIX) :] for t in tokens if t.startswith(LABEL_PREFIX)]
    if not labels:
        raise ValueError(f"{where}: no {LABEL_PREFIX} label")
    if len(labels) > 1:
        raise ValueError(f"{where}: {len(labels)} labels; multi-label lines are not supported")
    return " ".join(t for t in tokens if not t.startswith(LABEL_PREFIX)), labels[0]


def _parse_jsonl(line: str, where: str, text_field: str, label_field: str) -> Example:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: invalid JSON ({e.msg})") from e
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    for field in (text_field, label_field):
        if field not in record:
            raise ValueError(f"{where}: missing field {field!r}")
    text, label = record[text_field], record[label_field]
    if not isinstance(text, str):
        raise ValueError(f"{where}: field {text_field!r} is not a string")
    if not isinstance(label, str | int) or isinstance(label, bool):
        raise ValueError(f"{where}: field {label_field!r} is not a string or integer")
    return text, str(label)


def read_examples(
    path: str | Path,
    *,
    format: Literal["auto", "fasttext", "jsonl"] = "auto",
    text_field: str = "text",
    label_field: str = "label",
    lowercase: bool = False,
) -> Iterator[Example]:
    """Yield normalised ``(text, label)`` pairs from a fastText or JSONL file (``.gz`` allowed).

    ``format="auto"`` reads ``.jsonl``/``.ndjson`` as JSON Lines and anything else as fastText
    lines. Blank lines are skipped; a malformed line raises ``ValueError`` naming file and line.
    """
    path = Path(path)
    if format == "auto":
        format = "jsonl" if path.name.endswith(JSONL_SUFFIXES) else "fasttext"
    if not path.is_file():
        raise FileNotFoundError(f"no such data file: {path}")
    with _open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            if format == "jsonl":
                text, label = _parse_jsonl(line, where, text_field, label_field)
            else:
                text, label = _parse_fasttext(line, where)
            yield normalize_text(text, lowercase=lowercase), label


def as_examples(
    examples: Iterable[Example] | str | Path, **read_options: object
) -> Iterator[Example]:
    """Pairs from either an iterable of ``(text, label)`` or a file (see `read_examples`)."""
    if isinstance(examples, str | Path):
        yield from read_examples(examples, **read_options)  # type: ignore[arg-type]
        return
    for pair in examples:
        if not (isinstance(pair, tuple | list) and len(pair) == 2):
            raise ValueError(f"expected (text, label) pairs, got {pair!r:.80}")
        text, label = pair
        yield normalize_text(str(text)), str(label)


def write_examples(
    examples: Iterable[Example] | str | Path, path: str | Path, *, lowercase: bool = False
) -> int:
    """Write examples as fastText lines (empty texts skipped); return how many were written."""
    n = 0
    with Path(path).open("w", encoding="utf-8") as f:
        for text, label in as_examples(examples):
            line = format_line(text, label, lowercase=lowercase)
            if line.partition(" ")[2]:
                f.write(line + "\n")
                n += 1
    return n
