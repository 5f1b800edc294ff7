"""Optimisers (PyTorch's own; ``cten_jt.optim`` reproduces their arithmetic in Jittor)."""
from torch.optim import Adam

__all__ = ["Adam"]
