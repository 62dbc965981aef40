"""Textbook lessons with computed answers, the worked-arithmetic checker and its stage."""

import json
import re

import pytest

from vla_data.ingest import IngestConfig, ingest
from vla_data.ledger import Status, read_ledger
from vla_data.pipeline import PipelineConfig, run_pipeline
from vla_data.textbook import SUBJECTS, check_equations, evaluate, lessons


def test_lessons_are_deterministic_bilingual_and_check_clean():
    docs = lessons(12, seed=3)
    assert docs == lessons(12, seed=3) and docs != lessons(12, seed=4)
    assert {(d["subject"], d["lang"]) for d in docs} == {
        (s, lang) for s in SUBJECTS for lang in ("en", "zh")
    }
    for doc in docs:
        steps = check_equations(doc["text"])
        assert len(steps) == len(doc["answers"]) == 4 and all(e.ok for e in steps)
        assert [e.stated for e in steps] == [a["answer"] for a in doc["answers"]]
    assert any("例1：" in d["text"] for d in docs) and any("Example 1." in d["text"] for d in docs)


def test_checker_catches_a_corrupted_answer_and_accepts_rounding():
    doc = lessons(3, seed=0)[2]["text"]  # physics, English
    first = check_equations(doc)[0]
    stated = re.search(r"= (-?\d+(?:\.\d+)?) ", doc[doc.index(first.expression) :]).group(1)
    wrong = doc.replace(
        f"= {stated} ", f"= {float(stated) + 1:.{len(stated.partition('.')[2])}f} ", 1
    )
    assert [e.ok for e in check_equations(wrong)].count(False) == 1
    assert check_equations("so 0.5 × 9.81 × 3² = 44.1 m")[0].ok  # 44.145 shown to 1 decimal
    assert not check_equations("so 0.5 × 9.81 × 3² = 44.2 m")[0].ok
    assert check_equations("解：4 × 23 − 87 = 5 支。")[0].ok
    assert [e.ok for e in check_equations("(3 + 4) × 2 = 15, and 10 ÷ 4 = 2.5")] == [False, True]
    assert check_equations("version 1.2 = 3, g = 9.81 m/s²") == []  # no operator: not a step
    assert check_equations("5 ÷ 0 = 1")[0].value is None


@pytest.mark.parametrize("expr", ["__import__('os')", "2 ** 99", "x + 1", "(1 + 2"])
def test_evaluate_refuses_anything_but_small_arithmetic(expr):
    with pytest.raises(ValueError):
        evaluate(expr)


def test_worked_math_stage_drops_wrong_lessons(tmp_path):
    docs = lessons(4, seed=1)
    bad = dict(docs[1])
    step = check_equations(bad["text"])[0]
    bad["text"] = bad["text"].replace(f"{step.expression} = ", f"{step.expression} = 1", 1)
    bad["id"] = "corrupted"
    src = tmp_path / "raw"
    src.mkdir()
    rows = [{"id": d["id"], "text": d["text"]} for d in [*docs, bad]]
    (src / "t.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    ingest([str(src)], tmp_path / "ds", IngestConfig(workers=1, tasks=1))
    config = PipelineConfig.model_validate({"stages": [{"type": "worked_math", "name": "math"}]})
    report = run_pipeline(tmp_path / "ds", tmp_path / "out", config)
    dropped = {
        e.id: e.reason for e in read_ledger(tmp_path / "out/ledger") if e.status is Status.FILTERED
    }
    assert dropped == {"corrupted": "worked_math_wrong_step"}
    assert report.stages[0]["counters"] == {"equations": 20, "wrong_steps": 1}
