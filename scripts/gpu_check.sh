#!/usr/bin/env bash
# One prepared run on a lent GPU machine (no network): environment, the kernels'
# CUDA sources through CuPy/NVRTC, Jittor on CUDA through our compatibility
# layer, the kernel tests with Jittor on the GPU, parity Jittor CUDA vs PyTorch
# CUDA (tiny and depth-101 models, forward and erasing step), a short training
# run on the synthetic set, the kernel benchmark and the framework comparison.
#
#   bash scripts/gpu_check.sh            # writes under $OUT (default ./gpu_out)
#   STEPS="environment parity_tiny train_gpu" bash scripts/gpu_check.sh   # some steps only
#   bash scripts/gpu_check.sh --dry-run  # every step on this CPU at small sizes: checks the
#                                        # script's plumbing before device time is spent
#
# All steps together exceed one 10-minute device call (Jittor compiles its CUDA
# core and our ops first, ~70 s on 16 cores, then each new op): plan two calls in
# one lease, e.g. STEPS="environment cupy_kernels jittor_import jittor_kernel_tests precision_gpu
# parity_tiny parity_r101", then STEPS="train_gpu bank_gpu bench_kernels compare_frameworks".
#
# Python wheels that the machine lacks travel in .whl/ (numpy<2 for Jittor,
# Jittor itself, astunparse): see README, "GPU".  Each step has its own time
# limit and a failing step does not stop the others; summary.txt lists them.
# Jittor's compile cache stays in ~/.cache/jittor for a second call on the
# same machine.  Everything lands in $OUT/gpu_check.tgz plus $OUT/summary.txt
# (the device tool returns at most 8 files).
set -u
cd "$(dirname "$0")/.."
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
if [ $DRY = 1 ]; then      # the same steps on the CPU, small: the venv's python, no wheels
  DEVICE=cpu; PYTHON=${PYTHON:-.venv/bin/python}
  R101=(--depth 10 --frames 4 --size 32); BENCH_CONFIG=configs/bench_smoke.yaml; BANK_EPOCHS=1
else
  DEVICE=cuda
  R101=(--depth 101 --frames 16 --size 112); BENCH_CONFIG=configs/bench_gpu.yaml; BANK_EPOCHS=4
fi
export DEVICE
FINAL=${OUT:-$PWD/gpu_out}
OUT=$(mktemp -d)
mkdir -p "$FINAL"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
export PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1

step() {   # step NAME SECONDS LOGFILE COMMAND...   (only the steps named in $STEPS, when set)
  local name=$1 limit=$2 log=$3; shift 3
  if [ -n "${STEPS:-}" ] && [[ " $STEPS " != *" $name "* ]]; then return 0; fi
  local t0=$(date +%s)
  echo "== $name ($(date -u +%H:%M:%S))" >> "$OUT/$log"
  timeout "$limit" bash -c '"$@"' _ "$@" >> "$OUT/$log" 2>&1      # runs exported functions too
  local rc=$?
  echo "$name: rc=$rc, $(( $(date +%s) - t0 )) s (limit $limit s)" | tee -a "$SUMMARY"
}

env_report() {
  nvidia-smi || true
  nvcc --version || true
  which nvcc; ls -l /usr/local/cuda* -d 2>/dev/null
  $PY -c "import sys, numpy, torch; print(sys.version); print('numpy', numpy.__version__, 'torch', torch.__version__, torch.version.cuda, torch.cuda.is_available())"
  $PY -m pip list 2>/dev/null | grep -i -E "nvidia|cupy|numpy|torch|opencv|jittor" || true
  ls /usr/local/cuda/lib64 2>/dev/null | head -50
  $PY -c "import nvidia, os; [print(r) for p in nvidia.__path__ for r, d, f in os.walk(p) if os.path.basename(r) in ('lib', 'include')]" || true
  nproc; free -g
}
export -f env_report
step environment 20 env.txt env_report

# 1. the CUDA kernels through CuPy (system numpy, no Jittor)
step cupy_kernels 80 cupy_kernels.log $PY -m pytest -q -p no:cacheprovider --noconftest tests/kernels/test_cuda_kernels.py

# 2. Jittor on CUDA: wheels to a private site folder, numpy<2 first on the path
if [ $DRY = 0 ] && ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    >> "$OUT/jittor_cuda.log" 2>&1
  export PYTHONPATH=/tmp/site:$PWD
fi
jittor_import() {
  $PY - <<'PYEOF'
import time
t0 = time.time()
import cten_jt
from cten_jt import _environment
for k, v in _environment.decisions.items():
    print(f"{k}: {v}")
import os
home = os.path.dirname(os.path.dirname(os.environ.get("nvcc_path", "/x/x")))
if os.path.isdir(os.path.join(home, "lib64")):
    print("linked libs:", sorted(n for n in os.listdir(os.path.join(home, "lib64"))
                                 if any(k in n for k in ("cublas", "curand", "cudnn", "cudart"))))
import jittor as jt
import numpy as np
print("import took", round(time.time() - t0, 1), "s; has_cuda", jt.has_cuda)
jt.flags.use_cuda = int(os.environ["DEVICE"] == "cuda")
a = jt.array(np.arange(12, dtype=np.float32).reshape(3, 4))
print(f"matmul on {os.environ['DEVICE']}:", (a @ a.transpose()).numpy().tolist())
x = jt.array(np.random.default_rng(0).standard_normal((2, 3, 8, 16, 16)).astype(np.float32))
w = jt.array(np.random.default_rng(1).standard_normal((4, 3, 3, 3, 3)).astype(np.float32))
print(f"conv3d on {os.environ['DEVICE']}:", jt.nn.conv3d(x, w, padding=1).numpy().shape)
PYEOF
}
export -f jittor_import
step jittor_import 200 jittor_cuda.log jittor_import

# 3. the kernel tests with Jittor on the GPU (fused vs composed, numpy sampler)
step jittor_kernel_tests 170 jittor_tests_cuda.log \
  env CTEN_TEST_DEVICE=$DEVICE $PY -m pytest -q -p no:cacheprovider tests/kernels/test_attention_kernel.py tests/kernels/test_erasing_kernel.py tests/kernels/test_conv_kernel.py
# mixed precision with Jittor on the GPU: bf16 (cuDNN tensor cores, the rounding kernel) against
# PyTorch's autocast (docs/precision.md); never run on a GPU before this script's first lease
step precision_gpu 200 precision_cuda.log \
  env CTEN_TEST_DEVICE=$DEVICE $PY -m pytest -q -p no:cacheprovider tests/test_precision.py

# 4. parity on the GPU: Jittor CUDA vs PyTorch CUDA (TF32 off), tiny model and the real depth 101
step parity_tiny 150 parity_gpu.log $PY -m cten_compare.parity_report --device $DEVICE --out "$OUT/parity_gpu_tiny.json"
step parity_r101 150 parity_gpu.log $PY -m cten_compare.parity_report --device $DEVICE "${R101[@]}" \
  --out "$OUT/parity_gpu_r101.json"

# 5. a short training run on the synthetic set, on the GPU (train.device=cuda)
train_gpu() {
  $PY -m cten_common.data.make_synthetic --out data/synthetic >/dev/null &&
  $PY -m cten_jt.train --config configs/synthetic.yaml --set train.epochs=2 --set train.device=$DEVICE \
    --out "$OUT/train_gpu" && cat "$OUT/train_gpu/metrics.jsonl"
}
export -f train_gpu
step train_gpu 200 train_gpu.log train_gpu

# 5b. feature-bank training against normal training on the GPU (synthetic set, same seeds)
step bank_gpu 200 bank_gpu.log $PY -m benchmarks.compare_bank --device $DEVICE --epochs $BANK_EPOCHS \
  --out "$OUT/bank_synthetic_gpu.json"

# 6. the benchmark, fused vs composed, on the GPU
step bench_kernels 70 bench_kernels_cuda.log $PY -m benchmarks.bench_kernels --device $DEVICE --iters 20 \
  --out "$OUT/kernels_cuda.json"

# 7. Jittor vs PyTorch at the seed's configuration (batch 32, 16 x 16x112x112, 1600x128 audio)
step compare_frameworks ${COMPARE_SECONDS:-240} compare_frameworks.log $PY -m benchmarks.compare_frameworks \
  --config $BENCH_CONFIG --device $DEVICE --iters 3 --warmup 2 --repeats 1 --no-epoch \
  --out "$OUT/frameworks_gpu.json"

cp "$SUMMARY" "$FINAL/summary.txt"
tar czf "$FINAL/gpu_check.tgz" -C "$OUT" .
cat "$SUMMARY"
