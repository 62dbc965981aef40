from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from vla_data.corpus import generate_corpus
from vla_data.ingest import IngestConfig, ingest
from vla_tokenizers.cli import main


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    manifest = generate_corpus(root / "corpus")
    ingest(manifest.sources, root / "ds", IngestConfig(workers=1, tasks=2))
    return root / "ds"


@pytest.mark.parametrize("cmd", [[], ["build"], ["inspect"], ["encode"], ["roundtrip"], ["shards"]])
def test_help(cmd):
    result = CliRunner().invoke(main, [*cmd, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_build_inspect_encode_shards_roundtrip(dataset, tmp_path):
    run = CliRunner().invoke
    bundle = tmp_path / "bundle"
    r = run(
        main,
        ["build", str(bundle), "-d", str(dataset), "--vocab-size", "900", "--min-frequency", "1"],
    )
    assert r.exit_code == 0, r.output
    assert "digest" in r.output
    r = run(main, ["inspect", str(bundle)])
    summary = json.loads(r.stdout)
    assert r.exit_code == 0 and summary["text"]["bpe_ids"] == 900 and summary["fast"]
    r = run(main, ["encode", str(bundle), "Hello 世界 🚀", "--json"])
    enc = json.loads(r.stdout)
    assert enc["round_trip"] and enc["modality"][-1] == "special"
    r = run(main, ["roundtrip", str(bundle), str(dataset)])
    rt = json.loads(r.stdout)
    assert rt["text"]["samples"] == rt["text"]["exact"] > 0
    for d in rt["actions"]["bins"].values():
        assert d["max_abs_inside_bounds"] <= d["bin_width"]
    out = tmp_path / "tok"
    r = run(main, ["shards", str(dataset), "-b", str(bundle), "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["documents"] == report["samples"] > 0 and report["rejected"] == 0


def test_errors_are_one_line(dataset, tmp_path):
    run = CliRunner().invoke
    bundle = tmp_path / "bundle"
    run(
        main,
        ["build", str(bundle), "-d", str(dataset), "--vocab-size", "600", "--min-frequency", "1"],
    )
    (bundle / "vocab_layout.json").write_text("{}")
    r = run(main, ["inspect", str(bundle)])
    assert r.exit_code == 1
    assert "vocab_layout.json: SHA-256 does not match" in r.output
    assert len(r.output.strip().splitlines()) == 1
    r = run(main, ["build", str(tmp_path / "b2")])
    assert r.exit_code == 1 and "no text to train on" in r.output
    r = run(main, ["shards", str(dataset), "-b", str(bundle), "-o", str(tmp_path / "o")])
    assert r.exit_code == 1 and "SHA-256" in r.output
