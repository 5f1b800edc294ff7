"""Mixed precision: the names, the casting policy, and fp16's loss scaling.

One policy for both frameworks (``docs/precision.md``):

==============  =================================================================
precision       what runs in low precision
==============  =================================================================
``fp32``        nothing: float32 throughout, today's exact parity (the default)
``bf16``        convolutions, matrix products (linear layers) and the attention's
                two products: operands rounded to bfloat16, products accumulated
                in float32, each result rounded to bfloat16 (``torch.autocast``'s
                rule); CPU (native with AVX-512 BF16 / AMX, emulated below) and GPU
``fp16``        the same in float16, with dynamic loss scaling; GPU only
``tf32``        float32 arrays, convolutions and matrix products on the tensor
                cores' TF32; GPU only
==============  =================================================================

Everything else stays float32 in every precision: BatchNorm (statistics and
output), softmax, tanh and ReLU, pooling, the residual sums, the loss and the
optimiser; the master weights are float32, so a checkpoint is float32 and
interchangeable with a float32 run's.  The gradients follow the same rule (a
low-precision product's gradients are low-precision products).

This module needs no framework: ``cten_jt.precision`` and
``cten_torch_ref.precision`` apply the policy.
"""
import math

PRECISIONS = ("fp32", "bf16", "fp16", "tf32")
#: precisions that need a CUDA GPU
GPU_ONLY = ("fp16", "tf32")
#: precisions whose products round to a 16-bit format (the rest compute in float32 arrays)
LOW = ("bf16", "fp16")


def check_precision(precision, where="precision"):
    """``precision`` if it is one of ``PRECISIONS``; else a ValueError naming ``where``."""
    if precision not in PRECISIONS:
        raise ValueError(f"{where} must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    return precision


def check_device(precision, on_gpu, where="precision"):
    """A ValueError when ``precision`` needs a GPU and ``on_gpu`` is False."""
    check_precision(precision, where)
    if precision in GPU_ONLY and not on_gpu:
        raise ValueError(f"{where}={precision} runs on a CUDA GPU only; on the CPU use bf16 "
                         "(or fp32)")
    return precision


def add_precision_option(parser):
    """``--precision`` for a command: the run configuration's ``train.precision`` unless given."""
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="what the model computes in (default: the config's train.precision, fp32); "
                             "bf16 on CPU and GPU, fp16 and tf32 on a GPU; docs/precision.md")


def apply_precision_option(config, precision):
    """``config`` (a ``RunConfig``) with ``train.precision`` set from a ``--precision`` value
    (None: ``config`` as it is)."""
    if precision is None:
        return config
    return config.updated({"train": {"precision": check_precision(precision, "--precision")}})


class DynamicLossScaler:
    """fp16's dynamic loss scaling (the rule of ``torch.cuda.amp.GradScaler``).

    The loss is multiplied by ``scale`` before the backward; the gradients are
    divided by it before the step.  A step whose gradients hold an inf or NaN is
    skipped and the scale halves; after ``growth_interval`` good steps in a row
    it doubles.  Plain numbers only: each framework's trainer calls ``update``
    with whether its gradients were finite.
    """

    def __init__(self, init_scale=2.0 ** 16, growth_factor=2.0, backoff_factor=0.5, growth_interval=2000):
        if not (init_scale > 0 and growth_factor > 1 and 0 < backoff_factor < 1 and growth_interval >= 1):
            raise ValueError("DynamicLossScaler: init_scale > 0, growth_factor > 1, 0 < backoff_factor < 1 "
                             "and growth_interval >= 1")
        self.scale = float(init_scale)
        self.growth_factor, self.backoff_factor = float(growth_factor), float(backoff_factor)
        self.growth_interval = int(growth_interval)
        self.good_steps = 0
        self.skipped = 0

    def update(self, grads_finite):
        """Record one step; returns True when the step may be taken (finite gradients)."""
        if not grads_finite:
            self.scale *= self.backoff_factor
            self.good_steps = 0
            self.skipped += 1
            return False
        self.good_steps += 1
        if self.good_steps >= self.growth_interval:
            grown = self.scale * self.growth_factor
            if math.isfinite(grown):
                self.scale = grown
            self.good_steps = 0
        return True

    def state_dict(self):
        return {"scale": self.scale, "good_steps": self.good_steps, "skipped": self.skipped}

    def load_state_dict(self, state):
        """The state of ``state_dict``; ValueError (the scaler unchanged) unless it holds a
        finite scale > 0 and counts >= 0."""
        try:
            scale, good, skipped = float(state["scale"]), int(state["good_steps"]), int(state.get("skipped", 0))
        except (KeyError, TypeError, ValueError, AttributeError):
            scale = good = skipped = None
        if scale is None or not (math.isfinite(scale) and scale > 0 and good >= 0 and skipped >= 0):
            raise ValueError(f"loss_scaler must hold a finite scale > 0 and counts >= 0, got {state!r}")
        self.scale, self.good_steps, self.skipped = scale, good, skipped
