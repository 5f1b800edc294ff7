#!/usr/bin/env bash
# Set up everything in .venv: system packages where we may install them,
# the Python packages, and Jittor's one-time compilation (cached in ~/.cache/jittor).
#   bash scripts/setup.sh            # Jittor + PyTorch reference + test tools
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

# System packages: a C++ compiler and Python headers (Jittor compiles its core),
# venv, and Debian's oneDNN (Jittor's fast CPU conv/matmul; without it Jittor
# would try to download oneDNN, so cten_jt switches it off instead), and ffmpeg
# (audio tracks of video files, m4a), and OpenMPI (data-parallel training with
# mpirun; single-process training does not need it).
want=(g++ python3-venv python3-dev libdnnl-dev ffmpeg openmpi-bin libopenmpi-dev)
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  missing=()
  for p in "${want[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: apt-get install ${missing[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null) \
      || echo "setup: warning: could not install ${missing[*]}; continuing (oneDNN is optional)"
  fi
else
  echo "setup: not root or no apt-get: make sure ${want[*]} are installed"
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e ".[torch,test]"
.venv/bin/python -m pip check
# cuDNN for the GPU convolution op (cten_jt/kernels/csrc/conv_cudnn.cuh), where a CUDA
# toolkit is installed: the pip wheel for its major version (headers and libraries;
# linked into Jittor's CUDA home on a GPU machine, compile-checked by the tests here)
NVCC=$(command -v nvcc || true)
[ -z "$NVCC" ] && [ -x /usr/local/cuda/bin/nvcc ] && NVCC=/usr/local/cuda/bin/nvcc
if [ -n "$NVCC" ]; then
  major=$("$NVCC" --version | sed -n 's/.*release \([0-9]*\)\..*/\1/p')
  .venv/bin/python -m pip install -q --no-deps "nvidia-cudnn-cu${major}" \
    || echo "setup: warning: no nvidia-cudnn-cu${major} wheel; the cuDNN op is not compile-checked"
fi
# first import compiles Jittor (about 2 minutes on 2 cores, once) and checks the set
.venv/bin/python -m cten_jt.check_install
