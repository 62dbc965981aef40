"""Training throughput of the megatron engine on one GPU vs the stock-transformers anchor.

The anchor (issue 8, measured 2026-11-23 on one H100): transformers' Qwen3ForCausalLM in the
vla-1b-dense shape (24 layers, hidden 2048, FFN 8192, 32/8 heads, head_dim 64, vocab 152064),
seq 4096, micro-batch 2, bf16 weights, SDPA, fused AdamW, `torch.compile`: 31,500 tokens/s.
This script re-measures the anchor in the same call (`anchor` variant) and runs our megatron
engine (`vla_train.megatron_engine`, the full `vla-train run` path: megatron-core DDP,
distributed optimizer with FP32 master weights, token shards through megatron's GPTDataset) in
BF16 and FP8. Every variant runs in its own process; one JSON object is printed (and written to
`--out`).

MFU = tokens/s x (6 x (params - input embedding) + 12 x layers x hidden x seq) / 989 TFLOP/s,
the anchor's formula (dense BF16 peak of an H100 SXM; FP8 runs are also divided by it).

    python packages/vla-train/bench/megatron_mfu.py --out result.json \\
        [--variants anchor,bf16,fp8-delayed,fp8-current] [--steps 20]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PEAK = 989e12
VARIANTS = {
    # defaults: TE layers, TE's fused weight-gradient accumulation, fused SwiGLU, TE cross
    # entropy, distributed optimizer with FP32 master weights and FP32 Adam moments
    "bf16": {},
    "bf16-mb4": {"micro": 4},
    # the precision-aware optimizer (FP32 master as BF16 param + 16-bit remainder); the results
    # of 2026-12-07 ran it as the default (their records say `precision_aware_optimizer`)
    "bf16-paopt": {"parallel": {"precision_aware_optimizer": True}},
    "bf16-plainopt": {"parallel": {"precision_aware_optimizer": False}},
    "bf16-nowgradfuse": {"megatron": {"gradient_accumulation_fusion": False}},
    # several micro-batches per optimizer step: separates the per-step cost (optimizer, grad
    # norm, step bookkeeping) from the per-micro-batch cost; a cluster amortises the per-step
    # cost by sharding the optimizer over data parallel instead
    "bf16-accum4": {"global": 8},
    "bf16-mb4-accum4": {"micro": 4, "global": 16},
    # memory for larger micro-batches: selective recompute, BF16 Adam moments
    "bf16-mb4-sel": {"micro": 4, "parallel": {"recompute_granularity": "selective"}},
    "bf16-mb4-bf16adam": {"micro": 4, "parallel": {"adam_state_dtype": "bf16"}},
    "bf16-mb8-sel-bf16adam": {
        "micro": 8,
        "parallel": {"recompute_granularity": "selective", "adam_state_dtype": "bf16"},
    },
    # megatron's kernel fusions off (fused SwiGLU, weight-grad accumulation into main_grad)
    "bf16-unfused": {
        "megatron": {"bias_activation_fusion": False, "gradient_accumulation_fusion": False}
    },
    # megatron's per-layer CUDA graphs: no CPU launch cost per kernel (the GPU idled ~60 ms of a
    # 288 ms step at micro-batch 2 on 2026-12-07: launch-bound)
    "bf16-graphs": {"megatron": {"cuda_graph_impl": "local"}},
    "bf16-mb4-graphs": {"micro": 4, "megatron": {"cuda_graph_impl": "local"}},
    "bf16-mb4-accum4-graphs": {"micro": 4, "global": 16, "megatron": {"cuda_graph_impl": "local"}},
    "fp8-delayed-mb4-graphs": {
        "micro": 4,
        "fp8": {"recipe": "delayed"},
        "megatron": {"cuda_graph_impl": "local"},
    },
    "fp8-delayed": {"fp8": {"recipe": "delayed"}},
    "fp8-delayed-mb4": {"micro": 4, "fp8": {"recipe": "delayed"}},
    "fp8-delayed-mb4-accum4": {"micro": 4, "global": 16, "fp8": {"recipe": "delayed"}},
    "fp8-delayed-mb4-fp8w": {"micro": 4, "fp8": {"recipe": "delayed", "primary_weights": True}},
    "fp8-delayed-mb4-accum4-fp8w": {
        "micro": 4,
        "global": 16,
        "fp8": {"recipe": "delayed", "primary_weights": True},
    },
    # no TE 2.11 / cuDNN 9.19 backend at head_dim 64 with GQA (2026-12-07): fails there
    "fp8-delayed-mb4-accum4-attn": {
        "micro": 4,
        "global": 16,
        "fp8": {"recipe": "delayed", "attention": True},
    },
    "fp8-delayed-mb4-accum4-graphs": {
        "micro": 4,
        "global": 16,
        "fp8": {"recipe": "delayed"},
        "megatron": {"cuda_graph_impl": "local"},
    },
    "bf16-mb4-accum4-opfuser": {"micro": 4, "global": 16, "megatron": {"te_op_fuser": True}},
    "fp8-delayed-mb4-accum4-opfuser": {
        "micro": 4,
        "global": 16,
        "fp8": {"recipe": "delayed"},
        "megatron": {"te_op_fuser": True},
    },
    "fp8-delayed-mb4-accum4-opfuser-graphs": {
        "micro": 4,
        "global": 16,
        "fp8": {"recipe": "delayed"},
        "megatron": {"te_op_fuser": True, "cuda_graph_impl": "local"},
    },
    "fp8-delayed-mb4-accum4-opfuser-fp8w": {
        "micro": 4,
        "global": 16,
        "fp8": {"recipe": "delayed", "primary_weights": True},
        "megatron": {"te_op_fuser": True},
    },
    "fp8-delayed-mb4-accum4-teact": {
        "micro": 4,
        "global": 16,
        "fp8": {"recipe": "delayed"},
        "megatron": {"te_activation": True},
    },
    "fp8-delayed-mb4-accum4-recent": {
        "micro": 4,
        "global": 16,
        "fp8": {"recipe": "delayed", "amax_history_len": 1, "amax_compute_algo": "most_recent"},
    },
    "fp8-current": {"fp8": {"recipe": "current"}},
    # micro-batch 8 (fits an H200's 141 GB; the logits alone are 9.3 GiB in BF16)
    "bf16-mb8-accum2": {"micro": 8, "global": 16},
    "fp8-delayed-mb8-accum2": {"micro": 8, "global": 16, "fp8": {"recipe": "delayed"}},
}
FP8_VS_BF16 = (  # (FP8 variant, the BF16 variant it is compared with)
    ("fp8-delayed-mb4-accum4", "bf16-mb4-accum4"),
    ("fp8-delayed", "bf16"),
    ("fp8-current", "bf16"),
    ("fp8-delayed-mb4", "bf16-mb4"),
    ("fp8-delayed-mb4-graphs", "bf16-mb4-graphs"),
    ("fp8-delayed-mb4-fp8w", "bf16-mb4"),
    ("fp8-delayed-mb4-accum4-fp8w", "bf16-mb4-accum4"),
    ("fp8-delayed-mb4-accum4-attn", "bf16-mb4-accum4"),
    ("fp8-delayed-mb4-accum4-graphs", "bf16-mb4-accum4-graphs"),
    ("fp8-delayed-mb4-accum4-graphs", "bf16-mb4-accum4"),
    ("fp8-delayed-mb8-accum2", "bf16-mb8-accum2"),
    ("fp8-delayed-mb4-accum4-opfuser", "bf16-mb4-accum4"),
    ("fp8-delayed-mb4-accum4-opfuser", "bf16-mb4-accum4-opfuser"),
    ("fp8-delayed-mb4-accum4-opfuser-graphs", "bf16-mb4-accum4"),
    ("fp8-delayed-mb4-accum4-opfuser-fp8w", "bf16-mb4-accum4"),
    ("fp8-delayed-mb4-accum4-teact", "bf16-mb4-accum4"),
    ("fp8-delayed-mb4-accum4-recent", "bf16-mb4-accum4"),
)
ANCHORS = {"anchor": 1, "anchor-accum4": 4}  # micro-batches per optimizer step


def kernel_table(prof, steps: int, top: int = 25) -> dict:
    """Per-step GPU time by kernel from a torch.profiler run over `steps` steps: the `top`
    kernels and a sum by kind (GEMM, attention, optimizer, ...)."""
    kinds = {
        "gemm": ("gemm", "nvjet", "xmma", "cutlass", "cublas"),
        "attention": ("flash", "fmha", "attn", "cudnn"),
        "optimizer": ("adam", "multi_tensor", "l2norm", "scale"),
        "cross_entropy": ("cross_entropy", "softmax", "logsumexp"),
        "copy_or_cast": ("copy", "cast", "transpose", "fill", "memset", "memcpy"),
    }
    rows, by_kind = [], {k: 0.0 for k in [*kinds, "other"]}
    for e in prof.key_averages():
        t = getattr(e, "self_device_time_total", None)
        if t is None:
            t = getattr(e, "self_cuda_time_total", 0.0)
        if not t or e.key.startswith("ProfilerStep"):
            continue
        ms = t / 1e3 / steps
        name = e.key.lower()
        kind = next((k for k, keys in kinds.items() if any(x in name for x in keys)), "other")
        by_kind[kind] += ms
        rows.append({"kernel": e.key[:120], "ms_per_step": round(ms, 3), "calls": e.count // steps})
    rows.sort(key=lambda r: -r["ms_per_step"])
    return {
        "gpu_ms_per_step": round(sum(by_kind.values()), 2),
        "by_kind_ms": {k: round(v, 2) for k, v in by_kind.items()},
        "top": rows[:top],
    }


def emit(result: dict, path: Path | None) -> None:
    """Print the bench's JSON object and write it to `path` when given."""
    text = json.dumps(result, indent=1)
    print(text)
    if path:
        path.write_text(text + "\n")


def anchor_flops_per_token(layers: int, hidden: int, seq: int, params: int, emb: int) -> float:
    return 6 * (params - emb) + 12 * layers * hidden * seq


def write_random_shards(folder: Path, vocab: int, tokens: int, seed: int = 0) -> int:
    """Random-token documents (lengths 256..8192) as megatron token shards; EOD = vocab - 1."""
    import numpy as np
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    rng = np.random.default_rng(seed)
    eod = vocab - 1
    b = IndexedDatasetBuilder(str(folder / "random__text.bin"), dtype=np.int32)
    done = 0
    while done < tokens:
        n = int(rng.integers(256, 8192))
        ids = rng.integers(0, vocab - 1, size=n, dtype=np.int64).tolist() + [eod]
        b.add_document(torch.tensor(ids), [len(ids)])
        done += len(ids)
    b.finalize(str(folder / "random__text.idx"))
    return eod


def run_anchor(args, name: str) -> dict:
    """transformers Qwen3ForCausalLM, bf16, SDPA, fused AdamW, torch.compile (the anchor);
    `anchor-accum4`: four micro-batches per optimizer step."""
    import torch
    from transformers import Qwen3ForCausalLM

    from vla_model import resolve_config
    from vla_model.hf import to_hf_config

    accum = ANCHORS[name]
    mcfg = resolve_config("vla-1b-dense")
    torch.manual_seed(0)
    hf_cfg = to_hf_config(mcfg)
    model = Qwen3ForCausalLM._from_config(
        hf_cfg, attn_implementation="sdpa", torch_dtype=torch.bfloat16
    ).cuda()
    model.train()
    params = sum(p.numel() for p in model.parameters())
    emb = model.model.embed_tokens.weight.numel()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    step_fn = torch.compile(model) if args.compile else model
    mb, seq = args.micro, args.seq
    ids = torch.randint(0, mcfg.vocab_size, (mb, seq), device="cuda")

    def step():
        for _ in range(accum):
            loss = step_fn(input_ids=ids, labels=ids).loss
            (loss / accum).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    times = []
    for _ in range(args.steps):
        torch.cuda.synchronize()
        t = time.perf_counter()
        loss = step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    dt = statistics.median(times[args.skip :])
    tps = accum * mb * seq / dt
    f = anchor_flops_per_token(mcfg.num_layers, mcfg.hidden_size, seq, params, emb)
    out = {
        "variant": name,
        "what": f"transformers Qwen3ForCausalLM bf16 SDPA fused AdamW compile={args.compile}, "
        f"micro {mb}, {accum} micro-batch(es) per step",
        "params": params,
        "tokens_per_s": tps,
        "mfu": tps * f / PEAK,
        "median_step_s": dt,
        "max_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
        "loss_last": float(loss),
    }
    if name in args.profile:
        out["profile"] = profile_steps(lambda n: [step() for _ in range(n)])
    return out


def profile_steps(run_steps, steps: int = 2) -> dict:
    """GPU kernel time per step over `steps` steps run by `run_steps(steps)`."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    t = time.perf_counter()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        run_steps(steps)
        torch.cuda.synchronize()
    table = kernel_table(prof, steps)
    table["wall_ms_per_step_profiled"] = round((time.perf_counter() - t) * 1e3 / steps, 2)
    return table


def variant_config(name: str, tmp: Path, eod: int, seq: int, steps: int, micro: int) -> dict:
    """The TrainConfig dict of one of our VARIANTS over the shards in `tmp`."""
    v = VARIANTS[name]
    micro = v.get("micro", micro)
    return {
        "out_dir": str(tmp / "run"),
        "engine": "megatron",
        "seq_length": seq,
        "micro_batch_size": micro,
        "global_batch_size": v.get("global", micro),  # sequences per optimizer step
        "model": {"preset": "vla-1b-dense"},
        "data": {"shards": str(tmp), "eod_id": eod, "document_mask": False},
        "optimizer": {"lr": 1e-4, "min_lr": 1e-5},
        "schedule": {"train_steps": steps + 2, "warmup_steps": 2},
        "checkpoint": {"every": 10**6, "save_final": False},
        "logging": {"tensorboard": False, "progress": False},
        "parallel": {"use_distributed_optimizer": True, **v.get("parallel", {})},
        "fp8": v.get("fp8", {}),
        "megatron": {"manual_gc_interval": 50, **v.get("megatron", {})},
    }


def run_ours(args, name: str) -> dict:
    """The megatron engine through `vla-train run` on random token shards."""
    import torch

    from vla_model import count_parameters, resolve_config
    from vla_train.config import TrainConfig
    from vla_train.megatron_engine import MegatronTrainer

    v = VARIANTS[name]
    micro = v.get("micro", args.micro)
    batch = v.get("global", micro)  # sequences per optimizer step
    mcfg = resolve_config("vla-1b-dense")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        eod = write_random_shards(tmp, mcfg.vocab_size, (args.steps + 2) * batch * args.seq * 2)
        cfg = TrainConfig.from_dict(variant_config(name, tmp, eod, args.seq, args.steps, micro))
        trainer = MegatronTrainer(cfg, resume=False)
        trainer.train(stop_after=args.steps)
        profiled = None
        if name in args.profile:  # two more steps under the profiler, outside the timing
            profiled = profile_steps(lambda n: trainer.train(stop_after=n))
        recs = [json.loads(line) for line in (cfg.out_dir / "metrics.jsonl").open()]
        recs = recs[: args.steps]
    skipped = [r for r in recs if "skipped" in r]
    if skipped:  # a skipped step does no optimizer work: its time is not a training step's
        raise SystemExit(
            f"{name}: the guards skipped steps {[r['step'] for r in skipped]} (first: "
            f"{skipped[0]['skipped']}): no throughput is reported for a run that does not train"
        )
    dt = statistics.median(r["step_time_s"] for r in recs[args.skip :])
    tps = batch * args.seq / dt
    counts = count_parameters(mcfg)
    emb = mcfg.vocab_size * mcfg.hidden_size
    f = anchor_flops_per_token(mcfg.num_layers, mcfg.hidden_size, args.seq, counts.total, emb)
    return {
        "variant": name,
        "what": f"vla-train megatron engine, spec {trainer.spec}, micro {micro}, "
        f"{batch // micro} micro-batch(es) per step, "
        f"fp8 {cfg.fp8.recipe}, distributed optimizer, TE {trainer.have_te}",
        "params": counts.total,
        "tokens_per_s": tps,
        "mfu": tps * f / PEAK,
        "median_step_s": dt,
        "engine_mfu_own_flops": statistics.median(r["mfu"] for r in recs[args.skip :]),
        "max_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
        "loss_first": recs[0]["loss"],
        "loss_last": recs[-1]["loss"],
        "precision_aware_optimizer": trainer.precision_aware,
        "te_wgrad_fused_layers": trainer.te_wgrad_fused_layers,
        **({"profile": profiled} if profiled else {}),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", default="anchor,bf16,fp8-delayed,fp8-current")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--skip", type=int, default=5, help="warm-up steps left out of the median")
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--micro", type=int, default=2)
    ap.add_argument("--no-compile", dest="compile", action="store_false")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument(
        "--profile", default="", help="variants to profile (2 extra steps, kernel table)"
    )
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # child: run one variant
    args = ap.parse_args()

    if args.one:
        args.profile = set(filter(None, args.profile.split(",")))
        one = args.one
        res = run_anchor(args, one) if one in ANCHORS else run_ours(args, one)
        print("RESULT " + json.dumps(res), flush=True)
        return

    import torch

    results, errors = [], {}
    for name in args.variants.split(","):
        cmd = [sys.executable, __file__, "--one", name, "--steps", str(args.steps)]
        cmd += ["--skip", str(args.skip), "--seq", str(args.seq), "--micro", str(args.micro)]
        if not args.compile:
            cmd.append("--no-compile")
        if args.profile:
            cmd += ["--profile", args.profile]
        t = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
        lines = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
        if p.returncode == 0 and lines:
            r = json.loads(lines[-1][7:])
            r["wall_s"] = round(time.perf_counter() - t, 1)
            results.append(r)
        else:
            errors[name] = (p.stdout + p.stderr)[-3000:]
        print(json.dumps(results[-1] if name not in errors else {name: "failed"}), flush=True)
    by = {r["variant"]: r for r in results}
    ratios = {}
    if "anchor" in by:
        for r in results:
            ratios[f"{r['variant']}_vs_anchor"] = r["tokens_per_s"] / by["anchor"]["tokens_per_s"]
    for fp8, bf16 in FP8_VS_BF16:
        if fp8 in by and bf16 in by:
            ratios[f"{fp8}_vs_{bf16}"] = by[fp8]["tokens_per_s"] / by[bf16]["tokens_per_s"]
    out = {
        "bench": "megatron_mfu",
        "date": datetime.date.today().isoformat(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "command": " ".join(sys.argv),
        "shape": "vla-1b-dense: 24 layers, hidden 2048, FFN 8192, 32/8 heads, vocab 152064",
        "seq": args.seq,
        "micro_batch": args.micro,
        "steps": args.steps,
        "anchor_reference_tokens_per_s": 31500,
        "target_tokens_per_s": 1.3 * 31500,
        "results": results,
        "ratios": ratios,
        "errors": errors,
    }
    emit(out, args.out)


if __name__ == "__main__":
    main()
