#!/usr/bin/env bash
# The Python wheels the lent GPU machine lacks, for its Python 3.12, in .whl/ (ignored
# by git; the device tool carries it: `carry: [".whl"]`, 64 MiB in all with the other
# carried paths).  Its image has PyTorch, CuPy, OpenCV, scipy, numba, scikit-learn,
# safetensors and numpy 2 (KINDS.md); CTEN's Jittor needs numpy<2, and the data path
# needs PyAV (video files), soundfile/soxr/librosa (audio).  gpu_check.sh installs
# .whl/ into a private site folder placed first on the path.
#   bash scripts/gpu_wheels.sh          # then: ls -la .whl
set -euo pipefail
cd "$(dirname "$0")/.."
PIP=${PIP:-.venv/bin/pip}
rm -rf .whl && mkdir -p .whl
# versions: those of this project's .venv where it has them (same code paths on both machines)
ver() { .venv/bin/python -c "import importlib.metadata as m; print(m.version('$1'))"; }
binary=(numpy==1.26.4 "av==$(ver av)" "soundfile==$(ver soundfile)" "soxr==$(ver soxr)")
pure=(astunparse "librosa==$(ver librosa)" "audioread==$(ver audioread)" "decorator==$(ver decorator)"
      "pooch==$(ver pooch)" "platformdirs==$(ver platformdirs)")
"$PIP" download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \
  --abi abi3 --abi none --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 -d .whl "${binary[@]}"
"$PIP" download -q --no-deps --only-binary=:all: -d .whl "${pure[@]}"
"$PIP" wheel -q --no-deps "jittor==$(ver jittor)" -w .whl
total=$(du -cb .whl/*.whl | tail -n 1 | cut -f1)
ls -la .whl | awk 'NR > 1 && $9 ~ /whl$/ {printf "%10d  %s\n", $5, $9}'
echo "total $((total / 1048576)) MiB of the device tool's 64 MiB carry"
[ "$total" -le $((60 * 1048576)) ] || { echo "error: over 60 MiB: the working tree needs the rest" >&2; exit 1; }
