import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# PyTorch before Jittor: Jittor's oneDNN and PyTorch's MKL clash the other way round
import torch  # noqa: E402,F401
import cten_jt  # noqa: E402,F401

pytest_plugins = ["jittor_isolation"]     # a failed Jittor operation fails its own test only

# CTEN_TEST_DEVICE=cuda runs the Jittor side of every test on the GPU
# (scripts/gpu_check.sh); the PyTorch references stay on the CPU.
if os.environ.get("CTEN_TEST_DEVICE") == "cuda":
    import jittor  # noqa: E402
    if not jittor.has_cuda:
        raise RuntimeError("CTEN_TEST_DEVICE=cuda but Jittor has no CUDA")
    jittor.flags.use_cuda = 1
