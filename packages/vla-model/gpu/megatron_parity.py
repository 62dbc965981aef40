"""Logits parity between our reference model and megatron-core GPTModels built from the same
ModelConfig (random small dense and MoE configs; local spec, and the Transformer Engine spec when
TE imports; float32 and bfloat16). Prints one JSON document (and writes it with --out).

    python packages/vla-model/gpu/megatron_parity.py --out megatron_parity.json

On a machine without CUDA it runs the local spec on CPU through `enable_cpu_forward()`.
Exit status 1 when a float32 comparison fails its tolerance or a weight round trip is not exact.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
import traceback
import warnings
from importlib import metadata
from pathlib import Path

# Transformer Engine runs float32 GEMMs in TF32 unless told otherwise (torch's allow_tf32 flags
# do not reach its cuBLAS calls); this must be set before CUDA starts.
os.environ.setdefault("NVIDIA_TF32_OVERRIDE", "0")

import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))  # run from a checkout without installing

from vla_model import ModelConfig  # noqa: E402
from vla_model.megatron import (  # noqa: E402
    compare_with_reference,
    enable_cpu_forward,
    have_transformer_engine,
    init_single_process,
    random_reference,
)

FP32_TOL = 1e-3  # max abs logit difference accepted in float32 (logits are O(1..10))

COMMON = dict(vocab_size=1536, max_position_embeddings=256, rope_theta=1_000_000.0, init_std=0.05)
CONFIGS = {
    # Qwen3-like: q width (8 x 64) > hidden, GQA 4:1, QK-norm, untied
    "parity-dense": dict(
        **COMMON,
        num_layers=4,
        hidden_size=256,
        num_attention_heads=8,
        num_kv_heads=2,
        head_dim=64,
        ffn_hidden_size=704,
    ),
    # softmax top-2 (normalised), gated shared expert, a dense layer in between, aux loss
    "parity-moe": dict(
        **COMMON,
        num_layers=4,
        hidden_size=256,
        num_attention_heads=8,
        num_kv_heads=4,
        head_dim=32,
        ffn_hidden_size=512,
        moe=dict(
            num_experts=8,
            top_k=2,
            expert_ffn_hidden_size=128,
            shared_expert_ffn_hidden_size=256,
            shared_expert_gate=True,
            moe_layer_freq=[1, 1, 0, 1],
        ),
    ),
    # sigmoid top-4 + aux-loss-free expert bias, capacity factor (dropping), z-loss, seq-aux,
    # tied embeddings
    "parity-moe-sigmoid": dict(
        **COMMON,
        num_layers=3,
        hidden_size=192,
        num_attention_heads=6,
        num_kv_heads=2,
        head_dim=32,
        ffn_hidden_size=384,
        tie_embeddings=True,
        moe=dict(
            num_experts=16,
            top_k=4,
            expert_ffn_hidden_size=64,
            score_function="sigmoid",
            expert_bias=True,
            load_balancing="seq_aux",
            z_loss_coeff=1e-3,
            dropless=False,
            capacity_factor=1.5,
        ),
    ),
    # softmax top-1 without renormalisation (megatron: pre-softmax), no QK-norm, MoE every 2nd
    "parity-moe-top1": dict(
        **COMMON,
        num_layers=4,
        hidden_size=128,
        num_attention_heads=4,
        num_kv_heads=1,
        head_dim=32,
        ffn_hidden_size=256,
        qk_norm=False,
        moe=dict(
            num_experts=4,
            top_k=1,
            normalize_topk=False,
            expert_ffn_hidden_size=96,
            moe_layer_freq=2,
        ),
    ),
}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated names")
    ap.add_argument("--specs", default="auto", help="auto | local | te | local,te")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument(
        "--no-variants",
        action="store_true",
        help="skip the TE-spec sequential-experts and alltoall-dispatcher rows",
    )
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")

    cuda = torch.cuda.is_available()
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    else:
        enable_cpu_forward()
    init_single_process()
    te = have_transformer_engine()
    specs = ["local", "te"] if args.specs == "auto" else args.specs.split(",")
    if not te or not cuda:
        specs = [s for s in specs if s != "te"]
    names = args.configs.split(",")
    dtypes = [DTYPES[d] for d in args.dtypes.split(",")]

    rows, t0 = [], time.time()
    for name in names:
        cfg = ModelConfig.model_validate({"name": name, **CONFIGS[name]})
        ref = random_reference(cfg, seed=0)
        plan = [(s, d, None, "allgather") for s in specs for d in dtypes]
        if cfg.is_moe and "te" in specs and not args.no_variants:
            plan += [
                ("te", torch.float32, "sequential", "allgather"),
                ("te", torch.float32, None, "alltoall"),
            ]
        for spec, dtype, experts, dispatcher in plan:
            t = time.time()
            try:
                r = compare_with_reference(
                    cfg,
                    spec,
                    dtype=dtype,
                    experts=experts,
                    token_dispatcher=dispatcher,
                    batch=args.batch,
                    seq=args.seq,
                    reference=ref,
                )
            except Exception as err:  # noqa: BLE001 - record and go on with the other rows
                r = {
                    "config": name,
                    "spec": spec,
                    "experts": experts,
                    "dtype": str(dtype),
                    "token_dispatcher": dispatcher,
                    "error": f"{type(err).__name__}: {err}"[:2000],
                    "traceback": traceback.format_exc()[-3000:],
                }
            r["seconds"] = round(time.time() - t, 2)
            rows.append(r)
            print(json.dumps({k: v for k, v in r.items() if k != "traceback"}), file=sys.stderr)

    def ok(r: dict) -> bool:  # bf16 rows are informational: only their round trip must hold
        if "error" in r or not r["round_trip_exact"]:
            return False
        return r["dtype"] != "float32" or r["max_abs_diff"] <= FP32_TOL

    summary = {}
    for r in rows:
        key = f"{r['config']}/{r['spec']}/{r['dtype']}".replace("torch.", "")
        if r.get("experts") == "sequential" and r["spec"] == "te":
            key += "/sequential"
        if r.get("token_dispatcher") == "alltoall":
            key += "/alltoall"
        summary[key] = r.get("max_abs_diff", r.get("error"))
    doc = {
        "what": "max |logits(megatron GPTModel) - logits(vla_model reference)| on one random "
        "token batch, same weights mapped by vla_model.megatron",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python"] + sys.argv),
        "device": torch.cuda.get_device_name(0) if cuda else f"CPU ({platform.processor()})",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "megatron_core": _version("megatron-core"),
        "transformer_engine": _version("transformer-engine") or _version("transformer_engine")
        if te
        else None,
        "NVIDIA_TF32_OVERRIDE": os.environ.get("NVIDIA_TF32_OVERRIDE"),
        "float32_tolerance": FP32_TOL,
        "all_ok": all(ok(r) for r in rows),
        "max_abs_diff": summary,
        "configs": {
            n: ModelConfig.model_validate({"name": n, **CONFIGS[n]}).model_dump(
                mode="json", exclude_defaults=True
            )
            for n in names
        },
        "results": rows,
        "seconds": round(time.time() - t0, 1),
    }
    text = json.dumps(doc, indent=2)
    if args.out:  # the file holds everything; print the summary only
        Path(args.out).write_text(text + "\n")
        short = {
            k: doc[k]
            for k in (
                "date",
                "device",
                "torch",
                "cuda",
                "megatron_core",
                "transformer_engine",
                "all_ok",
                "max_abs_diff",
                "seconds",
            )
        }
        text = json.dumps(short, indent=2)
    print(text)
    return 0 if doc["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
