"""Where PyTorch runs: ``train.device`` = auto (the GPU when PyTorch sees CUDA), cpu or cuda,
as ``cten_jt.device`` decides it for Jittor."""
import torch

from cten_common.config import DEVICES


def set_device(name="auto"):
    """The device to put the model on, "cpu" or "cuda"."""
    if name not in DEVICES:
        raise ValueError(f"train.device must be one of {DEVICES}, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but PyTorch sees no CUDA device")
    return "cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu"
