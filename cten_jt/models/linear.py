"""The linear layer with a precision (``cten_jt.precision``).

Jittor's ``nn.Linear``, same parameters and names; ``precision`` "bf16" (or
"fp16" on the GPU) rounds the input, the weight and the bias to that format,
multiplies in float32 (exact products, float32 sums) and rounds the result:
``torch.autocast``'s linear, in float32 arrays.
"""
from jittor import nn

from ..precision import low


class Linear(nn.Linear):
    """``nn.Linear`` whose product runs in ``self.precision`` ("fp32" unless set)."""

    precision = "fp32"

    def execute(self, x):
        if self.precision == "fp32" or self.precision == "tf32":
            return super().execute(x)
        p = self.precision
        y = nn.matmul_transpose(low(x, p), low(self.weight, p))
        if self.bias is not None:
            y = y + low(self.bias, p)
        return low(y, p)
