"""Reference PyTorch model: a Qwen3-style decoder (dense or MoE) with KV-cache generation."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from vla_model.config import ModelConfig
from vla_model.extras import ActionHead, VLAInputs
from vla_model.kv_cache import KVCache, LayerKVCache
from vla_model.layers import Attention, RMSNorm, RotaryEmbedding, SwiGLU
from vla_model.moe import Experts, MoEBlock, Router


@dataclass
class ModelOutput:
    """`logits` `[batch, seq, vocab]`; `aux_losses` (MoE losses, coefficients applied, summed
    over layers; empty for dense models); `actions` when the action head is on."""

    logits: torch.Tensor
    aux_losses: dict[str, torch.Tensor] = field(default_factory=dict)
    actions: torch.Tensor | None = None
    hidden_states: torch.Tensor | None = None


class DecoderLayer(nn.Module):
    """Pre-norm block: `x + attn(norm(x))`, then `x + ffn(norm(x))` (SwiGLU or MoE)."""

    def __init__(self, cfg: ModelConfig, is_moe: bool) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.hidden_size, cfg.norm_eps)
        self.attn = Attention(
            cfg.hidden_size,
            cfg.num_attention_heads,
            cfg.num_kv_heads,
            cfg.head_dim,
            cfg.qk_norm,
            cfg.norm_eps,
        )
        self.ffn_norm = RMSNorm(cfg.hidden_size, cfg.norm_eps)
        self.ffn = (
            MoEBlock(cfg.hidden_size, cfg.moe)
            if is_moe
            else SwiGLU(cfg.hidden_size, cfg.ffn_hidden_size)
        )

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: LayerKVCache | None,
        attn_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x = x + self.attn(self.attn_norm(x), cos, sin, cache, attn_mask)
        h = self.ffn_norm(x)
        if isinstance(self.ffn, MoEBlock):
            y, losses = self.ffn(h)
            return x + y, losses
        return x + self.ffn(h), {}


class VLAModel(nn.Module):
    """The decoder built from a `ModelConfig`. Runs on CPU and GPU, in any float dtype."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.vla_inputs = (
            VLAInputs(config.extras, config.hidden_size)
            if {"num_cameras", "num_time_buckets", "continuous_input_dim"}
            & set(config.extras.enabled)
            else None
        )
        self.rope = RotaryEmbedding(config.head_dim, config.rope_theta)
        self.layers = nn.ModuleList(DecoderLayer(config, m) for m in config.moe_layers)
        self.final_norm = RMSNorm(config.hidden_size, config.norm_eps)
        self.lm_head = (
            None
            if config.tie_embeddings
            else nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        )
        self.action_head = (
            ActionHead(config.extras, config.hidden_size) if config.extras.action_dim else None
        )
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Init: every matrix ~ N(0, init_std); the output projections of attention and of every
        MLP/expert (`wo`, `w_down`) ~ N(0, init_std / sqrt(2 * num_layers)) as in megatron-core;
        norms = 1, biases and expert biases = 0."""
        std = self.config.init_std
        out_std = std / math.sqrt(2 * self.config.num_layers)
        for name, module in self.named_modules():
            leaf = name.rsplit(".", 1)[-1]
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, 0.0, out_std if leaf in ("wo", "w_down") else std)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, RMSNorm):
                nn.init.ones_(module.weight)
            elif isinstance(module, Router):
                nn.init.normal_(module.weight, 0.0, std)
                if module.expert_bias is not None:
                    module.expert_bias.zero_()
                    module.tokens_per_expert.zero_()
            elif isinstance(module, Experts):
                nn.init.normal_(module.w_gate, 0.0, std)
                nn.init.normal_(module.w_up, 0.0, std)
                nn.init.normal_(module.w_down, 0.0, out_std)

    @property
    def output_weight(self) -> torch.Tensor:
        return self.tok_embeddings.weight if self.lm_head is None else self.lm_head.weight

    def new_kv_cache(self, batch: int, max_len: int) -> KVCache:
        """An empty cache for `batch` sequences of up to `max_len` positions."""
        p = self.tok_embeddings.weight
        c = self.config
        return KVCache(c.num_layers, batch, c.num_kv_heads, c.head_dim, max_len, p.dtype, p.device)

    def forward(
        self,
        input_ids: torch.Tensor,
        *,
        positions: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        camera_ids: torch.Tensor | None = None,
        time_ids: torch.Tensor | None = None,
        continuous_features: torch.Tensor | None = None,
        continuous_mask: torch.Tensor | None = None,
        document_ids: torch.Tensor | None = None,
        return_hidden: bool = False,
    ) -> ModelOutput:
        """`input_ids` `[batch, seq]` -> `ModelOutput`. With `kv_cache`, the tokens continue the
        cached ones (positions default to `cache.length + arange(seq)`). `document_ids`
        `[batch, seq]` (packed sequences) lets a token attend only to earlier tokens of its own
        document; it needs a forward pass without `kv_cache`."""
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [batch, seq], got shape {tuple(input_ids.shape)}")
        b, s = input_ids.shape
        h = self.tok_embeddings(input_ids)
        extra_inputs = (camera_ids, time_ids, continuous_features)
        if self.vla_inputs is not None:
            h = self.vla_inputs(h, camera_ids, time_ids, continuous_features, continuous_mask)
        elif any(t is not None for t in extra_inputs):
            raise ValueError("VLA inputs given but no VLA input extra is switched on in the config")
        if positions is None:
            start = kv_cache.length if kv_cache is not None else 0
            positions = torch.arange(start, start + s, device=input_ids.device).expand(b, s)
        cos, sin = self.rope(positions, h.dtype)
        mask = None
        if document_ids is not None:
            if kv_cache is not None or document_ids.shape != input_ids.shape:
                raise ValueError("document_ids must be [batch, seq] and used without kv_cache")
            causal = torch.ones(s, s, dtype=torch.bool, device=input_ids.device).tril()
            same = document_ids[:, :, None] == document_ids[:, None, :]
            mask = (same & causal)[:, None]
        aux: dict[str, torch.Tensor] = {}
        for i, layer in enumerate(self.layers):
            cache = kv_cache[i] if kv_cache is not None else None
            h, losses = layer(h, cos, sin, cache, mask)
            for k, v in losses.items():
                aux[k] = aux[k] + v if k in aux else v
        h = self.final_norm(h)
        logits = nn.functional.linear(h, self.output_weight)
        actions = self.action_head(h) if self.action_head is not None else None
        return ModelOutput(logits, aux, actions, h if return_hidden else None)

    @torch.no_grad()
    def update_expert_bias(self) -> None:
        """Apply one aux-loss-free bias step in every router (call after the optimizer step)."""
        for m in self.modules():
            if isinstance(m, Router):
                m.update_expert_bias()

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        max_new_tokens: int,
        greedy: bool = True,
        temperature: float = 1.0,
        top_k: int | None = None,
        eos_token_id: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Continue `input_ids` `[batch, seq]` (equal-length prompts) by up to `max_new_tokens`
        with a KV cache: greedy (argmax) or sampling with temperature/top-k. Sequences that emit
        `eos_token_id` are padded with it; stops early once all have.
        Returns prompt + new tokens."""
        if max_new_tokens < 0:
            raise ValueError("max_new_tokens must be >= 0")
        b, s = input_ids.shape
        total = s + max_new_tokens
        if total > self.config.max_position_embeddings:
            raise ValueError(
                f"prompt ({s}) + max_new_tokens ({max_new_tokens}) exceeds "
                f"max_position_embeddings ({self.config.max_position_embeddings})"
            )
        if max_new_tokens == 0:
            return input_ids
        was_training = self.training
        self.eval()
        try:
            cache = self.new_kv_cache(b, total)
            logits = self(input_ids, kv_cache=cache).logits[:, -1]
            out = [input_ids]
            done = torch.zeros(b, dtype=torch.bool, device=input_ids.device)
            for step in range(max_new_tokens):
                nxt = self._pick(logits, greedy, temperature, top_k, generator)
                if eos_token_id is not None:
                    nxt = torch.where(done, torch.full_like(nxt, eos_token_id), nxt)
                    done |= nxt == eos_token_id
                out.append(nxt[:, None])
                if step == max_new_tokens - 1 or (eos_token_id is not None and bool(done.all())):
                    break
                logits = self(nxt[:, None], kv_cache=cache).logits[:, -1]
            return torch.cat(out, dim=1)
        finally:
            self.train(was_training)

    @staticmethod
    def _pick(
        logits: torch.Tensor,
        greedy: bool,
        temperature: float,
        top_k: int | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        if greedy:
            return logits.argmax(dim=-1)
        if temperature <= 0:
            raise ValueError("temperature must be > 0 when sampling")
        logits = logits.float() / temperature
        if top_k is not None:
            kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        return torch.multinomial(probs, 1, generator=generator)[:, 0]
