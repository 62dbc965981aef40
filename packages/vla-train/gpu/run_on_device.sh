#!/usr/bin/env bash
# The vla-train GPU checks and benchmarks, in the order the device tool's carried TE chunks allow
# (see packages/vla-model/gpu/te_setup.sh; one call per stage, back to back while warm):
#   carry .te1:  bash packages/vla-train/gpu/run_on_device.sh local   # megatron-core, local spec
#   carry .te2:  bash packages/vla-train/gpu/run_on_device.sh torch   # TE chunk 2 + torch engine
#                (or `... stage2`: TE chunk 2 only)
#   carry .te3:  bash packages/vla-train/gpu/run_on_device.sh te      # TE built; engine checks
#   (no carry):  bash packages/vla-train/gpu/run_on_device.sh bench [VARIANTS [--profile V,..]]
# Results go to $OUT as JSON.
set -uo pipefail
export PYTHONUNBUFFERED=1 CUDA_DEVICE_MAX_CONNECTIONS=1
SRC=$(ls -d packages/*/src | paste -sd:)
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
case "${1:-}" in
  local)
    bash packages/vla-model/gpu/te_setup.sh 1 || exit 1
    PYTHONPATH=/tmp/site python3 packages/vla-train/gpu/megatron_engine_gpu.py \
      --out "$OUT/megatron_engine_gpu_local.json" --only local_spec;;
  stage2)
    bash packages/vla-model/gpu/te_setup.sh 2;;
  torch)
    bash packages/vla-model/gpu/te_setup.sh 2 >/dev/null || exit 1
    PYTHONPATH=/tmp/site:$SRC python3 packages/vla-train/gpu/torch_engine_gpu.py --out "$OUT/torch_engine_gpu.json";;
  te)
    bash packages/vla-model/gpu/te_setup.sh 3 || exit 1
    PYTHONPATH=/tmp/site python3 packages/vla-train/gpu/megatron_engine_gpu.py \
      --out "$OUT/megatron_engine_gpu_te.json" \
      --only dense,resume,document_mask,moe,fp8_delayed,fp8_current;;
  bench)
    PYTHONPATH=/tmp/site:$SRC python3 packages/vla-train/bench/megatron_mfu.py \
      --out "$OUT/megatron_mfu.json" --variants "${2:-anchor,bf16,fp8-delayed,bf16-unfused}" \
      --steps 15 --skip 5 "${@:3}";;
  *) echo "usage: run_on_device.sh local|stage2|torch|te|bench [VARIANTS [--profile V,..]]"; exit 2;;
esac
