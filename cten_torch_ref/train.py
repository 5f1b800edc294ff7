"""python -m cten_torch_ref.train --config CONFIG.yaml [--set key=value ...] --out RUN_DIR
   python -m cten_torch_ref.train --resume RUN_DIR

The same training as ``cten_jt.train`` in PyTorch: ``cten_common.fit`` with the
PyTorch backend (``cten_torch_ref.backend``), so that the two frameworks train
with the same loop, config files, data, batch order, sampling, erasing, seeds per
epoch and initial weights (benchmarks/training_parity.py).  RUN_DIR gets what
cten_jt.train writes there, in the same layout; ``--resume RUN_DIR`` continues a
run, and a run resumed after epoch k ends with the same weights as a straight one.

Every key of ``cten_common.config.DEFAULTS`` is honoured, except what the backend
declares: its missing ``capabilities`` (``train.features``, ``train.sync_bn``: a value
other than the default is refused before anything runs) and its ``no_op`` keys
(``train.kernels``: Jittor's way of computing the same step; accepted, nothing to do).
"""
import functools
import sys

from cten_common import fit
from cten_torch_ref.backend import BACKEND


#: ``train(config, out, resume=False, progress=True, stop_after=None)``: ``cten_common.fit.fit`` on PyTorch
train = functools.partial(fit.fit, backend=BACKEND)
#: the command (``main(argv)``): ``cten_common.fit.main`` on PyTorch
main = functools.partial(fit.main, BACKEND)

if __name__ == "__main__":
    sys.exit(main())
