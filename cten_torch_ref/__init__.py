"""PyTorch reference implementation of CTEN (same names as ``cten_jt``)."""
from .checkpoint import load_weights, save_weights
from .models.state import state_arrays

__all__ = ["load_weights", "save_weights", "state_arrays"]
