#!/usr/bin/env bash
# The whole test suite four ways, as machines of this kind differ (a summary at
# the end; logs in $OUT, default /tmp/cten_portability):
#   default    - as CI runs it;
#   avx2       - oneDNN limited to AVX2 (ONEDNN_MAX_CPU_ISA and DNNL_MAX_CPU_ISA, honoured by
#                PyTorch's oneDNN 3.x and Debian's oneDNN 2.6 under Jittor alike), standing in
#                for another CPU's kernels and rounding;
#   avx512bf16 - oneDNN limited to AVX-512 with bf16 and no AMX (AVX512_CORE_BF16, a name both
#                oneDNN versions accept): the AMD EPYC's path on an Intel Xeon with AMX.  On a
#                CPU without that much, the limit is above the CPU and changes nothing;
#   1thread    - one OpenMP thread (other reduction splits in oneDNN and PyTorch);
#   layouts    - (not in the default four) the frozen backbone program forced into each of its
#                layouts in turn (CTEN_FROZEN_LAYOUT=nCdhw16c, nCdhw8c, ndhwc), whatever this
#                CPU's oneDNN would choose: every model test then runs through that branch.
# Each limited way checks, from machine_info.py's oneDNN lines (the ISA each framework's
# oneDNN reports when it runs), that the limit took effect in both frameworks: no AVX-512
# under avx2, no AMX under avx512bf16; a limit that did not take effect fails the way (a
# probe that could not run, e.g. on a machine busy compiling Jittor ops, is a warning).
# Usage: bash scripts/portability_check.sh [pytest args, default: tests]
#        MODES="avx2 1thread" bash scripts/portability_check.sh     # some of the four
#        MODES=layouts bash scripts/portability_check.sh tests/kernels tests/models
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/cten_portability}
mkdir -p "$OUT"
PY=.venv/bin/python
ARGS=("$@")
[ ${#ARGS[@]} -eq 0 ] && ARGS=(tests)
# what oneDNN's reported ISA must not mention under each limit
declare -A FORBIDDEN=([avx2]="AVX-512" [avx512bf16]="AMX")
declare -A ENVS=(
  [default]=""
  [avx2]="ONEDNN_MAX_CPU_ISA=AVX2 DNNL_MAX_CPU_ISA=AVX2"
  [avx512bf16]="ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 DNNL_MAX_CPU_ISA=AVX512_CORE_BF16"
  [1thread]="OMP_NUM_THREADS=1 MKL_NUM_THREADS=1"
  [layout-nCdhw16c]="CTEN_FROZEN_LAYOUT=nCdhw16c"
  [layout-nCdhw8c]="CTEN_FROZEN_LAYOUT=nCdhw8c"
  [layout-ndhwc]="CTEN_FROZEN_LAYOUT=ndhwc"
)
status=0
summary=()
MODES=${MODES:-default avx2 avx512bf16 1thread}
MODES=${MODES/layouts/layout-nCdhw16c layout-nCdhw8c layout-ndhwc}
for mode in $MODES; do
  log="$OUT/$mode.log"
  echo "== $mode: ${ENVS[$mode]:-(no limits)}"
  env ${ENVS[$mode]} $PY scripts/machine_info.py | tee "$log"
  forbidden=${FORBIDDEN[$mode]:-}
  if [ -n "$forbidden" ]; then
    isa_lines=$(grep "^oneDNN in" "$log")
    if echo "$isa_lines" | grep -q -e "$forbidden"; then
      summary+=("$mode: the limit did not take effect: $(echo $isa_lines)")
      status=1
      continue
    fi
    # a probe that could not run (e.g. a busy machine's Jittor cache lock) proves nothing either way
    if [ "$(echo "$isa_lines" | grep -c -i "isa\|intel")" -ne 2 ]; then
      summary+=("$mode: warning: oneDNN's ISA not read in both frameworks: $(echo $isa_lines)")
    fi
  fi
  env ${ENVS[$mode]} $PY -m pytest -q -p no:cacheprovider "${ARGS[@]}" >>"$log" 2>&1
  rc=$?
  last=$(grep -E "(passed|failed|error)" "$log" | tail -n 1)
  summary+=("$mode: exit $rc: $last")
  [ $rc -ne 0 ] && status=1 && grep -E "^(FAILED|ERROR) " "$log" | sed "s/^/  $mode /"
done
echo
printf '%s\n' "${summary[@]}" | tee "$OUT/summary.txt"
exit $status
