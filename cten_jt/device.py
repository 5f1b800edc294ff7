"""Where Jittor runs: ``train.device`` = auto (the GPU when Jittor found CUDA), cpu or cuda."""
import jittor as jt

from cten_common.config import DEVICES


def set_device(name="auto"):
    """Switch Jittor to ``name`` and return the device in use, "cpu" or "cuda"."""
    if name not in DEVICES:
        raise ValueError(f"train.device must be one of {DEVICES}, got {name!r}")
    if name == "cuda" and not jt.has_cuda:
        raise RuntimeError("train.device is 'cuda' but Jittor found no CUDA (no GPU, or no toolkit: "
                           "cten-check-install says which)")
    use = name == "cuda" or (name == "auto" and bool(jt.has_cuda))
    jt.flags.use_cuda = int(use)
    return "cuda" if use else "cpu"
