#!/usr/bin/env bash
# The prepared run for a lent GPU machine (no network; docs/gpu.md).  Steps, in order of
# what a lease must answer first (each with its own time limit; a failing step does not
# stop the others; a step that cannot finish before the deadline is skipped and said so):
#
#   environment      the machine, CUDA, the Python packages
#   cupy_kernels     the kernels' CUDA sources through CuPy/NVRTC (no Jittor)
#   jittor_import    Jittor on CUDA through cten_jt's compatibility layer (compiles its core)
#   smoke            cten_compare.precision_report, tiny model: every precision in both
#                    frameworks, forward (eval, train) and gradients, against float64
#   precision_r101   the same at the paper's shape (depth 101, 16 x 16 x 112, batch 2)
#   compare_fp32     benchmarks.compare_frameworks at the paper's shape, batch 32, fp32 (TF32 off)
#   compare_bf16     the same in bf16
#   peak             the card's attainable GFLOP/s: GEMM and conv3d probes, fp32 and bf16
#   epoch_fp16       benchmarks.gpu_epoch: long frame-folder videos, loader processes, R3D-101,
#                    batch 32, fp16 with its loss scaler; stopped after epoch 1, --resume for
#                    epoch 2; a PyTorch epoch on the same set
#   kernel_tests     tests/kernels (attention, erasing, cuDNN convolution) with Jittor on the GPU
#   precision_tests  tests/test_precision.py with Jittor on the GPU
#   parity_r101      cten-parity-report --device cuda at depth 101 (fp32, the erasing step)
#   compare_tf32, compare_fp16, train_gpu, bank_gpu, bench_kernels
#
# Usage:
#   bash scripts/gpu_check.sh                      # every step, in the foreground (no deadline)
#   bash scripts/gpu_check.sh --dry-run            # every step on this CPU at small sizes
#   STEPS="environment jittor_import smoke" bash scripts/gpu_check.sh      # some steps only
#
# On a lent machine the run outlasts one 10-minute device call, so it runs detached and
# two calls see it through (docs/gpu.md):
#   call 1:  bash scripts/gpu_check.sh --detach SECONDS [--wait-for STEP]
#            starts every step in the background (setsid) with SECONDS in all, and
#            returns once STEP has ended (default: smoke), with the summary so far
#   call 2:  bash scripts/gpu_check.sh --attach SECONDS
#            within the machine's warm period: waits at most SECONDS for the run, stops
#            what is left, and packs it
# Results: $OUT/summary.txt, $OUT/gpu_check.tgz (every log and result), and the main tables
# as separate files (the device tool returns at most 8).  Wheels the machine lacks travel in
# .whl/ (bash scripts/gpu_wheels.sh; the device tool's carry: [".whl"]).
set -u
cd "$(dirname "$0")/.."
REPO=$PWD
WORK=${GPU_CHECK_WORK:-/tmp/gpu_check}
MODE=run; DRY=0; SECONDS_TOTAL=0; WAIT_FOR=smoke
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --detach) MODE=detach; SECONDS_TOTAL=$2; shift ;;
    --attach) MODE=attach; SECONDS_TOTAL=$2; shift ;;
    --wait-for) WAIT_FOR=$2; shift ;;
    --run-detached) MODE=detached; SECONDS_TOTAL=$2; shift ;;
    *) echo "gpu_check.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
FINAL=${OUT:-$REPO/gpu_out}

pack() {       # everything under $WORK into $FINAL: summary, a tarball, the main tables
  mkdir -p "$FINAL"
  cp "$WORK/summary.txt" "$FINAL/summary.txt" 2>/dev/null
  tar czf "$FINAL/gpu_check.tgz" -C "$WORK" --exclude='*.safetensors' --exclude='*.pkl' . 2>/dev/null
  for f in precision_r101.md frameworks_gpu_fp32.md frameworks_gpu_bf16.md gpu_epoch/gpu_epoch.md smoke.md; do
    [ -f "$WORK/$f" ] && cp "$WORK/$f" "$FINAL/$(basename "$f")"
  done
}

case $MODE in
  detach)
    rm -rf "$WORK" && mkdir -p "$WORK"
    setsid nohup bash "$REPO/scripts/gpu_check.sh" --run-detached "$SECONDS_TOTAL" $([ $DRY = 1 ] && echo --dry-run) \
      > "$WORK/driver.log" 2>&1 < /dev/null &
    began=$(date +%s)
    until [ -f "$WORK/done" ] || grep -q "^$WAIT_FOR:" "$WORK/summary.txt" 2>/dev/null; do
      sleep 2
      [ $(( $(date +%s) - began )) -gt "$SECONDS_TOTAL" ] && break
    done
    pack
    cat "$WORK/summary.txt"
    [ -f "$WORK/smoke.md" ] && cat "$WORK/smoke.md"
    exit 0 ;;
  attach)
    if [ ! -d "$WORK" ]; then echo "gpu_check.sh --attach: no run in $WORK (a fresh machine?)"; exit 1; fi
    began=$(date +%s)
    until [ -f "$WORK/done" ]; do
      sleep 2
      if [ $(( $(date +%s) - began )) -gt "$SECONDS_TOTAL" ]; then
        echo "attach: time is up; stopping what is left" | tee -a "$WORK/summary.txt"
        sid=$(cat "$WORK/session" 2>/dev/null)      # the detached run's session: every step's processes
        [ -n "$sid" ] && { pkill -TERM -s "$sid"; sleep 3; pkill -KILL -s "$sid"; }
        break
      fi
    done
    pack
    cat "$WORK/summary.txt"
    exit 0 ;;
esac

# ---- the run itself (MODE run or detached) ------------------------------------------------------
mkdir -p "$WORK"
SUMMARY="$WORK/summary.txt"
[ "$MODE" = detached ] && ps -o sid= -p $$ | tr -d ' ' > "$WORK/session"
[ "$MODE" = run ] && : > "$SUMMARY"
NOW=$(date +%s)
if [ "$SECONDS_TOTAL" -gt 0 ]; then DEADLINE=$((NOW + SECONDS_TOTAL)); else DEADLINE=$((NOW + 86400)); fi
if [ $DRY = 1 ]; then      # the same steps on the CPU, small: the venv's python, no wheels
  export DEVICE=cpu; PY=${PYTHON:-$REPO/.venv/bin/python}
  SMALL=(--depth 10 --segments 4 --frames 4 --size 32); R101=(--depth 10 --frames 4 --size 32)
  BENCH_CONFIG=configs/bench_smoke.yaml; BANK_EPOCHS=1; BF16_OK=1
  EPOCH=(--device cpu --precision bf16 --quick --distinct 3 --train 4 --val 2 --batch 2 --workers 1 --depth 10
         --frames 4 --size 32 --torch)
else
  export DEVICE=cuda; PY=${PYTHON:-python3}
  SMALL=(--depth 10 --segments 4 --frames 8 --size 32); R101=(--depth 101 --frames 16 --size 112)
  BENCH_CONFIG=configs/bench_gpu.yaml; BANK_EPOCHS=4
  EPOCH=(--device cuda --precision fp16 --distinct 12 --train 96 --val 8 --batch 32 --workers 12 --depth 101 --torch)
fi
export PY PYTHONUNBUFFERED=1 WORK

step() {   # step NAME SECONDS LOGFILE COMMAND...   (only the steps in $STEPS, when set)
  local name=$1 limit=$2 log=$3; shift 3
  if [ -n "${STEPS:-}" ] && [[ " $STEPS " != *" $name "* ]]; then return 0; fi
  local left=$(( DEADLINE - $(date +%s) - 10 ))
  if [ "$left" -lt 45 ]; then
    echo "$name: skipped, ${left} s left before the deadline" | tee -a "$SUMMARY"; return 0
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  local t0=$(date +%s)
  echo "== $name ($(date -u +%H:%M:%S), limit $limit s)" >> "$WORK/$log"
  timeout -k 5 "$limit" bash -c '"$@"' _ "$@" >> "$WORK/$log" 2>&1      # runs exported functions too
  local rc=$?
  local how=""; [ $rc = 124 ] || [ $rc = 137 ] && how=" (time limit)"
  echo "$name: rc=$rc$how, $(( $(date +%s) - t0 )) s (limit $limit s)" | tee -a "$SUMMARY"
}

env_report() {
  nvidia-smi || true
  nvcc --version || true
  which nvcc; ls -l /usr/local/cuda* -d 2>/dev/null
  $PY -c "import sys, numpy, torch; print(sys.version); print('numpy', numpy.__version__, 'torch', torch.__version__, torch.version.cuda, torch.cuda.is_available())"
  $PY -m pip list 2>/dev/null | grep -i -E "nvidia|cupy|numpy|torch|opencv|jittor|av |librosa" || true
  $PY -c "import nvidia, os; [print(r) for p in nvidia.__path__ for r, d, f in os.walk(p) if os.path.basename(r) in ('lib', 'include')]" || true
  command -v ffmpeg || echo "no ffmpeg"
  nproc; free -g; df -h /tmp
}
export -f env_report
step environment 30 env.txt env_report

# the CUDA kernels through CuPy (the image's numpy, no Jittor)
step cupy_kernels 80 cupy_kernels.log $PY -m pytest -q -p no:cacheprovider --noconftest tests/kernels/test_cuda_kernels.py

# Jittor on CUDA: wheels to a private site folder, numpy<2 first on the path
if [ $DRY = 0 ] && ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    >> "$WORK/wheels.log" 2>&1
  echo "wheels: rc=$?" | tee -a "$SUMMARY"
  export PYTHONPATH=/tmp/site:$REPO
else
  export PYTHONPATH=$REPO
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
import jittor as jt
import numpy as np
print("import took", round(time.time() - t0, 1), "s; has_cuda", jt.has_cuda, "numpy", np.__version__)
import importlib        # what every later step imports: a missing wheel shows here, by name
for module in ("cten_common.data.datasets", "cten_jt.train", "cten_torch_ref.train", "benchmarks.framework_worker",
               "cten_compare.precision_report", "benchmarks.gpu_epoch"):
    importlib.import_module(module)
print("the project's modules import")
jt.flags.use_cuda = int(os.environ["DEVICE"] == "cuda")
a = jt.array(np.arange(12, dtype=np.float32).reshape(3, 4))
print(f"matmul on {os.environ['DEVICE']}:", (a @ a.transpose()).numpy().tolist())
x = jt.array(np.random.default_rng(0).standard_normal((2, 3, 8, 16, 16)).astype(np.float32))
w = jt.array(np.random.default_rng(1).standard_normal((4, 3, 3, 3, 3)).astype(np.float32))
print(f"conv3d on {os.environ['DEVICE']}:", jt.nn.conv3d(x, w, padding=1).numpy().shape)
PYEOF
}
export -f jittor_import
step jittor_import 240 jittor_cuda.log jittor_import

# every precision in both frameworks against float64: first tiny (compiles the ops; the
# smoke test of the whole path), then at the paper's shape
export SMALL_ARGS="${SMALL[*]}"
smoke() {
  $PY -m cten_compare.precision_report --device $DEVICE $SMALL_ARGS --out "$WORK/smoke.json"
  local rc=$?
  if [ $rc != 0 ] && [ $rc != 1 ]; then      # crashed (1: a row over its bound): again, synchronous, traced
    echo "== again with JT_SYNC=1 trace_py_var=3"
    JT_SYNC=1 trace_py_var=3 timeout 120 $PY -m cten_compare.precision_report --device $DEVICE $SMALL_ARGS \
      --out "$WORK/smoke_sync.json"
  fi
  return $rc
}
export -f smoke
step smoke 240 smoke.log smoke
step precision_r101 240 precision_r101.log $PY -m cten_compare.precision_report --device $DEVICE "${R101[@]}" \
  --segments $([ $DRY = 1 ] && echo 4 || echo 16) --out "$WORK/precision_r101.json"

# Jittor against PyTorch at the paper's shape (batch 32, 16 x 16x112x112, 1600x128 audio),
# the two workers taking turns; the conv3d probe timed alongside
compare() {   # compare PRECISION
  $PY -m benchmarks.compare_frameworks --config $BENCH_CONFIG --device $DEVICE --iters 3 --warmup 2 --repeats 1 \
    --no-epoch --precision "$1" --out "$WORK/frameworks_gpu_$1.json"
}
export -f compare
export BENCH_CONFIG
step compare_fp32 240 compare_frameworks.log compare fp32
step compare_bf16 200 compare_frameworks.log compare bf16
# the card's attainable rates (GEMM 8192^2 and a large unpadded conv3d, fp32 and bf16, both frameworks)
if [ $DRY = 1 ]; then PEAK=(); else PEAK=(--peak-gemm 8192 --peak-conv 64,256,8,28,28); fi
step peak 120 peak.log $PY -m benchmarks.flops --config $BENCH_CONFIG --peak "${PEAK[@]}" --device $DEVICE \
  --json "$WORK/peak.json"

# epochs through the data path on long videos: fp16, its loss scaler over a stop and --resume
export EPOCH_ARGS="${EPOCH[*]}"
epoch_cmd() { $PY -m benchmarks.gpu_epoch --out "$WORK/gpu_epoch" --root /tmp/cten_long $EPOCH_ARGS; }
export -f epoch_cmd
step epoch_fp16 300 gpu_epoch.log epoch_cmd

# the kernel tests and the precision tests with Jittor on the GPU
step kernel_tests 170 kernel_tests.log env CTEN_TEST_DEVICE=$DEVICE $PY -m pytest -q -p no:cacheprovider \
  tests/kernels/test_attention_kernel.py tests/kernels/test_erasing_kernel.py tests/kernels/test_conv_kernel.py
step precision_tests 200 precision_tests.log env CTEN_TEST_DEVICE=$DEVICE $PY -m pytest -q -p no:cacheprovider \
  tests/test_precision.py

# fp32 parity, Jittor CUDA against PyTorch CUDA (TF32 off), depth 101, with the erasing step
step parity_r101 150 parity_gpu.log $PY -m cten_compare.parity_report --device $DEVICE "${R101[@]}" \
  --out "$WORK/parity_gpu_r101.json"

if [ $DRY = 0 ]; then
  step compare_tf32 200 compare_frameworks.log compare tf32
  step compare_fp16 200 compare_frameworks.log compare fp16
fi

train_gpu() {
  $PY -m cten_common.data.make_synthetic --out data/synthetic >/dev/null &&
  $PY -m cten_jt.train --config configs/synthetic.yaml --set train.epochs=2 --set train.device=$DEVICE \
    --out "$WORK/train_gpu" && cat "$WORK/train_gpu/metrics.jsonl"
}
export -f train_gpu
step train_gpu 200 train_gpu.log train_gpu
step bank_gpu 200 bank_gpu.log $PY -m benchmarks.compare_bank --device $DEVICE --epochs $BANK_EPOCHS \
  --out "$WORK/bank_synthetic_gpu.json"
step bench_kernels 70 bench_kernels.log $PY -m benchmarks.bench_kernels --device $DEVICE --iters 20 \
  --out "$WORK/kernels_cuda.json"

touch "$WORK/done"
if [ "$MODE" = run ]; then
  pack
  cat "$SUMMARY"
fi
