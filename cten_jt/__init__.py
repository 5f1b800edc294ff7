"""CTEN in Jittor.

Importing this package chooses Jittor's settings (``cten_jt._environment``)
before Jittor itself is imported, so nothing needs to be set by hand.
"""
from . import _environment

_environment.configure()

import jittor  # noqa: E402,F401  (after configure)

from .checkpoint import load_weights, save_weights, state_arrays  # noqa: E402

__all__ = ["load_weights", "save_weights", "state_arrays"]
