"""End to end: the generated corpus with a corrupt file of every kind, through ingest and verify."""

from collections import Counter

from vla_data.corpus import generate_corpus
from vla_data.ingest import IngestConfig, ingest
from vla_data.ledger import Status, read_ledger
from vla_data.quarantine import iter_quarantine
from vla_data.stats import dataset_stats
from vla_data.verify import verify


def test_corrupt_corpus_is_fully_accounted(tmp_path):
    corpus = generate_corpus(tmp_path / "corpus", corrupt=True, seed=1)
    out = tmp_path / "ds"
    sources = [str(corpus.root / s) for s in corpus.sources]
    report = ingest(sources, out, IngestConfig(workers=2, tasks=3, max_shard_count=16))

    assert report.inputs == corpus.expected_records
    assert report.quarantined == corpus.expected_quarantined
    check = verify(out)
    assert check.ok, check.problems
    assert check.inputs == corpus.expected_records
    assert check.counts == {
        "kept": corpus.expected_records - corpus.expected_quarantined,
        "filtered": 0,
        "quarantined": corpus.expected_quarantined,
    }

    # Every corrupt file is quarantined (with its bytes), and nothing good is.
    entries = list(read_ledger(out / "ledger"))
    quarantined_files = Counter(
        e.source.partition("#")[0] for e in entries if e.status is Status.QUARANTINED
    )
    corrupt_files = {str(corpus.root / rel) for rel in corpus.corrupt}
    assert set(quarantined_files) == corrupt_files
    records = [r for p in sorted((out / "quarantine").glob("*.tar")) for r in iter_quarantine(p)]
    assert len(records) == corpus.expected_quarantined
    assert all(r.error and r.source for r, _ in records)
    garbage = [raw for r, raw in records if r.source.endswith("garbage.wav")]
    assert garbage and garbage[0] == (corpus.root / "bad/garbage.wav").read_bytes()

    stats = dataset_stats(out)
    assert set(stats["by_modality"]) == {"text", "audio", "image", "actions", "rig", "mesh"}
    assert stats["audio_hours"] > 0


def test_shard_count_rollover_and_resume_on_corpus(tmp_path):
    corpus = generate_corpus(tmp_path / "corpus", corrupt=True, seed=2)
    sources = [str(corpus.root / s) for s in corpus.sources]
    config = IngestConfig(workers=1, tasks=2, max_shard_count=5)
    ingest(sources, tmp_path / "ds", config)
    shards = sorted(p.name for p in (tmp_path / "ds/shards").glob("*.tar"))
    assert len(shards) > 10
    again = ingest(sources, tmp_path / "ds", config)
    assert again.inputs == 0
    assert sorted(p.name for p in (tmp_path / "ds/shards").glob("*.tar")) == shards
    assert verify(tmp_path / "ds").ok
