"""Strict CTEN checkpoint conversion between PyTorch (.pth) and Jittor (.safetensors).

    cten-convert torch2jittor SRC.pth DST.safetensors [--backbone visual|audio] [--config CFG]
    cten-convert jittor2torch SRC.safetensors DST.pth [--format state_dict|reference]

Jittor weights are safetensors (``.pkl`` is read, and written when DST ends in
``.pkl``, for Jittor's own ``Module.load``); no source file ever runs code.

or, from Python, ``torch_to_jittor(...)`` and ``jittor_to_torch(...)``.
"""
from .convert import jittor_to_torch, torch_to_jittor

__all__ = ["jittor_to_torch", "torch_to_jittor"]
