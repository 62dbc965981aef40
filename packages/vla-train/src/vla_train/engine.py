"""The torch engine: one process or torchrun DDP (gloo on CPU, NCCL on GPU), exact resume.

Per optimizer step: `global_batch_size / (micro_batch_size x ranks)` micro-batches per rank,
each `[micro, seq]` from the mixture stream. The LM loss is the per-token cross entropy,
weighted per token by `loss_mask x modality_weight(label)` and divided by the number of
loss-mask tokens of the whole global batch (so accumulation and DDP give the same step as one
big batch); the MoE aux/z losses the model returns (coefficients applied) are averaged over
micro-batches and added. bf16 autocast on CUDA; AdamW (fused where available), linear warmup
+ cosine, gradient clipping; NaN/inf/spike guards skip the update.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from vla_model import VLAModel, flops_per_token
from vla_train.checkpoint import (
    CheckpointManifest,
    LoadedCheckpoint,
    digest_of,
    latest_checkpoint,
    load_optimizer_tensors,
    optimizer_tensors,
    remove_partial,
    restore_rng,
    rng_tensors,
    save_checkpoint,
)
from vla_train.config import TrainConfig, TrainConfigError
from vla_train.data import Batch, MixtureStream, micro_batch_indices
from vla_train.loss import token_cross_entropy
from vla_train.modalities import TokenModalities
from vla_train.monitor import MetricsLog, Progress, StepGuard, TrainingStopped, memory_stats
from vla_train.schedule import lr_at

CUDA_PEAK_TFLOPS = 989.0  # H100 SXM dense BF16


@dataclass
class TrainResult:
    """What a finished (or stopped) run did."""

    steps_done: int
    start_step: int
    losses: list[float] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    final_checkpoint: Path | None = None
    tokens_per_s: float = 0.0


def _dist_env() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return rank, world, local


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device):
    """AdamW with weight decay on matrices only (norms and 1-D params undecayed); fused when
    the device supports it (unless `optimizer.fused = false`)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    o = cfg.optimizer
    groups = [
        {"params": decay, "weight_decay": o.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    kwargs = dict(lr=o.lr, betas=o.betas, eps=o.eps)
    if o.fused is not False:
        try:
            return torch.optim.AdamW(groups, fused=True, **kwargs), True
        except (RuntimeError, TypeError):
            if o.fused:
                raise
    return torch.optim.AdamW(groups, foreach=False, **kwargs), False


class Trainer:
    """Runs `cfg` from scratch or from the latest checkpoint in `out_dir/checkpoints`."""

    def __init__(self, cfg: TrainConfig, *, resume: bool = True) -> None:
        if cfg.engine != "torch":
            raise TrainConfigError(
                f"engine '{cfg.engine}' is reserved for the megatron engine (not in this "
                "package version); use engine = 'torch'"
            )
        self.cfg = cfg
        self.rank, self.world, self.local_rank = _dist_env()
        self.device = self._pick_device()
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.is_main = self.rank == 0
        self.mcfg = cfg.resolve_model()
        self.modalities = TokenModalities.from_path(cfg.data.vocab_layout)
        if (
            self.modalities.vocab_size is not None
            and self.modalities.vocab_size > self.mcfg.vocab_size
        ):
            raise TrainConfigError(
                f"vocab layout has {self.modalities.vocab_size} ids but the model's vocab_size "
                f"is {self.mcfg.vocab_size}"
            )
        self.weights_by_code = torch.ones(len(self.modalities.names), device=self.device)
        for name, w in cfg.loss.modality_weights.items():
            self.weights_by_code[self.modalities.code(name)] = w
        # all weights 1: skip the per-token weight lookup
        self.uniform_weights = bool((self.weights_by_code == 1).all())
        # the step reads per-token modality codes only for weights or per-modality losses
        self._need_modality = not self.uniform_weights or len(self.modalities.names) > 1
        self.accum = cfg.accumulation_steps(self.world)
        self.autocast = self.device.type == "cuda" and cfg.precision in ("auto", "bf16")
        if cfg.precision == "bf16" and self.device.type != "cuda":
            raise TrainConfigError("precision = 'bf16' needs CUDA (CPU runs in fp32)")

        torch.manual_seed(cfg.seed)
        self.model = VLAModel(self.mcfg).to(self.device)
        self.optimizer, self.fused = make_optimizer(self.model, cfg, self.device)
        from vla_model.moe import Router

        self._bias_routers = [
            m for m in self.model.modules() if isinstance(m, Router) and m.expert_bias is not None
        ]
        self.ddp = None
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.ddp = DDP(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=self.mcfg.is_moe,
            )
        self.stream = MixtureStream(cfg, self.modalities)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vla-train-data")
        self._prefetch: dict[int, Future] = {}
        if self.stream.eod >= self.mcfg.vocab_size:
            raise TrainConfigError(f"EOD id {self.stream.eod} >= vocab_size {self.mcfg.vocab_size}")
        self.guard = StepGuard(
            cfg.guards.max_skipped_steps,
            cfg.guards.spike_factor,
            cfg.guards.spike_window,
            cfg.guards.spike_min_history,
        )
        self.ckpt_root = cfg.out_dir / "checkpoints"
        self.step = 0
        if resume:
            self._maybe_resume()
        self.metrics = MetricsLog(cfg.out_dir, cfg.logging.tensorboard, enabled=self.is_main)
        if self.is_main:
            self.metrics.truncate_after(self.step)
            (cfg.out_dir / "train_config.json").write_text(cfg.to_json())
        flops = flops_per_token(self.mcfg, cfg.seq_length).total
        self.flops_per_token = flops
        peak = cfg.logging.peak_tflops or (CUDA_PEAK_TFLOPS if self.device.type == "cuda" else None)
        self.peak_flops = peak * 1e12 if peak else None

    def _pick_device(self) -> torch.device:
        want = self.cfg.device
        if want == "cuda" or (want == "auto" and torch.cuda.is_available()):
            if not torch.cuda.is_available():
                raise TrainConfigError("device = 'cuda' but CUDA is not available")
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")

    # ---- checkpoints ------------------------------------------------------------------------

    def _maybe_resume(self) -> None:
        if self.is_main and self.ckpt_root.is_dir():
            remove_partial(self.ckpt_root)
        if self.world > 1:
            dist.barrier()
        path = latest_checkpoint(self.ckpt_root)
        if path is None:
            return
        ck = LoadedCheckpoint(path)
        m = ck.manifest
        if m.model != json.loads(self.mcfg.to_json()):
            raise TrainConfigError(f"{path}: checkpoint was made for another model config")
        if m.world_size != self.world:
            raise TrainConfigError(
                f"{path}: saved with {m.world_size} ranks, resuming with {self.world}: exact "
                "resume needs the same data-parallel size"
            )
        self.model.load_state_dict(ck.tensors("model.safetensors"), strict=True)
        load_optimizer_tensors(self.optimizer, ck.tensors("optimizer.safetensors"), m.param_groups)
        rng = ck.rng(self.rank)
        if rng is not None:
            restore_rng(rng)
        self.guard.load_state(m.trainer_state.get("guard", {}))
        self.step = m.step
        self.resumed_from = path

    def save(self) -> Path | None:
        """Checkpoint after `self.step` optimizer steps (collective under DDP)."""
        rng = rng_tensors()
        if self.world > 1:
            gathered: list[Any] = [None] * self.world
            dist.all_gather_object(gathered, {k: v.tolist() for k, v in rng.items()})
            states = [
                {k: torch.tensor(v, dtype=torch.uint8) for k, v in g.items()} for g in gathered
            ]
        else:
            states = [rng]
        path = None
        if self.is_main:
            opt_tensors, groups = optimizer_tensors(self.optimizer)
            manifest = CheckpointManifest(
                step=self.step,
                consumed_samples=self.step * self.cfg.global_batch_size,
                tokens_seen=self.step * self.cfg.tokens_per_step,
                world_size=self.world,
                model=json.loads(self.mcfg.to_json()),
                param_groups=groups,
                trainer_state={
                    "guard": self.guard.state(),
                    "lr": self.optimizer.param_groups[0]["lr"],
                },
                config_digest=digest_of(self.cfg.model_dump(mode="json")),
            )
            path = save_checkpoint(
                self.ckpt_root,
                manifest,
                self.model.state_dict(),
                opt_tensors,
                states,
                self.cfg.checkpoint.keep_last,
            )
        if self.world > 1:
            dist.barrier()
        return path

    # ---- one step ---------------------------------------------------------------------------

    def _docs(self, batch: Batch) -> torch.Tensor | None:
        """Document ids of a packed batch (a new document where positions restart at 0)."""
        data = self.cfg.data
        if not (data.document_mask and data.reset_position_ids):
            return None
        return (batch.positions == 0).cumsum(dim=1)

    def _micro_batches(self, step: int) -> list[_Micro]:
        """The step's micro-batches; the next step's are fetched in a background thread while
        this one computes (sample i is a pure function of i, so prefetching keeps determinism)."""
        pending = self._prefetch.pop(step, None)
        micro = pending.result() if pending is not None else self._fetch(step)
        if self.cfg.data.prefetch and step + 1 < len(self.stream) // self.cfg.global_batch_size:
            self._prefetch[step + 1] = self._pool.submit(self._fetch, step + 1)
        if self.device.type == "cpu":
            return micro
        return [m.to(self.device, self._need_modality) for m in micro]

    def _fetch(self, step: int) -> list[_Micro]:
        """Host side of a step's micro-batches: the batch, its document ids and loss-token
        count (no device work, no sync); pinned for an asynchronous copy on CUDA."""
        out = []
        for m in range(self.accum):
            b = self.stream.batch(micro_batch_indices(step, m, self.cfg, self.rank, self.world))
            micro = _Micro(b, self._docs(b), float(b.loss_mask.sum(dtype=torch.float64)))
            out.append(micro.pinned(self._need_modality) if self.device.type == "cuda" else micro)
        return out

    def _all_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(t)
        return t

    def train_step(self, step: int) -> dict[str, Any]:
        """Forward/backward over the step's micro-batches, guard, optimizer step.

        One host sync per step (two under DDP: the global loss-token count is all-reduced
        first): loss, gradient norm, per-modality sums and MoE losses come back together."""
        cfg = self.cfg
        lr = lr_at(step, cfg.optimizer, cfg.schedule)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        micro = self._micro_batches(step)
        n_mod = len(self.modalities.names)
        n_tokens = sum(m.loss_tokens for m in micro)  # exact: counts of 0/1 mask entries
        if self.world > 1:
            t = torch.tensor([n_tokens], dtype=torch.float64, device=self.device)
            n_tokens = self._all_sum(t).item()
        denom = max(n_tokens, 1.0)
        # sums over the step: [weighted loss, per-modality ce sums, per-modality token counts]
        local = torch.zeros(1 + 2 * n_mod, dtype=torch.float64, device=self.device)
        aux_totals: dict[str, torch.Tensor] = {}
        module = self.ddp or self.model
        for i, m in enumerate(micro):
            b = m.batch
            sync = self.ddp is None or i == len(micro) - 1
            with self.ddp.no_sync() if not sync else _null():
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.autocast):
                    out = module(b.tokens, positions=b.positions, document_ids=m.docs)
                logits = out.logits
                if logits.dtype != torch.float32:
                    logits = logits.float()
                ce = token_cross_entropy(logits, b.labels)
                w = (
                    b.loss_mask
                    if self.uniform_weights
                    else b.loss_mask * self.weights_by_code[b.modality]
                )
                lm_sum = (ce * w).sum()
                total = lm_sum / denom
                if self.world > 1:
                    total = total * self.world  # DDP averages gradients over ranks
                if out.aux_losses:
                    total = total + sum(out.aux_losses.values()) / self.accum
                total.backward()
            with torch.no_grad():
                local[0] += lm_sum.detach().double()
                if n_mod == 1:  # one modality: its mean loss is the unweighted loss
                    ce_sum = lm_sum if self.uniform_weights else (ce * b.loss_mask).sum()
                    local[1] += ce_sum.detach().double()
                else:  # scatter-adds (no data-dependent shapes: no device sync)
                    mod = b.modality.view(-1)
                    keep = b.loss_mask.view(-1) > 0
                    ced = torch.where(keep, ce.detach().view(-1).double(), 0.0)
                    zeros = local.new_zeros(n_mod)
                    local[1 : 1 + n_mod] += zeros.index_add(0, mod, ced)
                    local[1 + n_mod :] += zeros.index_add(0, mod, keep.double())
                for k, v in out.aux_losses.items():
                    aux_totals[k] = aux_totals.get(k, 0.0) + v.detach().double() / self.accum
        if n_mod == 1:
            local[2] = n_tokens  # already summed over ranks
        sums = self._all_sum(local)
        if n_mod == 1 and self.world > 1:
            sums[2] = n_tokens
        clip = cfg.optimizer.grad_clip if cfg.optimizer.grad_clip > 0 else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        # the step's one host sync: [loss, grad norm, per-modality sums and counts, aux losses]
        host = torch.cat(
            [
                (sums[0] / denom).view(1),
                norm.detach().to(sums.device, torch.float64).view(1),
                sums[1:],
                *(v.view(1) for v in aux_totals.values()),
            ]
        ).tolist()
        loss, grad_norm = host[0], host[1]
        reason = self.guard.check(step + 1, loss, grad_norm)
        if reason is None:
            self.optimizer.step()
            self._update_expert_bias()
        self.optimizer.zero_grad(set_to_none=True)
        rec: dict[str, Any] = {"step": step + 1, "loss": loss, "grad_norm": grad_norm, "lr": lr}
        ce_sums, counts = host[2 : 2 + n_mod], host[2 + n_mod : 2 + 2 * n_mod]
        for name, ce_sum, cnt in zip(self.modalities.names, ce_sums, counts, strict=True):
            if cnt > 0:
                rec[f"loss_{name}"] = ce_sum / cnt
        for k, v in zip(aux_totals, host[2 + 2 * n_mod :], strict=True):
            rec[k] = v / self.world if self.world > 1 else v
        rec["loss_tokens"] = int(n_tokens)
        if reason is not None:
            rec["skipped"] = reason
        return rec

    @torch.no_grad()
    def _update_expert_bias(self) -> None:
        """Aux-loss-free balancing: sum the routers' token counts over ranks, then step the bias."""
        if not self._bias_routers:
            return
        for r in self._bias_routers:
            self._all_sum(r.tokens_per_expert)
        self.model.update_expert_bias()

    # ---- the loop ---------------------------------------------------------------------------

    def train(self, stop_after: int | None = None) -> TrainResult:
        """Run to `schedule.train_steps` (or `stop_after` more steps); checkpoints on the way.
        Raises `TrainingStopped` after too many skipped steps (report in stop_report.json)."""
        cfg = self.cfg
        total = cfg.schedule.train_steps
        end = total if stop_after is None else min(total, self.step + stop_after)
        result = TrainResult(steps_done=self.step, start_step=self.step)
        progress = Progress(total, self.step, cfg.logging.progress and self.is_main)
        self.model.train()
        elapsed, tokens = 0.0, 0
        try:
            while self.step < end:
                t0 = time.perf_counter()
                rec = self.train_step(self.step)
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                dt = time.perf_counter() - t0
                self.step += 1
                elapsed += dt
                tokens += cfg.tokens_per_step
                tps = cfg.tokens_per_step / dt
                rec["tokens_per_s"] = tps
                rec["tokens_seen"] = self.step * cfg.tokens_per_step
                rec["tflops_per_device"] = tps * self.flops_per_token / self.world / 1e12
                rec["mfu"] = (
                    tps * self.flops_per_token / (self.peak_flops * self.world)
                    if self.peak_flops
                    else None
                )
                rec.update(memory_stats(self.device))
                result.losses.append(rec["loss"])
                if self.step % cfg.logging.every == 0 or "skipped" in rec:
                    self.metrics.log(rec)
                progress.update(
                    self.step, f"loss {rec['loss']:.4f} lr {rec['lr']:.2e} {tps:,.0f} tok/s"
                )
                if self.guard.must_stop:
                    report = {
                        "step": self.step,
                        "max_skipped_steps": cfg.guards.max_skipped_steps,
                        "skipped": self.guard.skipped,
                    }
                    if self.is_main:
                        (cfg.out_dir / "stop_report.json").write_text(json.dumps(report, indent=1))
                    raise TrainingStopped(
                        f"stopped at step {self.step}: {len(self.guard.skipped)} skipped steps "
                        f"exceed guards.max_skipped_steps={cfg.guards.max_skipped_steps}; last: "
                        f"step {self.guard.skipped[-1]['step']}: {self.guard.skipped[-1]['reason']} "
                        f"(see {cfg.out_dir / 'stop_report.json'})",
                        report,
                    )
                if self.step % cfg.checkpoint.every == 0 or (
                    self.step == total and cfg.checkpoint.save_final
                ):
                    result.final_checkpoint = self.save()
        finally:
            progress.close()
            self.metrics.close()
        result.steps_done = self.step
        result.skipped = list(self.guard.skipped)
        result.tokens_per_s = tokens / elapsed if elapsed else 0.0
        return result


@dataclass
class _Micro:
    """A micro-batch with what the step needs of it before any device work."""

    batch: Batch
    docs: torch.Tensor | None  # document ids (packed-document attention), or None
    loss_tokens: float  # loss-mask tokens in the micro-batch

    def pinned(self, modality: bool) -> _Micro:
        """Page-locked copies of what `to` moves (so the copies can be asynchronous)."""
        b = self.batch
        pinned = Batch(
            b.tokens.pin_memory(),
            b.labels.pin_memory(),
            b.positions.pin_memory(),
            b.loss_mask.pin_memory(),
            b.modality.pin_memory() if modality else b.modality,
            b.bucket,
        )
        return _Micro(
            pinned, None if self.docs is None else self.docs.pin_memory(), self.loss_tokens
        )

    def to(self, device: torch.device, modality: bool) -> _Micro:
        """On `device` (asynchronously from pinned memory); the per-token modality codes only
        when the step uses them, the bucket ids (diagnostics) stay on the host."""
        b = self.batch

        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device, non_blocking=True)

        moved = Batch(
            move(b.tokens),
            move(b.labels),
            move(b.positions),
            move(b.loss_mask),
            move(b.modality) if modality else b.modality,
            b.bucket,
        )
        return _Micro(moved, None if self.docs is None else move(self.docs), self.loss_tokens)


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc) -> None:
        return None


def train(config: TrainConfig | str | Path, resume: bool = True) -> TrainResult:
    """Load (if a path) and run a config with the torch engine."""
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.load(config)
    return Trainer(cfg, resume=resume).train()
