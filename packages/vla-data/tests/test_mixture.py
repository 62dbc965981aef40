"""MixturePlan: the seeds' 30T recipe's arithmetic, temperature sampling, stages, bad input."""

from __future__ import annotations

import math

import pytest

from vla_data.mixture import MixtureError, MixturePlan

T = 1_000_000_000_000


@pytest.fixture(scope="module")
def seeds() -> MixturePlan:
    return MixturePlan.recipe("seeds-30t-mixture")


def test_seeds_recipe_arithmetic(seeds: MixturePlan) -> None:
    assert seeds.total_tokens == 30 * T
    assert sum(b.tokens for b in seeds.buckets) == 30 * T
    assert sum(s.tokens for s in seeds.stages) == 30 * T
    assert [s.name for s in seeds.stages] == ["cold", "mid", "hot"]
    # zh + en = 90% of the language-bearing tokens, other languages 10%, in every such modality.
    lang = [b for b in seeds.buckets if b.language is not None]
    lang_total = sum(b.tokens for b in lang)
    zh_en = sum(b.tokens for b in lang if b.language in ("zh", "en"))
    assert zh_en / lang_total == pytest.approx(0.9, abs=1e-12)
    for modality in {b.modality for b in lang}:
        m = [b for b in lang if b.modality == modality]
        share = sum(b.tokens for b in m if b.language in ("zh", "en")) / sum(b.tokens for b in m)
        assert share == pytest.approx(0.9, abs=1e-12), modality
    # The documented modality split.
    expected = {
        "text": 0.60,
        "image": 0.10,
        "audio": 0.08,
        "rig": 0.15,
        "3d": 0.02,
        "actions": 0.05,
    }
    for modality, share in expected.items():
        assert seeds.share(field="modality", values={modality}) == pytest.approx(share), modality
    assert sum(expected.values()) == pytest.approx(1.0)
    # A full run draws exactly total_tokens; every stage's weights are a distribution.
    assert sum(seeds.planned_tokens().values()) == pytest.approx(30 * T, rel=1e-12)
    for stage in seeds.stages:
        w = seeds.weights(stage)
        assert sum(w.values()) == pytest.approx(1.0) and min(w.values()) > 0


def test_temperature_sampling_formula(seeds: MixturePlan) -> None:
    base = seeds.weights()
    for b in seeds.buckets:  # T = 1: weights are the quota shares
        assert base[b.name] == pytest.approx(b.tokens / seeds.total_tokens)
    mid = seeds.weights("mid")  # T = 1.5 with multipliers, by hand
    raw = {b.name: b.tokens ** (1 / 1.5) for b in seeds.buckets}
    for k in ("driving__rig", "robot__actions", "procedural3d__3d"):
        raw[k] *= 1.5
    z = sum(raw.values())
    for k, v in raw.items():
        assert mid[k] == pytest.approx(v / z)
    # A higher temperature flattens: the smallest bucket gains, the largest loses.
    flat = seeds.model_copy(update={"temperature": 3.0}).weights()
    assert flat["curated_multi__text"] > base["curated_multi__text"]
    assert flat["web_zh__text"] < base["web_zh__text"]


def test_stage_schedule_switches_at_token_counts(seeds: MixturePlan) -> None:
    assert seeds.stage_boundaries() == [(0, 24 * T), (24 * T, 28.5 * T), (28.5 * T, 30 * T)]
    assert seeds.stage_at(0).name == "cold"
    assert seeds.stage_at(24 * T - 1).name == "cold"
    assert seeds.stage_at(24 * T).name == "mid"
    assert seeds.stage_at(29 * T).name == "hot"
    assert seeds.stage_at(31 * T).name == "hot"
    hot, cold = seeds.weights_at(29 * T), seeds.weights_at(0)
    assert hot["curated_en__text"] > 3 * cold["curated_en__text"]
    assert hot["web_en__text"] < cold["web_en__text"]


def test_scaled_keeps_shape_and_sums(seeds: MixturePlan) -> None:
    small = seeds.scaled(3_000_000)
    assert small.total_tokens == 3_000_000
    assert sum(b.tokens for b in small.buckets) == 3_000_000
    assert sum(s.tokens for s in small.stages) == 3_000_000
    for name, w in small.weights("hot").items():
        assert math.isclose(w, seeds.weights("hot")[name], rel_tol=1e-4)


def test_round_trip_json(tmp_path, seeds: MixturePlan) -> None:
    path = seeds.save(tmp_path / "plan.json")
    assert MixturePlan.load(path) == seeds


def _plan(**over) -> dict:
    data = {
        "name": "p",
        "total_tokens": 100,
        "buckets": [
            {"name": "a__text", "modality": "text", "tokens": 60},
            {"name": "b__text", "modality": "text", "tokens": 40},
        ],
        "stages": [{"name": "cold", "tokens": 100}],
    }
    data.update(over)
    return data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"total_tokens": 101}, "bucket quotas sum to 100"),
        ({"stages": [{"name": "cold", "tokens": 90}]}, "stage lengths sum to 90"),
        (
            {"stages": [{"name": "cold", "tokens": 100, "multipliers": {"z*": 2.0}}]},
            "matches no bucket",
        ),
        (
            {"stages": [{"name": "cold", "tokens": 100, "multipliers": {"*": 0.0}}]},
            "every bucket has weight 0",
        ),
        (
            {"buckets": [{"name": "a__text", "modality": "text", "tokens": -5}]},
            "buckets.0.tokens ('a__text')",
        ),
    ],
)
def test_bad_plans_name_the_record(change, message) -> None:
    with pytest.raises(MixtureError, match=message.replace("(", r"\(").replace(")", r"\)")):
        MixturePlan.from_dict(_plan(**change), "plan.toml")


def test_bad_file_is_named(tmp_path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [unclosed\n")
    with pytest.raises(MixtureError, match="bad.toml"):
        MixturePlan.load(bad)
