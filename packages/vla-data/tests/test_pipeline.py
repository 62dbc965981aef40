import json
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from vla_data.cli import main
from vla_data.ingest import IngestConfig, ingest
from vla_data.ledger import Status, read_ledger
from vla_data.pipeline import Outcome, PipelineConfig, Stage, register, run_pipeline
from vla_data.pipeline.stage import STAGES, replace_text, sample_text
from vla_data.shards import file_sha256, iter_samples
from vla_data.verify import verify


class NoSpam(Stage):
    """Test-only stage: drops texts containing 'spam', fails on 'boom', redacts 'secret'."""

    type = "test_nospam"

    def apply(self, sample):
        text = sample_text(sample)
        if "boom" in text:
            raise RuntimeError("stage exploded")
        if "spam" in text:
            return Outcome.dropped("spam", {"spamminess": 1.0})
        if "secret" in text:
            new = replace_text(sample, text.replace("secret", "<X>"), f"op:{self.name}")
            return Outcome.kept({"spamminess": 0.0}, {"redacted": 1}, new)
        return Outcome.kept({"spamminess": 0.0})


@pytest.fixture(autouse=True)
def _register_test_stage():
    register(NoSpam)
    yield
    STAGES.pop("test_nospam", None)


@pytest.fixture
def source(tmp_path):
    src = tmp_path / "raw"
    src.mkdir()
    texts = ["a fine text"] * 10 + ["x", "buy spam now", "my secret code", "boom goes it"] * 5
    rows = [json.dumps({"id": f"r{i}", "text": t}) for i, t in enumerate(texts)]
    (src / "docs.jsonl").write_text("\n".join(rows) + "\n")
    (src / "tone.txt").write_text("another fine text that is long enough")
    ds = tmp_path / "ingested"
    ingest([str(src)], ds, IngestConfig(workers=1, tasks=3, max_shard_count=6))
    return ds


def config(**kw):
    stages = [
        {"type": "text_length", "name": "length", "params": {"min_chars": 3}},
        {"type": "test_nospam", "name": "nospam"},
    ]
    return PipelineConfig.model_validate({"name": "clean", "stages": stages, **kw})


def test_cascade_accounts_for_every_record(source, tmp_path):
    out = tmp_path / "clean"
    report = run_pipeline(source, out, config())
    assert (report.inputs, report.kept, report.filtered, report.quarantined) == (31, 16, 10, 5)
    check = verify(out)
    assert check.ok, check.problems
    rows = {r["stage"]: r for r in report.stages}
    assert rows["length"]["in"] == 26 and rows["length"]["dropped"] == {"too_short": 5}
    assert rows["nospam"]["in"] == 21 and rows["nospam"]["dropped"] == {"spam": 5}
    assert rows["nospam"]["counters"] == {"redacted": 5} and rows["nospam"]["kept"] == 16
    texts = [
        s.payloads["txt"].decode()
        for p in sorted((out / "shards").glob("*.tar"))
        for s in iter_samples(p)
    ]
    assert "my <X> code" in texts and not any("secret" in t for t in texts)
    redacted = next(
        s
        for p in (out / "shards").glob("*.tar")
        for s in iter_samples(p)
        if "<X>" in s.payloads["txt"].decode()
    )
    assert redacted.lineage[-1] == "op:nospam" and redacted.meta.chars == len("my <X> code")
    entries = list(read_ledger(out / "ledger"))
    spam = [e for e in entries if e.reason == "spam"]
    assert spam[0].stage == "nospam" and spam[0].scores == {
        "length.chars": 12.0,
        "nospam.spamminess": 1.0,
    }
    errors = [e.error for e in entries if e.status is Status.QUARANTINED]
    assert len(errors) == 5 and all("RuntimeError" in e and "stage exploded" in e for e in errors)
    assert json.loads((out / "stats.json").read_text())["kept"] == 16


def test_score_all_scores_dropped_records_in_later_stages(source, tmp_path):
    run_pipeline(source, tmp_path / "all", config(score_all=True))
    short = [e for e in read_ledger(tmp_path / "all/ledger") if e.reason == "too_short"]
    assert short and all("nospam.spamminess" in e.scores for e in short)


def test_output_is_deterministic_and_parallel_matches_serial(source, tmp_path):
    cfg = PipelineConfig.model_validate(
        {"stages": [{"type": "text_length", "params": {"min_chars": 3}}]}
    )
    run_pipeline(source, tmp_path / "a", cfg)
    run_pipeline(source, tmp_path / "b", cfg, workers=2)
    digests = [
        {p.name: file_sha256(p) for p in (tmp_path / d / "shards").glob("*.tar")} for d in "ab"
    ]
    assert digests[0] == digests[1] and len(digests[0]) >= 3


def test_rerun_resumes_and_other_config_is_refused(source, tmp_path):
    out = tmp_path / "clean"
    run_pipeline(source, out, config())
    again = run_pipeline(source, out, config())
    assert again.inputs == 31 and verify(out).ok
    with pytest.raises(ValueError, match="other settings"):
        run_pipeline(source, out, config(score_all=True))


def test_sigkill_mid_pipeline_then_resume_equals_clean_run(source, tmp_path):
    cfg = PipelineConfig.model_validate(
        {"max_shard_count": 2, "stages": [{"type": "text_length", "params": {"min_chars": 3}}]}
    )
    run_pipeline(source, tmp_path / "clean", cfg)
    crashed = tmp_path / "crashed"
    script = textwrap.dedent(f"""
        import os, signal
        from vla_data.pipeline import runner, PipelineConfig
        calls = 0
        real_keep = runner.TaskWriter.keep
        def keep(self, sample, scores=None, **kw):
            global calls
            calls += 1
            if calls == 9:
                os.kill(os.getpid(), signal.SIGKILL)
            return real_keep(self, sample, scores, **kw)
        runner.TaskWriter.keep = keep
        cfg = PipelineConfig.model_validate_json({cfg.model_dump_json()!r})
        runner.run_pipeline({str(source)!r}, {str(crashed)!r}, cfg)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()
    run_pipeline(source, crashed, cfg)
    assert verify(crashed).ok
    digests = [
        {p.name: file_sha256(p) for p in (tmp_path / d / "shards").glob("*.tar")}
        for d in ("clean", "crashed")
    ]
    assert digests[0] == digests[1]


def test_config_errors_name_file_and_field(tmp_path):
    bad = tmp_path / "p.toml"
    bad.write_text('[[stages]]\ntype = "text_length"\nparams = { min_chars = 5, max_chars = 2 }\n')
    with pytest.raises(ValueError, match="max_chars"):
        PipelineConfig.load(bad)
    bad.write_text('[[stages]]\ntype = "no_such_stage"\n')
    with pytest.raises(ValueError, match="unknown stage type 'no_such_stage'"):
        PipelineConfig.load(bad)
    bad.write_text("stages = []\n")
    with pytest.raises(ValueError, match=r"p.toml: stages"):
        PipelineConfig.load(bad)
    bad.write_text("[[stages]\n")
    with pytest.raises(ValueError, match="invalid TOML"):
        PipelineConfig.load(bad)


def test_cli_filter(source, tmp_path):
    toml = tmp_path / "p.toml"
    toml.write_text('name = "len"\n[[stages]]\ntype = "text_length"\nparams = { min_chars = 3 }\n')
    res = CliRunner().invoke(
        main, ["filter", str(source), "-c", str(toml), "-o", str(tmp_path / "o")]
    )
    assert res.exit_code == 0, res.output
    assert "text_length" in res.output and "5 filtered" in res.output
    res = CliRunner().invoke(
        main, ["filter", str(tmp_path), "-c", str(toml), "-o", str(tmp_path / "o2")]
    )
    assert res.exit_code == 1 and "no shards" in res.output
