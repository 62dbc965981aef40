"""Dedup across every shard of a dataset: a global planning pass, then a pipeline pass.

Pass 1 (`plan_dedup`) streams all samples in shard order into the streaming dedupers of
`vla_data.dedup` (text: exact, MinHash-LSH or SimHash; images: pHash or dHash), with keys
spilled to disk, and writes one plan per input shard: which keys are duplicates of which
representative. Pass 2 is an ordinary pipeline run of the `dedup_plan` stage, so dedup gets the
same ledger (duplicates filtered with their cluster; representatives kept with theirs), stats,
parallelism and resume as every other stage. One representative — the first in shard order —
is kept per cluster.
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from vla_data.dataset import DatasetLayout, write_json_atomic
from vla_data.dedup import (
    ExactConfig,
    ExactDeduper,
    HammingDeduper,
    MinHashConfig,
    MinHashDeduper,
    SimHashConfig,
    SimHashDeduper,
    dhash,
    phash,
)
from vla_data.pipeline.config import PipelineConfig
from vla_data.pipeline.runner import PipelineReport, run_pipeline
from vla_data.pipeline.stage import Outcome, Stage, register
from vla_data.sample import Sample
from vla_data.shards import iter_samples

_IMAGE_PARTS = ("jpg", "png", "webp")


class DedupConfig(BaseModel):
    """What to deduplicate and how (FineWeb's MinHash defaults: 5-grams, 14 bands x 8 rows)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: Literal["minhash", "exact", "simhash", "none"] = "minhash"
    ngram: int = Field(5, ge=1)
    bands: int = Field(14, ge=1)
    rows: int = Field(8, ge=1)
    seed: int = 1
    jaccard_threshold: float = Field(
        0.0, ge=0.0, le=1.0, description="verify LSH candidates; 0 = keep all"
    )
    simhash_threshold: int = Field(3, ge=0, le=16)
    image: Literal["phash", "dhash", "none"] = "phash"
    image_threshold: int = Field(6, ge=0, le=32)
    chunk_size: int = Field(
        200_000, ge=1_000, description="documents per spilled run (memory bound)"
    )
    spill_dir: str | None = None

    def text_deduper(self, spill: str):
        kw = {"spill_dir": spill, "chunk_size": self.chunk_size}
        if self.text == "minhash":
            cfg = MinHashConfig(
                ngram=self.ngram,
                bands=self.bands,
                rows=self.rows,
                seed=self.seed,
                threshold=self.jaccard_threshold,
            )
            deduper = MinHashDeduper(cfg, **kw)
            return deduper, deduper.add
        if self.text == "exact":
            deduper = ExactDeduper(ExactConfig(), **kw)
            return deduper, deduper.add
        deduper = SimHashDeduper(SimHashConfig(threshold=self.simhash_threshold), **kw)
        return deduper, deduper.add_texts


class _Stream:
    """Documents of one modality: fed to a deduper in batches, their keys spilled to a file."""

    def __init__(self, deduper, feed: Callable, convert: Callable, keys_path: Path, reason: str):
        self.deduper, self.feed, self.convert, self.reason = deduper, feed, convert, reason
        self.keys = open(keys_path, "w", encoding="utf-8")  # noqa: SIM115 - closed in finish()
        self.keys_path, self.batch, self.shard_of = keys_path, [], []

    def add(self, sample: Sample, shard: str) -> None:
        self.batch.append(self.convert(sample))
        self.keys.write(sample.key + "\n")
        self.shard_of.append(shard)
        if len(self.batch) >= 2048:
            self.flush()

    def flush(self) -> None:
        if self.batch:
            self.feed(self.batch)
            self.batch = []

    def finish(self) -> np.ndarray:
        self.flush()
        self.keys.close()
        return self.deduper.finish().representative


def _text(sample: Sample) -> str:
    return sample.payloads["txt"].decode("utf-8")


def _image_bytes(sample: Sample) -> bytes:
    return next(sample.payloads[p] for p in _IMAGE_PARTS if p in sample.payloads)


def plan_dedup(src: str | Path, plan_dir: str | Path, config: DedupConfig) -> dict:
    """Pass 1: cluster every sample of `src` and write per-shard plans into `plan_dir`."""
    plan_dir = Path(plan_dir)
    summary_path = plan_dir / "summary.json"
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        if summary.get("config") == config.model_dump():
            return summary  # planned before: resume with pass 2
    plan_dir.mkdir(parents=True, exist_ok=True)
    shards = DatasetLayout(src).shard_paths()
    with tempfile.TemporaryDirectory(dir=config.spill_dir, prefix="vla-dedup-") as spill:
        streams: dict[str, _Stream] = {}
        if config.text != "none":
            deduper, feed = config.text_deduper(spill)
            reason = "exact_duplicate" if config.text == "exact" else "near_duplicate"
            streams["text"] = _Stream(deduper, feed, _text, Path(spill) / "text.keys", reason)
        if config.image != "none":
            fn = phash if config.image == "phash" else dhash
            deduper = HammingDeduper(
                config.image_threshold, spill_dir=spill, chunk_size=config.chunk_size
            )

            def image_hash(sample: Sample, fn=fn) -> int:
                with Image.open(io.BytesIO(_image_bytes(sample))) as im:
                    return fn(im)

            streams["image"] = _Stream(
                deduper, deduper.add, image_hash, Path(spill) / "image.keys", "image_near_duplicate"
            )
        for shard in shards:
            for sample in iter_samples(shard):
                stream = streams.get(sample.modality.value)
                if stream is not None:
                    stream.add(sample, shard.stem)
        plans: dict[str, dict[str, list[str]]] = {s.stem: {} for s in shards}
        counts = {}
        for modality, stream in streams.items():
            rep = stream.finish()
            counts[modality] = _write_plans(stream, rep, plans)
    for stem, plan in plans.items():
        write_json_atomic(plan_dir / f"{stem}.json", plan)
    summary = {"config": config.model_dump(), "shards": len(shards), "counts": counts}
    write_json_atomic(summary_path, summary)
    return summary


def _write_plans(stream: _Stream, rep: np.ndarray, plans: dict[str, dict[str, list[str]]]) -> dict:
    """Fill `plans[shard][key] = [representative key, reason]` for every member of a cluster."""
    n = len(rep)
    in_cluster = np.zeros(n, dtype=bool)
    dups = np.flatnonzero(rep != np.arange(n))
    in_cluster[dups] = True
    in_cluster[rep[dups]] = True
    rep_keys: dict[int, str] = {}
    with open(stream.keys_path, encoding="utf-8") as f:  # pass A: keys of representatives
        for i, line in enumerate(f):
            if in_cluster[i] and rep[i] == i:
                rep_keys[i] = line.rstrip("\n")
    with open(stream.keys_path, encoding="utf-8") as f:  # pass B: every cluster member's plan
        for i, line in enumerate(f):
            if in_cluster[i]:
                reason = "representative" if rep[i] == i else stream.reason
                plans[stream.shard_of[i]][line.rstrip("\n")] = [rep_keys[int(rep[i])], reason]
    return {"docs": n, "duplicates": int(len(dups)), "clusters": len(rep_keys)}


@register
class DedupPlan(Stage):
    """Pass 2 of dedup: drops the duplicates a `plan_dedup` plan names; marks representatives."""

    type = "dedup_plan"
    modalities = frozenset({"text", "image"})

    def __init__(self, name: str, seed: int = 0, plan_dir: str = ""):
        super().__init__(name, seed)
        if not plan_dir or not Path(plan_dir).is_dir():
            raise ValueError(f"plan_dir {plan_dir!r} is not a folder written by plan_dedup")
        self.plan_dir, self.plan = Path(plan_dir), {}

    def begin_shard(self, path: Path) -> None:
        plan_file = self.plan_dir / f"{path.stem}.json"
        if not plan_file.exists():
            raise ValueError(f"{plan_file} is missing: {path} was not planned (re-run plan_dedup)")
        self.plan = json.loads(plan_file.read_text())

    def apply(self, sample: Sample) -> Outcome:
        entry = self.plan.get(sample.key)
        if entry is None:
            return Outcome.kept()
        representative, reason = entry
        if reason == "representative":
            return Outcome.kept(counters={"clusters": 1}, cluster=representative)
        return Outcome.dropped(reason, cluster=representative)


def run_dedup(
    src: str | Path,
    out: str | Path,
    config: DedupConfig | None = None,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> PipelineReport:
    """Deduplicate dataset `src` into `out` (plan in `out/dedup_plan`, resumable)."""
    config = config or DedupConfig()
    plan_dir = Path(out) / "dedup_plan"
    plan_dedup(src, plan_dir, config)
    pipeline = PipelineConfig(
        name="dedup",
        stages=[{"type": "dedup_plan", "name": "dedup", "params": {"plan_dir": str(plan_dir)}}],
    )
    return run_pipeline(src, out, pipeline, workers=workers, progress=progress)
