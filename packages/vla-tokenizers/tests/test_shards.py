from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from vla_data.corpus import generate_corpus
from vla_data.ingest import IngestConfig, ingest
from vla_data.sample import ActionsMeta, Sample, TextMeta
from vla_data.shards import ShardWriter, iter_samples
from vla_tokenizers import TokenizerBundle
from vla_tokenizers.indexed import IndexedReader, IndexedWriter
from vla_tokenizers.token_shards import TokenShardError, bucket_of, discover, tokenize_shards


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The tiny sample corpus ingested into a dataset (several shards), plus a bare shard with an
    IPA-flagged Cantonese text and a sample that cannot be tokenised."""
    root = tmp_path_factory.mktemp("shards")
    manifest = generate_corpus(root / "corpus")
    ds = root / "ds"
    ingest(manifest.sources, ds, IngestConfig(workers=1, tasks=3, max_shard_count=15))
    extra = root / "extra"
    text = "你食咗飯未呀？我哋一陣去飲茶啦。"
    buf = io.BytesIO()
    np.save(buf, np.zeros((5, 2), dtype=np.float32))
    with ShardWriter(extra, "shard") as w:
        w.write_sample(
            Sample.create(
                id="yue.1",
                source="file:///canto.jsonl#L1",
                license="cc0",
                meta=TextMeta(chars=len(text), language="yue", ipa_fallback=True),
                payloads={"txt": text.encode()},
            )
        )
        w.write_sample(
            Sample.create(
                id="odd",
                source="file:///odd.npy",
                license="cc0",
                meta=ActionsMeta(dims=["yaw", "pitch"], steps=5, dtype="float32"),
                payloads={"actions.npy": buf.getvalue()},
            )
        )
        w.write_sample(  # IPA wanted, but espeak-ng has no Wu voice: counted as a warning
            Sample.create(
                id="wu.1",
                source="file:///wu.jsonl#L1",
                license="cc0",
                meta=TextMeta(chars=3, language="wuu", ipa_fallback=True),
                payloads={"txt": "侬好。".encode()},
            )
        )
    texts, streams = [], []
    for shard in discover([ds]):
        for s in iter_samples(shard.path):
            if s.meta.modality == "text":
                texts.append(s.payloads["txt"].decode())
            elif s.meta.modality == "actions":
                streams.append((np.load(io.BytesIO(s.payloads["actions.npy"])), s.meta.dims))
    bundle = TokenizerBundle.build(texts, vocab_size=1500, min_frequency=1, action_streams=streams)
    bundle.save(root / "bundle")
    return {"root": root, "ds": ds, "extra": extra / "shard-000000.tar", "bundle": root / "bundle"}


def _expected(bundle_path, inputs, options):
    """What VLAProcessor gives, per bucket, in input order."""
    proc = TokenizerBundle.load(bundle_path).processor(**options)
    out: dict[str, list[np.ndarray]] = {}
    for shard in discover(inputs):
        for s in iter_samples(shard.path):
            try:
                ids = proc.encode(s).ids
            except ValueError:
                continue
            out.setdefault(bucket_of(s, shard.dataset, "stem"), []).append(ids)
    return out


@pytest.mark.slow
def test_token_shards_open_with_megatron_and_equal_the_processor(corpus, tmp_path):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    inputs = [corpus["ds"], corpus["extra"]]
    out = tmp_path / "tok"
    report = tokenize_shards(inputs, corpus["bundle"], out, workers=2)
    assert report.shards == len(discover(inputs)) >= 4
    assert report.rejected == 1
    reject = json.loads((out / "rejects.jsonl").read_text())
    assert reject["key"] == "odd" and "yaw" in reject["error"]
    expected = _expected(corpus["bundle"], inputs, {})
    assert sorted(report.buckets) == sorted(expected)
    assert {"news__text", "drive_a__actions", "speech_a__audio", "canto__text"} <= set(expected)
    for bucket, docs in expected.items():
        ds = IndexedDataset(str(out / bucket), mmap=True)
        assert len(ds) == len(docs) == report.buckets[bucket]["documents"]
        assert ds.index.dtype == np.int32  # vocabulary > 65500 ids
        for i, ids in enumerate(docs):
            assert ds[i].tolist() == ids.tolist()
    # the flagged Cantonese sample carries IPA spans
    bundle = TokenizerBundle.load(corpus["bundle"])
    canto_ds = IndexedDataset(str(out / "canto__text"))  # keep it alive: its __del__ unmaps
    assert bundle.layout.id_of("<|ipa_start|>") in canto_ds[0].tolist()
    index = json.loads((out / "index.json").read_text())
    assert index["documents"] == sum(len(d) for d in expected.values())
    assert index["buckets"]["canto__text"]["tokens_by_modality"]["ipa"] > 0
    assert index["warnings"] == {"no IPA: espeak-ng has no voice for 'wuu'": 1}


@pytest.mark.slow
def test_our_writer_is_byte_identical_to_megatrons_builder(tmp_path):
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    docs = [np.arange(n, dtype=np.int64) * 7 + 100_000 for n in (5, 0, 17, 1)]
    ours = IndexedWriter(tmp_path / "ours", np.int32)
    for d in docs:
        ours.add_document(d)
    ours.finalize()
    ref = IndexedDatasetBuilder(str(tmp_path / "ref.bin"), dtype=np.int32)
    for d in docs:
        ref.add_item(torch.from_numpy(d))
        ref.end_document()
    ref.finalize(str(tmp_path / "ref.idx"))
    for ext in (".bin", ".idx"):
        assert (tmp_path / f"ours{ext}").read_bytes() == (tmp_path / f"ref{ext}").read_bytes()
    r = IndexedReader(tmp_path / "ours")
    assert [r[i].tolist() for i in range(len(r))] == [d.tolist() for d in docs]


def test_resume_skips_finished_shards_and_gives_identical_output(corpus, tmp_path):
    out = tmp_path / "tok"
    first = tokenize_shards([corpus["ds"]], corpus["bundle"], out)
    snapshot = {p.name: p.read_bytes() for p in out.glob("*.bin")}
    again = tokenize_shards([corpus["ds"]], corpus["bundle"], out)
    assert again.shards_skipped == first.shards and again.documents == first.documents
    parts = sorted((out / "parts").iterdir())
    shutil.rmtree(parts[1])  # as if killed before this shard finished
    (out / "parts" / f".{parts[2].name}.tmp-999").mkdir()  # a half-written part
    seen = []
    third = tokenize_shards(
        [corpus["ds"]], corpus["bundle"], out, progress=lambda d, t: seen.append((d, t))
    )
    assert third.shards_skipped == first.shards - 1
    assert seen and seen[-1][0] == seen[-1][1] > 0
    assert {p.name: p.read_bytes() for p in out.glob("*.bin")} == snapshot
    assert not list((out / "parts").glob(".*"))


def test_refuses_other_settings_and_changed_inputs(corpus, tmp_path):
    out = tmp_path / "tok"
    tokenize_shards([corpus["extra"]], corpus["bundle"], out)
    with pytest.raises(ValueError, match="other settings"):
        tokenize_shards([corpus["extra"]], corpus["bundle"], out, options={"ipa": "off"})
    copy = tmp_path / "extra" / "shard-000000.tar"
    copy.parent.mkdir()
    shutil.copy(corpus["extra"], copy)
    out2 = tmp_path / "tok2"
    tokenize_shards([copy], corpus["bundle"], out2)
    with open(copy, "ab") as f:
        f.write(b"\0" * 512)
    with pytest.raises(TokenShardError, match="changed since"):
        tokenize_shards([copy], corpus["bundle"], out2)
    with pytest.raises(TokenShardError, match="neither a dataset folder"):
        tokenize_shards(
            [Path(corpus["root"]) / "corpus" / "manifest.json"], corpus["bundle"], tmp_path / "x"
        )
