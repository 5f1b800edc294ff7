"""Strict CTEN checkpoint conversion between PyTorch (.pth) and Jittor (.pkl).

    python -m weights_convert.torch2jittor SRC.pth DST.pkl [--backbone visual|audio] [--config CFG]
    python -m weights_convert.jittor2torch SRC.pkl DST.pth [--format state_dict|reference]

or, from Python, ``torch_to_jittor(...)`` and ``jittor_to_torch(...)``.
"""
from .convert import jittor_to_torch, torch_to_jittor

__all__ = ["jittor_to_torch", "torch_to_jittor"]
