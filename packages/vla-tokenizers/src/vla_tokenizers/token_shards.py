"""Token shards: vla-data shards -> megatron-core IndexedDataset `.bin/.idx` per bucket.

A bucket is source x modality: `<source>__<modality>`, where source is the input file's stem
(`news.jsonl#L3` -> `news`; `bucket_by="dataset"` uses the dataset folder's name instead) and
modality the sample's. Each sample is one document (one sequence) in its bucket, in input
order (datasets as given, shards sorted, records in shard order), ids exactly as
`VLAProcessor.encode` gives them (ending with `<|endoftext|>`).

```
OUT/settings.json                 bundle digest + processor settings; a re-run must match them
OUT/parts/<dataset>__<shard>/     one finished input shard: <bucket>.bin/.idx + done.json
OUT/<bucket>.bin, OUT/<bucket>.idx   the merged token shards (what training reads)
OUT/index.json                    buckets (documents, tokens, tokens per modality), totals
OUT/rejects.jsonl                 samples that could not be tokenised: shard, key, error
```

Input shards are tokenised in parallel processes; each publishes its part folder atomically
(written under a temporary name, then renamed), so a killed run resumes by skipping finished
shards. Merging concatenates the parts (streamed) and publishes each bucket atomically.
A part records its input shard's SHA-256; an input that changed since is refused.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

import numpy as np

from vla_tokenizers.indexed import IndexedReader, IndexedWriter, token_dtype

_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]+")
BATCH = 256


class TokenShardError(ValueError):
    pass


@dataclass(frozen=True)
class InputShard:
    dataset: str  # tag of the dataset folder
    path: str
    sha256: str | None  # from the dataset's state files, when known
    count: int  # samples, when known (progress), else 0

    @property
    def part(self) -> str:
        return f"{self.dataset}__{Path(self.path).stem}"


def _safe(name: str) -> str:
    return _UNSAFE.sub("_", name).strip("_") or "x"


def source_stem(source: str) -> str:
    """`file:///data/news.jsonl.gz#L3` -> `news`."""
    path = urlparse(source.split("#", 1)[0]).path or source
    return _safe(PurePosixPath(path).name.split(".")[0])


def bucket_of(sample, dataset: str, by: str) -> str:
    modality = str(sample.meta.modality)
    if by == "modality":
        return _safe(modality)
    src = dataset if by == "dataset" else source_stem(sample.source)
    return f"{src}__{_safe(modality)}"


def discover(inputs: Sequence[str | os.PathLike]) -> list[InputShard]:
    """Input shards of dataset folders (from their state files) and/or bare `.tar` shards."""
    from vla_data.dataset import DatasetLayout

    shards: list[InputShard] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            layout = DatasetLayout(p)
            if not layout.shards.is_dir():
                raise TokenShardError(f"{p}: not a dataset folder (no shards/)")
            known = {s.name: s for st in layout.states() for s in st.shards}
            tag = _safe(p.resolve().name)
            for sp in layout.shard_paths():
                info = known.get(sp.name)
                shards.append(
                    InputShard(
                        tag, str(sp), info.sha256 if info else None, info.count if info else 0
                    )
                )
        elif p.is_file() and p.suffix == ".tar":
            shards.append(InputShard(_safe(p.resolve().parent.name), str(p), None, 0))
        else:
            raise TokenShardError(f"{p}: neither a dataset folder nor a .tar shard")
    parts = [s.part for s in shards]
    dup = [k for k, v in Counter(parts).items() if v > 1]
    if dup:
        raise TokenShardError(
            f"two inputs map to the same part name {dup[0]!r}; rename a dataset folder"
        )
    return shards


# ---- one input shard (runs in a worker process) -------------------------------------------------

_CACHE: dict = {}


def _processor(bundle_path: str, digest: str, options: dict):
    key = (bundle_path, digest, json.dumps(options, sort_keys=True))
    if key not in _CACHE:
        from vla_tokenizers.bundle import TokenizerBundle

        _CACHE.clear()
        _CACHE[key] = TokenizerBundle.load(bundle_path, expect_digest=digest).processor(**options)
    return _CACHE[key]


def tokenize_shard(
    bundle_path: str,
    digest: str,
    options: dict,
    bucket_by: str,
    shard: InputShard,
    part_dir: str,
    counter=None,
) -> dict:
    """Tokenise one input shard into `part_dir` (published atomically); returns its done record."""
    from vla_data.parallel import add
    from vla_data.shards import ShardError, file_sha256, iter_samples
    from vla_tokenizers.processor import ProcessorError

    proc = _processor(bundle_path, digest, options)
    dtype = token_dtype(proc.layout.vocab_size)
    final = Path(part_dir)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    sha = shard.sha256 or file_sha256(shard.path)
    writers: dict[str, IndexedWriter] = {}
    rejects: list[dict] = []
    warnings: Counter[str] = Counter()
    samples = 0
    pending: list[tuple[str, object]] = []

    def flush() -> None:
        encs = proc.finish([w for _, w in pending])
        for (bucket, _), enc in zip(pending, encs, strict=True):
            warnings.update(enc.warnings)
            if bucket not in writers:
                writers[bucket] = IndexedWriter(tmp / bucket, dtype)
            writers[bucket].add_document(enc.ids)
        add(counter, len(pending))
        pending.clear()

    def on_error(err: ShardError, _members) -> None:
        rejects.append({"shard": shard.path, "key": err.key, "error": err.cause})

    try:
        for sample in iter_samples(shard.path, on_error=on_error):
            samples += 1
            try:
                pending.append((bucket_of(sample, shard.dataset, bucket_by), proc.prepare(sample)))
            except (ProcessorError, ValueError) as e:
                rejects.append({"shard": shard.path, "key": sample.key, "error": str(e)})
                add(counter, 1)
            if len(pending) >= BATCH:
                flush()
        if pending:
            flush()
        buckets = {}
        for name, w in sorted(writers.items()):
            w.finalize()
            buckets[name] = {"documents": len(w.lengths), "tokens": w.tokens}
    except BaseException:
        for w in writers.values():
            w.abort()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    done = {
        "shard": shard.path,
        "sha256": sha,
        "samples": samples,
        "rejected": rejects,
        "warnings": dict(warnings),
        "buckets": buckets,
    }
    (tmp / "done.json").write_text(json.dumps(done, indent=1, ensure_ascii=False) + "\n")
    shutil.rmtree(final, ignore_errors=True)  # a stale part of a changed shard never gets here
    os.replace(tmp, final)
    return done


# ---- the whole run ---------------------------------------------------------------------------------


@dataclass
class ShardsReport:
    out: str
    shards: int
    shards_skipped: int
    samples: int
    rejected: int
    documents: int
    tokens: int
    buckets: dict[str, dict] = field(default_factory=dict)
    warnings: Counter = field(default_factory=Counter)  # message -> samples
    seconds: float = 0.0


def tokenize_shards(
    inputs: Sequence[str | os.PathLike],
    bundle_path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    workers: int = 1,
    options: dict | None = None,
    bucket_by: str = "stem",
    progress: Callable[[int, int], None] | None = None,
) -> ShardsReport:
    """Tokenise every input shard (resuming), then merge parts into one `.bin/.idx` per bucket."""
    from vla_data.dataset import DatasetLayout, pin_settings, write_json_atomic
    from vla_data.parallel import run_jobs
    from vla_data.shards import file_sha256
    from vla_tokenizers.bundle import TokenizerBundle

    if bucket_by not in ("stem", "dataset", "modality"):
        raise TokenShardError(f"bucket_by must be stem, dataset or modality; got {bucket_by!r}")
    t0 = time.monotonic()
    bundle = TokenizerBundle.load(bundle_path)
    options = dict(options or {})
    proc = bundle.processor(**options)  # validates the options here, once
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pin_settings(
        DatasetLayout(out),
        "settings.json",
        {
            "bundle_digest": bundle.digest,
            "vocab_size": bundle.layout.vocab_size,
            "processor": proc.settings(),
            "bucket_by": bucket_by,
        },
    )
    shards = discover(inputs)
    parts = out / "parts"
    parts.mkdir(exist_ok=True)
    for stale in parts.glob(".*.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    todo, skipped = [], 0
    for s in shards:
        done_file = parts / s.part / "done.json"
        if done_file.is_file():
            done = json.loads(done_file.read_text())
            sha = s.sha256 or file_sha256(s.path)
            if done["sha256"] != sha:
                raise TokenShardError(
                    f"{s.path}: changed since it was tokenised into {out}; use a new output folder"
                )
            skipped += 1
            continue
        todo.append(s)
    total = sum(s.count for s in todo)
    jobs = [
        (
            str(Path(bundle_path).resolve()),
            bundle.digest,
            options,
            bucket_by,
            s,
            str(parts / s.part),
        )
        for s in todo
    ]
    run_jobs(tokenize_shard, jobs, workers, progress=progress, total=total)
    report = merge_parts(out, shards, bundle)
    report.shards_skipped = skipped
    report.seconds = time.monotonic() - t0
    write_json_atomic(out / "index.json", _index_json(report, bundle))
    return report


def merge_parts(out: Path, shards: Sequence[InputShard], bundle) -> ShardsReport:
    """Concatenate the parts of `shards` (in order) into one `.bin/.idx` per bucket."""
    from vla_data.dataset import write_atomic

    dtype = token_dtype(bundle.layout.vocab_size)
    dones = [json.loads((out / "parts" / s.part / "done.json").read_text()) for s in shards]
    bucket_names = sorted({b for d in dones for b in d["buckets"]})
    report = ShardsReport(str(out), len(shards), 0, 0, 0, 0, 0)
    rejects: list[dict] = []
    for d in dones:
        report.samples += d["samples"]
        rejects += d["rejected"]
        report.warnings.update(d.get("warnings", {}))
    report.rejected = len(rejects)
    for name in bucket_names:
        w = IndexedWriter(out / name, dtype)
        try:
            for s, d in zip(shards, dones, strict=True):
                if name in d["buckets"]:
                    w.add_dataset(IndexedReader(out / "parts" / s.part / name))
            w.finalize()
        except BaseException:
            w.abort()
            raise
        reader = IndexedReader(out / name)
        counts = np.zeros(len(_modalities()), dtype=np.int64)
        for i in range(0, reader.tokens.size, 1 << 24):
            chunk = np.asarray(reader.tokens[i : i + (1 << 24)])
            counts += np.bincount(bundle.layout.modality_of(chunk), minlength=counts.size)
        report.buckets[name] = {
            "documents": len(reader),
            "tokens": int(reader.lengths.sum()),
            "tokens_by_modality": {
                m: int(c) for m, c in zip(_modalities(), counts, strict=True) if c
            },
        }
        report.documents += len(reader)
        report.tokens += int(reader.lengths.sum())
    for stale in set(p.stem for p in out.glob("*.idx")) - set(bucket_names):
        for ext in (".bin", ".idx"):
            (out / f"{stale}{ext}").unlink(missing_ok=True)
    write_atomic(
        out / "rejects.jsonl",
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejects).encode(),
    )
    return report


def _modalities():
    from vla_tokenizers.layout import MODALITIES

    return MODALITIES


def _index_json(report: ShardsReport, bundle) -> dict:
    return {
        "format": "megatron-core IndexedDataset (MMIDIDX v1), one document per sample",
        "dtype": str(token_dtype(bundle.layout.vocab_size)),
        "bundle_digest": bundle.digest,
        "vocab_size": bundle.layout.vocab_size,
        "shards": report.shards,
        "samples": report.samples,
        "rejected": report.rejected,
        "warnings": dict(report.warnings),
        "documents": report.documents,
        "tokens": report.tokens,
        "buckets": report.buckets,
    }
