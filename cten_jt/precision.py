"""Mixed precision in Jittor: ``cten_common.precision``'s policy, applied by our layers.

No global flag: every layer that computes in low precision (the convolutions,
the linear layers, the attention blocks) carries a ``precision`` attribute,
``"fp32"`` unless ``set_precision`` changed it, and ``layer_precisions(model)``
lists them all.  The arrays between layers stay float32:

* ``Conv2d``/``Conv3d``: our oneDNN (CPU) and cuDNN (GPU) convolution computes
  in bfloat16 (or float16 on the GPU) and writes a float32 array of the rounded
  result; the frozen backbone's cached weights are kept in bfloat16;
* ``Linear``, ``Conv1d`` and the attention's two products: the operands and the
  result go through ``round_to`` (``cten_jt.kernels.rounding``) around a float32
  product.  A product of two bfloat16 values is exact in float32, so this is a
  bfloat16 product with float32 accumulation, what the tensor cores compute.

``tf32`` (GPU only) sets Jittor's ``use_tensorcore`` for the matrix products and
the cuDNN convolutions' TF32 math; its layers compute in float32 arrays.
"""
import jittor as jt

from cten_common.precision import LOW, check_device
from .kernels.rounding import round_to


def set_precision(model, precision):
    """Every low-precision-capable layer under ``model`` (and ``model``) computes in
    ``precision`` from now on; returns ``model``.  fp16 and tf32 need the GPU."""
    check_device(precision, bool(jt.flags.use_cuda))
    for module in [model] + list(model.modules()):
        if hasattr(type(module), "precision"):
            module.precision = precision
    jt.flags.use_tensorcore = int(precision == "tf32")
    return model


def layer_precisions(model):
    """``{name: precision}`` of every layer under ``model`` that has one."""
    return {name: module.precision for name, module in model.named_modules()
            if hasattr(type(module), "precision")}


def low(x, precision):
    """``x`` rounded to ``precision``'s values where that is bf16 or fp16; else ``x``."""
    return round_to(x, precision) if precision in LOW else x
