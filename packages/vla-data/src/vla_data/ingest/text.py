"""Text readers: JSON Lines (optionally compressed), JSON arrays, Parquet and plain .txt."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import IO, Any

from vla_data.ingest.base import FileContext, Record
from vla_data.sample import TextMeta


def _text_sample(ctx: FileContext, record_id: str, locator: str, obj: Any, raw: bytes) -> Record:
    cfg = ctx.config
    if not isinstance(obj, dict):
        return ctx.bad(
            record_id, locator, f"record is a JSON {type(obj).__name__}, not an object", raw
        )
    text = obj.get(cfg.text_field)
    if not isinstance(text, str):
        found = "missing" if text is None else f"a {type(text).__name__}"
        return ctx.bad(record_id, locator, f"text field {cfg.text_field!r} is {found}", raw)
    if not text.strip():
        return ctx.bad(record_id, locator, "text is empty", raw)
    rid = obj.get(cfg.id_field)
    if rid is not None and not isinstance(rid, (str, int)):
        return ctx.bad(
            record_id, locator, f"id field {cfg.id_field!r} is a {type(rid).__name__}", raw
        )
    record_id = str(rid) if rid is not None and str(rid) else record_id
    license = obj.get(cfg.license_field)
    created = None
    if (value := obj.get(cfg.created_field)) is not None:
        try:
            created = datetime.fromisoformat(str(value))
        except ValueError:
            return ctx.bad(
                record_id, locator, f"created field {value!r} is not an ISO-8601 time", raw
            )
    data = text.encode("utf-8", "surrogatepass")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return ctx.bad(record_id, locator, "text holds lone surrogates (not valid UTF-8)", raw)
    meta = TextMeta(chars=len(text))
    return ctx.sample(
        record_id,
        locator,
        meta,
        {"txt": data},
        license=str(license) if license else None,
        created=created,
    )


def read_jsonl(ctx: FileContext, f: IO[bytes]) -> Iterator[Record]:
    """One record per non-blank line; a bad line is quarantined and reading goes on."""
    lineno = 0
    for lineno, raw in enumerate(f, 1):
        if not raw.strip():
            continue
        locator = f"L{lineno}"
        default_id = locator
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            yield ctx.bad(
                default_id, locator, f"invalid UTF-8 at byte {e.start} of line {lineno}", raw
            )
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            yield ctx.bad(
                default_id, locator, f"invalid JSON on line {lineno}: {e.msg} (col {e.colno})", raw
            )
            continue
        yield _text_sample(ctx, default_id, locator, obj, raw)
    if lineno == 0:
        yield ctx.bad(ctx.name, "", "empty file", b"")


def read_json(ctx: FileContext, f: IO[bytes]) -> Iterator[Record]:
    """A JSON array of objects (one record each) or a single object."""
    raw = f.read()
    if not raw.strip():
        yield ctx.bad(ctx.name, "", "empty file", raw)
        return
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        yield ctx.bad(ctx.name, "", f"invalid UTF-8 at byte {e.start}", raw)
        return
    except json.JSONDecodeError as e:
        yield ctx.bad(ctx.name, "", f"invalid JSON: {e.msg} (line {e.lineno} col {e.colno})", raw)
        return
    items = doc if isinstance(doc, list) else [doc]
    for i, obj in enumerate(items):
        item_raw = json.dumps(obj, ensure_ascii=False).encode()
        yield _text_sample(ctx, f"i{i}", f"i{i}", obj, item_raw)


def read_parquet(ctx: FileContext, f: IO[bytes]) -> Iterator[Record]:
    """One record per row, read in batches of the columns the config names."""
    import pyarrow.parquet as pq

    cfg = ctx.config
    try:
        pf = pq.ParquetFile(f)
    except Exception as e:  # pyarrow raises several types for corrupt files
        f.seek(0)
        yield ctx.bad(ctx.name, "", f"unreadable Parquet: {e}", f.read())
        return
    names = set(pf.schema_arrow.names)
    if cfg.text_field not in names:
        f.seek(0)
        yield ctx.bad(
            ctx.name,
            "",
            f"Parquet has no column {cfg.text_field!r} (has {sorted(names)})",
            f.read(),
        )
        return
    wanted = [
        c
        for c in (cfg.text_field, cfg.id_field, cfg.license_field, cfg.created_field)
        if c in names
    ]
    row = 0
    for batch in pf.iter_batches(columns=wanted, batch_size=4096):
        for obj in batch.to_pylist():
            if isinstance(obj.get(cfg.created_field), datetime):
                obj[cfg.created_field] = obj[cfg.created_field].isoformat()
            raw = json.dumps(obj, ensure_ascii=False, default=str).encode()
            yield _text_sample(ctx, f"row{row}", f"row{row}", obj, raw)
            row += 1
    if row == 0:
        yield ctx.bad(ctx.name, "", "Parquet file has no rows", b"")


def read_txt(ctx: FileContext, f: IO[bytes]) -> Iterator[Record]:
    """The whole file is one record; strict UTF-8, a leading BOM dropped."""
    raw = f.read()
    rid = ctx.name
    if not raw.strip():
        yield ctx.bad(rid, "", "empty file", raw)
        return
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        yield ctx.bad(rid, "", f"invalid UTF-8 at byte {e.start}", raw)
        return
    yield _text_sample(ctx, rid, "", {ctx.config.text_field: text}, raw)
