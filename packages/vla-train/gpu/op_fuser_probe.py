"""Probe (device tool, one GPU, TE): why do runs with `megatron.te_op_fuser` skip every step?

Runs the GPU checks' tiny model for 6 steps per variant — BF16 and FP8 delayed, each with and
without the op fuser and with and without TE's fused weight-gradient accumulation into
`main_grad` — with the guards relaxed so no run stops, and prints each step's loss, grad norm and
skip reason as one JSON object (also written to --out).

    PYTHONPATH=/tmp/site python3 packages/vla-train/gpu/op_fuser_probe.py --out $OUT/probe.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import megatron_engine_gpu as checks  # noqa: E402

VARIANTS = {
    "bf16": {},
    "bf16_fuser": {"megatron": {"te_op_fuser": True}},
    "bf16_fuser_no_wgrad_fusion": {
        "megatron": {"te_op_fuser": True, "gradient_accumulation_fusion": False}
    },
    "fp8": {"fp8": {"recipe": "delayed"}},
    "fp8_fuser": {"fp8": {"recipe": "delayed"}, "megatron": {"te_op_fuser": True}},
    "fp8_fuser_no_wgrad_fusion": {
        "fp8": {"recipe": "delayed"},
        "megatron": {"te_op_fuser": True, "gradient_accumulation_fusion": False},
    },
}


def module_compare(fp8: bool) -> dict:
    """The tiny GPT built twice from one seed, with `MLP` and with `TEFusedMLP`, no DDP: one
    forward and backward on the same tokens; loss, and per parameter whether its grad is finite
    and how far the two grads are apart."""
    import torch
    from megatron.core.tensor_parallel.random import model_parallel_cuda_manual_seed

    from vla_model.megatron import build_gpt_model, init_single_process
    from vla_model.presets import get_preset

    init_single_process()
    cfg = get_preset("tiny-dense").model_copy(update=checks.SMALL)
    over = {"bf16": True}
    if fp8:
        over.update(fp8="hybrid", fp8_recipe="delayed")
    tokens = torch.randint(0, cfg.vocab_size, (2, 256), device="cuda")
    pos = torch.arange(256, device="cuda").expand(2, -1)
    out = {}
    for fused in (False, True):
        torch.manual_seed(0)
        model_parallel_cuda_manual_seed(0)
        m = build_gpt_model(cfg, "te", params_dtype=torch.bfloat16, te_op_fuser=fused, **over)
        m = m.cuda()
        losses = m(tokens, pos, None, labels=tokens)
        loss = losses.float().mean()
        loss.backward()
        out[fused] = (
            float(loss),
            {n: p.grad.float().clone() for n, p in m.named_parameters() if p.grad is not None},
            {n: type(mod).__name__ for n, mod in m.named_modules() if n.endswith("mlp")},
        )
    (l0, g0, mods0), (l1, g1, mods1) = out[False], out[True]
    return {
        "loss_mlp": l0,
        "loss_fused": l1,
        "mlp_modules": sorted(set(mods0.values())),
        "fused_modules": sorted(set(mods1.values())),
        "grads_missing_in_fused": sorted(set(g0) - set(g1)),
        "nonfinite_grads_fused": [n for n, g in g1.items() if not torch.isfinite(g).all()],
        "nonfinite_grads_mlp": [n for n, g in g0.items() if not torch.isfinite(g).all()],
        "max_rel_grad_diff": {
            n: float((g1[n] - g0[n]).abs().max() / g0[n].abs().max().clamp_min(1e-12))
            for n in g0
            if n in g1 and ("mlp" in n)
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--only", default=None)
    args = ap.parse_args()
    want = args.only.split(",") if args.only else list(VARIANTS)
    res: dict = {}
    for fp8 in (False, True):
        name = f"module_{'fp8' if fp8 else 'bf16'}"
        try:
            res[name] = module_compare(fp8)
        except Exception as e:  # noqa: BLE001 - the probe reports every failure
            import traceback

            res[name] = {"error": repr(e), "trace": traceback.format_exc()[-2000:]}
        print(json.dumps({name: res[name]}), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shards = root / "shards"
        shards.mkdir()
        checks.write_shards(shards)
        for name in want:
            over = {
                **VARIANTS[name],
                "schedule": {"train_steps": 6, "warmup_steps": 1},
                "guards": {"max_skipped_steps": 100},
            }
            cfg = checks.config(root, shards, name, **over)
            p = checks.vla_train(["run", "--config", str(cfg)])
            recs = checks.records(root / name)
            res[name] = {
                "rc": p.returncode,
                "steps": [
                    {k: r.get(k) for k in ("step", "loss", "grad_norm", "skipped")} for r in recs
                ],
            }
            if p.returncode != 0:
                res[name]["log_tail"] = (p.stdout + p.stderr)[-2000:]
            print(json.dumps({name: res[name]}), flush=True)
    if args.out:
        args.out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
