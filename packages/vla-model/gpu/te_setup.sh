#!/usr/bin/env bash
# Bring megatron-core 0.16.1 and Transformer Engine 2.11 (CUDA 13) onto the lent GPU machine
# (Python 3.12, no internet) in three carried chunks; run from the repository root there:
#   bash packages/vla-model/gpu/te_setup.sh all      # one call, carrying .te (below)
#   bash packages/vla-model/gpu/te_setup.sh 1|2|3    # three calls, carrying .te1 .te2 .te3
# One call (`all`, ~27 MiB): .te/ holds the cp312 wheels of .te1/whl, the TE wheels and sdist of
# .te3, and te90.so.xz + so90.sha256: libtransformer_engine.so with the GPU code of every
# architecture but sm_90 zeroed by prune_fatbin.py (H100/H200 only; 20 MB compressed).
# Chunks (ignored folders of the checkout, prepared here; see RESULTS.md for the commands):
#   .te1/whl/*.whl        megatron-core + pydantic (+ deps) wheels, cp312
#   .te1/te.so.xz.part.00 \
#   .te2/te.so.xz.part.01  } libtransformer_engine.so of transformer-engine-cu13 2.11.0, xz -6, split
#   .te3/te.so.xz.part.02 /   (the core wheel is 171 MiB, one call carries 64 MiB)
#   .te3/so.sha256, transformer_engine-2.11.0 wheel, the core wheel without its .so,
#   transformer_engine_torch-2.11.0.tar.gz (sdist, built here: ~2 min), or a built
#   transformer_engine_torch-*.whl from an earlier run
# Files under /tmp survive between calls only while the machine stays warm (30 s after a call).
# Step 1 makes megatron-core importable (local spec); step 3 adds TE. Afterwards:
#   export PYTHONPATH=/tmp/site
set -u
mkdir -p /tmp/te /tmp/site
case "${1:-}" in
  1)
    cp -r .te1/* /tmp/te/ || exit 1
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site /tmp/te/whl/*.whl || exit 1
    exit 0;;
  2)
    cp .te2/* /tmp/te/ || exit 1
    ls -la /tmp/te; exit 0;;
  3|all) ;;
  *) echo "usage: te_setup.sh all|1|2|3"; exit 2;;
esac
if [ "$1" = all ] && PYTHONPATH=/tmp/site python3 -c "import transformer_engine.pytorch, megatron.core" 2>/dev/null; then
  echo "megatron-core and TE already in /tmp/site (warm machine)"; exit 0
fi
unxz() { python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.stdin.buffer), sys.stdout.buffer, 1<<24)"; }
t0=$(date +%s)
if [ "$1" = all ]; then
  cp .te/* /tmp/te/ || exit 1
  cd /tmp/te || exit 1
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site \
    $(ls *.whl | grep -v '^transformer_engine') || exit 1
  unxz < te90.so.xz > libtransformer_engine.so || exit 1
  [ "$(sha256sum libtransformer_engine.so | cut -d' ' -f1)" = "$(cat so90.sha256)" ] || { echo "sha256 mismatch"; exit 1; }
else
  cp .te3/* /tmp/te/ || exit 1
  cd /tmp/te || exit 1
  [ -f te.so.xz.part.00 ] && [ -f te.so.xz.part.01 ] && [ -f /tmp/site/megatron/core/__init__.py ] \
    || { echo "chunks 1/2 are gone (the machine went cold): run steps 1 and 2 again"; exit 3; }
  cat te.so.xz.part.00 te.so.xz.part.01 te.so.xz.part.02 | unxz > libtransformer_engine.so || exit 1
  [ "$(sha256sum libtransformer_engine.so | cut -d' ' -f1)" = "$(cat so.sha256)" ] || { echo "sha256 mismatch"; exit 1; }
fi
python3 -m zipfile -e transformer_engine-2.11.0-py3-none-any.whl /tmp/site || exit 1
python3 -m zipfile -e transformer_engine_cu13-2.11.0-py3-none-manylinux_2_28_x86_64.whl /tmp/site || exit 1
mkdir -p /tmp/site/transformer_engine/wheel_lib && mv libtransformer_engine.so /tmp/site/transformer_engine/wheel_lib/
echo "TE core in place after $(( $(date +%s) - t0 )) s"
export PYTHONPATH=/tmp/site
NV=$(python3 -c "import nvidia; print(list(nvidia.__path__)[0])")
export CPLUS_INCLUDE_PATH="$NV/nccl/include:$NV/cudnn/include:$NV/cu13/include:${CPLUS_INCLUDE_PATH:-}"
export CUDA_HOME=$(dirname "$(dirname "$(which nvcc)")")
if ! ls /tmp/te/transformer_engine_torch-*.whl >/dev/null 2>&1; then
  tar xzf transformer_engine_torch-2.11.0.tar.gz && cd transformer_engine_torch-2.11.0 || exit 1
  MAX_JOBS=16 NVTE_CUDA_ARCHS=90 python3 -m pip wheel -q --no-index --no-deps --no-build-isolation \
    -w /tmp/te . > /tmp/te/build.log 2>&1
  rc=$?; echo "transformer_engine_torch build rc=$rc after $(( $(date +%s) - t0 )) s"
  if [ $rc -ne 0 ]; then grep -iE "error|fatal" /tmp/te/build.log | head -20; cp /tmp/te/build.log "${OUT:-/tmp}/"; exit 1; fi
  cp /tmp/te/transformer_engine_torch-*.whl "${OUT:-/tmp}/" 2>/dev/null
  cd /tmp/te || exit 1
fi
python3 -m zipfile -e /tmp/te/transformer_engine_torch-*.whl /tmp/site || exit 1
python3 -c "import transformer_engine.pytorch as te, transformer_engine; print('transformer_engine', getattr(transformer_engine, '__version__', '?'), 'imports')" || exit 1
