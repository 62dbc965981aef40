import json
import shutil

from click.testing import CliRunner

from vla_data.cli import main
from vla_data.ingest import IngestConfig, ingest
from vla_data.verify import verify


def dataset(mixed_inputs, tmp_path):
    out = tmp_path / "ds"
    ingest([str(mixed_inputs)], out, IngestConfig(workers=1, tasks=2, max_shard_count=4))
    assert verify(out).ok
    return out


def test_verify_catches_a_deleted_shard(mixed_inputs, tmp_path):
    out = dataset(mixed_inputs, tmp_path)
    victim = sorted((out / "shards").glob("*.tar"))[0]
    victim.unlink()
    report = verify(out)
    assert not report.ok
    assert any(f"shard {victim.name}" in p and "missing" in p for p in report.problems)
    assert any("is in no shard" in p for p in report.problems)


def test_verify_catches_a_doubled_key(mixed_inputs, tmp_path):
    out = dataset(mixed_inputs, tmp_path)
    first = sorted((out / "shards").glob("*.tar"))[0]
    shutil.copy(first, out / "shards" / "copy-000000.tar")
    problems = verify(out).problems
    assert any("appears 2 times in shards" in p for p in problems)
    assert any("copy-000000.tar" in p and "not committed" in p for p in problems)


def test_verify_catches_a_doubled_ledger_entry_and_a_lost_input(mixed_inputs, tmp_path):
    out = dataset(mixed_inputs, tmp_path)
    ledger = sorted((out / "ledger").glob("*.jsonl"))[0]
    lines = ledger.read_text().splitlines()
    ledger.write_text("\n".join(lines + [lines[0]]) + "\n")
    problems = verify(out).problems
    assert any("has 2 ledger entries" in p for p in problems)
    assert any(p.startswith("inputs (") for p in problems)


def test_verify_catches_a_modified_shard(mixed_inputs, tmp_path):
    out = dataset(mixed_inputs, tmp_path)
    shard = sorted((out / "shards").glob("*.tar"))[0]
    data = bytearray(shard.read_bytes())
    data[-2000] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert any("SHA-256" in p for p in verify(out).problems)


def test_cli_verify_exit_codes(mixed_inputs, tmp_path):
    out = dataset(mixed_inputs, tmp_path)
    runner = CliRunner()
    ok = runner.invoke(main, ["verify", str(out)])
    assert ok.exit_code == 0 and "ok" in ok.output
    sorted((out / "shards").glob("*.tar"))[0].unlink()
    bad = runner.invoke(main, ["verify", str(out)])
    assert bad.exit_code == 1 and "verify failed" in bad.output and "missing" in bad.output


def test_cli_ingest_stats_inspect(mixed_inputs, tmp_path):
    runner = CliRunner()
    out = tmp_path / "ds"
    res = runner.invoke(main, ["ingest", str(mixed_inputs), "--out", str(out), "-j", "1", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output[res.output.index("{") :])
    assert report["kept"] == 16 and report["quarantined"] == 2
    stats = json.loads(runner.invoke(main, ["stats", str(out)]).output)
    assert stats["samples"] == 16 and stats["by_modality"]["text"]["samples"] == 13
    assert stats["audio_hours"] > 0 and stats["by_license"]["cc0"] == 12
    assert stats["ledger"] == {"kept": 16, "quarantined": 2}
    shard = sorted((out / "shards").glob("*.tar"))[0]
    listing = runner.invoke(main, ["inspect", str(shard), "--json"])
    assert listing.exit_code == 0 and json.loads(listing.output.splitlines()[0])["key"]
    qshard = sorted((out / "quarantine").glob("*.tar"))[0]
    assert "QUARANTINED" in runner.invoke(main, ["inspect", str(qshard)]).output


def test_cli_bad_input_exits_with_one_line_cause(tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["ingest", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "does not exist" in res.output
    res = runner.invoke(
        main, ["ingest", str(tmp_path), "--out", str(tmp_path / "o"), "--audio-rate", "5"]
    )
    assert res.exit_code == 1 and "audio_rate" in res.output
    notatar = tmp_path / "x.tar"
    notatar.write_bytes(b"not a tar at all" * 100)
    res = runner.invoke(main, ["inspect", str(notatar)])
    assert res.exit_code == 1 and "x.tar" in res.output
