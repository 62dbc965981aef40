"""Helper of `test_megatron_engine.py` (not a test): the megatron engine's checkpoint resharding
path on CPU, under torchrun with gloo. The parallel size (tensor parallel, or expert parallel with
`--split ep`) = the number of processes.

    python -m torch.distributed.run --nproc_per_node 2 _megatron_tp_ckpt.py save CKPT OUT --seed 1
    python -m torch.distributed.run --nproc_per_node 1 _megatron_tp_ckpt.py load CKPT OUT --seed 2

`save`: a tiny local-spec GPTModel (`tiny-dense`; `tiny-moe` with `--split ep`, its experts
spread over the ranks; megatron's all-gather token dispatcher, as its all-to-all one makes a CUDA
stream when built) at that size; its
full-vocabulary logits on a fixed token batch go to OUT (`torch.save`, rank 0), its sharded state
dict (`megatron_engine.model_sharded_state_dict`) to CKPT through `dist_checkpointing.save`.
`load`: a fresh model (another seed) at that size; OUT gets its logits before and after
`dist_checkpointing.load` + `megatron_engine.load_model_state`.

The `__main__` guard is needed: dist_checkpointing starts a multiprocessing Manager, whose
spawned process re-imports `__main__`.
"""

from __future__ import annotations

import argparse
import warnings


def logits_of(model, tokens):
    """Full-vocabulary logits `[b, s, vocab]`; tensor-parallel vocab shards gathered."""
    import torch
    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    s = tokens.shape[1]
    pos = torch.arange(s)[None].expand(tokens.shape[0], -1)
    mask = torch.ones(s, s, dtype=torch.bool).triu(1)[None, None]  # no CUDA default mask on CPU
    with torch.no_grad():
        out = model(tokens, pos, mask)  # [b, s, vocab / tp]
    tp = ps.get_tensor_model_parallel_world_size()
    if tp > 1:
        parts = [torch.empty_like(out) for _ in range(tp)]
        dist.all_gather(parts, out.contiguous(), group=ps.get_tensor_model_parallel_group())
        out = torch.cat(parts, dim=-1)
    return out.float()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["save", "load"])
    ap.add_argument("ckpt")
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", choices=["tp", "ep"], default="tp")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")

    import torch
    import torch.distributed as dist

    from vla_model import resolve_config
    from vla_model.megatron import build_gpt_model, enable_cpu_forward

    enable_cpu_forward()  # torch.cuda.current_device, .synchronize and the RNG tracker's fork
    dist.init_process_group("gloo")
    world, rank = dist.get_world_size(), dist.get_rank()

    from megatron.core import dist_checkpointing
    from megatron.core import parallel_state as ps

    from vla_train.megatron_engine import load_model_state, model_sharded_state_dict

    if args.split == "tp":
        sizes = {"tensor_model_parallel_size": world}
        cfg, extra = resolve_config("tiny-dense"), {}
    else:
        sizes = {"expert_model_parallel_size": world}
        cfg = resolve_config("tiny-moe")
        dispatcher = "allgather"
        extra = {"experts": "sequential", "token_dispatcher": dispatcher}
    ps.initialize_model_parallel(**sizes)
    torch.manual_seed(args.seed)  # CPU init: every rank draws the full weight, keeps its shard
    model = build_gpt_model(cfg, "local", use_cpu_initialization=True, **extra, **sizes)
    model.eval()
    tokens = torch.randint(0, cfg.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    before = logits_of(model, tokens)
    mlp = model.decoder.layers[0].mlp
    local_experts = mlp.num_local_experts if hasattr(mlp, "num_local_experts") else None
    assert before.shape == (2, 16, cfg.vocab_size), before.shape

    if args.mode == "save":
        dist_checkpointing.save(model_sharded_state_dict([model]), args.ckpt)
        if rank == 0:
            torch.save({"logits": before, args.split: world, "experts": local_experts}, args.out)
    else:
        loaded = dist_checkpointing.load(model_sharded_state_dict([model]), args.ckpt)
        load_model_state([model], loaded)
        after = logits_of(model, tokens)
        if rank == 0:
            out = {"before": before, "logits": after, args.split: world, "experts": local_experts}
            torch.save(out, args.out)
    dist.barrier()
    ps.destroy_model_parallel()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
