#!/usr/bin/env bash
# The vla-train GPU checks and benchmarks, in the order the device tool's carried TE chunks allow
# (see packages/vla-model/gpu/te_setup.sh). Carrying `.te` (one folder, ~27 MiB: megatron-core and
# the sm_90-pruned TE) any stage below sets the machine up first, cold or warm:
#   carry .te:   bash packages/vla-train/gpu/run_on_device.sh probe|te|bench|moe ...
# Without `.te`, three calls back to back while the machine stays warm:
#   carry .te1:  bash packages/vla-train/gpu/run_on_device.sh local   # megatron-core, local spec (+ resume)
#   carry .te2:  bash packages/vla-train/gpu/run_on_device.sh torch   # TE chunk 2 + torch engine
#                (or `... stage2`: TE chunk 2 only)
#   carry .te3:  bash packages/vla-train/gpu/run_on_device.sh te [CHECKS]  # TE built; engine checks
#   carry .te3:  bash packages/vla-train/gpu/run_on_device.sh probe [VARIANTS]  # op-fuser probe
#   (no carry):  bash packages/vla-train/gpu/run_on_device.sh bench [VARIANTS [--profile V,..]]
#   (no carry):  bash packages/vla-train/gpu/run_on_device.sh moe [LAYERS [ARGS..]]  # EP = GPUs here
# Results go to $OUT as JSON.
set -uo pipefail
export PYTHONUNBUFFERED=1 CUDA_DEVICE_MAX_CONNECTIONS=1
SRC=$(ls -d packages/*/src | paste -sd:)
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
if [ -d .te ] && [ "${1:-}" != local ] && [ "${1:-}" != stage2 ]; then
  bash packages/vla-model/gpu/te_setup.sh all || exit 1
  te3() { :; }  # already set up
else
  te3() { bash packages/vla-model/gpu/te_setup.sh 3; }
fi
case "${1:-}" in
  local)
    bash packages/vla-model/gpu/te_setup.sh 1 || exit 1
    PYTHONPATH=/tmp/site python3 packages/vla-train/gpu/megatron_engine_gpu.py \
      --out "$OUT/megatron_engine_gpu_local.json" --only local_spec,resume;;
  stage2)
    bash packages/vla-model/gpu/te_setup.sh 2;;
  torch)
    bash packages/vla-model/gpu/te_setup.sh 2 >/dev/null || exit 1
    PYTHONPATH=/tmp/site:$SRC python3 packages/vla-train/gpu/torch_engine_gpu.py --out "$OUT/torch_engine_gpu.json";;
  te)
    te3 || exit 1
    PYTHONPATH=/tmp/site python3 packages/vla-train/gpu/megatron_engine_gpu.py \
      --out "$OUT/megatron_engine_gpu_te.json" \
      --only "${2:-dense,resume,resume_paopt,cuda_graphs,document_mask,moe,fp8_delayed,fp8_current,fp8_primary}";;
  probe)  # why te_op_fuser runs skip every step (see gpu/op_fuser_probe.py)
    te3 || exit 1
    PYTHONPATH=/tmp/site:$SRC python3 packages/vla-train/gpu/op_fuser_probe.py \
      --out "$OUT/op_fuser_probe.json" ${2:+--only "$2"};;
  moe)    # a reduced-depth vla-10b-moe: EP = the GPUs here (TE needed: grouped GEMM)
    n=$(nvidia-smi -L | wc -l)
    PYTHONPATH=/tmp/site:$SRC python3 -m torch.distributed.run --nproc_per_node "$n" \
      packages/vla-train/bench/megatron_moe.py --ep "$n" --layers "${2:-8}" \
      --out "$OUT/megatron_moe_ep$n${3:+_$(echo "${@:3}" | tr -dc 'a-z0-9')}.json" "${@:3}";;
  bench)
    PYTHONPATH=/tmp/site:$SRC python3 packages/vla-train/bench/megatron_mfu.py \
      --out "$OUT/megatron_mfu.json" --variants "${2:-anchor,bf16,fp8-delayed,bf16-unfused}" \
      --steps 15 --skip 5 "${@:3}";;
  *) echo "usage: run_on_device.sh local|stage2|torch|te [CHECKS]|probe [VARIANTS]|moe [LAYERS [ARGS..]]|bench [VARIANTS [--profile V,..]]"; exit 2;;
esac
