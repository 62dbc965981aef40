"""The main job: run every stage that exists on the embedded sample corpus, on CPU.

Today: generate the sample corpus (with one corrupt file of every kind) -> ingest -> verify
the accounting -> stats -> filter cascade (the shipped `sample-corpus` recipe: language ID,
Gopher, C4, FineWeb, ads keywords, PII) -> verify -> dedup (MinHash-LSH text, pHash images) ->
verify -> tokenizer bundle (BPE + IPA + action stats fitted on the deduped data) -> token shards
(megatron-core IndexedDataset per source x modality, re-opened with megatron-core and checked).
-> train the tiny preset on them with the torch engine (300 steps on CPU; the loss must fall below
the unigram entropy of the tokens). Later stages (eval, release) are appended as they land.
Exits non-zero if any stage's check fails.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import warnings
from pathlib import Path

from vla_data.corpus import generate_corpus
from vla_data.ingest import IngestConfig, ingest
from vla_data.pipeline import DedupConfig, PipelineConfig, run_dedup, run_pipeline
from vla_data.stats import dataset_stats
from vla_data.verify import verify


def stage(name: str):
    print(f"\n== {name}", flush=True)
    return time.perf_counter()


def check_stage(name: str, root: Path, report, expected_inputs: int) -> list[str]:
    """The accounting of a stage's output folder, and that it saw every record kept before."""
    check = verify(root)
    print(f"  verify: {check.inputs} inputs = {check.counts}; {check.shards} shards")
    problems = [f"{name}: {p}" for p in check.problems]
    if report.inputs != expected_inputs:
        problems.append(f"{name} saw {report.inputs} records, {expected_inputs} were kept before")
    return problems


def tokenize(out: Path, workers: int, expected_docs: int) -> list[str]:
    """Bundle + token shards from the deduped data; every bucket must open with megatron-core."""
    warnings.filterwarnings("ignore", message="Transformer Engine and Apex are not installed")
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    from vla_tokenizers.cli import main as vla_tok
    from vla_tokenizers.token_shards import tokenize_shards

    vla_tok(
        ["build", str(out / "bundle"), "-d", str(out / "deduped"), "--vocab-size", "4000"],
        standalone_mode=False,
    )
    report = tokenize_shards([out / "deduped"], out / "bundle", out / "tokens", workers=workers)
    print(
        f"  {report.documents} documents, {report.tokens} tokens in {len(report.buckets)} buckets"
    )
    opened_docs = opened_tokens = 0
    for idx in sorted((out / "tokens").glob("*.idx")):
        dataset = IndexedDataset(str(idx.with_suffix("")))
        opened_docs += len(dataset)
        opened_tokens += int(dataset.sequence_lengths.sum())
    problems = []
    if report.rejected or report.documents != expected_docs:
        problems.append(
            f"tokenize: {report.documents} documents ({report.rejected} rejected), "
            f"{expected_docs} samples were kept"
        )
    if (opened_docs, opened_tokens) != (report.documents, report.tokens):
        problems.append(
            f"megatron IndexedDataset reads {opened_docs} docs / {opened_tokens} tokens"
        )
    return problems


def train(out: Path, steps: int) -> list[str]:
    """Train the tiny preset on the token shards; its loss must end below the unigram entropy."""
    import numpy as np
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    from vla_train import train_tiny

    counts: dict[int, int] = {}
    for idx in sorted((out / "tokens").glob("*.idx")):
        dataset = IndexedDataset(str(idx.with_suffix("")))
        tokens = np.concatenate([np.asarray(doc) for doc in dataset])
        ids, n = np.unique(tokens, return_counts=True)
        for i, c in zip(ids.tolist(), n.tolist(), strict=True):
            counts[i] = counts.get(i, 0) + c
    freq = np.array(list(counts.values()), dtype=np.float64) / sum(counts.values())
    entropy = float(-(freq * np.log(freq)).sum())
    result = train_tiny(out / "tokens", out / "train", steps=steps)
    losses = result.losses
    first, last = float(np.mean(losses[:10])), float(np.mean(losses[-20:]))
    print(
        f"  {result.steps_done} steps, {result.tokens_per_s:,.0f} tokens/s: loss {first:.2f} -> "
        f"{last:.2f} (unigram entropy of the tokens {entropy:.2f} nats)"
    )
    if last >= entropy:
        return [f"train: final loss {last:.2f} is not below the unigram entropy {entropy:.2f}"]
    return []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/demo", help="work folder (recreated)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=300)
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)

    t = stage("sample corpus")
    corpus = generate_corpus(out / "corpus", corrupt=True, seed=0)
    print(
        f"{len(corpus.files)} files, {corpus.expected_records} records, "
        f"{corpus.expected_quarantined} corrupt ({time.perf_counter() - t:.1f}s)"
    )

    t = stage("ingest")
    sources = [str(out / "corpus" / s) for s in corpus.sources]  # its folders, not manifest.json
    report = ingest(sources, out / "ingested", IngestConfig(workers=args.workers))
    print(
        f"{report.kept} kept, {report.quarantined} quarantined, by kind {report.by_kind} "
        f"({report.seconds:.1f}s)"
    )

    stage("verify")
    check = verify(out / "ingested")
    print(f"{check.inputs} inputs = {check.counts}; {check.shards} shards")
    problems = list(check.problems)
    if report.inputs != corpus.expected_records:
        problems.append(
            f"ingest saw {report.inputs} records, the corpus has {corpus.expected_records}"
        )
    if report.quarantined != corpus.expected_quarantined:
        problems.append(f"{report.quarantined} quarantined, expected {corpus.expected_quarantined}")

    stage("stats")
    print(json.dumps(dataset_stats(out / "ingested"), indent=1, ensure_ascii=False))

    t = stage("filter (recipe sample-corpus)")
    config = PipelineConfig.load("sample-corpus")
    filtered = run_pipeline(out / "ingested", out / "filtered", config, workers=args.workers)
    for row in filtered.stages:
        print(
            f"  {row['stage']:<12} in {row['in']:>4} kept {row['kept']:>4} {row['dropped']} {row['counters']}"
        )
    problems += check_stage("filter", out / "filtered", filtered, report.kept)

    t = stage("dedup (MinHash-LSH text, pHash images)")
    deduped = run_dedup(out / "filtered", out / "deduped", DedupConfig(), workers=args.workers)
    print(f"  {deduped.kept} kept of {deduped.inputs}; dropped {deduped.stages[0]['dropped']}")
    problems += check_stage("dedup", out / "deduped", deduped, filtered.kept)

    t = stage("tokenize (vla-tok build + vla-tok shards)")
    problems += tokenize(out, args.workers, expected_docs=deduped.kept)

    t = stage("train (vla-train tiny, torch engine, CPU)")
    problems += train(out, steps=args.train_steps)

    if problems:
        print("\nFAILED:\n- " + "\n- ".join(problems), file=sys.stderr)
        return 1
    print(f"\nok: pipeline finished; outputs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
