"""Text throughput: `TextTokenizer.encode_batch` vs raw `tokenizers` batch encoding, same corpus.

Builds a deterministic mixed corpus (zh/yue/en/de/... sentences from vla-data's sample corpus,
code, emoji, numbers), trains a bundle's text BPE on part of it, then times on the whole corpus:

- ours:            TokenizerBundle.text.encode_batch(texts)           (what VLAProcessor uses)
- raw_batch:       tokenizers.Tokenizer.from_file(tokenizer.json).encode_batch(texts) -> ids
- raw_batch_fast:  the same with encode_batch_fast (no offsets)        -> ids
- processor:       VLAProcessor.encode_batch over the texts as vla-data text Samples (info)

Prints JSON with docs/s, MB/s, tokens/s, and ours/raw ratios (target ours >= 0.9x raw).

    python bench/text_tokenize_bench.py [--docs 20000] [--vocab 16000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import numpy as np


def make_corpus(n_docs: int, seed: int = 0) -> list[str]:
    from vla_data.corpus import SENTENCES
    from vla_tokenizers.testing import MIXED

    rng = np.random.default_rng(seed)
    # no literal special-token strings: raw tokenizers would match them as added tokens
    pool = [s for v in SENTENCES.values() for s in v] + [m for m in MIXED if "<|" not in m]
    code = [
        "def f(x):\n    return x * 2 + 1\n",
        "for (int i = 0; i < n; ++i) { sum += a[i]; }\n",
        '{"id": 123, "name": "测试", "ok": true}\n',
    ]
    docs = []
    for i in range(n_docs):
        k = int(rng.integers(3, 12))
        parts = [pool[j] for j in rng.integers(0, len(pool), k)]
        if i % 5 == 0:
            parts.append(code[i % len(code)])
        parts.append(f" #{i} {rng.integers(0, 10**6)} 🚗")
        docs.append(" ".join(parts))
    return docs


def timeit(fn, repeats: int) -> float:
    fn()  # warm-up (thread pool, caches)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=20_000)
    ap.add_argument("--vocab", type=int, default=16_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from tokenizers import Tokenizer

    from vla_data.sample import Sample, TextMeta
    from vla_tokenizers import TokenizerBundle

    texts = make_corpus(args.docs)
    mb = sum(len(t.encode()) for t in texts) / 1e6
    t0 = time.perf_counter()
    bundle = TokenizerBundle.build(
        texts[: max(1, len(texts) // 4)], vocab_size=args.vocab, min_frequency=2
    )
    train_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as d:
        bundle.save(f"{d}/b")
        raw = Tokenizer.from_file(f"{d}/b/tokenizer.json")
        bundle = TokenizerBundle.load(f"{d}/b")

    ours_ids = bundle.text.encode_batch(texts)
    raw_ids = [e.ids for e in raw.encode_batch(texts, add_special_tokens=False)]
    assert ours_ids == raw_ids, "ours and raw tokenizers disagree"
    tokens = sum(len(x) for x in ours_ids)

    results = {
        "ours": timeit(lambda: bundle.text.encode_batch(texts), args.repeats),
        "raw_batch": timeit(
            lambda: [e.ids for e in raw.encode_batch(texts, add_special_tokens=False)], args.repeats
        ),
        "raw_batch_fast": timeit(
            lambda: [e.ids for e in raw.encode_batch_fast(texts, add_special_tokens=False)],
            args.repeats,
        ),
    }
    samples = [
        Sample.create(
            id=f"d{i}",
            source="bench",
            license="cc0",
            meta=TextMeta(chars=len(t)),
            payloads={"txt": t.encode()},
        )
        for i, t in enumerate(texts)
    ]
    proc = bundle.processor(ipa="off")
    results["processor"] = timeit(lambda: proc.encode_batch(samples), args.repeats)

    out = {
        "bench": "text_tokenize",
        "corpus": {"docs": len(texts), "mb": round(mb, 3), "tokens": tokens},
        "bpe": {"vocab": bundle.layout.text_size, "train_s": round(train_s, 3)},
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "tokenizers": __import__("tokenizers").__version__,
            "RAYON_NUM_THREADS": os.environ.get("RAYON_NUM_THREADS"),
        },
        "results": {
            k: {
                "seconds": round(s, 4),
                "docs_per_s": round(len(texts) / s, 1),
                "mb_per_s": round(mb / s, 3),
                "tokens_per_s": round(tokens / s, 1),
            }
            for k, s in results.items()
        },
        "ratio_ours_vs_raw_batch": round(results["raw_batch"] / results["ours"], 3),
        "ratio_ours_vs_raw_batch_fast": round(results["raw_batch_fast"] / results["ours"], 3),
        "ratio_processor_vs_raw_batch": round(results["raw_batch"] / results["processor"], 3),
        "target": ">= 0.9",
    }
    out["ok"] = out["ratio_ours_vs_raw_batch"] >= 0.9
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
