#!/usr/bin/env bash
# The whole test suite three ways, as machines of this kind differ (a summary at
# the end; logs in $OUT, default /tmp/cten_portability):
#   default   - as CI runs it;
#   avx2      - oneDNN limited to AVX2 (ONEDNN_MAX_CPU_ISA and DNNL_MAX_CPU_ISA, honoured by
#               PyTorch's and Jittor's oneDNN alike; machine_info.py shows it took effect),
#               standing in for another CPU's kernels and rounding;
#   1thread   - one OpenMP thread (other reduction splits in oneDNN and PyTorch).
# Usage: bash scripts/portability_check.sh [pytest args, default: tests]
#        MODES="avx2 1thread" bash scripts/portability_check.sh     # some of the three
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/cten_portability}
mkdir -p "$OUT"
PY=.venv/bin/python
ARGS=("$@")
[ ${#ARGS[@]} -eq 0 ] && ARGS=(tests)
declare -A ENVS=(
  [default]=""
  [avx2]="ONEDNN_MAX_CPU_ISA=AVX2 DNNL_MAX_CPU_ISA=AVX2"
  [1thread]="OMP_NUM_THREADS=1 MKL_NUM_THREADS=1"
)
status=0
summary=()
for mode in ${MODES:-default avx2 1thread}; do
  log="$OUT/$mode.log"
  echo "== $mode: ${ENVS[$mode]:-(no limits)}"
  env ${ENVS[$mode]} $PY scripts/machine_info.py | tee "$log"
  env ${ENVS[$mode]} $PY -m pytest -q -p no:cacheprovider "${ARGS[@]}" >>"$log" 2>&1
  rc=$?
  last=$(grep -E "(passed|failed|error)" "$log" | tail -n 1)
  summary+=("$mode: exit $rc: $last")
  [ $rc -ne 0 ] && status=1 && grep -E "^(FAILED|ERROR) " "$log" | sed "s/^/  $mode /"
done
echo
printf '%s\n' "${summary[@]}" | tee "$OUT/summary.txt"
exit $status
