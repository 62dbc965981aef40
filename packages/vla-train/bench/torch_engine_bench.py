"""Training throughput on CPU: our torch engine vs transformers' Qwen3ForCausalLM.

Both train the same tiny config (`tiny-dense` preset unless --preset), from the same initial
weights (ours converted with vla_model.hf), on the same packed batches from megatron-core token
shards, with the same AdamW (fused where available), LR and clipping. Ours runs the full engine
step (`Trainer.train_step`: data, modality-weighted loss, guards, optimizer); transformers runs
a plain loop over the same batches from the same megatron-core datasets (`MixtureStream.batch`),
fetched the same way: with prefetch (the engine's default) both fetch the next step's batches
in one background thread while the current step computes; with --no-prefetch both fetch inside
their timed step. Steps alternate between the two (after warm-up) so machine load affects both
alike. With --overhead a third participant, our own model in that same plain loop, isolates the
engine's per-step overhead (`engine_overhead_ms`) from the model's speed. Prints one JSON object.

    .venv/bin/python packages/vla-train/bench/torch_engine_bench.py [--steps 30] [--seq 128]
        [--threads N] [--no-prefetch] [--overhead]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

warnings.filterwarnings("ignore")


def write_byte_shards(folder: Path) -> int:
    """Byte-level token shards (id = UTF-8 byte, EOD = 256) of vla-data's sample texts."""
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    from vla_data.corpus import SENTENCES
    from vla_data.textbook import lessons

    rng = np.random.default_rng(0)
    pool = [s for g in SENTENCES.values() for s in g]
    docs = [" ".join(rng.choice(pool, size=3, replace=False)) for _ in range(400)]
    docs += [d["text"] for d in lessons(24, 0)]
    builder = IndexedDatasetBuilder(str(folder / "sample__text.bin"), dtype=np.uint16)
    for d in docs:
        ids = list(d.encode()) + [256]
        builder.add_document(torch.tensor(ids), [len(ids)])
    builder.finalize(str(folder / "sample__text.idx"))
    return 256


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny-dense")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--micro", type=int, default=8)
    ap.add_argument("--no-prefetch", action="store_true", help="fetch data inside the step")
    ap.add_argument(
        "--document-mask", action="store_true", help="ours keeps packed documents apart (slower)"
    )
    ap.add_argument(
        "--overhead",
        action="store_true",
        help="also time our model in the same plain loop as transformers' (engine overhead)",
    )
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from transformers import Qwen3ForCausalLM

    from vla_model import VLAModel
    from vla_model.hf import to_hf_config, to_hf_state_dict
    from vla_train.config import TrainConfig
    from vla_train.engine import Trainer, make_optimizer

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        eod = write_byte_shards(tmp)
        total = args.warmup + args.steps
        cfg = TrainConfig.from_dict(
            {
                "out_dir": str(tmp / "run"),
                "seq_length": args.seq,
                "micro_batch_size": args.micro,
                "global_batch_size": args.micro,
                "model": {"preset": args.preset},
                "data": {
                    "shards": str(tmp),
                    "eod_id": eod,
                    "prefetch": not args.no_prefetch,
                    # transformers gets no document mask either: compare the same attention
                    "document_mask": args.document_mask,
                },
                "optimizer": {"lr": 1e-3, "min_lr": 1e-3},
                "schedule": {"train_steps": total, "decay": "constant"},
                "checkpoint": {"every": 10**6, "save_final": False},
                "logging": {"tensorboard": False, "progress": False},
            }
        )
        ours = Trainer(cfg, resume=False)
        mcfg = ours.mcfg
        hf = Qwen3ForCausalLM._from_config(to_hf_config(mcfg), attn_implementation="sdpa")
        hf.load_state_dict(to_hf_state_dict(ours.model.state_dict(), mcfg), strict=False)
        hf.train()

        def fetch(step: int):
            return ours.stream.batch(list(range(step * args.micro, (step + 1) * args.micro)))

        class PlainLoop:
            """forward, masked mean cross entropy, backward, clip, AdamW: the training step
            without an engine, on the same data path as ours, fetched the same way (see the
            module docstring)."""

            def __init__(self, model, forward) -> None:
                self.model, self.forward = model, forward
                self.opt, _ = make_optimizer(model, cfg, torch.device("cpu"))
                self.pool = ThreadPoolExecutor(max_workers=1) if not args.no_prefetch else None
                self.pending: dict[int, Future] = {}

            def step(self, step: int) -> float:
                fut = self.pending.pop(step, None)
                b = fut.result() if fut is not None else fetch(step)
                if self.pool is not None and step + 1 < total:
                    self.pending[step + 1] = self.pool.submit(fetch, step + 1)
                logits = self.forward(b).float()
                ce = F.cross_entropy(
                    logits.view(-1, logits.shape[-1]), b.labels.view(-1), reduction="none"
                ).view_as(b.labels)
                loss = (ce * b.loss_mask).sum() / b.loss_mask.sum()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optimizer.grad_clip)
                self.opt.step()
                self.opt.zero_grad(set_to_none=True)
                return float(loss)

            def close(self) -> None:
                if self.pool is not None:
                    self.pool.shutdown()

        hf_loop = PlainLoop(hf, lambda b: hf(input_ids=b.tokens, position_ids=b.positions).logits)
        bare_loop = None
        if args.overhead:  # our model in the plain loop: the engine's own per-step overhead
            bare = VLAModel(mcfg)
            bare.load_state_dict(ours.model.state_dict())
            bare.train()
            bare_loop = PlainLoop(bare, lambda b: bare(b.tokens, positions=b.positions).logits)

        t_ours, t_hf, t_bare, first = [], [], [], None
        for step in range(total):
            t0 = time.perf_counter()
            rec = ours.train_step(step)
            t1 = time.perf_counter()
            hl = hf_loop.step(step)
            t2 = time.perf_counter()
            if bare_loop is not None:
                bare_loop.step(step)
            t3 = time.perf_counter()
            if step == 0:
                first = (rec["loss"], hl)
            if step >= args.warmup:
                t_ours.append(t1 - t0)
                t_hf.append(t2 - t1)
                t_bare.append(t3 - t2)
        hf_loop.close()
        if bare_loop is not None:
            bare_loop.close()
        # batch assembly alone (what both sides fetch per step), median over the timed steps
        t_data = []
        for step in range(args.warmup, total):
            t0 = time.perf_counter()
            fetch(step)
            t_data.append(time.perf_counter() - t0)
        tokens = args.micro * args.seq
        ours_tps = tokens / statistics.median(t_ours)
        hf_tps = tokens / statistics.median(t_hf)
        ours_best, hf_best = tokens / min(t_ours), tokens / min(t_hf)
        import transformers

        print(
            json.dumps(
                {
                    "bench": "torch_engine_bench",
                    "device": f"cpu ({platform.processor() or platform.machine()}, "
                    f"{torch.get_num_threads()} torch threads)",
                    "date": time.strftime("%Y-%m-%d"),
                    "torch": torch.__version__,
                    "transformers": transformers.__version__,
                    "preset": args.preset,
                    "seq_length": args.seq,
                    "micro_batch_size": args.micro,
                    "timed_steps": args.steps,
                    "fused_adamw": ours.fused,
                    "prefetch": not args.no_prefetch,
                    "ours_tokens_per_s": round(ours_tps, 1),
                    "transformers_tokens_per_s": round(hf_tps, 1),
                    "ratio": round(ours_tps / hf_tps, 3),
                    "ours_best_step_tokens_per_s": round(ours_best, 1),
                    "transformers_best_step_tokens_per_s": round(hf_best, 1),
                    "best_step_ratio": round(ours_best / hf_best, 3),
                    "target_ratio": 1.0,
                    "ours_median_step_ms": round(1e3 * statistics.median(t_ours), 2),
                    "transformers_median_step_ms": round(1e3 * statistics.median(t_hf), 2),
                    "batch_assembly_ms": round(1e3 * statistics.median(t_data), 3),
                    **(
                        {
                            "ours_plain_loop_median_step_ms": round(
                                1e3 * statistics.median(t_bare), 2
                            ),
                            "engine_overhead_ms": round(
                                1e3 * (statistics.median(t_ours) - statistics.median(t_bare)), 2
                            ),
                            "engine_overhead_ms_mean_paired": round(
                                1e3
                                * statistics.mean(
                                    o - b for o, b in zip(t_ours, t_bare, strict=True)
                                ),
                                2,
                            ),
                        }
                        if args.overhead
                        else {}
                    ),
                    "first_step_loss": {"ours": first[0], "transformers": first[1]},
                    "timing": "median (and fastest) step time; steps alternate between the engines",
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
