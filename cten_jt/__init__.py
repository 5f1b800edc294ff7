"""CTEN in Jittor.

Importing this package chooses Jittor's settings (``cten_jt._environment``)
before Jittor itself is imported, so nothing needs to be set by hand.
"""
import sys as _sys
import time as _time

from . import _environment

_environment.configure()
_announced, _began = _environment.announce_core_compile(_sys.stderr), _time.time()

import jittor  # noqa: E402,F401  (after configure)

if _announced:
    print(f"cten_jt: Jittor's core compiled in {_time.time() - _began:.0f} s", file=_sys.stderr, flush=True)

from .checkpoint import load_weights, save_weights  # noqa: E402
from .models.state import state_arrays  # noqa: E402

__all__ = ["load_weights", "save_weights", "state_arrays"]
