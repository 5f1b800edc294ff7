"""The oneDNN convolution op (CPU) against PyTorch's conv2d/conv3d: forward,
input gradient and weight gradient, to the module tolerance."""
import jittor as jt
import numpy as np
import pytest
import torch

from cten_jt.kernels import conv as dnnl_conv
from cten_jt.models.layers import Conv2d, Conv3d
from helpers import MODULE_ATOL, assert_close

pytestmark = pytest.mark.skipif(not dnnl_conv.available(), reason="no system oneDNN (libdnnl-dev)")

CASES = [  # input shape, weight shape, stride, padding
    ((2, 3, 5, 9, 9), (4, 3, 3, 3, 3), (1, 2, 2), (1, 1, 1)),
    ((1, 3, 8, 16, 16), (8, 3, 7, 7, 7), (1, 2, 2), (3, 3, 3)),      # the stem of the 3D ResNet
    ((2, 8, 4, 6, 6), (16, 8, 1, 1, 1), (2, 2, 2), (0, 0, 0)),       # a strided shortcut
    ((3, 1, 20, 16), (6, 1, 7, 1), (2, 1), (3, 0)),                  # the audio ResNet's conv1
    ((2, 5, 11, 7), (6, 5, 3, 3), (1, 1), (1, 1)),
]


@pytest.mark.parametrize("x_shape,w_shape,stride,padding", CASES)
def test_forward_and_gradients_match_pytorch(x_shape, w_shape, stride, padding):
    rng = np.random.default_rng(len(x_shape) * 10 + w_shape[0])
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = (rng.standard_normal(w_shape) * 0.1).astype(np.float32)
    conv = torch.nn.functional.conv3d if len(x_shape) == 5 else torch.nn.functional.conv2d
    tx, tw = torch.from_numpy(x).requires_grad_(), torch.from_numpy(w).requires_grad_()
    ty = conv(tx, tw, stride=stride, padding=padding)
    g = rng.standard_normal(tuple(ty.shape)).astype(np.float32)
    (ty * torch.from_numpy(g)).sum().backward()
    jx, jw = jt.array(x), jt.array(w)
    jy = dnnl_conv.conv_dnnl(jx, jw, stride, padding)
    dx, dw = jt.grad((jy * jt.array(g)).sum(), [jx, jw])
    where = f"conv {x_shape} * {w_shape} stride {stride} padding {padding}"
    assert_close({"y": ty.detach(), "dx": tx.grad, "dw": tw.grad},
                 {"y": jy.numpy(), "dx": dx.numpy(), "dw": dw.numpy()}, where, atol=MODULE_ATOL, rtol_scale=1e-6)


def test_layers_use_it_and_keep_their_parameter_names():
    calls = []
    real = dnnl_conv.conv_dnnl

    def spy(*args):
        calls.append(args[0].ndim)
        return real(*args)
    dnnl_conv.conv_dnnl = spy
    try:
        c3, c2 = Conv3d(3, 4, 3, padding=1, bias=True), Conv2d(2, 3, 3, padding=1, bias=False)
        y3 = c3(jt.ones((1, 3, 4, 5, 5)))
        y2 = c2(jt.ones((1, 2, 5, 5)))
    finally:
        dnnl_conv.conv_dnnl = real
    assert calls == [5, 4]
    assert set(dict(c3.named_parameters())) == {"weight", "bias"} and set(dict(c2.named_parameters())) == {"weight"}
    ref = jt.nn.conv3d(jt.ones((1, 3, 4, 5, 5)), c3.weight, c3.bias, 1, 1)
    assert_close(ref.numpy(), y3.numpy(), "Conv3d with bias", atol=MODULE_ATOL)
    assert y2.shape == [1, 3, 5, 5]
