"""Ingest throughput on this machine: files/s and MB/s for text and audio (prints JSON).

    python bench/ingest_bench.py [--text-files 8] [--text-records 10000] [--scale 40] [--workers 2]

Text: JSON Lines files of the sample corpus' multilingual sentences. Audio: the sample corpus'
clips (wav/flac/mp3/ogg) at `--scale`. Each is ingested into a fresh dataset folder and timed
(input bytes are the raw files' sizes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from vla_data.corpus import SENTENCES, generate_corpus
from vla_data.ingest import IngestConfig, discover, ingest


def measure(src: Path, out: Path, workers: int) -> dict:
    files = discover([str(src)])
    size = sum(f.size for f in files)
    start = time.perf_counter()
    report = ingest([str(src)], out, IngestConfig(workers=workers, tasks=max(2, workers)))
    seconds = time.perf_counter() - start
    return {
        "files": len(files),
        "records": report.inputs,
        "input_mb": round(size / 1e6, 3),
        "seconds": round(seconds, 3),
        "files_per_s": round(len(files) / seconds, 1),
        "records_per_s": round(report.inputs / seconds, 1),
        "mb_per_s": round(size / 1e6 / seconds, 3),
    }


def write_text(folder: Path, files: int, records: int) -> None:
    rng = random.Random(0)
    pool = [s for group in SENTENCES.values() for s in group]
    folder.mkdir(parents=True)
    for f in range(files):
        with open(folder / f"part{f:03d}.jsonl", "w") as out:
            for i in range(records):
                text = " ".join(rng.choices(pool, k=rng.randint(3, 12)))
                out.write(
                    json.dumps(
                        {"id": f"{f}-{i}", "text": text, "license": "CC0-1.0"}, ensure_ascii=False
                    )
                    + "\n"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text-files", type=int, default=8)
    parser.add_argument("--text-records", type=int, default=10_000)
    parser.add_argument("--scale", type=int, default=40, help="audio: copies of each corpus clip")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate_corpus(root / "corpus", scale=args.scale)
        write_text(root / "text", args.text_files, args.text_records)
        result = {
            "bench": "vla-data ingest",
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "python": platform.python_version(),
            },
            "audio_scale": args.scale,
            "workers": args.workers,
            "text": measure(root / "text", root / "text_ds", args.workers),
            "audio": measure(root / "corpus/audio", root / "audio_ds", args.workers),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
