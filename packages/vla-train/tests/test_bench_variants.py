"""Every variant of bench/megatron_mfu.py is a valid one-GPU run: a typo in a variant would
otherwise surface only on the device, after minutes of set-up."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from vla_train.config import TrainConfig
from vla_train.megatron_engine import check_layout, transformer_overrides

BENCH = Path(__file__).resolve().parents[1] / "bench" / "megatron_mfu.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("megatron_mfu", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = load_bench()


@pytest.mark.parametrize("name", sorted(bench.VARIANTS))
def test_variant_is_a_valid_one_gpu_config(name: str, tmp_path: Path) -> None:
    cfg = TrainConfig.from_dict(bench.variant_config(name, tmp_path, 0, 4096, 15, 2))
    assert check_layout(cfg, 1) == 1
    over = transformer_overrides(cfg, have_te=True)
    v = bench.VARIANTS[name]
    assert cfg.micro_batch_size == v.get("micro", 2)
    assert (
        cfg.accumulation_steps(1) == v.get("global", cfg.micro_batch_size) // cfg.micro_batch_size
    )
    assert (over.get("fp8") is not None) == name.startswith("fp8"), over.get("fp8")
    if "graphs" in name:
        assert over["cuda_graph_impl"] == "local"


def test_every_fp8_ratio_pairs_existing_variants() -> None:
    pairs = bench.FP8_VS_BF16
    assert pairs and all(a in bench.VARIANTS and b in bench.VARIANTS for a, b in pairs)
