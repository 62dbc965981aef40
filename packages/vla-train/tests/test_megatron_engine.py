"""The megatron engine's pure helpers on CPU (no megatron import, no CUDA): TransformerConfig
overrides, the layout check, packed-document boundaries and masks, the loss terms, the config
rules of `[parallel]`/`[fp8]`, and the refusal to start without CUDA. Plus one subprocess run of
the checkpoint resharding path (`tests/_megatron_tp_ckpt.py` under torchrun with gloo): saved at
tensor parallel 2 (and an MoE at expert parallel 2), loaded at 1, same logits."""

from __future__ import annotations

import ast
import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vla_train.config import TrainConfig, TrainConfigError
from vla_train.megatron_engine import (
    MegatronTrainer,
    block_causal_mask,
    check_layout,
    check_spec_options,
    document_boundaries,
    fuse_te_wgrad_accumulation,
    have_apex_wgrad_kernel,
    hide_padding_flags,
    init_torch_adam_state,
    keep_torch_adam_step_on_model_space_load,
    load_model_state,
    loss_terms,
    model_sharded_state_dict,
    moe_fusion_overrides,
    nonfinite_grad_names,
    optimizer_layout_problem,
    optimizer_precision_options,
    restore_torch_adam_steps,
    restore_tracker_states,
    rng_tracker_options,
    tracker_state_tensors,
    transformer_overrides,
    wants_te_only_wgrad_fusion,
)

HERE = Path(__file__).resolve().parent


def have_megatron() -> bool:
    return (
        importlib.util.find_spec("megatron") is not None
        and (
            Path(importlib.util.find_spec("megatron").submodule_search_locations[0]) / "core"
        ).is_dir()
    )


needs_megatron = pytest.mark.skipif(
    not have_megatron(), reason="megatron-core is not installed (extra 'megatron')"
)


def cfg_of(preset: str = "vla-1b-dense", **over) -> TrainConfig:
    """A megatron-engine TrainConfig (paths need not exist: nothing is read)."""
    data = {
        "engine": "megatron",
        "out_dir": "runs/x",
        "seq_length": 4096,
        "micro_batch_size": 2,
        "global_batch_size": 512,
        "model": {"preset": preset},
        "data": {"shards": "data/tokens"},
        "schedule": {"train_steps": 10},
    }
    data.update(over)
    return TrainConfig.from_dict(data, "t.toml")


# ---- transformer_overrides -----------------------------------------------------------------------


def test_overrides_default_layout() -> None:
    kw = transformer_overrides(cfg_of(), have_te=False)
    for k in (
        "tensor_model_parallel_size",
        "pipeline_model_parallel_size",
        "context_parallel_size",
        "expert_model_parallel_size",
        "expert_tensor_parallel_size",
    ):
        assert kw[k] == 1, k
    assert kw["virtual_pipeline_model_parallel_size"] is None
    assert kw["sequence_parallel"] is False
    assert kw["pipeline_dtype"] is torch.bfloat16  # precision "auto" = BF16 on GPUs
    assert kw["calculate_per_token_loss"] is True
    assert (kw["cross_entropy_fusion_impl"], kw["apply_rope_fusion"]) == ("native", False)
    assert not any(k.startswith(("fp8", "recompute")) for k in kw)
    te = transformer_overrides(cfg_of(), have_te=True)
    assert (te["cross_entropy_fusion_impl"], te["apply_rope_fusion"]) == ("te", True)
    no_fusion = cfg_of(megatron={"cross_entropy_fusion": False})
    kw = transformer_overrides(no_fusion, have_te=True)
    assert (kw["cross_entropy_loss_fusion"], kw["cross_entropy_fusion_impl"]) == (False, "native")
    kw = transformer_overrides(cfg_of(precision="fp32"), have_te=False)
    assert kw["pipeline_dtype"] is torch.float32


def test_optimizer_precision_options() -> None:
    assert optimizer_precision_options("fp32", precision_aware=False, bf16=True) == {}
    fp32 = optimizer_precision_options("fp32", precision_aware=True, bf16=True)
    assert fp32["use_precision_aware_optimizer"] is True
    assert fp32["main_params_dtype"] is fp32["exp_avg_dtype"] is torch.float32
    assert fp32["store_param_remainders"] is True  # FP32 master = BF16 param + 16-bit remainder
    bf16 = optimizer_precision_options("bf16", precision_aware=True, bf16=True)
    assert bf16["exp_avg_dtype"] is bf16["exp_avg_sq_dtype"] is torch.bfloat16
    assert not optimizer_precision_options("fp32", precision_aware=True, bf16=False)[
        "store_param_remainders"
    ]


def test_precision_aware_optimizer_rules() -> None:
    p = cfg_of().parallel
    assert not p.uses_precision_aware_optimizer  # off by default
    assert p.optimizer_bytes_per_param(bf16=True) == 12
    on = cfg_of(parallel={"precision_aware_optimizer": True}).parallel
    assert on.uses_precision_aware_optimizer
    assert on.optimizer_bytes_per_param(bf16=True) == 10
    assert on.optimizer_bytes_per_param(bf16=False) == 12  # no remainders
    bf16 = cfg_of(parallel={"adam_state_dtype": "bf16"}).parallel
    assert bf16.uses_precision_aware_optimizer  # BF16 moments need it
    assert bf16.optimizer_bytes_per_param(bf16=True) == 6
    with pytest.raises(TrainConfigError):
        cfg_of(parallel={"adam_state_dtype": "fp16"})
    for bad in ({"precision_aware_optimizer": True}, {"adam_state_dtype": "bf16"}):
        with pytest.raises(TrainConfigError, match="use_distributed_optimizer"):
            cfg_of(parallel={**bad, "use_distributed_optimizer": False})


def test_te_layers_get_fused_wgrad_accumulation_without_apex() -> None:
    class FakeTELinear(torch.nn.Linear):  # TE's modules carry this flag; megatron's do not
        fuse_wgrad_accumulation = False

    model = torch.nn.Sequential(FakeTELinear(2, 2), torch.nn.Linear(2, 2), FakeTELinear(2, 2))
    assert fuse_te_wgrad_accumulation(model) == 2
    assert model[0].fuse_wgrad_accumulation and model[2].fuse_wgrad_accumulation
    assert not hasattr(model[1], "fuse_wgrad_accumulation")
    assert fuse_te_wgrad_accumulation(model) == 0  # already on
    apex = have_apex_wgrad_kernel()
    assert wants_te_only_wgrad_fusion(cfg_of(), te_layers=True) is not apex
    assert not wants_te_only_wgrad_fusion(cfg_of(), te_layers=False)
    off = cfg_of(megatron={"gradient_accumulation_fusion": False})
    assert not wants_te_only_wgrad_fusion(off, te_layers=True)


def test_overrides_kernel_fusions() -> None:
    # weight-gradient accumulation into main_grad: TE layers, and APEX for the output layer
    apex = have_apex_wgrad_kernel()
    assert transformer_overrides(cfg_of(), have_te=True)["gradient_accumulation_fusion"] is apex
    on = cfg_of(megatron={"gradient_accumulation_fusion": True})
    assert transformer_overrides(on, have_te=True)["gradient_accumulation_fusion"] is True
    local = transformer_overrides(cfg_of(), have_te=True, te_layers=False)
    assert local["gradient_accumulation_fusion"] is False
    assert transformer_overrides(cfg_of(), have_te=False)["gradient_accumulation_fusion"] is False
    off = cfg_of(megatron={"gradient_accumulation_fusion": False, "bias_activation_fusion": False})
    kw = transformer_overrides(off, have_te=True)
    assert (kw["gradient_accumulation_fusion"], kw["bias_activation_fusion"]) == (False, False)
    assert transformer_overrides(cfg_of(), have_te=False)["bias_activation_fusion"] is True


def test_overrides_parallel_sizes() -> None:
    p = {
        "tensor_model_parallel_size": 2,
        "pipeline_model_parallel_size": 4,
        "virtual_pipeline_model_parallel_size": 2,
        "context_parallel_size": 2,
        "expert_model_parallel_size": 8,
        "sequence_parallel": True,
    }
    kw = transformer_overrides(cfg_of("vla-10b-moe", parallel=p), have_te=True)
    assert {k: kw[k] for k in p} == p
    assert kw["expert_tensor_parallel_size"] == 2  # default: the tensor parallel size
    p["expert_tensor_parallel_size"] = 1
    kw = transformer_overrides(cfg_of("vla-10b-moe", parallel=p), have_te=True)
    assert kw["expert_tensor_parallel_size"] == 1


@pytest.mark.parametrize(
    ("recipe", "megatron_recipe"), [("delayed", "delayed"), ("current", "tensorwise")]
)
def test_overrides_fp8(recipe: str, megatron_recipe: str) -> None:
    first_last = recipe == "current"  # megatron refuses BF16 first/last layers when delayed
    fp8 = {"recipe": recipe, "first_last_layers_bf16": first_last, "amax_history_len": 16}
    kw = transformer_overrides(cfg_of(fp8=fp8), have_te=True)
    assert kw["fp8"] == "hybrid" and kw["fp8_recipe"] == megatron_recipe
    assert (kw["fp8_amax_history_len"], kw["fp8_amax_compute_algo"]) == (16, "max")
    assert kw["first_last_layers_bf16"] is first_last and kw["fp8_param"] is False
    assert (kw["num_layers_at_start_in_bf16"], kw["num_layers_at_end_in_bf16"]) == (1, 1)
    kw = transformer_overrides(cfg_of(fp8={"recipe": recipe, "format": "e4m3"}), have_te=True)
    assert kw["fp8"] == "e4m3" and kw["first_last_layers_bf16"] is False
    assert kw["fp8_dot_product_attention"] is False
    primary = cfg_of(fp8={"recipe": recipe, "primary_weights": True, "attention": True})
    kw = transformer_overrides(primary, have_te=True)
    assert kw["fp8_param"] is True and kw["fp8_dot_product_attention"] is True


def test_overrides_recompute() -> None:
    sel = transformer_overrides(
        cfg_of(parallel={"recompute_granularity": "selective"}), have_te=True
    )
    assert sel["recompute_granularity"] == "selective" and "recompute_method" not in sel
    full = transformer_overrides(cfg_of(parallel={"recompute_granularity": "full"}), have_te=True)
    assert full["recompute_granularity"] == "full"
    assert (full["recompute_method"], full["recompute_num_layers"]) == ("uniform", 1)


def test_overrides_cuda_graphs() -> None:
    assert "cuda_graph_impl" not in transformer_overrides(cfg_of(), have_te=True)
    on = cfg_of(megatron={"cuda_graph_impl": "local", "cuda_graph_warmup_steps": 2})
    kw = transformer_overrides(on, have_te=True)
    assert (kw["cuda_graph_impl"], kw["cuda_graph_warmup_steps"]) == ("local", 2)
    fixed = cfg_of(
        megatron={"cuda_graph_impl": "local"},
        data={"shards": "data/tokens", "document_mask": False},
        global_batch_size=16,
    )
    assert check_layout(fixed, 8) == 8
    bad = cfg_of(
        megatron={"cuda_graph_impl": "local"},
        parallel={"recompute_granularity": "full"},
        global_batch_size=16,
    )
    with pytest.raises(TrainConfigError) as e:
        check_layout(bad, 8)
    assert "fixed shapes" in str(e.value) and "full recompute" in str(e.value)


def _config_fields() -> set[str]:
    """Field names of megatron-core's TransformerConfig (and its ModelParallelConfig base),
    read from the source without importing megatron (a 20 s import on a small CPU)."""
    root = Path(importlib.util.find_spec("megatron").submodule_search_locations[0]) / "core"
    fields = set()
    for path, cls in (
        (root / "transformer" / "transformer_config.py", "TransformerConfig"),
        (root / "model_parallel_config.py", "ModelParallelConfig"),
    ):
        tree = ast.parse(path.read_text())
        node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
        fields |= {
            s.target.id
            for s in node.body
            if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
        }
    return fields


@needs_megatron
def test_override_names_are_transformer_config_fields() -> None:
    fields = _config_fields()
    assert {"tensor_model_parallel_size", "num_layers", "fp8_recipe"} <= fields
    cfg = cfg_of(
        parallel={"recompute_granularity": "full", "tensor_model_parallel_size": 2},
        fp8={"recipe": "current", "first_last_layers_bf16": True},
        megatron={"cuda_graph_impl": "local", "te_activation": True},
    )
    for have_te in (False, True):
        assert sorted(set(transformer_overrides(cfg, have_te=have_te)) - fields) == []
    assert set(moe_fusion_overrides(cfg, te_layers=True)) <= fields


def test_te_activation_replaces_megatrons_swiglu_kernel() -> None:
    kw = transformer_overrides(cfg_of(), have_te=True)
    assert kw["bias_activation_fusion"] is True and kw["use_te_activation_func"] is False
    kw = transformer_overrides(cfg_of(megatron={"te_activation": True}), have_te=True)
    assert kw["bias_activation_fusion"] is False and kw["use_te_activation_func"] is True


def test_te_only_options_are_refused_with_the_local_spec() -> None:
    check_spec_options(cfg_of(), "local")  # nothing asked: fine
    cfg = cfg_of(megatron={"te_op_fuser": True, "te_activation": True}, fp8={"recipe": "delayed"})
    check_spec_options(cfg, "te")
    with pytest.raises(
        TrainConfigError,
        match=r"megatron.te_op_fuser, megatron.te_activation, fp8 need Transformer Engine "
        r"layers \(spec 'te'\), but the model uses spec 'local'",
    ):
        check_spec_options(cfg, "local")


def test_moe_fusions_default_on_with_te_layers_only() -> None:
    on = {"moe_permute_fusion": True, "moe_router_fusion": True}
    off = {"moe_permute_fusion": False, "moe_router_fusion": False}
    assert moe_fusion_overrides(cfg_of("vla-10b-moe"), te_layers=True) == on
    assert moe_fusion_overrides(cfg_of("vla-10b-moe"), te_layers=False) == off
    no = cfg_of("vla-10b-moe", megatron={"moe_fusions": False})
    assert moe_fusion_overrides(no, te_layers=True) == off
    forced = cfg_of("vla-10b-moe", megatron={"moe_fusions": True})
    with pytest.raises(TrainConfigError, match="needs Transformer Engine"):
        moe_fusion_overrides(forced, te_layers=False)


# ---- check_layout --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("preset", "parallel", "world", "gbs", "dp"),
    [
        ("vla-1b-dense", {}, 16, 512, 16),
        ("vla-1b-dense", {"tensor_model_parallel_size": 2, "sequence_parallel": True}, 16, 512, 8),
        (
            "vla-1b-dense",
            {"tensor_model_parallel_size": 2, "pipeline_model_parallel_size": 2,
             "context_parallel_size": 2},
            32, 256, 4,
        ),
        (
            "vla-1b-dense",
            {"pipeline_model_parallel_size": 4, "virtual_pipeline_model_parallel_size": 2},
            16, 64, 4,
        ),
        ("vla-10b-moe", {"expert_model_parallel_size": 8}, 16, 512, 16),
        (
            "vla-10b-moe",
            {"tensor_model_parallel_size": 2, "expert_model_parallel_size": 4,
             "expert_tensor_parallel_size": 1, "sequence_parallel": True},
            8, 64, 4,
        ),
    ],
)  # fmt: skip
def test_good_layouts_give_the_dp_size(preset, parallel, world, gbs, dp) -> None:
    data = {"shards": "data/tokens", "document_mask": "context_parallel_size" not in parallel}
    cfg = cfg_of(preset, parallel=parallel, global_batch_size=gbs, data=data)
    assert check_layout(cfg, world) == dp
    assert cfg.accumulation_steps(dp) == gbs // (2 * dp)


def test_context_parallel_refuses_packed_document_masks() -> None:
    # TE's CP keeps THD documents apart only when each is padded to a multiple of 2 x CP; the
    # engine split packed rows with the plain BSHD chunking, so attention crossed documents
    cp = {"context_parallel_size": 2}
    with pytest.raises(TrainConfigError, match="context_parallel_size 2 with data.document_mask"):
        check_layout(cfg_of(parallel=cp), 16)
    plain = cfg_of(parallel=cp, data={"shards": "data/tokens", "document_mask": False})
    assert check_layout(plain, 16) == 8


@pytest.mark.parametrize(
    ("preset", "parallel", "world", "over", "needles"),
    [
        (  # 32 heads, 8 KV heads
            "vla-1b-dense", {"tensor_model_parallel_size": 3}, 24, {"global_batch_size": 48},
            ["tensor_model_parallel_size 3 must divide the 32 heads and 8 KV heads"],
        ),
        (
            "vla-1b-dense", {"tensor_model_parallel_size": 16}, 16, {},
            ["tensor_model_parallel_size 16 must divide", "8 KV heads"],
        ),
        (  # 24 layers
            "vla-1b-dense", {"pipeline_model_parallel_size": 5}, 5,
            {"global_batch_size": 10, "micro_batch_size": 1},
            ["24 layers do not split into 5 pipeline stages"],
        ),
        (
            "vla-1b-dense",
            {"pipeline_model_parallel_size": 4, "virtual_pipeline_model_parallel_size": 4}, 16, {},
            ["24 layers do not split into 16 pipeline stages"],
        ),
        (  # 64 experts
            "vla-10b-moe", {"expert_model_parallel_size": 6}, 24, {"global_batch_size": 48},
            ["64 experts do not split over EP=6"],
        ),
        (
            "vla-1b-dense", {"expert_model_parallel_size": 2}, 16, {},
            ["expert_model_parallel_size > 1 needs an MoE model"],
        ),
        (
            "vla-1b-dense",
            {"tensor_model_parallel_size": 4, "pipeline_model_parallel_size": 2}, 12,
            {"global_batch_size": 24},
            ["world size 12 is not divisible by tensor x pipeline x context = 8"],
        ),
        (
            "vla-10b-moe", {"expert_model_parallel_size": 8}, 12, {"global_batch_size": 24},
            ["world size 12 is not divisible by expert-tensor x expert x pipeline = 8"],
        ),
        (
            "vla-1b-dense", {}, 16, {"global_batch_size": 100},
            ["global_batch_size / micro_batch_size = 50", "data-parallel size 16"],
        ),
        (
            "vla-1b-dense", {"context_parallel_size": 3}, 3,
            {"seq_length": 4095, "micro_batch_size": 1, "global_batch_size": 3},
            ["seq_length 4095 must be a multiple of 2 x CP = 6"],
        ),
        (
            "vla-1b-dense", {"tensor_model_parallel_size": 8, "sequence_parallel": True}, 8,
            {"seq_length": 4092},
            ["sequence parallel: seq_length 4092 not divisible by TP=8"],
        ),
        (  # 3 micro-batches per DP rank over 2 stages
            "vla-1b-dense",
            {"pipeline_model_parallel_size": 2, "virtual_pipeline_model_parallel_size": 2}, 16,
            {"global_batch_size": 24, "micro_batch_size": 1},
            ["interleaved pipelining needs micro-batches per step divisible"],
        ),
    ],
)  # fmt: skip
def test_bad_layouts_name_each_problem(preset, parallel, world, over, needles) -> None:
    cfg = cfg_of(preset, parallel=parallel, **over)
    with pytest.raises(TrainConfigError) as e:
        check_layout(cfg, world)
    msg = str(e.value)
    assert msg.startswith("megatron layout: ")
    for needle in needles:
        assert needle in msg, msg


def test_every_layout_problem_in_one_error() -> None:
    p = {"tensor_model_parallel_size": 3, "expert_model_parallel_size": 5}
    with pytest.raises(TrainConfigError) as e:
        check_layout(cfg_of("vla-10b-moe", parallel=p), 16)
    problems = str(e.value).removeprefix("megatron layout: ").split("; ")
    assert len(problems) == 6, problems
    for needle in (
        "world size 16 is not divisible by tensor x pipeline x context = 3",
        "tensor_model_parallel_size 3 must divide the 32 heads",
        "64 experts do not split over EP=5",
        "expert-tensor x expert x pipeline = 15",
        "data-parallel size 5",
        "sequence_parallel must be true for an MoE model",
    ):
        assert sum(needle in x for x in problems) == 1, (needle, problems)


# ---- packed documents ----------------------------------------------------------------------------


def packed_positions(rows: list[list[int]]) -> torch.Tensor:
    """`[b, s]` positions of rows packed with documents of the given lengths; a row may start
    inside a document (positions not at 0), as a packed stream cut into rows does."""
    out = []
    for lengths in rows:
        row = []
        for i, n in enumerate(lengths):
            start = 3 if i == 0 and n < 0 else 0  # negative first length: a continued document
            row += list(range(start, start + abs(n)))
        out.append(row)
    return torch.tensor(out)


def brute_documents(positions: torch.Tensor) -> list[list[int]]:
    """Document id of every token, row by row: a new document at each row start and wherever
    the position restarts at 0."""
    ids, d = [], -1
    for row in positions.tolist():
        out = []
        for j, p in enumerate(row):
            if j == 0 or p == 0:
                d += 1
            out.append(d)
        ids.append(out)
    return ids


BATCHES = [
    [[3, 2, 3], [-2, 4, 2]],  # row 1 starts inside a document
    [[8], [1, 1, 1, 5]],  # one-token documents
    [[-8], [-8]],  # rows with no restart at all
]


@pytest.mark.parametrize("rows", BATCHES)
def test_document_boundaries(rows) -> None:
    pos = packed_positions(rows)
    b, s = pos.shape
    docs = brute_documents(pos)
    flat = [d for row in docs for d in row]
    want = [i for i in range(b * s) if i == 0 or flat[i] != flat[i - 1]] + [b * s]
    cu = document_boundaries(pos)
    assert cu.dtype == torch.int32 and cu.tolist() == want
    assert pos.tolist() == packed_positions(rows).tolist()  # the input is left alone
    lengths = (cu[1:] - cu[:-1]).tolist()
    assert lengths == [abs(n) for row in rows for n in row]


@pytest.mark.parametrize("rows", BATCHES)
def test_block_causal_mask(rows) -> None:
    pos = packed_positions(rows)
    b, s = pos.shape
    docs = brute_documents(pos)
    want = torch.zeros(b, 1, s, s, dtype=torch.bool)
    for r in range(b):
        for i in range(s):
            for j in range(s):
                want[r, 0, i, j] = j > i or docs[r][i] != docs[r][j]  # True = masked
    mask = block_causal_mask(pos)
    assert mask.dtype == torch.bool and mask.shape == (b, 1, s, s)
    assert torch.equal(mask, want)
    assert not mask.diagonal(dim1=-2, dim2=-1).any()  # every token sees itself


def test_one_document_per_row_is_plain_causal() -> None:
    pos = torch.arange(6)[None].expand(2, -1)
    causal = torch.ones(6, 6, dtype=torch.bool).triu(1)
    assert torch.equal(block_causal_mask(pos), causal[None, None].expand(2, 1, 6, 6))
    assert document_boundaries(pos).tolist() == [0, 6, 12]


# ---- loss terms ----------------------------------------------------------------------------------


def test_loss_terms_against_a_hand_computation() -> None:
    g = torch.Generator().manual_seed(0)
    ce = torch.rand(2, 5, generator=g) * 4
    ce.requires_grad_(True)
    mask = torch.tensor([[1, 1, 0, 1, 1], [0, 1, 1, 1, 0]], dtype=torch.float32)
    mod = torch.tensor([[0, 1, 1, 2, 0], [2, 2, 0, 1, 1]])
    weights = torch.tensor([1.0, 0.5, 2.0, 1.0])
    n_mod = 4  # one modality without tokens
    lm_sum, count, report = loss_terms(ce, mask, mod, weights, n_mod)
    c, m, k = ce.detach().tolist(), mask.tolist(), mod.tolist()
    cells = [(r, j) for r in range(2) for j in range(5)]
    want_sum = sum(c[r][j] * m[r][j] * weights[k[r][j]].item() for r, j in cells)
    assert lm_sum.item() == pytest.approx(want_sum, rel=1e-6)
    assert count.item() == 7
    per_sum = [sum(c[r][j] for r, j in cells if m[r][j] and k[r][j] == q) for q in range(n_mod)]
    per_cnt = [sum(1 for r, j in cells if m[r][j] and k[r][j] == q) for q in range(n_mod)]
    assert report.dtype == torch.float64 and report.shape == (2 + 2 * n_mod,)
    assert report[0].item() == pytest.approx(want_sum, rel=1e-6)
    assert report[1].item() == 7
    assert report[2 : 2 + n_mod].tolist() == pytest.approx(per_sum, rel=1e-6)
    assert report[2 + n_mod :].tolist() == per_cnt == [3, 2, 2, 0]
    assert not report.requires_grad
    lm_sum.backward()  # the gradient is the mask times the modality weight
    assert torch.allclose(ce.grad, mask * weights[mod])


def test_loss_terms_unweighted_and_low_precision() -> None:
    ce = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.bfloat16)
    mask = torch.tensor([[1.0, 0.0, 1.0]])
    mod = torch.tensor([[0, 0, 1]])
    lm_sum, count, report = loss_terms(ce, mask, mod, None, 2)
    assert lm_sum.dtype == torch.float32 and lm_sum.item() == 4.0 and count.item() == 2
    assert report.tolist() == [4.0, 2.0, 1.0, 3.0, 1.0, 1.0]


# ---- model state helpers -------------------------------------------------------------------------


class _Chunk(torch.nn.Linear):
    def sharded_state_dict(self):  # stands in for megatron's ShardedTensor dict
        return {k: v.clone() for k, v in self.state_dict().items()}


def test_model_state_dict_keys_by_chunk() -> None:
    one, two = _Chunk(2, 2), _Chunk(2, 2)
    assert list(model_sharded_state_dict([one])) == ["model"]
    sd = model_sharded_state_dict([one, two])
    assert list(sd) == ["model0", "model1"]
    fresh = [_Chunk(2, 2), _Chunk(2, 2)]
    load_model_state(fresh, sd)
    assert torch.equal(fresh[1].weight, two.weight) and torch.equal(fresh[0].bias, one.bias)
    with pytest.raises(RuntimeError, match="Missing key"):  # strict
        load_model_state([_Chunk(2, 2)], {"model": {"weight": one.weight}})


_WRAPPED_KEYS = """
import sys, torch, warnings
warnings.filterwarnings("ignore")
import torch.distributed as dist
from megatron.core import parallel_state as ps
from megatron.core.distributed import DistributedDataParallel
from megatron.core.transformer import TransformerConfig
from megatron.core.transformer.module import Float16Module, MegatronModule
from vla_train.megatron_engine import load_model_state, model_sharded_state_dict

dist.init_process_group("gloo", init_method="tcp://127.0.0.1:" + sys.argv[1], rank=0, world_size=1)
ps.initialize_model_parallel()
cfg = TransformerConfig(num_layers=1, hidden_size=8, num_attention_heads=1, bf16=True,
                        params_dtype=torch.bfloat16)

class Tiny(MegatronModule):
    def __init__(self):
        super().__init__(cfg)
        self.proj = torch.nn.Linear(8, 8, bias=False)

def wrapped():  # DDP(Float16Module(model)) as the engine holds it, without DDP's CUDA buffers
    ddp = DistributedDataParallel.__new__(DistributedDataParallel)
    MegatronModule.__init__(ddp, cfg)
    ddp.module = Float16Module(cfg, Tiny())
    return ddp

a, b = wrapped(), wrapped()
sd = model_sharded_state_dict([a])
print(sorted(sd["model"]))
load_model_state([b], {"model": a.module.module.state_dict()})
assert torch.equal(a.module.module.proj.weight, b.module.module.proj.weight)
"""


@needs_megatron
def test_rng_tracker_states_round_trip_as_tensors_plain_and_graph_safe() -> None:
    # the graph-safe tracker (CUDA graphs) keeps Generator objects; checkpoints store tensors
    gen = torch.Generator().manual_seed(3)
    plain = torch.Generator().manual_seed(4).get_state()
    saved = tracker_state_tensors({"model-parallel-rng": gen, "expert": plain})
    assert all(isinstance(t, torch.Tensor) for t in saved.values())
    expect = torch.rand(4, generator=gen)  # the draw right after the save
    fresh = torch.Generator().manual_seed(99)
    restored = restore_tracker_states({"model-parallel-rng": fresh, "expert": plain}, saved)
    assert restored["model-parallel-rng"] is fresh  # written in place: graphs hold this object
    assert torch.equal(torch.rand(4, generator=fresh), expect)
    assert torch.equal(restored["expert"], plain)


def test_params_are_gathered_before_a_checkpoint_only_with_overlapped_gather() -> None:
    class FakeChunk:  # stands in for megatron's DDP wrapper
        def __init__(self) -> None:
            self.calls: list[dict] = []

        def start_param_sync(self, **kw) -> None:
            self.calls.append(kw)

    for parallel, expect in (
        ({}, []),
        ({"overlap_param_gather": True}, [{"force_sync": True}]),
    ):
        fake = type("T", (), {})()
        fake.cfg, fake.chunks = cfg_of(parallel=parallel), [FakeChunk(), FakeChunk()]
        MegatronTrainer._gather_params(fake)
        assert [c.calls for c in fake.chunks] == [expect, expect]


def test_dp_reshardable_padding_flags_are_hidden_from_iteration() -> None:
    # megatron-core 0.16.1 iterates an entry's items() into TE's FusedAdam.set_scaled_state
    exp = torch.ones(3)
    entry = {"param": torch.zeros(3), "exp_avg": exp, "exp_avg_sq": exp, "padding": False}
    state = {"param_state": {0: {torch.float32: [[entry, {"padding": True}]]}}, "step": 7}
    out = hide_padding_flags(state)
    kept, pad = out["param_state"][0][torch.float32][0]
    assert [k for k, _ in kept.items()] == ["param", "exp_avg", "exp_avg_sq"]
    assert kept["padding"] is False and pad["padding"] is True  # the load still filters by it
    assert kept["exp_avg"] is exp and out["step"] == 7  # no copies
    assert [k for k, _ in entry.items()][-1] == "padding"  # the input is left as it was


@needs_megatron
def test_megatron_dp_reshardable_load_into_the_precision_aware_optimizer() -> None:
    """megatron-core's own loader, on the state layout it saves, into a stand-in for TE's
    FusedAdam (its `set_scaled_state` takes tensors only): fails as on the GPU without
    `hide_padding_flags`, loads every state with it."""
    import functools
    import types

    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    class FusedAdamStandIn:
        def __init__(self, params) -> None:
            self.param_groups = [{"params": params}]
            self.loaded: dict = {}

        def set_scaled_state(self, param, name, value) -> None:
            assert value.dtype == torch.float32  # TE's check ('bool' has no 'dtype')
            self.loaded[(id(param), name)] = value

    model_params = [torch.zeros(3), torch.zeros(5)]
    shards = [torch.zeros(3, dtype=torch.bfloat16), torch.zeros(5, dtype=torch.bfloat16)]

    def entry(n: int, v: float) -> dict:
        t = torch.full((n,), v)
        return {"param": t, "exp_avg": t + 1, "exp_avg_sq": t + 2, "padding": False}

    state = {0: {torch.float32: [[entry(3, 1.0), entry(5, 2.0), {"padding": True}]]}}
    fake = types.SimpleNamespace(
        gbuf_ranges=[{torch.float32: [{"param_map": {p: None for p in model_params}}]}],
        model_param_group_index_map={p: (0, i) for i, p in enumerate(model_params)},
        config=types.SimpleNamespace(use_precision_aware_optimizer_no_fp8_or_ds_fp8=True),
        optimizer=FusedAdamStandIn(shards),
    )
    fake._set_main_param_and_optimizer_states = functools.partial(
        DistributedOptimizer._set_main_param_and_optimizer_states, fake
    )
    load = DistributedOptimizer.load_parameter_state_from_dp_reshardable
    with pytest.raises(AttributeError, match="'bool' object has no attribute 'dtype'"):
        load(fake, state)  # megatron-core 0.16.1 as it is
    fake.optimizer.loaded.clear()
    load(fake, hide_padding_flags(state))
    names = sorted({name for _, name in fake.optimizer.loaded})
    assert names == ["exp_avg", "exp_avg_sq", "master_param"]
    assert len(fake.optimizer.loaded) == 6
    assert float(fake.optimizer.loaded[(id(shards[1]), "master_param")][0]) == 2.0


def test_torch_adam_state_before_load_is_what_the_first_step_creates() -> None:
    import types

    torch.manual_seed(0)
    ref = [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(5))]
    ours = [torch.nn.Parameter(p.detach().clone()) for p in ref]
    opt_ref, opt_ours = torch.optim.AdamW(ref, lr=0.1), torch.optim.AdamW(ours, lr=0.1)
    chained = types.SimpleNamespace(  # megatron's ChainedOptimizer of DistributedOptimizers
        chained_optimizers=[types.SimpleNamespace(optimizer=opt_ours)]
    )
    assert init_torch_adam_state(chained) == 2
    assert float(opt_ours.state[ours[0]]["step"]) == 0.0
    for opt, params in ((opt_ref, ref), (opt_ours, ours)):
        for p in params:
            p.grad = torch.full_like(p, 0.5)
        opt.step()
    for a, b in zip(ref, ours, strict=True):
        assert torch.equal(a, b)
        assert torch.equal(opt_ref.state[a]["exp_avg_sq"], opt_ours.state[b]["exp_avg_sq"])
        assert float(opt_ours.state[b]["step"]) == 1.0
    assert init_torch_adam_state(chained) == 0  # a state it already has is left alone
    assert float(opt_ours.state[ours[0]]["step"]) == 1.0
    assert init_torch_adam_state(types.SimpleNamespace(optimizer=torch.optim.SGD(ref))) == 0


def test_loaded_torch_adam_gets_one_step_counter_per_parameter() -> None:
    """What megatron-core 0.16.1 leaves after loading into a torch AdamW: one shared `step`
    tensor (here holding the template's 0) while the param groups hold the saved step."""
    import types

    params = [torch.nn.Parameter(torch.randn(3)), torch.nn.Parameter(torch.randn(2))]
    opt = torch.optim.AdamW(params, lr=0.1)
    shared = torch.tensor(0.0)
    for p in params:
        opt.state[p].update(
            step=shared, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p)
        )
    opt.param_groups[0]["step"] = 3.0
    chained = types.SimpleNamespace(chained_optimizers=[types.SimpleNamespace(optimizer=opt)])
    assert restore_torch_adam_steps(chained) == 2
    steps = [opt.state[p]["step"] for p in params]
    assert [float(t) for t in steps] == [3.0, 3.0] and steps[0] is not steps[1]
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    assert [float(opt.state[p]["step"]) for p in params] == [4.0, 4.0]  # not 5.0 (shared)


@needs_megatron
def test_megatron_distributed_optimizer_state_dict_of_an_unstepped_torch_adam() -> None:
    """megatron-core 0.16.1's own DistributedOptimizer.state_dict (the first thing a resume
    calls) without TE or APEX: asserts on a fresh torch AdamW (as on the GPU), works after
    `init_torch_adam_state`, with step 0 in every param group."""
    import types

    from megatron.core.optimizer import distrib_optimizer

    if distrib_optimizer.HAVE_APEX_OR_TE:
        pytest.skip("TE or APEX imports here: megatron takes FusedAdam's path")
    adam = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(3))], lr=1e-3)
    fake = types.SimpleNamespace(optimizer=adam, grad_scaler=None)
    with pytest.raises(AssertionError):
        distrib_optimizer.DistributedOptimizer.state_dict(fake)
    init_torch_adam_state(fake)
    sd = distrib_optimizer.DistributedOptimizer.state_dict(fake)
    assert [g["step"] for g in sd["optimizer"]["param_groups"]] == [0.0]


def test_rng_tracker_for_cuda_graphs_is_tes_where_te_imports() -> None:
    # TE's attention asserts "Unsupported RNG states tracker" while a graph is captured with
    # megatron's own (graph-safe) tracker: seen on an H100, 2026-12-07
    plain, graphs = cfg_of(), cfg_of(megatron={"cuda_graph_impl": "local"})
    assert rng_tracker_options(plain, have_te=True) == {
        "te_rng_tracker": False,
        "use_cudagraphable_rng": False,
    }
    assert rng_tracker_options(graphs, have_te=True) == {
        "te_rng_tracker": True,
        "use_cudagraphable_rng": True,
    }
    assert rng_tracker_options(graphs, have_te=False)["te_rng_tracker"] is False
    assert transformer_overrides(graphs, have_te=True)["use_te_rng_tracker"] is True
    assert "use_te_rng_tracker" not in transformer_overrides(plain, have_te=True)


def test_model_state_keys_are_the_models_own_inside_ddp_and_float16_wrappers() -> None:
    """megatron's DDP has no sharded_state_dict: the default one prefixed every key with
    `module.`, and the engine's own resume then failed on the GPU (strict load)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    p = subprocess.run(
        [sys.executable, "-c", _WRAPPED_KEYS, str(port)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip().splitlines()[-1] == "['proj.weight']"


# ---- config rules and the engine's refusals ------------------------------------------------------


@pytest.mark.parametrize(
    ("over", "needles"),
    [
        (
            {"engine": "torch", "parallel": {"tensor_model_parallel_size": 2}},
            ["[parallel] need engine = 'megatron'", "data-parallel only"],
        ),
        ({"engine": "torch", "fp8": {"recipe": "delayed"}}, ["[fp8] need engine = 'megatron'"]),
        (
            {"engine": "torch", "checkpoint": {"async_save": True}},
            ["checkpoint.async_save needs engine = 'megatron'"],
        ),
        (
            {"engine": "torch", "parallel": {"use_distributed_optimizer": False},
             "fp8": {"first_last_layers_bf16": True}},
            ["[parallel], [fp8] need engine = 'megatron'"],
        ),
        (
            {"precision": "fp32", "fp8": {"recipe": "current"}},
            ["fp8 needs precision 'auto' or 'bf16'"],
        ),
        ({"fp8": {"recipe": "tensorwise"}}, ["fp8.recipe: Input should be 'none', 'delayed'"]),
        (
            {"fp8": {"recipe": "delayed", "first_last_layers_bf16": True}},
            ["fp8: first_last_layers_bf16 works with recipe 'current' only"],
        ),
        ({"fp8": {"primary_weights": True}}, ["fp8: primary_weights needs a recipe"]),
        ({"fp8": {"attention": True}}, ["fp8: attention needs a recipe"]),
        (
            {
                "parallel": {"use_distributed_optimizer": False},
                "fp8": {"recipe": "current", "primary_weights": True},
            },
            ["fp8.primary_weights needs parallel.use_distributed_optimizer"],
        ),
        (
            {"parallel": {"recompute_granularity": "partial"}},
            ["parallel.recompute_granularity: Input should be 'none', 'selective' or 'full'"],
        ),
        (
            {"parallel": {"sequence_parallel": True}},
            ["sequence_parallel needs tensor_model_parallel_size > 1"],
        ),
        (
            {"parallel": {"virtual_pipeline_model_parallel_size": 2}},
            ["virtual_pipeline_model_parallel_size needs pipeline_model_parallel_size > 1"],
        ),
        (
            {"parallel": {"use_distributed_optimizer": False, "overlap_param_gather": True}},
            ["overlap_param_gather needs use_distributed_optimizer"],
        ),
        ({"parallel": {"tp": 2}}, ["parallel.tp: Extra inputs are not permitted"]),
        (
            {"parallel": {"context_parallel_size": 0}},
            ["parallel.context_parallel_size: Input should be greater than or equal to 1"],
        ),
    ],
)  # fmt: skip
def test_config_rules(over: dict, needles: list[str]) -> None:
    with pytest.raises(TrainConfigError) as e:
        cfg_of(**over)
    msg = str(e.value)
    assert msg.startswith("t.toml: invalid train config: ")
    for needle in needles:
        assert needle in msg, msg


def test_megatron_sections_are_accepted_with_the_megatron_engine() -> None:
    cfg = cfg_of(
        precision="bf16",
        parallel={"tensor_model_parallel_size": 2, "sequence_parallel": True},
        fp8={"recipe": "delayed"},
        megatron={"spec": "local"},
    )
    assert cfg.parallel.model_parallel_size == 2 and cfg.fp8.recipe == "delayed"
    plain = cfg_of(engine="torch")  # default sections are fine with the torch engine
    assert plain.parallel.recompute_granularity == "none" and plain.fp8.recipe == "none"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on CPU machines")
def test_trainer_needs_cuda(tmp_path: Path) -> None:
    with pytest.raises(TrainConfigError, match=r"needs CUDA GPUs.*engine = 'torch' on CPU"):
        MegatronTrainer(cfg_of(out_dir=str(tmp_path)))
    assert not any(tmp_path.iterdir())  # refused before touching anything


def test_trainer_refuses_the_torch_engine(tmp_path: Path) -> None:
    with pytest.raises(TrainConfigError, match="engine = 'megatron', not 'torch'"):
        MegatronTrainer(cfg_of(engine="torch", out_dir=str(tmp_path)))


# ---- checkpoint resharding: saved at TP 2, loaded at TP 1 (torchrun, gloo, CPU) -----------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(nproc: int, *args: str, cwd: Path) -> None:
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
        "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
        str(HERE / "_megatron_tp_ckpt.py"), *args,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MASTER_", "TORCHELASTIC"))}
    env.update(OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-6000:])


@pytest.mark.slow  # 4 processes import megatron-core (~20 s of CPU each): ~1 min on 2 cores
@needs_megatron
@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU shims are for machines without CUDA")
def test_checkpoint_saved_at_tp2_loads_at_tp1(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    _torchrun(2, "save", str(ckpt), str(tmp_path / "tp2.pt"), "--seed", "1", cwd=tmp_path)
    assert (ckpt / "metadata.json").is_file()
    _torchrun(1, "load", str(ckpt), str(tmp_path / "tp1.pt"), "--seed", "2", cwd=tmp_path)
    tp2 = torch.load(tmp_path / "tp2.pt")
    tp1 = torch.load(tmp_path / "tp1.pt")
    assert (tp2["tp"], tp1["tp"]) == (2, 1)
    assert tp2["logits"].shape == tp1["logits"].shape == (2, 16, 1024)
    # the fresh TP 1 model (another seed) differs until the checkpoint is loaded
    assert (tp1["before"] - tp2["logits"]).abs().max() > 0.1
    torch.testing.assert_close(tp1["logits"], tp2["logits"], atol=1e-5, rtol=0)


@pytest.mark.slow  # as above
@needs_megatron
@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU shims are for machines without CUDA")
def test_moe_checkpoint_saved_at_ep2_loads_at_ep1(tmp_path: Path) -> None:
    """tiny-moe with its experts split over two ranks (expert parallel 2): the experts' sharded
    state dict reassembles into one rank's full set, and both layouts give the same logits."""
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    split = ("--split", "ep")
    _torchrun(2, "save", str(ckpt), str(tmp_path / "ep2.pt"), "--seed", "1", *split, cwd=tmp_path)
    _torchrun(1, "load", str(ckpt), str(tmp_path / "ep1.pt"), "--seed", "2", *split, cwd=tmp_path)
    ep2 = torch.load(tmp_path / "ep2.pt")
    ep1 = torch.load(tmp_path / "ep1.pt")
    assert (ep2["ep"], ep1["ep"]) == (2, 1)
    assert ep1["experts"] == 2 * ep2["experts"] > 0  # each EP rank held half of the experts
    assert (ep1["before"] - ep2["logits"]).abs().max() > 0.1
    torch.testing.assert_close(ep1["logits"], ep2["logits"], atol=1e-5, rtol=0)


def test_resume_at_another_split_names_what_changed() -> None:
    saved = cfg_of().parallel.model_dump(mode="json")
    assert optimizer_layout_problem(saved, cfg_of()) is None
    # data parallel and context parallel reshard: not in [parallel]'s sharding sizes
    assert optimizer_layout_problem(saved, cfg_of(parallel={"context_parallel_size": 2})) is None
    tp2 = cfg_of(parallel={"tensor_model_parallel_size": 2})
    problem = optimizer_layout_problem(saved, tp2)
    assert "tensor_model_parallel_size 1 -> 2" in problem
    # the expert tensor split follows TP when unset: changing TP changes it too
    assert "expert_tensor_parallel_size 1 -> 2" in problem
    moe = cfg_of("tiny-moe", parallel={"expert_model_parallel_size": 2})
    assert "expert_model_parallel_size 1 -> 2" in optimizer_layout_problem(saved, moe)
    assert "checkpoint.optimizer_format = 'fully_reshardable'" in problem


def test_gathering_the_optimizer_to_one_rank_needs_the_fully_reshardable_format() -> None:
    with pytest.raises(ValueError, match="gather_optimizer_to_one_rank needs"):
        cfg_of(checkpoint={"gather_optimizer_to_one_rank": True})
    fully = {"optimizer_format": "fully_reshardable", "gather_optimizer_to_one_rank": True}
    assert cfg_of(checkpoint=fully).checkpoint.gather_optimizer_to_one_rank


def test_fully_reshardable_state_resumes_at_another_tensor_or_pipeline_split() -> None:
    saved = cfg_of().parallel.model_dump(mode="json")
    split = {"tensor_model_parallel_size": 2, "pipeline_model_parallel_size": 2}
    assert optimizer_layout_problem(saved, cfg_of(parallel=split), "fully_reshardable") is None
    # an MoE model's experts get their own optimizer at EP > 1 only: 1 <-> 2 is refused,
    # 2 <-> 8 reshards
    moe = cfg_of("vla-10b-moe", parallel={"expert_model_parallel_size": 2})
    problem = optimizer_layout_problem(saved, moe, "fully_reshardable")
    assert "(fully_reshardable)" in problem and "expert_model_parallel_size 1 -> 2" in problem
    ep8 = cfg_of("vla-10b-moe", parallel={"expert_model_parallel_size": 8})
    ep2_saved = moe.parallel.model_dump(mode="json")
    assert optimizer_layout_problem(ep2_saved, ep8, "fully_reshardable") is None
    assert "expert_model_parallel_size 2 -> 8" in optimizer_layout_problem(ep2_saved, ep8)
    assert "fully_reshardable' to change" not in problem  # no hint to use what it already is
    no_distopt = cfg_of(parallel={"use_distributed_optimizer": False})
    assert "use_distributed_optimizer" in optimizer_layout_problem(
        saved, no_distopt, "fully_reshardable"
    )


def test_model_space_load_leaves_torch_adams_step_alone() -> None:
    """megatron-core 0.16.1's `_set_main_param_and_optimizer_states` copies every key of the
    live state, `step` included, from tensors that carry no `step` (a stand-in optimizer with
    that method's logic; the real one runs in test_megatron_cpu_engine.py)."""

    class DistOptStandIn:
        def __init__(self) -> None:
            self.main = torch.nn.Parameter(torch.zeros(4))
            self.optimizer = torch.optim.AdamW([self.main])
            self.optimizer.state[self.main] = {
                "step": torch.tensor(7.0),
                "exp_avg": torch.zeros(4),
                "exp_avg_sq": torch.zeros(4),
            }
            self.model_param_group_index_map = {"w": (0, 0)}

        def _set_main_param_and_optimizer_states(self, model_param, tensors):
            group, order = self.model_param_group_index_map[model_param]
            main = self.optimizer.param_groups[group]["params"][order]
            dst = {"param": main, **self.optimizer.state[main]}
            for key in dst:
                dst[key].data.copy_(tensors[key])

    opt = DistOptStandIn()
    tensors = {
        "param": torch.ones(4),
        "exp_avg": torch.full((4,), 2.0),
        "exp_avg_sq": torch.ones(4),
    }
    with pytest.raises(KeyError, match="step"):
        opt._set_main_param_and_optimizer_states("w", tensors)
    assert keep_torch_adam_step_on_model_space_load(opt) == 1
    opt._set_main_param_and_optimizer_states("w", tensors)
    state = opt.optimizer.state[opt.main]
    assert list(state) == ["exp_avg", "exp_avg_sq", "step"] and state["step"].item() == 7.0
    assert opt.main.data.eq(1).all() and state["exp_avg"].eq(2).all()


def test_nonfinite_grads_are_named_from_main_grad_or_grad() -> None:
    """The skip record of a step with a non-finite gradient norm names the parameters."""
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    for p in (*a.parameters(), *b.parameters()):
        p.main_grad = torch.zeros_like(p)
    b.weight.main_grad[0, 1] = float("nan")
    a.bias.main_grad[0] = float("inf")
    a.weight.grad = torch.full_like(a.weight, float("nan"))  # main_grad is the one read
    assert nonfinite_grad_names([a]) == ["bias"]
    assert nonfinite_grad_names([a, b]) == ["chunk0.bias", "chunk1.weight"]
    plain = torch.nn.Linear(2, 2)
    plain.weight.grad = torch.tensor([[1.0, float("-inf")], [0.0, 0.0]])
    assert nonfinite_grad_names([plain]) == ["weight"]


def test_each_pipeline_stage_draws_its_init_from_its_own_seed() -> None:
    """Without the offset, stage 1's first layers would start as copies of stage 0's."""
    from vla_train.megatron_engine import stage_seed

    assert stage_seed(1234, 0) == 1234
    assert len({stage_seed(1234, r) for r in range(8)}) == 8


def test_checkpoint_files_are_hashed_by_the_rank_that_wrote_them() -> None:
    from vla_train.megatron_engine import rank_of_file

    assert rank_of_file("dist/__0_1.distcp") == 0
    assert rank_of_file("dist/__17_0.distcp") == 17
    assert rank_of_file("rng-rank3.safetensors") == 3
    for shared in ("dist/.metadata", "dist/common.pt", "dist/metadata.json", "manifest.json"):
        assert rank_of_file(shared) is None
    assert rank_of_file("dist/__x_0.distcp") is None
    assert rank_of_file("rng-rankX.safetensors") is None
