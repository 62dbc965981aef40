"""Benchmark vla_data.dedup MinHash-LSH against datatrove's MinHash pipeline on one corpus.

Generates ``--docs`` documents (default 100000) over a syllable-built Zipf vocabulary, of which
``--dup-frac`` are planted near-duplicates of earlier documents (word edits, sentence swaps,
boilerplate header/footer, or a mix); the true word 5-gram Jaccard of every planted pair is
computed exactly. Both implementations run single-threaded with word 5-grams and 14 bands x 8
rows; for each we report CPU seconds, docs/s per core, recall on planted pairs (overall and with
true Jaccard >= 0.8) and precision of the dropped documents (a dropped document is correct when
its kept representative belongs to the same planted family). Prints one JSON object.

    .venv/bin/python packages/vla-data/bench/dedup_vs_datatrove.py --docs 100000

(datatrove is skipped there); for the comparison run the same script with the interpreter of a
separate venv holding ``datatrove[processing]`` and ``PYTHONPATH=packages/vla-data/src``.

datatrove's English word tokenizer is NLTK ``word_tokenize``, which needs the ``punkt_tab``
data; when that cannot be loaded (offline) the benchmark substitutes the same NLTK Treebank
word tokenizer without sentence splitting (``preserve_line=True``), which only makes datatrove
faster, and says so in the output.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from vla_data.dedup import MinHashConfig, MinHashDeduper, UnionFind, jaccard, ngram_set

SYLLABLES = [c + v for c in "bcdfghjklmnprstvwyz" for v in ("a", "e", "i", "o", "u", "ai", "ou")]
HEADER = "home about contact subscribe to our newsletter for the latest updates and offers today"
FOOTER = "copyright all rights reserved privacy policy terms of use cookie settings sitemap"


class CorpusGen:
    """Seeded documents with planted near-duplicates and their ground truth."""

    def __init__(self, seed: int, vocab_size: int, min_words: int, max_words: int) -> None:
        self.rng = np.random.default_rng(seed)
        words: set[str] = set()
        while len(words) < vocab_size:
            words.add("".join(self.rng.choice(SYLLABLES, self.rng.integers(1, 4))))
        self.vocab = np.array(sorted(words), dtype=object)
        p = 1.0 / np.arange(1, vocab_size + 1) ** 0.9
        self.cdf = np.cumsum(p / p.sum())
        self.min_words, self.max_words = min_words, max_words

    def words(self, n: int) -> list[str]:
        return self.vocab[np.searchsorted(self.cdf, self.rng.random(n) * self.cdf[-1])].tolist()

    def sentences(self) -> list[list[str]]:
        ws = self.words(int(self.rng.integers(self.min_words, self.max_words)))
        cuts = np.cumsum(self.rng.integers(6, 20, len(ws)))
        cuts = cuts[cuts < len(ws)].tolist()
        return [ws[a:b] for a, b in zip([0, *cuts], [*cuts, len(ws)], strict=True)]

    @staticmethod
    def render(sents: list[list[str]]) -> str:
        return " ".join(" ".join(s).capitalize() + "." for s in sents)

    def near_dup(self, sents: list[list[str]]) -> list[list[str]]:
        sents = [list(s) for s in sents]
        kind = int(self.rng.integers(4))  # 0 words, 1 reorder, 2 boilerplate, 3 mixed
        if kind in (0, 3):
            n = sum(map(len, sents))
            for _ in range(max(1, int(n * self.rng.uniform(0.005, 0.05)))):
                s = sents[int(self.rng.integers(len(sents)))]
                j, op = int(self.rng.integers(len(s))), int(self.rng.integers(3))
                if op == 0:
                    s[j] = self.words(1)[0]
                elif op == 1:
                    s.insert(j, self.words(1)[0])
                elif len(s) > 1:
                    del s[j]
        if kind in (1, 3) and len(sents) > 2:
            for _ in range(int(self.rng.integers(1, 3))):
                i, j = self.rng.choice(len(sents), 2, replace=False)
                sents[i], sents[j] = sents[j], sents[i]
        if kind == 2:
            sents = [HEADER.split(), *sents, FOOTER.split()]
        return sents

    def corpus(self, n_docs: int, dup_frac: float) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Texts, family id per doc (its source's index), and planted (source, dup) pairs."""
        texts: list[str] = []
        family = np.arange(n_docs)
        pairs: list[tuple[int, int]] = []
        originals: list[tuple[int, list[list[str]]]] = []
        for i in range(n_docs):
            if originals and self.rng.random() < dup_frac:
                src, sents = originals[int(self.rng.integers(len(originals)))]
                texts.append(self.render(self.near_dup(sents)))
                family[i] = src
                pairs.append((src, i))
            else:
                sents = self.sentences()
                originals.append((i, sents))
                texts.append(self.render(sents))
        return texts, family, np.array(pairs, dtype=np.int64).reshape(-1, 2)


def metrics(
    label: np.ndarray,
    kept_of: np.ndarray,
    family: np.ndarray,
    pairs: np.ndarray,
    true_j: np.ndarray,
) -> dict[str, Any]:
    """Recall on planted pairs and precision of dropped docs from cluster labels."""
    same = label[pairs[:, 0]] == label[pairs[:, 1]]
    high = true_j >= 0.8
    dropped = np.flatnonzero(kept_of != np.arange(len(label)))
    correct = family[dropped] == family[kept_of[dropped]]
    return {
        "recall_j>=0.8": round(float(same[high].mean()), 4) if high.any() else None,
        "recall_all_planted": round(float(same.mean()), 4) if len(same) else None,
        "precision_dropped": round(float(correct.mean()), 4) if len(dropped) else None,
        "dropped": int(len(dropped)),
        "clusters_kept": int(len(label) - len(dropped)),
    }


def run_ours(texts: list[str], args: argparse.Namespace, spill: Path) -> tuple[dict, np.ndarray]:
    cfg = MinHashConfig(ngram=5, bands=14, rows=8, seed=1)
    t0, c0 = time.perf_counter(), time.process_time()
    deduper = MinHashDeduper(cfg, spill_dir=spill, chunk_size=args.chunk_size)
    deduper.add(texts)
    runs = len(deduper.run_files)
    c1 = time.process_time()
    res = deduper.finish()
    t2, c2 = time.perf_counter(), time.process_time()
    out = {
        "wall_s": round(t2 - t0, 2),
        "cpu_s": round(c2 - c0, 2),
        "signature_cpu_s": round(c1 - c0, 2),
        "merge_cluster_cpu_s": round(c2 - c1, 2),
        "docs_per_s_per_core": round(len(texts) / (c2 - c0), 1),
        "run_files": runs,
        "chunk_size": args.chunk_size,
    }
    return out, res.representative.astype(np.int64)


class _PreserveLineTokenizer:
    """NLTK Treebank word tokenizer without punkt sentence splitting (no data download)."""

    def word_tokenize(self, text: str) -> list[str]:
        from nltk.tokenize import word_tokenize

        return [t.strip() for t in word_tokenize(text, "english", preserve_line=True) if t.strip()]

    def sent_tokenize(self, text: str) -> list[str]:
        return [text]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [(0, len(text))]


def run_datatrove(texts: list[str], work: Path) -> tuple[dict, np.ndarray | None]:
    try:
        from datatrove.executor import LocalPipelineExecutor
        from datatrove.pipeline.dedup.minhash import (
            MinhashConfig,
            MinhashDedupBuckets,
            MinhashDedupCluster,
            MinhashDedupFilter,
            MinhashDedupSignature,
        )
        from datatrove.pipeline.readers import JsonlReader
        from datatrove.pipeline.writers import JsonlWriter
        from datatrove.utils.hashing import HashConfig
    except Exception as e:  # ImportError, or a broken optional dependency
        return {"skipped": f"datatrove not importable: {type(e).__name__}: {e}"}, None

    inp = work / "input"
    inp.mkdir(parents=True)
    with open(inp / "docs.jsonl", "w") as f:
        for i, t in enumerate(texts):
            f.write(json.dumps({"id": str(i), "text": t}) + "\n")
    cfg = MinhashConfig(
        n_grams=5,
        num_buckets=14,
        hashes_per_bucket=8,
        seed=1,
        hash_config=HashConfig(precision=64, hash_fc="xxhash"),
    )
    signature = MinhashDedupSignature(output_folder=str(work / "sigs"), config=cfg)
    tokenizer = "nltk word_tokenize (datatrove default for English)"
    try:
        signature.word_tokenizer.word_tokenize("Probe sentence. Another one.")
    except LookupError:
        signature.word_tokenizer = _PreserveLineTokenizer()
        tokenizer = (
            "nltk word_tokenize(preserve_line=True): punkt_tab data not downloadable offline, "
            "so sentence splitting is skipped (favours datatrove)"
        )
    try:
        signature.get_shingles("a b c d e f")
    except TypeError as e:  # xxhash>=4 no longer hashes str, as datatrove 0.3 expects
        return {"skipped": f"datatrove signature step failed: {e} (install 'xxhash<4')"}, None
    stages = {
        "signature": LocalPipelineExecutor(
            pipeline=[JsonlReader(str(inp)), signature],
            tasks=1,
            workers=1,
            logging_dir=str(work / "logs/sig"),
        ),
        "buckets": LocalPipelineExecutor(
            pipeline=[MinhashDedupBuckets(str(work / "sigs"), str(work / "buckets"), config=cfg)],
            tasks=cfg.num_buckets,
            workers=1,
            logging_dir=str(work / "logs/buckets"),
        ),
        "cluster": LocalPipelineExecutor(
            pipeline=[
                MinhashDedupCluster(
                    str(work / "buckets"), str(work / "remove"), config=cfg, save_cluster_id=True
                )
            ],
            tasks=1,
            workers=1,
            logging_dir=str(work / "logs/cluster"),
        ),
        "filter": LocalPipelineExecutor(
            pipeline=[
                JsonlReader(str(inp)),
                MinhashDedupFilter(str(work / "remove"), load_cluster_ids=True),
                JsonlWriter(str(work / "out")),
            ],
            tasks=1,
            workers=1,
            logging_dir=str(work / "logs/filter"),
        ),
    }
    times: dict[str, float] = {}
    walls: dict[str, float] = {}
    for name, ex in stages.items():
        t0, c0 = time.perf_counter(), time.process_time()
        ex.run()
        times[name], walls[name] = time.process_time() - c0, time.perf_counter() - t0
    # datatrove's clusters are the connected components of its bucket-stage pairs (.dups);
    # the .clusters file omits cluster roots, so rebuild the components from the pairs and
    # take each component's kept document from the .remove list
    n = len(texts)
    dups = [
        np.frombuffer(p.read_bytes(), dtype="<u4").reshape(-1, 4)
        for p in (work / "buckets").glob("*.dups")
    ]
    pairs_dt = np.concatenate(dups) if dups else np.zeros((0, 4), dtype="<u4")
    uf = UnionFind(n)
    uf.union(pairs_dt[:, 1].astype(np.int64), pairs_dt[:, 3].astype(np.int64))
    label = uf.roots().astype(np.int64)
    removed = np.zeros(n, dtype=bool)
    remove_file = work / "remove" / "000000.remove"
    if remove_file.exists():
        removed[np.frombuffer(remove_file.read_bytes(), dtype="<u4").astype(np.int64)] = True
    keeper = np.full(n, -1)
    keeper[label[~removed]] = np.flatnonzero(~removed)
    kept_of = np.where(removed, keeper[label], np.arange(n))
    if (kept_of < 0).any() or removed.sum() != n - len(np.unique(label)):
        raise RuntimeError("datatrove .remove list does not match its .dups components")
    dedup_cpu = times["signature"] + times["buckets"] + times["cluster"]
    out = {
        "version": importlib.metadata.version("datatrove"),
        "tokenizer": tokenizer,
        "cpu_s_by_stage": {k: round(v, 2) for k, v in times.items()},
        "wall_s_by_stage": {k: round(v, 2) for k, v in walls.items()},
        "cpu_s": round(dedup_cpu, 2),
        "docs_per_s_per_core": round(n / dedup_cpu, 1),
        "docs_per_s_per_core_incl_filter": round(n / sum(times.values()), 1),
        "note": "cpu_s = signature + buckets + cluster stages (filter = re-read and write output)",
    }
    return out, np.stack([label, kept_of])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--dup-frac", type=float, default=0.1)
    ap.add_argument("--min-words", type=int, default=100)
    ap.add_argument("--max-words", type=int, default=500)
    ap.add_argument("--vocab", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk-size", type=int, default=25_000, help="docs per sorted run file")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--skip-datatrove", action="store_true")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    texts, family, pairs = CorpusGen(args.seed, args.vocab, args.min_words, args.max_words).corpus(
        args.docs, args.dup_frac
    )
    true_j = np.array([jaccard(ngram_set(texts[a]), ngram_set(texts[b])) for a, b in pairs])
    gen_s = time.perf_counter() - t0

    work = Path(tempfile.mkdtemp(prefix="dedup-bench-", dir=args.workdir))
    try:
        ours, rep = run_ours(texts, args, work)
        ours.update(metrics(rep, rep, family, pairs, true_j))
        if args.skip_datatrove:
            dt: dict[str, Any] = {"skipped": "--skip-datatrove"}
        else:
            try:
                dt, arrays = run_datatrove(texts, work / "datatrove")
            except Exception as e:  # report, e.g. a missing optional dependency, and go on
                dt, arrays = {"skipped": f"datatrove run failed: {type(e).__name__}: {e}"}, None
            if arrays is not None:
                dt.update(metrics(arrays[0], arrays[1], family, pairs, true_j))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    result: dict[str, Any] = {
        "docs": len(texts),
        "config": {"ngram": 5, "bands": 14, "rows": 8, "permutations": 112, "threshold": 0.0},
        "corpus": {
            "words_per_doc_mean": round(float(np.mean([t.count(" ") + 1 for t in texts])), 1),
            "planted_pairs": int(len(pairs)),
            "planted_pairs_j>=0.8": int((true_j >= 0.8).sum()),
            "true_jaccard_quartiles": [
                round(float(q), 3) for q in np.quantile(true_j, [0.25, 0.5, 0.75])
            ]
            if len(true_j)
            else [],
            "generate_s": round(gen_s, 1),
        },
        "ours": ours,
        "datatrove": dt,
        "machine": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "cpus": os.cpu_count(),
        },
    }
    if "docs_per_s_per_core" in dt:
        result["speedup_per_core"] = round(
            ours["docs_per_s_per_core"] / dt["docs_per_s_per_core"], 2
        )
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
