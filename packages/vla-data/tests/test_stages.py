"""The built-in stages on real datasets: text filters, PII redaction, dedup (text and images)."""

import io
import json
import random

import numpy as np
import pytest
from PIL import Image

from vla_data.ingest import IngestConfig, ingest
from vla_data.ledger import Status, read_ledger
from vla_data.pipeline import DedupConfig, PipelineConfig, run_dedup, run_pipeline
from vla_data.shards import iter_samples
from vla_data.textfilters.pii import cn_id_check_char
from vla_data.verify import verify

NOUNS = (
    "river city garden engine teacher market window harbour forest letter bridge kitchen "
    "village station doctor library mountain festival painter orchard museum lantern "
    "carpenter meadow island tailor factory ferry bakery canal"
).split()
ADJECTIVES = "quiet busy old bright narrow warm distant careful patient early golden".split()
VERBS = "opened crossed painted repaired visited measured carried followed described".split()


def paragraph(rng: random.Random, n: int = 12) -> str:
    """English-like prose with stop words and varied vocabulary (distinct per seed)."""
    sentences = []
    for _ in range(n):
        a, b, c = rng.sample(NOUNS, 3)
        sentences.append(
            f"The {rng.choice(ADJECTIVES)} {a} {rng.choice(VERBS)} the {b} of the {c}, "
            f"and that was {rng.choice(ADJECTIVES)} to have with {rng.randint(2, 99)} friends."
        )
    return " ".join(sentences)


def valid_cn_id() -> str:
    body = "11010519491231002"
    return body + cn_id_check_char(body)


def make_dataset(tmp_path, records: list[dict], images: dict[str, bytes] | None = None):
    src = tmp_path / "raw"
    src.mkdir()
    (src / "docs.jsonl").write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n"
    )
    for name, data in (images or {}).items():
        (src / name).write_bytes(data)
    ingest([str(src)], tmp_path / "ds", IngestConfig(workers=1, tasks=2, max_shard_count=7))
    return tmp_path / "ds"


def texts_of(root):
    return {
        s.id: s.payloads["txt"].decode()
        for p in (root / "shards").glob("*.tar")
        for s in iter_samples(p)
        if "txt" in s.payloads
    }


def test_text_filter_cascade(tmp_path):
    rng = random.Random(0)
    good = [paragraph(rng) for _ in range(6)]
    records = [{"id": f"good{i}", "text": t} for i, t in enumerate(good)]
    records += [
        {"id": "short", "text": "Too short to be a document."},
        {"id": "repeat", "text": "\n".join(["buy the same line again and again."] * 30)},
        {"id": "ads", "text": good[0] + " Click here! Buy now! Order now! Free shipping! Act now!"},
        {"id": "pii", "text": good[1] + f" Mail jane.doe@example.org or see ID {valid_cn_id()}."},
        {"id": "js", "text": good[2] + "\nPlease enable javascript to view this page."},
    ]
    ds = make_dataset(tmp_path, records)
    config = PipelineConfig.model_validate(
        {
            "name": "web",
            "stages": [
                {"type": "gopher_quality", "name": "gopher"},
                {"type": "gopher_repetition", "name": "repetition"},
                {"type": "keywords", "name": "ads", "params": {"max_hits_per_1k_words": 20}},
                {"type": "c4_quality", "name": "c4", "params": {"min_num_sentences": 3}},
                {"type": "fineweb_quality", "name": "fineweb"},
                {"type": "pii_redact", "name": "pii"},
            ],
        }
    )
    report = run_pipeline(ds, tmp_path / "out", config)
    assert verify(tmp_path / "out").ok
    reasons = {
        e.id: (e.stage, e.reason)
        for e in read_ledger(tmp_path / "out/ledger")
        if e.status is Status.FILTERED
    }
    assert reasons["short"] == ("gopher", "gopher_short_doc")
    assert reasons["repeat"][0] in ("gopher", "repetition")
    assert reasons["ads"] == ("ads", "ads_density")
    kept = texts_of(tmp_path / "out")
    assert {"pii", "js", "good3"} <= set(kept)
    assert "<EMAIL>" in kept["pii"] and "<CN_ID>" in kept["pii"] and "jane.doe" not in kept["pii"]
    assert "javascript" not in kept["js"]
    rows = {r["stage"]: r for r in report.stages}
    assert rows["pii"]["counters"] == {"email": 1, "cn_id": 1}
    assert rows["c4"]["counters"]["lines_removed"] >= 1
    entry = next(e for e in read_ledger(tmp_path / "out/ledger") if e.id == "good3")
    assert (
        entry.scores["gopher.gopher_n_words"] > 50
        and "fineweb.fineweb_line_punct_ratio" in entry.scores
    )


def test_stage_parameters_are_validated():
    with pytest.raises(ValueError, match="gopher_quality"):
        PipelineConfig.model_validate(
            {"stages": [{"type": "gopher_quality", "params": {"nope": 1}}]}
        ).build()


def jpeg(array: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def test_dedup_text_and_images(tmp_path):
    rng = random.Random(1)
    base = [paragraph(rng, 20) for _ in range(8)]
    records = [{"id": f"doc{i}", "text": t} for i, t in enumerate(base)]
    words = base[0].split()
    words[5] = "zebra"
    records.append({"id": "near0", "text": " ".join(words)})  # one word edited
    records.append({"id": "exact1", "text": base[1]})
    yy, xx = np.mgrid[0:96, 0:128]
    picture = np.stack([(xx * 2) % 256, (yy * 3) % 256, ((xx + yy) * 5 % 256)], axis=-1).astype(
        np.uint8
    )
    other = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    images = {"a.jpg": jpeg(picture, 95), "b.jpg": jpeg(picture, 60), "c.jpg": jpeg(other, 90)}
    ds = make_dataset(tmp_path, records, images)

    out = tmp_path / "dedup"
    report = run_dedup(ds, out, DedupConfig(chunk_size=1000))
    assert verify(out).ok
    assert report.filtered == 3 and report.kept == 10
    entries = {e.id: e for e in read_ledger(out / "ledger")}
    assert (
        entries["near0"].reason == "near_duplicate"
        and entries["near0"].cluster == entries["doc0"].key
    )
    assert (
        entries["exact1"].status is Status.FILTERED
        and entries["exact1"].cluster == entries["doc1"].key
    )
    assert entries["doc0"].status is Status.KEPT and entries["doc0"].cluster == entries["doc0"].key
    images_fate = {i: entries[i].status for i in ("a.jpg", "b.jpg", "c.jpg")}
    assert sorted(images_fate.values()) == [Status.FILTERED, Status.KEPT, Status.KEPT]
    assert entries["c.jpg"].status is Status.KEPT and entries["c.jpg"].cluster is None
    again = run_dedup(ds, out, DedupConfig(chunk_size=1000))  # resumes: nothing redone
    assert again.kept == 10 and verify(out).ok


def test_exact_dedup_keeps_near_duplicates(tmp_path):
    rng = random.Random(2)
    a = paragraph(rng, 15)
    records = [
        {"id": "a", "text": a},
        {"id": "a2", "text": "  " + a.upper() + " "},
        {"id": "b", "text": a + " Extra words."},
    ]
    ds = make_dataset(tmp_path, records)
    report = run_dedup(ds, tmp_path / "exact", DedupConfig(text="exact", image="none"))
    fates = {e.id: e.reason for e in read_ledger(tmp_path / "exact/ledger")}
    assert fates == {"a": None, "a2": "exact_duplicate", "b": None} and report.kept == 2


def test_cli_dedup(tmp_path):
    from click.testing import CliRunner

    from vla_data.cli import main

    rng = random.Random(3)
    a = paragraph(rng, 10)
    ds = make_dataset(
        tmp_path,
        [{"id": "a", "text": a}, {"id": "b", "text": a}, {"id": "c", "text": paragraph(rng)}],
    )
    res = CliRunner().invoke(
        main, ["dedup", str(ds), "-o", str(tmp_path / "d"), "--chunk-size", "1000"]
    )
    assert res.exit_code == 0, res.output
    assert "3 inputs: 2 kept (1 clusters" in res.output
    bad = CliRunner().invoke(main, ["dedup", str(ds), "-o", str(tmp_path / "e"), "--bands", "0"])
    assert bad.exit_code == 1 and "bands" in bad.output
