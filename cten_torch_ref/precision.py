"""Mixed precision in the PyTorch twin: ``cten_common.precision``'s policy.

``torch.autocast`` (bfloat16; float16 on the GPU) runs the convolutions, the
linear layers and the attention's products in low precision; beyond it, the
policy keeps BatchNorm in float32 (``models.norm``: its input is widened), the
softmax in float32 (``models.attention``: the scores are widened) and the
model's outputs float32 (the loss is computed in float32).  ``tf32`` sets
PyTorch's TF32 switches for matrix products and cuDNN.

``set_precision(model, p)`` marks the model (``model.precision``); the model's
entry points (``forward``, ``audio_branch``, ``backbone_features``) enter
``autocast(model.precision, device)`` themselves, so a caller does nothing else.
"""
import contextlib
import functools

import torch

from cten_common.precision import check_device

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def set_precision(model, precision):
    """``model`` computes in ``precision`` from now on; returns ``model``.  fp16 and
    tf32 need the GPU (the model's parameters on CUDA)."""
    on_gpu = any(p.is_cuda for p in model.parameters())
    check_device(precision, on_gpu)
    for module in model.modules():
        if hasattr(type(module), "precision"):
            module.precision = precision
    if on_gpu:
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        torch.backends.cudnn.allow_tf32 = precision == "tf32"
    return model


def layer_precisions(model):
    """``{name: precision}`` of every module under ``model`` that has one."""
    return {name: module.precision for name, module in model.named_modules()
            if hasattr(type(module), "precision")}


def widened(x):
    """``x`` in float32 where it is bfloat16 or float16 (what autocast's products give);
    a float32 or float64 tensor as it is."""
    return x.float() if x.dtype in (torch.bfloat16, torch.float16) else x


def autocast(precision, device_type):
    """``torch.autocast`` for bf16/fp16 on ``device_type``; a null context otherwise."""
    if precision not in _DTYPES:
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=_DTYPES[precision])


def under_policy(method):
    """A model method that runs under ``autocast(self.precision, ...)`` (the device of its
    first tensor argument) and returns float32 tensors."""
    @functools.wraps(method)
    def wrapped(self, *args, **kwargs):
        if self.precision not in _DTYPES:
            return method(self, *args, **kwargs)
        tensor = next(a for a in list(args) + list(kwargs.values()) if isinstance(a, torch.Tensor))
        with autocast(self.precision, tensor.device.type):
            out = method(self, *args, **kwargs)
        if isinstance(out, tuple):
            return tuple(o.float() for o in out)
        return out.float()
    return wrapped
