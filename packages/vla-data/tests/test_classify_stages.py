"""fastText in pipelines: the language_id stage, `vla-data train-classifier`, the fasttext stage."""

import json
import random

import pytest
from click.testing import CliRunner

from vla_data.classify import FastTextClassifier
from vla_data.classify.train import split_examples, train_classifier
from vla_data.cli import main
from vla_data.corpus import SENTENCES
from vla_data.ingest import IngestConfig, ingest
from vla_data.ledger import Status, read_ledger
from vla_data.pipeline import PipelineConfig, run_pipeline
from vla_data.shards import iter_samples
from vla_data.verify import verify

PRODUCTS = "phone watch laptop sneakers vitamins insurance loans casino tickets".split()
TOPICS = "river garden engine teacher market window harbour forest letter bridge".split()


def ad(rng: random.Random) -> str:
    p = rng.choice(PRODUCTS)
    return (
        f"Buy {p} now! {rng.randint(10, 90)}% off cheap {p}, free shipping, limited offer, "
        f"click here to order {p} today and win a bonus."
    )


def prose(rng: random.Random) -> str:
    a, b = rng.sample(TOPICS, 2)
    return (
        f"The old {a} stood beside the {b} for {rng.randint(2, 90)} years, and the people "
        f"of the town remembered how it changed with the seasons."
    )


def ingest_texts(tmp_path, texts: dict[str, str]):
    src = tmp_path / "raw"
    src.mkdir()
    lines = [json.dumps({"id": k, "text": t}, ensure_ascii=False) for k, t in texts.items()]
    (src / "docs.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    ingest([str(src)], tmp_path / "ds", IngestConfig(workers=1, tasks=2))
    return tmp_path / "ds"


def test_language_id_stage_labels_filters_and_flags(tmp_path):
    texts = {
        f"{lang}{i}": s
        for lang in ("en", "de", "zh", "ja")
        for i, s in enumerate(SENTENCES[lang][:3])
    }
    ds = ingest_texts(tmp_path, texts)
    config = PipelineConfig.model_validate(
        {
            "stages": [
                {
                    "type": "language_id",
                    "name": "lid",
                    "params": {"keep": ["en", "de", "zh"], "ipa_fallback": ["de"]},
                }
            ]
        }
    )
    report = run_pipeline(ds, tmp_path / "out", config)
    assert verify(tmp_path / "out").ok
    kept = {s.id: s.meta for p in (tmp_path / "out/shards").glob("*.tar") for s in iter_samples(p)}
    assert set(kept) == {k for k in texts if not k.startswith("ja")}
    assert {m.language for k, m in kept.items() if k.startswith("zh")} == {"cmn"}
    assert all(m.ipa_fallback == k.startswith("de") for k, m in kept.items())
    dropped = {
        e.id: e.reason for e in read_ledger(tmp_path / "out/ledger") if e.status is Status.FILTERED
    }
    assert dropped == {f"ja{i}": "language_not_kept" for i in range(3)}
    (row,) = report.stages
    assert row["counters"] == {"lang_en": 3, "lang_de": 3, "lang_zh": 3, "lang_ja": 3}
    entry = next(e for e in read_ledger(tmp_path / "out/ledger") if e.id == "en0")
    assert entry.scores["lid.prob"] > 0.5


def test_train_classifier_cli_then_fasttext_stage_drops_ads(tmp_path):
    rng = random.Random(0)
    rows = [{"text": ad(rng), "label": "ad"} for _ in range(300)]
    rows += [{"text": prose(rng), "label": "clean"} for _ in range(300)]
    train = tmp_path / "ads.jsonl"
    train.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    model = tmp_path / "ads.bin"
    result = CliRunner().invoke(
        main,
        [
            "train-classifier",
            str(train),
            "-o",
            str(model),
            "--epoch",
            "10",
            "--dim",
            "16",
            "--bucket",
            "20000",
        ],
    )
    assert result.exit_code == 0, result.output
    card = json.loads(result.output)
    assert set(card["labels"]) == {"ad", "clean"}
    assert card["heldout"]["n"] > 30 and card["heldout"]["accuracy"] >= 0.95
    assert json.loads((tmp_path / "ads.bin.json").read_text())["sha256"] == card["sha256"]

    rng = random.Random(1)  # unseen texts
    texts = {f"ad{i}": ad(rng) for i in range(5)} | {f"ok{i}": prose(rng) for i in range(5)}
    ds = ingest_texts(tmp_path, texts)
    config = PipelineConfig.model_validate(
        {
            "stages": [
                {
                    "type": "fasttext",
                    "name": "ads",
                    "params": {
                        "model": str(model),
                        "label": "ad",
                        "min_prob": 0.5,
                        "drop_label": True,
                    },
                }
            ]
        }
    )
    run_pipeline(ds, tmp_path / "out", config)
    ledger = {e.id: e for e in read_ledger(tmp_path / "out/ledger")}
    assert {k for k, e in ledger.items() if e.status is Status.FILTERED} == {
        f"ad{i}" for i in range(5)
    }
    assert ledger["ad0"].reason == "ads_ad" and ledger["ad0"].scores["ads.prob"] >= 0.5
    assert ledger["ok0"].scores["ads.prob"] < 0.5


def test_train_classifier_errors_and_split(tmp_path):
    one = tmp_path / "one.txt"
    one.write_text("__label__a some text\n__label__a more text\n")
    with pytest.raises(ValueError, match="at least 2 labels"):
        train_classifier(one, tmp_path / "m.bin", holdout=0.0)
    with pytest.raises(ValueError, match="unknown training options: nope"):
        train_classifier(one, tmp_path / "m.bin", nope=1)
    result = CliRunner().invoke(main, ["train-classifier", str(one), "-o", str(tmp_path / "m.bin")])
    assert result.exit_code != 0 and "at least 2 labels" in result.output
    pairs = [(f"text {i}", "x") for i in range(2000)]
    train, held = split_examples(pairs, 0.1)
    assert 150 < len(held) < 250 and split_examples(pairs, 0.1) == (train, held)


def test_fasttext_stage_rejects_unknown_label(tmp_path):
    model = FastTextClassifier.train(
        [("good text", "a"), ("bad text", "b")], epoch=1, dim=4, bucket=1000
    )
    model.save(tmp_path / "m.bin")
    config = PipelineConfig.model_validate(
        {
            "stages": [
                {"type": "fasttext", "params": {"model": str(tmp_path / "m.bin"), "label": "c"}}
            ]
        }
    )
    with pytest.raises(ValueError, match="no label 'c'"):
        config.build()


def test_shipped_recipes_load_by_name():
    from vla_data.pipeline.config import RECIPES

    for name in RECIPES:
        config = PipelineConfig.load(name)
        assert config.name == name and [s.type for s in config.stages][0] == "language_id"
    assert [s.name for s in PipelineConfig.load("web-text").stages] == [
        "lid",
        "gopher",
        "repetition",
        "c4",
        "fineweb",
        "ads",
        "pii",
    ]
    with pytest.raises(ValueError, match="no such file .*web-text"):
        PipelineConfig.load("no-such-recipe")
