"""Action streams: `.npy` (plain 2-D or structured with named fields) and `.csv` with a header.

Stored as `actions.npy` (float32, steps × dims) and, when the CSV has a time column, `time.npy`
(float64, as given). Pickled arrays are refused, never loaded.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import IO

import numpy as np

from vla_data.ingest.base import FileContext, Record
from vla_data.sample import ActionsMeta

TIME_COLUMNS = ("t", "time", "timestamp", "timestamp_s")


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def check_actions(values: np.ndarray, dims: list[str]) -> str | None:
    """The reason an action matrix is unusable, or None."""
    if values.ndim != 2:
        return f"actions must be 2-D (steps, dims); got shape {values.shape}"
    if values.shape[0] == 0 or values.shape[1] == 0:
        return f"actions are empty; shape {values.shape}"
    if len(dims) != values.shape[1]:
        return f"{len(dims)} dimension names for {values.shape[1]} columns"
    bad = ~np.isfinite(values)
    if bad.any():
        step, col = (int(x) for x in np.argwhere(bad)[0])
        return (
            f"{int(bad.sum())} non-finite values (NaN/inf), first at step {step} dim {dims[col]!r}"
        )
    return None


def _load_npy(raw: bytes, names: list[str] | None) -> tuple[np.ndarray, list[str]]:
    array = np.load(io.BytesIO(raw), allow_pickle=False)
    if array.dtype.names:
        fields = list(array.dtype.names)
        if array.ndim != 1:
            raise ValueError(f"structured actions must be 1-D (steps,); got shape {array.shape}")
        if any(array.dtype[f].kind not in "fiub" or array.dtype[f].shape for f in fields):
            raise ValueError("structured action fields must be numeric scalars")
        return np.stack([array[f].astype(np.float64) for f in fields], axis=1), fields
    if array.dtype.kind not in "fiub":
        raise ValueError(f"actions must be numeric; got dtype {array.dtype}")
    cols = array.shape[1] if array.ndim == 2 else 0
    return array.astype(np.float64), names or [f"dim{i}" for i in range(cols)]


def _load_csv(raw: bytes) -> tuple[np.ndarray, list[str], np.ndarray | None]:
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    rows = [r for r in rows if r]
    if len(rows) < 2:
        raise ValueError("CSV needs a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    if len(set(header)) != len(header) or not all(header):
        raise ValueError(f"CSV header has empty or repeated names: {header}")
    values = np.empty((len(rows) - 1, len(header)), dtype=np.float64)
    for i, row in enumerate(rows[1:], 2):
        if len(row) != len(header):
            raise ValueError(f"line {i} has {len(row)} fields, header has {len(header)}")
        try:
            values[i - 2] = [float(x) for x in row]
        except ValueError as e:
            raise ValueError(f"line {i}: {e}") from None
    time_col = next((j for j, h in enumerate(header) if h.lower() in TIME_COLUMNS), None)
    if time_col is None:
        return values, header, None
    times = values[:, time_col]
    if not np.all(np.isfinite(times)) or (len(times) > 1 and not np.all(np.diff(times) > 0)):
        raise ValueError(f"time column {header[time_col]!r} is not finite and strictly increasing")
    keep = [j for j in range(len(header)) if j != time_col]
    return values[:, keep], [header[j] for j in keep], times


def read_actions(ctx: FileContext, f: IO[bytes]) -> Iterator[Record]:
    """One record per file; wrong shapes, non-numeric data and NaN/inf are quarantined."""
    raw = f.read()
    rid = ctx.name
    if not raw:
        yield ctx.bad(rid, "", "empty file", raw)
        return
    times = None
    try:
        if ctx.name.lower().endswith(".npy"):
            values, dims = _load_npy(raw, ctx.config.action_dims)
        else:
            values, dims, times = _load_csv(raw)
    except (ValueError, UnicodeDecodeError, OSError, EOFError) as e:
        yield ctx.bad(rid, "", f"unreadable actions: {e}", raw)
        return
    if problem := check_actions(values, dims):
        yield ctx.bad(rid, "", problem, raw)
        return
    rate = None
    if times is not None and len(times) > 1:
        rate = float(1.0 / np.median(np.diff(times)))
    payloads = {"actions.npy": _npy_bytes(values.astype(np.float32))}
    if times is not None:
        payloads["time.npy"] = _npy_bytes(times)
    meta = ActionsMeta(dims=dims, steps=values.shape[0], dtype="float32", rate_hz=rate)
    yield ctx.sample(rid, "", meta, payloads)
