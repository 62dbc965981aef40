import gzip
import io
import json
import subprocess
import sys
import textwrap

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import ExifTags, Image

from vla_data.ingest import IngestConfig, SourceError, discover, ingest
from vla_data.ingest.image import replace_jpeg_exif
from vla_data.ledger import Status, read_ledger
from vla_data.quarantine import iter_quarantine
from vla_data.shards import iter_samples
from vla_data.verify import verify

from .conftest import jpeg_with_gps, write_wav


def samples_of(root):
    return {s.key: s for p in sorted((root / "shards").glob("*.tar")) for s in iter_samples(p)}


def run(src, out, **kw):
    return ingest([str(src)], out, IngestConfig(workers=1, **kw))


def test_mixed_folder_is_fully_accounted(mixed_inputs, tmp_path):
    out = tmp_path / "ds"
    report = run(mixed_inputs, out)
    assert (report.kept, report.quarantined) == (12 + 1 + 3, 2)
    assert report.by_kind == {"text": 14, "audio": 1, "image": 1, "actions": 1, "unknown": 1}
    v = verify(out)
    assert v.ok, v.problems
    assert v.counts == {"kept": 16, "filtered": 0, "quarantined": 2}
    errors = sorted(
        r.error for p in (out / "quarantine").glob("*.tar") for r, _ in iter_quarantine(p)
    )
    assert errors == ["invalid UTF-8 at byte 3", "unknown file type '.xyz'"]


def test_rerun_resumes_and_duplicates_nothing(mixed_inputs, tmp_path):
    out = tmp_path / "ds"
    run(mixed_inputs, out)
    first = sorted(samples_of(out))
    again = run(mixed_inputs, out)
    assert again.files == 0 and again.files_skipped == 7 and again.inputs == 0
    assert sorted(samples_of(out)) == first
    assert verify(out).ok


def test_rerun_with_other_settings_is_refused(mixed_inputs, tmp_path):
    run(mixed_inputs, tmp_path / "ds")
    with pytest.raises(ValueError, match="audio_rate"):
        run(mixed_inputs, tmp_path / "ds", audio_rate=8000)


def test_new_files_are_added_on_rerun(mixed_inputs, tmp_path):
    out = tmp_path / "ds"
    run(mixed_inputs, out)
    (mixed_inputs / "more.txt").write_text("another record")
    again = run(mixed_inputs, out)
    assert (again.files, again.kept) == (1, 1)
    assert verify(out).counts["kept"] == 17


def test_sigkill_mid_ingest_then_resume_equals_clean_run(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for f in range(3):
        rows = [json.dumps({"id": f"{f}-{i}", "text": f"record {f} {i}"}) for i in range(40)]
        (src / f"part{f}.jsonl").write_text("\n".join(rows) + "\n")
    settings = {"workers": 1, "tasks": 2, "max_shard_count": 7}
    clean = tmp_path / "clean"
    ingest([str(src)], clean, IngestConfig(**settings))

    crashed = tmp_path / "crashed"
    script = textwrap.dedent(f"""
        import os, signal
        from vla_data.ingest import runner, IngestConfig
        calls = 0
        real_keep = runner.TaskWriter.keep
        def keep(self, sample):
            global calls
            calls += 1
            if calls == 53:
                os.kill(os.getpid(), signal.SIGKILL)
            return real_keep(self, sample)
        runner.TaskWriter.keep = keep
        runner.ingest([{str(src)!r}], {str(crashed)!r}, IngestConfig(**{settings!r}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()
    assert not verify(crashed).ok or verify(crashed).inputs < 120  # partial state was left behind
    ingest([str(src)], crashed, IngestConfig(**settings))
    report = verify(crashed)
    assert report.ok, report.problems
    assert report.counts["kept"] == 120
    a, b = samples_of(clean), samples_of(crashed)
    assert sorted(a) == sorted(b)
    assert all(a[k].payloads == b[k].payloads for k in a)
    assert not list(crashed.rglob(".*.tmp"))


def test_parallel_ingest_matches_serial(mixed_inputs, tmp_path):
    serial = run(mixed_inputs, tmp_path / "serial", tasks=4)
    parallel = ingest([str(mixed_inputs)], tmp_path / "parallel", IngestConfig(workers=2, tasks=4))
    assert (serial.kept, serial.quarantined) == (parallel.kept, parallel.quarantined)
    a, b = samples_of(tmp_path / "serial"), samples_of(tmp_path / "parallel")
    assert sorted(a) == sorted(b)
    assert sorted(p.name for p in (tmp_path / "serial/shards").iterdir()) == sorted(
        p.name for p in (tmp_path / "parallel/shards").iterdir()
    )


def test_text_formats_and_fields(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    with gzip.open(src / "web.jsonl.gz", "wt") as f:
        f.write(json.dumps({"doc": "a", "body": "compressed text", "lic": "mit"}) + "\n")
    (src / "arr.json").write_text(
        json.dumps([{"doc": "b", "body": "from json"}, {"doc": "c", "body": 5}])
    )
    pq.write_table(pa.table({"doc": ["d", "e"], "body": ["parquet one", None]}), src / "t.parquet")
    out = tmp_path / "ds"
    cfg = IngestConfig(
        workers=1, text_field="body", id_field="doc", license_field="lic", default_license="cc0"
    )
    report = ingest([str(src)], out, cfg)
    assert (report.kept, report.quarantined) == (3, 2)
    by_id = {s.id: s for s in samples_of(out).values()}
    assert by_id["a"].payloads["txt"] == b"compressed text" and by_id["a"].license == "mit"
    assert by_id["b"].license == "cc0" and by_id["d"].source.endswith("t.parquet#row0")
    errors = sorted(e.error for e in read_ledger(out / "ledger") if e.status is Status.QUARANTINED)
    assert errors == ["text field 'body' is a int", "text field 'body' is missing"]


def test_truncated_gzip_quarantines_the_rest_and_goes_on(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    blob = gzip.compress(
        ("\n".join(json.dumps({"text": f"row {i} " * 50}) for i in range(200))).encode()
    )
    (src / "cut.jsonl.gz").write_bytes(blob[: len(blob) // 2])
    (src / "fine.txt").write_text("still ingested")
    report = run(src, tmp_path / "ds")
    assert report.quarantined == 1 and report.kept >= 2
    bad = [e for e in read_ledger(tmp_path / "ds/ledger") if e.status is Status.QUARANTINED]
    assert "unreadable after" in bad[0].error and "cut.jsonl.gz" in bad[0].source
    assert verify(tmp_path / "ds").ok


def test_audio_is_resampled_to_flac(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write_wav(src / "st.wav", seconds=1.5, rate=44100, channels=2)
    out = tmp_path / "ds"
    run(src, out, audio_rate=16000, audio_channels=1)
    (s,) = samples_of(out).values()
    assert (s.meta.sample_rate, s.meta.channels, s.meta.source_sample_rate) == (16000, 1, 44100)
    assert abs(s.meta.duration_s - 1.5) < 0.01
    with av.open(io.BytesIO(s.payloads["flac"])) as c:
        st = c.streams.audio[0]
        assert st.codec_context.name == "flac" and st.rate == 16000
        n = sum(f.samples for f in c.decode(st))
    assert abs(n - 24000) < 50


def test_gps_is_stripped_losslessly_and_exif_kept(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    jpeg_with_gps(src / "p.jpg")
    out = tmp_path / "ds"
    run(src, out)
    (s,) = samples_of(out).values()
    assert s.meta.gps_stripped and s.meta.exif["Make"] == "TestCam"
    assert s.created.year == 2024
    stored = Image.open(io.BytesIO(s.payloads["jpg"]))
    assert ExifTags.Base.GPSInfo not in stored.getexif()
    original = Image.open(src / "p.jpg")
    assert np.array_equal(np.asarray(stored), np.asarray(original))  # pixels untouched
    kept = ingest([str(src)], tmp_path / "gps", IngestConfig(workers=1, strip_gps=False))
    assert kept.kept == 1
    (g,) = samples_of(tmp_path / "gps").values()
    assert ExifTags.Base.GPSInfo in Image.open(io.BytesIO(g.payloads["jpg"])).getexif()


def test_replace_jpeg_exif_refuses_non_jpeg():
    with pytest.raises(ValueError, match="not a JPEG"):
        replace_jpeg_exif(b"\x89PNG....", b"")


@pytest.mark.parametrize(
    "name, data, error",
    [
        ("pickled.npy", "pickle", "Object arrays cannot be loaded"),
        ("cube.npy", np.zeros((2, 2, 2), np.float32), "must be 2-D"),
        ("nan.npy", np.array([[0.0, np.nan]]), "non-finite"),
        ("ragged.csv", b"a,b\n1,2\n3\n", "line 3 has 1 fields"),
        ("inf.csv", b"t,a\n0,1\n0.1,inf\n", "non-finite"),
        ("clock.csv", b"t,a\n0,1\n0,2\n", "strictly increasing"),
        ("words.csv", b"a\nfast\n", "could not convert"),
    ],
)
def test_bad_actions_are_quarantined(tmp_path, name, data, error):
    src = tmp_path / "src"
    src.mkdir()
    if isinstance(data, bytes):
        (src / name).write_bytes(data)
    else:
        buf = io.BytesIO()
        if isinstance(data, str):
            np.save(buf, np.array([{"x": 1}], dtype=object), allow_pickle=True)
        else:
            np.save(buf, data)
        (src / name).write_bytes(buf.getvalue())
    report = run(src, tmp_path / "ds")
    assert report.quarantined == 1
    (entry,) = read_ledger(tmp_path / "ds/ledger")
    assert error in entry.error


def test_actions_with_names_and_time(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rows = "\n".join(f"{i / 10},{i * 0.01},{0.5},{0},{3 + i * 0.1}" for i in range(20))
    (src / "can.csv").write_text("t,steering,throttle,brake,speed\n" + rows + "\n")
    structured = np.zeros(5, dtype=[("steering", "f4"), ("speed", "f8")])
    np.save(src / "named.npy", structured)
    run(src, tmp_path / "ds")
    by_dims = {tuple(s.meta.dims): s for s in samples_of(tmp_path / "ds").values()}
    can = by_dims[("steering", "throttle", "brake", "speed")]
    assert can.meta.steps == 20 and abs(can.meta.rate_hz - 10.0) < 1e-6
    assert np.load(io.BytesIO(can.payloads["time.npy"])).shape == (20,)
    assert np.load(io.BytesIO(by_dims[("steering", "speed")].payloads["actions.npy"])).shape == (
        5,
        2,
    )


def test_discover_expands_globs_and_refuses_missing(tmp_path, mixed_inputs):
    files = discover([str(mixed_inputs / "*.txt")])
    assert [f.url.rsplit("/", 1)[1] for f in files] == ["broken.txt", "poem.txt"]
    with pytest.raises(SourceError, match="does not exist"):
        discover([str(tmp_path / "nope")])
    with pytest.raises(SourceError, match="matches no files"):
        discover([str(mixed_inputs / "*.flac")])
    assert {f.url.rsplit("/", 1)[1] for f in discover([f"file://{mixed_inputs}"])} >= {
        "docs.jsonl",
        "tone.wav",
    }


def test_fsspec_urls_are_ingested(tmp_path):
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/bucket/docs/a.jsonl", b'{"id": "m1", "text": "from memory"}\n')
    fs.pipe("/bucket/docs/b.jsonl", b'{"id": "m2", "text": "also from memory"}\n')
    try:
        report = ingest(["memory://bucket/docs/*.jsonl"], tmp_path / "ds", IngestConfig(workers=1))
    finally:
        fs.rm("/bucket", recursive=True)
    assert report.kept == 2
    sources = sorted(s.source for s in samples_of(tmp_path / "ds").values())
    assert sources == ["memory:///bucket/docs/a.jsonl#L1", "memory:///bucket/docs/b.jsonl#L1"]
