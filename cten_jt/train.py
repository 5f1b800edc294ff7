"""python -m cten_jt.train --config CONFIG.yaml [--set key=value ...] --out RUN_DIR
   python -m cten_jt.train --resume RUN_DIR

CTEN's training with temporal erasing on Jittor: ``cten_common.fit`` (the one
training loop and its command line) with the Jittor backend (``cten_jt.backend``).
``cten_torch_ref.train`` is the same loop on PyTorch.  RUN_DIR gets config.yaml
(resolved), metrics.jsonl (one line per epoch), last.safetensors and
best.safetensors, summary.json and curves.png; a run resumed after epoch k ends
with the same weights as an uninterrupted one.  Under ``mpirun -np N`` the ranks
train data-parallel (``cten_jt.distributed``).  ``--set train.features=BANK_DIR``
trains from a feature bank (``cten_jt.extract_features``; ``cten_common.data.bank``
says where it differs).  Exit codes: 0 done, 2 a bad configuration, bad data or a
failed write, 3 a non-finite loss.
"""
import functools
import sys

import cten_jt  # noqa: F401  (Jittor settings first)
from cten_common import fit
from cten_jt.backend import BACKEND


#: ``train(config, out, resume=False, progress=True, stop_after=None)``: ``cten_common.fit.fit`` on Jittor
train = functools.partial(fit.fit, backend=BACKEND)
#: the command (``main(argv)``): ``cten_common.fit.main`` on Jittor
main = functools.partial(fit.main, BACKEND)

if __name__ == "__main__":
    sys.exit(main())
