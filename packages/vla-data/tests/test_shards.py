import io
import tarfile

import pytest
import webdataset as wds

from vla_data.sample import Sample, TextMeta
from vla_data.shards import ShardError, ShardWriter, file_sha256, iter_groups, iter_samples

from .conftest import text_sample


def test_writer_rolls_over_by_count_and_finalises_atomically(tmp_path):
    with ShardWriter(tmp_path, "s", max_count=3) as w:
        for i in range(7):
            w.write_sample(text_sample(i))
        assert any(p.name.startswith(".") for p in tmp_path.iterdir())  # open shard is hidden
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["s-000000.tar", "s-000001.tar", "s-000002.tar"]
    assert [i.count for i in w.finalised] == [3, 3, 1]
    assert all(file_sha256(tmp_path / i.name) == i.sha256 for i in w.finalised)


def test_writer_rolls_over_by_bytes(tmp_path):
    with ShardWriter(tmp_path, "s", max_bytes=5000) as w:
        for i in range(6):
            w.write_sample(text_sample(i, "x" * 2000))
    assert len(w.finalised) >= 3
    assert sum(i.count for i in w.finalised) == 6


def test_aborted_writer_publishes_nothing(tmp_path):
    with pytest.raises(RuntimeError), ShardWriter(tmp_path, "s") as w:
        w.write_sample(text_sample(0))
        raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []


def test_our_shards_read_with_stock_webdataset(tmp_path):
    with ShardWriter(tmp_path, "s") as w:
        for i in range(4):
            w.write_sample(text_sample(i, f"text {i}"))
    records = list(wds.WebDataset(str(tmp_path / "s-000000.tar"), shardshuffle=False).decode())
    assert [r["txt"] for r in records] == [f"text {i}" for i in range(4)]
    assert [r["__key__"] for r in records] == [text_sample(i).key for i in range(4)]
    assert records[0]["json"]["id"] == "doc.0" and records[0]["json"]["modality"] == "text"


def test_stock_webdataset_shards_read_with_ours(tmp_path):
    path = tmp_path / "theirs-000000.tar"
    with wds.TarWriter(str(path)) as sink:
        for i in range(3):
            s = text_sample(i, f"theirs {i}")
            sink.write({"__key__": s.key, "json": s.model_dump(mode="json"), "txt": f"theirs {i}"})
    samples = list(iter_samples(path))
    assert [s.payloads["txt"].decode() for s in samples] == [f"theirs {i}" for i in range(3)]
    assert all(isinstance(s.meta, TextMeta) for s in samples)


def _tar(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_reader_names_file_and_record_on_bad_input(tmp_path):
    s = text_sample(0)
    bad = tmp_path / "bad.tar"
    bad.write_bytes(_tar([(f"{s.key}.json", s.to_json_bytes()), (f"{s.key}.txt", b"tampered")]))
    with pytest.raises(ShardError, match=rf"bad.tar record '{s.key}': .*SHA-256"):
        list(iter_samples(bad))
    errors = []
    assert list(iter_samples(bad, on_error=lambda e, m: errors.append((e, m)))) == []
    assert errors[0][0].key == s.key and errors[0][1]["txt"] == b"tampered"


def test_reader_refuses_non_consecutive_keys_and_corrupt_tars(tmp_path):
    a, b = text_sample(0), text_sample(1)
    mixed = tmp_path / "mixed.tar"
    mixed.write_bytes(
        _tar(
            [
                (f"{a.key}.json", a.to_json_bytes()),
                (f"{b.key}.json", b.to_json_bytes()),
                (f"{a.key}.txt", b"hello"),
            ]
        )
    )
    with pytest.raises(ShardError, match="appears twice"):
        list(iter_groups(mixed))
    corrupt = tmp_path / "corrupt.tar"
    corrupt.write_bytes(_tar([(f"{a.key}.json", a.to_json_bytes())])[:700])
    with pytest.raises(ShardError, match="corrupt.tar"):
        list(iter_samples(corrupt))


def test_member_name_without_part_is_refused(tmp_path):
    path = tmp_path / "x.tar"
    path.write_bytes(_tar([("noext", b"1")]))
    with pytest.raises(ShardError, match="no '<key>.<part>' form"):
        list(iter_samples(path))


def test_duplicate_key_in_one_shard_is_refused(tmp_path):
    with ShardWriter(tmp_path, "s") as w:
        w.write_sample(text_sample(0))
        with pytest.raises(ValueError, match="twice"):
            w.write_sample(
                Sample.create(
                    id="doc.0",
                    source="s",
                    license="l",
                    meta=TextMeta(chars=1),
                    payloads={"txt": b"a"},
                )
            )


def test_long_keys_and_big_members_read_with_stock_tools(tmp_path):
    long_id = "x" * 180
    s = Sample.create(
        id=long_id,
        source="s",
        license="l",
        meta=TextMeta(chars=3000),
        payloads={"txt": b"y" * 3000},
    )
    assert len(s.key) > 100
    with ShardWriter(tmp_path, "s") as w:
        w.write_sample(s)
        w.write_sample(text_sample(1))
    path = tmp_path / "s-000000.tar"
    assert path.stat().st_size % tarfile.RECORDSIZE == 0
    with tarfile.open(path) as tar:
        assert tar.getnames()[:2] == [f"{s.key}.json", f"{s.key}.txt"]
    records = list(wds.WebDataset(str(path), shardshuffle=False))
    assert records[0]["__key__"] == s.key and records[0]["txt"] == b"y" * 3000
    assert [x.key for x in iter_samples(path)] == [s.key, text_sample(1).key]
