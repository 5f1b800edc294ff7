"""Pickles of weights, read by a restricted unpickler and written in Jittor's layout.

Jittor's ``.pkl`` (``jt.save``: a pickle, its sha1, a trailer) is read by an
unpickler that builds numpy arrays, dtypes, ``OrderedDict`` and builtin values
only (``PICKLE_ALLOWED_GLOBALS``); any other name (``os.system``, ``exec``, a
class) is refused before anything is called.  The opcodes are scanned first,
so a declared length beyond the file's end fails without allocating it.
PyTorch's zip reader (``torch_files``) unpickles its ``data.pkl`` the same way.
"""
import hashlib
import io
import pickle
import pickletools
from collections import OrderedDict

import numpy as np

from .atomic import atomic_write
from .errors import CheckpointError, Refused

JITTOR_TRAILER = b"HCAJSLHD"            # jt.save: pickle + sha1(pickle) + this


def _numpy_module(name):
    """numpy's ``core.<name>`` (numpy 1) or ``_core.<name>`` (numpy 2), whichever exists."""
    import importlib
    try:
        return importlib.import_module(f"numpy._core.{name}")
    except ImportError:
        return importlib.import_module(f"numpy.core.{name}")


def _reconstruct(cls, shape, dtype):
    """``numpy.core.multiarray._reconstruct``, for the empty ndarray that ``__setstate__``
    then fills (numpy pickles always pass shape ``(0,)``); anything else is refused."""
    if cls is not np.ndarray:
        raise Refused(f"_reconstruct of {cls!r}")
    if int(np.prod(shape)) != 0:
        raise pickle.UnpicklingError(f"_reconstruct of a non-empty shape {shape}")
    return _numpy_module("multiarray")._reconstruct(np.ndarray, (0,), dtype)


def _scalar(dtype, data=None):
    """``numpy.core.multiarray.scalar``: a numpy scalar from its dtype and bytes."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise Refused(f"scalar of dtype {dtype!r}")
    return _numpy_module("multiarray").scalar(dtype, data)


def _frombuffer(buffer, dtype, shape, order):
    """``numpy.core.numeric._frombuffer`` (pickle protocol 5, as ``jt.save`` writes)."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise Refused(f"_frombuffer of dtype {dtype!r}")
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order)


def _latin1_bytes(text, encoding="latin1"):
    """``_codecs.encode``, as pickle protocols 0-2 spell ``bytes``: latin-1 text only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise Refused(f"_codecs.encode to {encoding!r}")
    return text.encode("latin1")


def _empty_bytes(*args):
    """``bytes()``, as pickle protocols 0-2 spell ``b""`` (an empty array's data)."""
    if args:
        raise Refused(f"bytes{args!r:.40}")
    return b""


def _numpy_names(spelling):
    return {(f"{spelling}.multiarray", "_reconstruct"): _reconstruct,
            (f"{spelling}.multiarray", "scalar"): _scalar,
            (f"{spelling}.numeric", "_frombuffer"): _frombuffer}


# What a weights pickle may name, and what each name becomes.  A weights file
# holds numpy arrays (rebuilt by _reconstruct + ndarray.__setstate__, or by
# _frombuffer), numpy scalars and dtypes, OrderedDicts and builtin values; the
# latter (dict, list, tuple, str, bytes, int, float, bool, None) are pickle
# opcodes and need no name, except bytes in protocols 0-2 (``_codecs.encode``
# of latin-1 text, ``bytes()`` for b"").  numpy 2 spells numpy.core as numpy._core.  The rebuilding
# functions are this module's checked wrappers, not numpy's own.
PICKLE_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): OrderedDict,
    ("_codecs", "encode"): _latin1_bytes,
    ("__builtin__", "bytes"): _empty_bytes,
    ("builtins", "bytes"): _empty_bytes,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    **_numpy_names("numpy.core"),
    **_numpy_names("numpy._core"),
}


class WeightsUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves the names of ``allowed`` only; every other
    name raises before it is called.  Persistent ids go to ``storages`` (the
    PyTorch archive's reader) and are refused without one."""

    def __init__(self, file, allowed=None, storages=None):
        super().__init__(file)
        self.allowed = PICKLE_ALLOWED_GLOBALS if allowed is None else allowed
        self.storages = storages

    def find_class(self, module, name):
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise Refused(f"{module}.{name}") from None

    def persistent_load(self, pid):
        if self.storages is None:
            raise Refused(f"persistent id {str(pid)[:200]}")
        return self.storages(pid)


def _check_opcodes(data):
    """Walk the pickle's opcodes without building anything: a truncated stream or a
    length that points past the end fails here, before any allocation of that size."""
    try:
        for _ in pickletools.genops(data):
            pass
    except Exception as exc:  # noqa: BLE001 - pickletools raises ValueError and others
        raise pickle.UnpicklingError(f"damaged pickle ({exc})") from None


def unpickle_weights(data, allowed=None, persistent_load=None):
    """The object of one pickle ``data`` (bytes), built by ``WeightsUnpickler``."""
    _check_opcodes(data)
    return WeightsUnpickler(io.BytesIO(data), allowed, persistent_load).load()


def read_pickle(path):
    """A Jittor ``.pkl`` (``jt.save``: pickle + sha1 + trailer, or a plain pickle)."""
    with open(path, "rb") as f:
        data = f.read()
    if data.endswith(JITTOR_TRAILER) and len(data) >= 28:
        body, digest = data[:-28], data[-28:-8]
        if hashlib.sha1(body).digest() != digest:
            raise CheckpointError(f"{path}: damaged Jittor file: its sha1 checksum does not match")
        data = body
    return unpickle_weights(data)


def save_pickle_weights(path, arrays):
    """``{name: ndarray}`` in Jittor's ``jt.save`` layout (pickle protocol 4, its sha1,
    the trailer): for Jittor's own ``Module.load``.  Written on request only."""
    body = pickle.dumps({k: np.asarray(v) for k, v in arrays.items()}, protocol=4)
    with atomic_write(path) as f:
        f.write(body + hashlib.sha1(body).digest() + JITTOR_TRAILER)
