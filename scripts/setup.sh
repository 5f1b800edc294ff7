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
.venv/bin/python -m pip install -q -e ".[torch,test,deploy]"
.venv/bin/python -m pip check
# cuDNN headers and library for the GPU convolution op (cten_jt/kernels/csrc/conv_cudnn.cuh),
# where a CUDA toolkit is installed: taken from the nvidia-cudnn wheel for its major version
# into ~/.cache/cten_jt/cudnn-cuN (not installed into .venv: the wheel wants cuBLAS beside it),
# so that the tests compile and link the op here.  GPU machines have the wheels already.
NVCC=$(command -v nvcc || true)
[ -z "$NVCC" ] && [ -x /usr/local/cuda/bin/nvcc ] && NVCC=/usr/local/cuda/bin/nvcc
if [ -n "$NVCC" ]; then
  major=$("$NVCC" --version | sed -n 's/.*release \([0-9]*\)\..*/\1/p')
  dest="$HOME/.cache/cten_jt/cudnn-cu${major}"
  if [ ! -f "$dest/include/cudnn.h" ]; then
    tmp=$(mktemp -d)
    if .venv/bin/python -m pip download -q --no-deps -d "$tmp" "nvidia-cudnn-cu${major}" >/dev/null 2>&1; then
      .venv/bin/python - "$tmp" "$dest" <<'PYEOF'
import glob, os, sys, zipfile
tmp, dest = sys.argv[1:]
wheel = glob.glob(os.path.join(tmp, "*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        part = name.split("nvidia/cudnn/", 1)[-1]
        if name.startswith("nvidia/cudnn/include/") or name.startswith("nvidia/cudnn/lib/libcudnn.so"):
            target = os.path.join(dest, part)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with z.open(name) as src, open(target, "wb") as out:
                out.write(src.read())
print(f"setup: cuDNN headers and libcudnn.so from {os.path.basename(wheel)} in {dest}")
PYEOF
    else
      echo "setup: warning: no nvidia-cudnn-cu${major} wheel; the cuDNN op is not compile-checked"
    fi
    rm -rf "$tmp"
  fi
  # NVRTC (the compiler CuPy runs the CUDA kernels through on a GPU machine): its library
  # from the nvidia-cuda-nvrtc wheel of this toolkit's version, so that the tests compile
  # the kernels as NVRTC does (no C++ standard headers) without a GPU
  version=$("$NVCC" --version | sed -n 's/.*release \([0-9]*\.[0-9]*\),.*/\1/p')
  dest="$HOME/.cache/cten_jt/nvrtc-cu${major}"
  if [ ! -f "$dest/libnvrtc.so.${major}" ]; then
    tmp=$(mktemp -d)
    if .venv/bin/python -m pip download -q --no-deps -d "$tmp" "nvidia-cuda-nvrtc==${version}.*" >/dev/null 2>&1 ||
       .venv/bin/python -m pip download -q --no-deps -d "$tmp" "nvidia-cuda-nvrtc-cu${major}==${version}.*" >/dev/null 2>&1; then
      .venv/bin/python - "$tmp" "$dest" <<'PYEOF'
import glob, os, sys, zipfile
tmp, dest = sys.argv[1:]
wheel = glob.glob(os.path.join(tmp, "*.whl"))[0]
os.makedirs(dest, exist_ok=True)
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if "/lib/libnvrtc" in name:
            with z.open(name) as src, open(os.path.join(dest, os.path.basename(name)), "wb") as out:
                out.write(src.read())
print(f"setup: NVRTC from {os.path.basename(wheel)} in {dest}")
PYEOF
    else
      echo "setup: warning: no nvidia-cuda-nvrtc ${version} wheel; the kernels are not NVRTC-checked"
    fi
    rm -rf "$tmp"
  fi
fi
# first import compiles Jittor (about 2 minutes on 2 cores, once) and checks the set
.venv/bin/python -m cten_jt.check_install
