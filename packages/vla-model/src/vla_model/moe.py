"""Mixture-of-experts block: router (softmax/sigmoid, top-k, expert bias), experts, shared expert,
load-balancing / z losses, capacity-factor dropping and the aux-loss-free bias update.

Losses (coefficients already applied, summed by the model over MoE layers):

- `aux_loss` (Switch / GShard, top-k form as in megatron-core):
  `coeff * E/k * sum_i f_i * P_i`, with `f_i` the fraction of tokens that picked expert i
  (`sum_i f_i = k`) and `P_i` the mean routing probability of expert i; it is `coeff` at perfect
  balance. Qwen-MoE / transformers compute `E * sum_i f_i P_i`, i.e. k times this.
- `seq_aux_loss` (DeepSeek-V2/V3 sequence-wise): the same quantity per sequence, averaged.
- `z_loss` (ST-MoE): `coeff * mean_t logsumexp(logits_t)^2`.

For the sigmoid score function the probabilities in these losses are the sigmoid scores
normalised to sum 1 per token.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vla_model.config import MoEConfig
from vla_model.layers import SwiGLU


def router_scores(logits: torch.Tensor, score_function: str) -> torch.Tensor:
    """Per-expert scores in float32: softmax over experts, or element-wise sigmoid."""
    if score_function == "softmax":
        return torch.softmax(logits.float(), dim=-1)
    if score_function == "sigmoid":
        return torch.sigmoid(logits.float())
    raise ValueError(f"unknown score_function '{score_function}'")


def select_topk(
    scores: torch.Tensor, top_k: int, normalize: bool, expert_bias: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick k experts per token; return `(weights, indices)`, both `[tokens, k]`.

    `expert_bias` shifts the scores for the choice only; the weights are the unbiased scores of
    the chosen experts (renormalised to sum 1 when `normalize`). The biased choice is made in the
    wider of the two dtypes (FP32 bias + BF16 scores: FP32), as megatron-core does: the bias
    moves in steps of the update rate, finer than BF16 resolves.
    """
    choice = scores if expert_bias is None else scores + expert_bias
    indices = torch.topk(choice, top_k, dim=-1).indices
    weights = scores.gather(-1, indices)
    if normalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights, indices


def balance_probs(scores: torch.Tensor, score_function: str) -> torch.Tensor:
    """Probabilities used by the balancing losses (sigmoid scores renormalised per token)."""
    if score_function == "sigmoid":
        return scores / scores.sum(dim=-1, keepdim=True)
    return scores


def tokens_per_expert(indices: torch.Tensor, num_experts: int) -> torch.Tensor:
    """How many (token, slot) assignments each expert received, as float32 `[E]`."""
    counts = torch.zeros(num_experts, dtype=torch.float32, device=indices.device)
    return counts.index_add_(
        0, indices.reshape(-1), torch.ones_like(indices.reshape(-1), dtype=torch.float32)
    )


def load_balancing_loss(
    probs: torch.Tensor, indices: torch.Tensor, num_experts: int
) -> torch.Tensor:
    """`E/k * sum_i f_i P_i` over all tokens (un-scaled; 1.0 at perfect balance)."""
    num_tokens, top_k = indices.shape
    f = tokens_per_expert(indices, num_experts) / num_tokens
    p = probs.float().mean(dim=0)
    return (num_experts / top_k) * (f * p).sum()


def sequence_load_balancing_loss(
    probs: torch.Tensor, indices: torch.Tensor, num_experts: int, batch: int
) -> torch.Tensor:
    """The load-balancing loss computed per sequence and averaged (tokens ordered batch-major)."""
    probs = probs.float().reshape(batch, -1, num_experts)
    idx = indices.reshape(batch, -1, indices.shape[-1])
    return torch.stack(
        [load_balancing_loss(probs[b], idx[b], num_experts) for b in range(batch)]
    ).mean()


def router_z_loss(logits: torch.Tensor) -> torch.Tensor:
    """`mean_t logsumexp(logits_t)^2` (un-scaled)."""
    return torch.logsumexp(logits.float(), dim=-1).square().mean()


def expert_bias_update(bias: torch.Tensor, load: torch.Tensor, rate: float) -> torch.Tensor:
    """Aux-loss-free balancing step: `bias + rate * sign(mean(load) - load)`.

    Overloaded experts get a lower bias, underloaded ones a higher bias.
    """
    load = load.float()
    return bias + rate * torch.sign(load.mean() - load).to(bias.dtype)


def expert_capacity(num_tokens: int, num_experts: int, top_k: int, capacity_factor: float) -> int:
    """Slots per expert: `ceil(capacity_factor * tokens * k / E)`."""
    return math.ceil(capacity_factor * num_tokens * top_k / num_experts)


def capacity_keep_mask(
    indices: torch.Tensor,
    weights: torch.Tensor,
    num_experts: int,
    capacity: int,
    policy: str = "probs",
) -> torch.Tensor:
    """Bool `[tokens, k]`: which assignments fit in their expert's capacity.

    `probs` keeps each expert's highest-weight assignments; `position` keeps the earliest tokens.
    """
    num_tokens, top_k = indices.shape
    flat_idx = indices.reshape(-1)
    if policy == "probs":
        priority = weights.detach().reshape(-1).float()
    elif policy == "position":
        priority = -torch.arange(num_tokens, device=indices.device).repeat_interleave(top_k).float()
    else:
        raise ValueError(f"unknown drop policy '{policy}'")
    keep = torch.zeros(num_tokens * top_k, dtype=torch.bool, device=indices.device)
    for e in range(num_experts):
        slots = (flat_idx == e).nonzero(as_tuple=True)[0]
        if slots.numel() <= capacity:
            keep[slots] = True
        else:
            best = torch.topk(priority[slots], capacity, sorted=False).indices
            keep[slots[best]] = True
    return keep.view(num_tokens, top_k)


class Router(nn.Module):
    """Linear router `[E, hidden]` with an optional expert-bias buffer for aux-loss-free balancing.

    While training with `expert_bias` on, the forward accumulates `tokens_per_expert`;
    `update_expert_bias()` applies one bias step from it and resets the count.
    """

    def __init__(self, hidden_size: int, cfg: MoEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.weight = nn.Parameter(torch.empty(cfg.num_experts, hidden_size))
        if cfg.expert_bias:
            self.register_buffer("expert_bias", torch.zeros(cfg.num_experts, dtype=torch.float32))
            self.register_buffer(
                "tokens_per_expert", torch.zeros(cfg.num_experts), persistent=False
            )
        else:
            self.expert_bias = None

    def forward(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """`x` `[tokens, hidden]` -> `(logits, scores, weights, indices)`."""
        logits = F.linear(x, self.weight)
        scores = router_scores(logits, self.cfg.score_function)
        weights, indices = select_topk(
            scores, self.cfg.top_k, self.cfg.normalize_topk, self.expert_bias
        )
        if self.expert_bias is not None and self.training:
            with torch.no_grad():
                self.tokens_per_expert += tokens_per_expert(indices, self.cfg.num_experts)
        return logits, scores, weights.to(x.dtype), indices

    @torch.no_grad()
    def update_expert_bias(self) -> None:
        """One aux-loss-free bias step from the accumulated load; no-op without `expert_bias`."""
        if self.expert_bias is None:
            return
        if self.tokens_per_expert.sum() > 0:
            self.expert_bias.copy_(
                expert_bias_update(
                    self.expert_bias, self.tokens_per_expert, self.cfg.expert_bias_update_rate
                )
            )
        self.tokens_per_expert.zero_()


class Experts(nn.Module):
    """E SwiGLU experts as stacked weights: `w_gate`, `w_up` `[E, F, H]`, `w_down` `[E, H, F]`."""

    def __init__(self, num_experts: int, hidden_size: int, ffn_hidden_size: int) -> None:
        super().__init__()
        self.w_gate = nn.Parameter(torch.empty(num_experts, ffn_hidden_size, hidden_size))
        self.w_up = nn.Parameter(torch.empty(num_experts, ffn_hidden_size, hidden_size))
        self.w_down = nn.Parameter(torch.empty(num_experts, hidden_size, ffn_hidden_size))

    def forward(
        self, x: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        """Weighted sum of each token's experts; a zero weight contributes nothing."""
        top_k = indices.shape[1]
        flat_expert = indices.reshape(-1)
        flat_token = torch.arange(x.shape[0], device=x.device).repeat_interleave(top_k)
        flat_weight = weights.reshape(-1)
        out = torch.zeros_like(x)
        for e in torch.unique(flat_expert).tolist():
            sel = (flat_expert == e).nonzero(as_tuple=True)[0]
            tok = flat_token[sel]
            h = x[tok]
            y = F.linear(
                F.silu(F.linear(h, self.w_gate[e])) * F.linear(h, self.w_up[e]), self.w_down[e]
            )
            out.index_add_(0, tok, y * flat_weight[sel, None])
        return out


class MoEBlock(nn.Module):
    """Routed experts (+ optional, optionally gated, shared expert); forward -> `(y, losses)`."""

    def __init__(self, hidden_size: int, cfg: MoEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.router = Router(hidden_size, cfg)
        self.experts = Experts(cfg.num_experts, hidden_size, cfg.expert_ffn_hidden_size)
        self.shared_expert = (
            SwiGLU(hidden_size, cfg.shared_expert_ffn_hidden_size)
            if cfg.shared_expert_ffn_hidden_size > 0
            else None
        )
        self.shared_gate = nn.Linear(hidden_size, 1, bias=False) if cfg.shared_expert_gate else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        batch, seq, hidden = x.shape
        flat = x.reshape(-1, hidden)
        logits, scores, weights, indices = self.router(flat)
        cfg = self.cfg
        if not cfg.dropless:
            capacity = expert_capacity(
                flat.shape[0], cfg.num_experts, cfg.top_k, cfg.capacity_factor
            )
            keep = capacity_keep_mask(indices, weights, cfg.num_experts, capacity, cfg.drop_policy)
            weights = weights * keep.to(weights.dtype)
        out = self.experts(flat, indices, weights)
        if self.shared_expert is not None:
            shared = self.shared_expert(flat)
            if self.shared_gate is not None:
                shared = torch.sigmoid(self.shared_gate(flat)) * shared
            out = out + shared

        losses: dict[str, torch.Tensor] = {}
        probs = balance_probs(scores, cfg.score_function)
        if cfg.load_balancing == "aux":
            losses["aux_loss"] = cfg.aux_loss_coeff * load_balancing_loss(
                probs, indices, cfg.num_experts
            )
        elif cfg.load_balancing == "seq_aux":
            losses["seq_aux_loss"] = cfg.aux_loss_coeff * sequence_load_balancing_loss(
                probs, indices, cfg.num_experts, batch
            )
        if cfg.z_loss_coeff > 0:
            losses["z_loss"] = cfg.z_loss_coeff * router_z_loss(logits)
        return out.view(batch, seq, hidden), losses
