"""Router and MoE-block unit tests on hand-built tensors."""

from __future__ import annotations

import math

import pytest
import torch

from vla_model.config import MoEConfig
from vla_model.moe import (
    MoEBlock,
    balance_probs,
    capacity_keep_mask,
    expert_bias_update,
    expert_capacity,
    load_balancing_loss,
    router_scores,
    router_z_loss,
    select_topk,
    sequence_load_balancing_loss,
)

LOGITS = torch.tensor([[2.0, 1.0, 0.5, -1.0], [0.0, 3.0, 3.5, 0.1]])


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_softmax_topk_selection_and_weights() -> None:
    scores = router_scores(LOGITS, "softmax")
    w, idx = select_topk(scores, 2, normalize=True)
    assert idx.tolist() == [[0, 1], [2, 1]]
    # renormalised top-2 of a softmax = softmax over the two chosen logits
    torch.testing.assert_close(w, torch.tensor([[sig(1.0), sig(-1.0)], [sig(0.5), sig(-0.5)]]))
    w_raw, _ = select_topk(scores, 2, normalize=False)
    z0 = sum(math.exp(v) for v in LOGITS[0].tolist())
    torch.testing.assert_close(w_raw[0], torch.tensor([math.exp(2.0) / z0, math.exp(1.0) / z0]))


def test_sigmoid_topk_selection_and_weights() -> None:
    scores = router_scores(LOGITS, "sigmoid")
    w, idx = select_topk(scores, 2, normalize=False)
    assert idx.tolist() == [[0, 1], [2, 1]]
    torch.testing.assert_close(w[1], torch.tensor([sig(3.5), sig(3.0)]))
    w, _ = select_topk(scores, 2, normalize=True)
    torch.testing.assert_close(w[1], torch.tensor([sig(3.5), sig(3.0)]) / (sig(3.5) + sig(3.0)))
    probs = balance_probs(scores, "sigmoid")
    torch.testing.assert_close(probs.sum(-1), torch.ones(2))


def test_expert_bias_changes_choice_not_weights() -> None:
    scores = router_scores(LOGITS, "softmax")
    bias = torch.tensor([0.0, 0.0, -10.0, 0.0])
    w, idx = select_topk(scores, 2, normalize=False, expert_bias=bias)
    assert idx[1].tolist() == [1, 3]  # expert 2 pushed out, expert 3 (0.1) beats expert 0 (0.0)
    torch.testing.assert_close(w[1], scores[1, [1, 3]])


def test_aux_loss_hand_computed() -> None:
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7]])
    _, idx = select_topk(probs, 1, normalize=False)
    assert idx.flatten().tolist() == [0, 0, 0, 1]
    # f = [3/4, 1/4], P = [0.65, 0.35]; E/k * sum f P = 2 * (0.4875 + 0.0875)
    assert load_balancing_loss(probs, idx, 2).item() == pytest.approx(1.15)
    # sequence-wise: seq A picks [0, 0], P=[0.85, 0.15] -> 1.7; seq B [0, 1], P=[0.45, 0.55] -> 1.0
    assert sequence_load_balancing_loss(probs, idx, 2, batch=2).item() == pytest.approx(1.35)


def test_aux_loss_is_one_at_perfect_balance() -> None:
    probs = torch.full((8, 4), 0.25)
    idx = torch.tensor([[0, 1], [2, 3]] * 4)
    assert load_balancing_loss(probs, idx, 4).item() == pytest.approx(1.0)


def test_z_loss_hand_computed() -> None:
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    # logsumexp = ln 2 and ln 4 = 2 ln 2
    assert router_z_loss(logits).item() == pytest.approx(2.5 * math.log(2.0) ** 2)


def test_expert_bias_update_direction() -> None:
    bias = torch.zeros(4)
    new = expert_bias_update(bias, torch.tensor([10.0, 2.0, 4.0, 4.0]), rate=0.01)
    torch.testing.assert_close(new, torch.tensor([-0.01, 0.01, 0.01, 0.01]))
    balanced = expert_bias_update(bias, torch.tensor([5.0, 5.0, 5.0, 5.0]), rate=0.01)
    assert torch.equal(balanced, bias)


def _skewed_block(cfg: MoEConfig, hidden: int = 8) -> MoEBlock:
    """A block whose router strongly prefers expert 0 for inputs with a positive first feature."""
    torch.manual_seed(0)
    block = MoEBlock(hidden, cfg)
    for p in block.parameters():
        torch.nn.init.normal_(p, 0.0, 0.3)
    with torch.no_grad():
        block.router.weight.zero_()
        block.router.weight[0, 0] = 5.0
        block.router.weight[1:, 0] = torch.linspace(-1.0, 1.0, cfg.num_experts - 1)
    return block


def _skewed_input(tokens: int, hidden: int = 8) -> torch.Tensor:
    x = torch.randn(1, tokens, hidden, generator=torch.Generator().manual_seed(1))
    x[..., 0] = torch.linspace(1.0, 2.0, tokens)
    return x


def test_router_bias_update_lowers_overloaded_expert() -> None:
    cfg = MoEConfig(
        num_experts=4,
        top_k=1,
        expert_ffn_hidden_size=4,
        expert_bias=True,
        expert_bias_update_rate=0.5,
        load_balancing="none",
    )
    block = _skewed_block(cfg).train()
    x = _skewed_input(16)
    block(x)
    load = block.router.tokens_per_expert.clone()
    assert load[0] == 16
    block.router.update_expert_bias()
    bias = block.router.expert_bias
    assert bias[0] < 0 and (bias[1:] > 0).all()
    assert block.router.tokens_per_expert.sum() == 0
    for _ in range(20):  # repeated steps move tokens off the overloaded expert
        block(x)
        block.router.update_expert_bias()
    block(x)
    assert block.router.tokens_per_expert[0] < 16
    block.eval()  # no accumulation outside training
    before = block.router.tokens_per_expert.clone()
    block(x)
    assert torch.equal(block.router.tokens_per_expert, before)


def test_capacity_keep_mask_policies() -> None:
    idx = torch.zeros(4, 1, dtype=torch.long)
    w = torch.tensor([[0.9], [0.6], [0.8], [0.7]])
    cap = expert_capacity(num_tokens=4, num_experts=2, top_k=1, capacity_factor=1.0)
    assert cap == 2
    assert capacity_keep_mask(idx, w, 2, cap, "probs").flatten().tolist() == [
        True,
        False,
        True,
        False,
    ]
    assert capacity_keep_mask(idx, w, 2, cap, "position").flatten().tolist() == [
        True,
        True,
        False,
        False,
    ]
    assert capacity_keep_mask(idx, w, 2, 4, "probs").all()


def test_capacity_factor_drops_tokens_unless_dropless() -> None:
    common = dict(num_experts=4, top_k=1, expert_ffn_hidden_size=6)
    dropping = _skewed_block(
        MoEConfig(**common, dropless=False, capacity_factor=1.0, drop_policy="position")
    )
    dropless = _skewed_block(MoEConfig(**common))
    x = _skewed_input(8)
    y_drop, _ = dropping(x)
    y_full, _ = dropless(x)
    # all 8 tokens pick expert 0; capacity = ceil(1.0 * 8 * 1 / 4) = 2 -> first two kept
    kept = y_drop[0].abs().sum(-1) > 0
    assert kept.tolist() == [True, True] + [False] * 6
    torch.testing.assert_close(y_drop[0, :2], y_full[0, :2])
    assert (y_full[0].abs().sum(-1) > 0).all()


def test_shared_expert_with_sigmoid_gate() -> None:
    cfg = MoEConfig(
        num_experts=4,
        top_k=2,
        expert_ffn_hidden_size=6,
        shared_expert_ffn_hidden_size=10,
        shared_expert_gate=True,
    )
    block = _skewed_block(cfg)
    x = _skewed_input(5)
    y, _ = block(x)
    flat = x.reshape(-1, 8)
    _, _, w, idx = block.router(flat)
    routed = block.experts(flat, idx, w)
    shared = torch.sigmoid(block.shared_gate(flat)) * block.shared_expert(flat)
    torch.testing.assert_close(y.reshape(-1, 8), routed + shared)


@pytest.mark.parametrize("balancing", ["aux", "seq_aux", "none"])
def test_block_losses_carry_coefficients_and_gradients(balancing: str) -> None:
    coeff = 0.0 if balancing == "none" else 0.01
    cfg = MoEConfig(
        num_experts=4,
        top_k=2,
        expert_ffn_hidden_size=6,
        load_balancing=balancing,
        aux_loss_coeff=coeff,
        z_loss_coeff=0.001,
        score_function="sigmoid",
    )
    block = _skewed_block(cfg)
    x = _skewed_input(6).expand(2, 6, 8).contiguous()
    _, losses = block(x)
    expected = {
        "aux": {"aux_loss", "z_loss"},
        "seq_aux": {"seq_aux_loss", "z_loss"},
        "none": {"z_loss"},
    }
    assert set(losses) == expected[balancing]
    logits = x.reshape(-1, 8) @ block.router.weight.T
    torch.testing.assert_close(losses["z_loss"], 0.001 * router_z_loss(logits))
    sum(losses.values()).backward()
    assert block.router.weight.grad is not None and block.router.weight.grad.abs().sum() > 0


def test_expert_bias_choice_is_made_in_fp32_with_bf16_scores() -> None:
    # a bias step (rate 1e-3) is below BF16's resolution at 0.5 (2**-8): cast to BF16 it would
    # leave a tie; megatron-core adds the FP32 bias to the scores in FP32
    scores = torch.tensor([[0.5, 0.5, 0.25]], dtype=torch.bfloat16)
    bias = torch.tensor([0.0, 1e-3, 0.0])
    w, idx = select_topk(scores, 1, normalize=False, expert_bias=bias)
    assert idx.tolist() == [[1]]
    assert w.dtype == torch.bfloat16 and float(w) == 0.5
