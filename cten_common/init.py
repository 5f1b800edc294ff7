"""Initial parameters of CTEN, computed once in numpy for both frameworks.

The rules are those of the reference code, applied by name and shape:

* 3D and 2D convolutions (the two ResNet backbones): Kaiming normal, fan-out
  (Hara et al.'s 3D ResNet and torchvision's ResNet initialise this way);
* BatchNorm: weight 1, bias 0, running mean 0, running variance 1;
* Linear and Conv1d layers: PyTorch's default, uniform in +-1/sqrt(fan_in)
  for weight and bias;
* the non-local blocks' ``alpha``: 0.

Because the same arrays are loaded into the Jittor and the PyTorch model, a
seed gives the same initial model in both frameworks.
"""
import numpy as np


def _fan_in(shape):
    return int(np.prod(shape[1:]))


def _is_batchnorm(name, shapes):
    owner = name.rsplit(".", 1)[0]
    return owner + ".running_mean" in shapes


def initial_state(shapes, seed=None):
    """``{name: array}`` for a model whose parameters have ``{name: (shape, dtype)}``."""
    return dict(iter_initial_state(shapes, seed))


def iter_initial_state(shapes, seed=None):
    """``(name, array)`` of ``initial_state``, one at a time, in the same order (sorted names,
    one generator): the same arrays, bit for bit.  A model loads each as it comes, so the
    whole initial state never sits beside the model's own (at the paper's shape 570 MB)."""
    rng = np.random.default_rng(seed)
    for name in sorted(shapes):
        shape, dtype = shapes[name]
        shape = tuple(shape)
        leaf = name.rsplit(".", 1)[-1]
        owner = name.rsplit(".", 1)[0]
        if leaf == "num_batches_tracked":
            value = np.zeros(shape, dtype=np.int64)
        elif leaf == "running_mean":
            value = np.zeros(shape, np.float32)
        elif leaf == "running_var":
            value = np.ones(shape, np.float32)
        elif leaf in ("weight", "bias") and _is_batchnorm(name, shapes):
            value = np.full(shape, 1.0 if leaf == "weight" else 0.0, np.float32)
        elif leaf == "alpha":
            value = np.zeros(shape, np.float32)
        elif leaf == "weight" and len(shape) in (4, 5):
            fan_out = shape[0] * int(np.prod(shape[2:]))
            value = rng.normal(0.0, np.sqrt(2.0 / fan_out), shape)
        elif leaf == "weight" and len(shape) in (2, 3):
            bound = 1.0 / np.sqrt(_fan_in(shape))
            value = rng.uniform(-bound, bound, shape)
        elif leaf == "bias" and owner + ".weight" in shapes:
            bound = 1.0 / np.sqrt(_fan_in(shapes[owner + ".weight"][0]))
            value = rng.uniform(-bound, bound, shape)
        else:
            raise ValueError(f"no initialisation rule for parameter {name!r} of shape {shape}")
        yield name, np.array(value, dtype=np.dtype(dtype), order="C")
