"""Parameter, FLOP and per-GPU memory accounting for a `ModelConfig` and a parallel layout.

- FLOPs per token (training, forward + backward):
  `6 * N_active_nonembedding + 12 * L * n_heads * head_dim * seq + 6 * vocab * hidden`
  (matmuls of the active non-embedding parameters; attention scores and values as in PaLM,
  without halving for the causal mask; the output-layer matmul, tied or not). Forward = 1/3.
- Memory per GPU with megatron-core's distributed optimizer, BF16 params + FP32 grads:
  `6 + 12/d` bytes per parameter (2 param + 4 grad, plus 4 master + 4 + 4 Adam sharded over d,
  the data-parallel size of that parameter: DP for dense weights, expert-DP for experts).
- Activations (Korthikanti et al. 2022, bytes per layer for 16-bit activations):
  no SP `sbh(10 + 24/t + 5as/(ht))`, SP `sbh/t (34 + 5as/h)`; selective recompute drops the
  `5as/h` term; full recompute keeps only the layer input `2sbh` (`/t` with SP). With 1F1B the
  first stage holds `pp` micro-batches of its `L/pp` layers, i.e. L layers' worth.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

from vla_model.config import ModelConfig

DIST_OPT_FIXED_BYTES = 6  # BF16 param (2) + FP32 grad (4), not sharded
DIST_OPT_SHARDED_BYTES = 12  # FP32 master weight + Adam exp_avg + exp_avg_sq, sharded over DP


@dataclass(frozen=True)
class ParamCounts:
    """Parameter counts by kind; `*_active` counts only the k routed experts a token uses."""

    embedding: int
    output_layer: int
    attention: int
    norms: int
    dense_mlp: int
    router: int
    routed_experts: int
    routed_experts_active: int
    shared_experts: int
    extras: int

    @property
    def total(self) -> int:
        return (
            self.embedding
            + self.output_layer
            + self.attention
            + self.norms
            + self.dense_mlp
            + self.router
            + self.routed_experts
            + self.shared_experts
            + self.extras
        )

    @property
    def active(self) -> int:
        return self.total - self.routed_experts + self.routed_experts_active

    @property
    def non_embedding(self) -> int:
        return self.total - self.embedding - self.output_layer

    @property
    def non_embedding_active(self) -> int:
        return self.active - self.embedding - self.output_layer

    def as_dict(self) -> dict[str, int]:
        d = asdict(self)
        d.update(
            total=self.total,
            active=self.active,
            non_embedding=self.non_embedding,
            non_embedding_active=self.non_embedding_active,
        )
        return d


def _layer_shapes(cfg: ModelConfig) -> dict[str, int]:
    h = cfg.hidden_size
    shapes = {
        "attention": 2 * h * cfg.q_size
        + 2 * h * cfg.kv_size
        + (2 * cfg.head_dim if cfg.qk_norm else 0),
        "norms": 2 * h,
        "dense_mlp": 3 * h * cfg.ffn_hidden_size,
    }
    if cfg.moe is not None:
        m = cfg.moe
        expert = 3 * h * m.expert_ffn_hidden_size
        shapes.update(
            router=m.num_experts * h,
            routed_experts=m.num_experts * expert,
            routed_experts_active=m.top_k * expert,
            shared_experts=3 * h * m.shared_expert_ffn_hidden_size
            + (h if m.shared_expert_gate else 0),
        )
    return shapes


def _extras_counts(cfg: ModelConfig) -> tuple[int, int]:
    """(embedding-like tables, other extra params)."""
    x, h = cfg.extras, cfg.hidden_size
    tables = (x.num_cameras + x.num_time_buckets) * h
    other = 0
    if x.continuous_input_dim:
        other += x.continuous_input_dim * h + h + h * h + h
    if x.action_dim:
        other += h * x.action_dim * x.action_horizon + x.action_dim * x.action_horizon
    return tables, other


def count_parameters(cfg: ModelConfig) -> ParamCounts:
    """Exact parameter counts of `VLAModel(cfg)` (buffers such as the expert bias excluded)."""
    s = _layer_shapes(cfg)
    n_moe = sum(cfg.moe_layers)
    n_dense = cfg.num_layers - n_moe
    tables, extras = _extras_counts(cfg)
    return ParamCounts(
        embedding=cfg.vocab_size * cfg.hidden_size + tables,
        output_layer=0 if cfg.tie_embeddings else cfg.vocab_size * cfg.hidden_size,
        attention=cfg.num_layers * s["attention"],
        norms=cfg.num_layers * s["norms"] + cfg.hidden_size,
        dense_mlp=n_dense * s["dense_mlp"],
        router=n_moe * s.get("router", 0),
        routed_experts=n_moe * s.get("routed_experts", 0),
        routed_experts_active=n_moe * s.get("routed_experts_active", 0),
        shared_experts=n_moe * s.get("shared_experts", 0),
        extras=extras,
    )


@dataclass(frozen=True)
class FlopsPerToken:
    """Training FLOPs per token (forward + backward) and their parts."""

    seq_len: int
    matmul: int
    attention: int
    output_layer: int

    @property
    def total(self) -> int:
        return self.matmul + self.attention + self.output_layer

    @property
    def forward(self) -> int:
        return self.total // 3

    def as_dict(self) -> dict[str, int]:
        d = asdict(self)
        d.update(total=self.total, forward=self.forward)
        return d


def flops_per_token(cfg: ModelConfig, seq_len: int | None = None) -> FlopsPerToken:
    """`6 N_active_nonemb + 12 L n_heads head_dim seq + 6 V H` (see the module docstring)."""
    seq = seq_len or cfg.max_position_embeddings
    p = count_parameters(cfg)
    return FlopsPerToken(
        seq_len=seq,
        matmul=6 * p.non_embedding_active,
        attention=12 * cfg.num_layers * cfg.q_size * seq,
        output_layer=6 * cfg.vocab_size * cfg.hidden_size,
    )


class LayoutError(ValueError):
    """A parallel layout that does not fit the model (divisibility) or is malformed."""


@dataclass(frozen=True)
class ParallelLayout:
    """megatron-core style layout: GPUs = tp * pp * dp; experts split over ep * etp, leaving
    expert-DP `edp = tp * dp / (ep * etp)`; `etp` defaults to `tp`."""

    tp: int = 1
    pp: int = 1
    dp: int = 1
    ep: int = 1
    etp: int | None = None

    @property
    def expert_tp(self) -> int:
        return self.etp or self.tp

    @property
    def expert_dp(self) -> int:
        return self.tp * self.dp // (self.ep * self.expert_tp)

    @property
    def num_gpus(self) -> int:
        return self.tp * self.pp * self.dp

    def check(self, cfg: ModelConfig) -> None:
        """Raise `LayoutError` listing every size that does not divide."""
        errs = []
        for name in ("tp", "pp", "dp", "ep"):
            if getattr(self, name) < 1:
                errs.append(f"{name} must be >= 1")
        if self.etp is not None and self.etp < 1:
            errs.append("etp must be >= 1")
        if errs:
            raise LayoutError("; ".join(errs))
        tp = self.tp
        checks = [
            (cfg.num_attention_heads, tp, "num_attention_heads", "tp"),
            (cfg.num_kv_heads, tp, "num_kv_heads", "tp"),
            (cfg.num_layers, self.pp, "num_layers", "pp"),
        ]
        if not all(cfg.moe_layers):
            checks.append((cfg.ffn_hidden_size, tp, "ffn_hidden_size", "tp"))
        if cfg.moe is None:
            if self.ep > 1 or (self.etp not in (None, tp)):
                errs.append("ep/etp > 1 needs an MoE model")
        else:
            checks += [
                (cfg.moe.num_experts, self.ep, "moe.num_experts", "ep"),
                (
                    cfg.moe.expert_ffn_hidden_size,
                    self.expert_tp,
                    "moe.expert_ffn_hidden_size",
                    "etp",
                ),
            ]
            if (tp * self.dp) % (self.ep * self.expert_tp):
                errs.append(
                    f"ep*etp ({self.ep * self.expert_tp}) must divide tp*dp ({tp * self.dp})"
                )
        for value, by, what, name in checks:
            if value % by:
                errs.append(f"{what} ({value}) is not divisible by {name} ({by})")
        if errs:
            raise LayoutError("; ".join(errs))


Recompute = Literal["none", "selective", "full"]


def activation_bytes_per_layer(
    cfg: ModelConfig,
    seq: int,
    micro_batch: int,
    tp: int,
    sequence_parallel: bool,
    recompute: Recompute,
) -> float:
    """Korthikanti et al. (2022) activation bytes of one layer for one micro-batch."""
    s, b, h, a, t = seq, micro_batch, cfg.hidden_size, cfg.num_attention_heads, tp
    sp = sequence_parallel and t > 1
    if recompute == "full":
        return 2 * s * b * h / (t if sp else 1)
    attn_scores = 0.0 if recompute == "selective" else 5 * a * s / h
    if sp:
        return s * b * h / t * (34 + attn_scores)
    return s * b * h * (10 + 24 / t + attn_scores / t)


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per GPU on the most loaded pipeline stage."""

    stage: int
    dense_params: int
    expert_params: int
    weights: float
    grads: float
    optimizer: float
    activations: float

    @property
    def total(self) -> float:
        return self.weights + self.grads + self.optimizer + self.activations

    def as_dict(self) -> dict[str, float]:
        d = asdict(self)
        d["total"] = self.total
        return d


def _stage_params(cfg: ModelConfig, layout: ParallelLayout, stage: int) -> tuple[int, int]:
    """(dense, expert) parameters held by one GPU of pipeline stage `stage`."""
    s, h, tp = _layer_shapes(cfg), cfg.hidden_size, layout.tp
    per_stage = cfg.num_layers // layout.pp
    layers = cfg.moe_layers[stage * per_stage : (stage + 1) * per_stage]
    qk = 2 * cfg.head_dim if cfg.qk_norm else 0
    attn = (s["attention"] - qk) // tp + qk + s["norms"]
    dense = expert = 0
    for is_moe in layers:
        dense += attn
        if is_moe:
            m = cfg.moe
            gate = h if m.shared_expert_gate else 0
            dense += s["router"] + (s["shared_experts"] - gate) // tp + gate
            expert += s["routed_experts"] // (layout.ep * layout.expert_tp)
        else:
            dense += s["dense_mlp"] // tp
    tables, extras = _extras_counts(cfg)
    vocab_shard = math.ceil(cfg.vocab_size / tp) * h
    if stage == 0:
        dense += vocab_shard + tables + extras
    if stage == layout.pp - 1:
        dense += h
        if not cfg.tie_embeddings or layout.pp > 1:
            dense += vocab_shard
    return dense, expert


def memory_per_gpu(
    cfg: ModelConfig,
    layout: ParallelLayout,
    seq: int | None = None,
    micro_batch: int = 1,
    sequence_parallel: bool = True,
    recompute: Recompute = "selective",
    optimizer_bytes: float = DIST_OPT_SHARDED_BYTES,
) -> MemoryEstimate:
    """Weights + grads + distributed-optimizer state + activations on the most loaded stage.
    `optimizer_bytes`: sharded state per parameter (12: FP32 master + FP32 Adam moments; 8 with
    BF16 moments)."""
    layout.check(cfg)
    seq = seq or cfg.max_position_embeddings
    per_layer = activation_bytes_per_layer(
        cfg, seq, micro_batch, layout.tp, sequence_parallel, recompute
    )
    sp_div = layout.tp if (sequence_parallel and layout.tp > 1) else 1
    per_stage = cfg.num_layers // layout.pp
    best = None
    for stage in range(layout.pp):
        dense, expert = _stage_params(cfg, layout, stage)
        acts = per_layer * per_stage * (layout.pp - stage)
        if stage == 0:
            acts += seq * micro_batch * cfg.hidden_size * layout.pp / sp_div
        if stage == layout.pp - 1:
            acts += 4 * seq * micro_batch * (cfg.hidden_size + cfg.vocab_size) / layout.tp
        est = MemoryEstimate(
            stage=stage,
            dense_params=dense,
            expert_params=expert,
            weights=2.0 * (dense + expert),
            grads=4.0 * (dense + expert),
            optimizer=optimizer_bytes * (dense / layout.dp + expert / layout.expert_dp),
            activations=acts,
        )
        if best is None or est.total > best.total:
            best = est
    return best


def describe(
    cfg: ModelConfig,
    layout: ParallelLayout | None = None,
    seq: int | None = None,
    micro_batch: int = 1,
    sequence_parallel: bool = True,
    recompute: Recompute = "selective",
) -> dict:
    """Everything `vla-model describe` prints, as a JSON-ready dict."""
    layout = layout or ParallelLayout()
    seq = seq or cfg.max_position_embeddings
    mem = memory_per_gpu(cfg, layout, seq, micro_batch, sequence_parallel, recompute)
    return {
        "name": cfg.name,
        "kind": "moe" if cfg.is_moe else "dense",
        "params": count_parameters(cfg).as_dict(),
        "flops_per_token": flops_per_token(cfg, seq).as_dict(),
        "layout": {
            "tp": layout.tp,
            "pp": layout.pp,
            "dp": layout.dp,
            "ep": layout.ep,
            "etp": layout.expert_tp,
            "expert_dp": layout.expert_dp,
            "num_gpus": layout.num_gpus,
            "seq_len": seq,
            "micro_batch": micro_batch,
            "sequence_parallel": sequence_parallel and layout.tp > 1,
            "recompute": recompute,
        },
        "memory_per_gpu_bytes": mem.as_dict(),
    }
