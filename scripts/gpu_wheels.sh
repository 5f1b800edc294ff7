#!/usr/bin/env bash
# The Python wheels the lent GPU machine lacks, for its Python 3.12, in .whl/ (ignored by
# git; the device tool carries it: `carry: [".whl"]`, 64 MiB in all with the working tree).
# gpu_check.sh installs .whl/ into a private site folder placed first on the path.
#
# Which wheels: the closure of this project's runtime requirements (setup.py's
# install_requires, walked through each installed package's own requirements, markers
# evaluated for Linux and Python 3.12), less what the machine's image already has
# (IMAGE below, the device tool's KINDS.md list), plus numpy 1.26.4 (the image's numpy 2
# silently corrupts Jittor's arrays).  Derived, not hand-listed: the hand list lacked cffi,
# which soundfile needs, and every step that imports the data package failed on the H200.
# Versions: this venv's, so that both machines run the same code.
#   bash scripts/gpu_wheels.sh          # then: ls -la .whl
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
rm -rf .whl && mkdir -p .whl
"$PY" - > .whl/wanted.txt <<'PYEOF'
import importlib.metadata as md
import re
from packaging.requirements import Requirement

# the nvidia-h200 image's packages (the device tool's KINDS.md, read 2026-11-17)
IMAGE = """absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch
build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings
cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet
filelock flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore
httpx huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt
jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities
linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes
mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba
numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse
nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx
onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix
orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client
propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions
pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil pytorch-lightning
pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image scikit-learn scipy seaborn
sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers statsmodels
sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm
tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers
treescope triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt
xarray xxhash yarl zipp""".split()
ALWAYS = {"numpy"}            # carried whatever the image has: Jittor needs numpy < 2


def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


env = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
       "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
       "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
image = {norm(n) for n in IMAGE}
seen, todo = set(), [Requirement(r) for r in md.requires("cten-jittor") or []]
while todo:
    req = todo.pop()
    if req.marker is not None and not req.marker.evaluate(env):
        continue                     # extras, other Pythons and platforms
    name = norm(req.name)
    if name in seen:
        continue
    seen.add(name)
    try:
        dist = md.distribution(req.name)
    except md.PackageNotFoundError:
        raise SystemExit(f"gpu_wheels: {req.name} (needed) is not installed in this venv: run scripts/setup.sh")
    if name in image and name not in ALWAYS:
        continue                     # the image's own (its requirements are its business)
    print(f"{dist.metadata['Name']}=={dist.version}")
    todo += [Requirement(r) for r in dist.requires or []]
PYEOF
echo "wheels the image lacks: $(tr '\n' ' ' < .whl/wanted.txt)"
while read -r spec; do
  name=${spec%%==*}
  [ "$name" = numpy ] && spec=numpy==1.26.4          # the last numpy 1 with Python 3.12 wheels
  if "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
       --abi cp312 --abi abi3 --abi none --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
       --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 --platform any -d .whl "$spec" \
       >/dev/null 2>&1; then
    continue
  fi
  "$PY" -m pip wheel -q --no-deps "$spec" -w .whl >/dev/null 2>&1 ||      # an sdist only (jittor)
    { echo "error: no Python 3.12 wheel for $spec" >&2; exit 1; }
done < .whl/wanted.txt
rm .whl/wanted.txt
total=$(du -cb .whl/*.whl | tail -n 1 | cut -f1)
ls -la .whl | awk 'NR > 1 && $9 ~ /whl$/ {printf "%10d  %s\n", $5, $9}'
echo "total $((total / 1048576)) MiB of the device tool's 64 MiB carry"
[ "$total" -le $((58 * 1048576)) ] || { echo "error: over 58 MiB: the working tree needs the rest" >&2; exit 1; }
