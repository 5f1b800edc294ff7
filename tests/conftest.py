import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# PyTorch before Jittor: Jittor's oneDNN and PyTorch's MKL clash the other way round
import torch  # noqa: E402,F401
import cten_jt  # noqa: E402,F401
