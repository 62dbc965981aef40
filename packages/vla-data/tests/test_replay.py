import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from vla_data.cli import main
from vla_data.ingest import IngestConfig, ingest
from vla_data.pipeline import PipelineConfig, run_pipeline
from vla_data.pipeline.replay import replay


@pytest.fixture
def labelled(tmp_path):
    path = tmp_path / "labels.jsonl"
    rows = [{"text": "x" * n, "label": "keep" if n >= 20 else "drop"} for n in range(1, 41)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


@pytest.fixture
def pipeline_toml(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(
        '[[stages]]\ntype = "text_length"\nname = "length"\nparams = { min_chars = 10 }\n'
    )
    return path


def test_replay_finds_the_separating_threshold(labelled, pipeline_toml):
    curve = replay(PipelineConfig.load(pipeline_toml), "length", "chars", labelled)
    assert curve.current == 10 and curve.labelled == 40 and curve.positives == 21
    best = curve.best_f1()
    assert best["f1"] == 1.0 and 19 < best["threshold"] <= 20
    i = curve.thresholds.index(min(curve.thresholds))
    assert curve.recall[i] == 1.0 and curve.kept_fraction[i] == 1.0
    assert all(a >= b for a, b in zip(curve.kept_fraction, curve.kept_fraction[1:], strict=False))


def test_replay_on_a_filtered_dataset(labelled, pipeline_toml, tmp_path):
    src = tmp_path / "raw"
    src.mkdir()
    (src / "d.jsonl").write_text(
        "\n".join(json.dumps({"text": "y" * n}) for n in range(1, 31)) + "\n"
    )
    ingest([str(src)], tmp_path / "ds", IngestConfig(workers=1))
    config = PipelineConfig.load(pipeline_toml)
    run_pipeline(tmp_path / "ds", tmp_path / "filtered", config)
    curve = replay(config, "length", "chars", labelled, dataset=tmp_path / "filtered")
    at = {t: f for t, f in zip(curve.thresholds, curve.dataset_kept_fraction, strict=True)}
    assert at[min(at)] == 1.0 and at[max(at)] == 0.0  # the dataset's longest text has 30 chars
    near_20 = min(at, key=lambda t: abs(t - 20))
    assert at[near_20] == pytest.approx(sum(n >= near_20 for n in range(1, 31)) / 30)


def test_replay_errors(labelled, pipeline_toml, tmp_path):
    config = PipelineConfig.load(pipeline_toml)
    with pytest.raises(ValueError, match="no stage 'nope'"):
        replay(config, "nope", "chars", labelled)
    with pytest.raises(ValueError, match="no threshold on score 'words'"):
        replay(config, "length", "words", labelled)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "label": "maybe"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1: label 'maybe'"):
        replay(config, "length", "chars", bad)


def test_cli_replay_writes_json_and_png(labelled, pipeline_toml, tmp_path):
    out = tmp_path / "replay"
    res = CliRunner().invoke(
        main,
        [
            "replay",
            "-c",
            str(pipeline_toml),
            "--stage",
            "length",
            "--score",
            "chars",
            "--labels",
            str(labelled),
            "-o",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["best_f1"]["f1"] == 1.0
    data = json.loads((out / "replay.json").read_text())
    assert len(data["thresholds"]) == len(data["precision"]) == len(data["recall"])
    image = np.asarray(Image.open(out / "replay.png"))
    assert image.shape[0] > 300 and image.std() > 0
