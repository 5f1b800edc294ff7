"""PyTorch's checkpoint files, read without running code from them.

* **zip** (``.pth``/``.pt`` since PyTorch 1.6): ``torch.load(...,
  weights_only=True)`` where PyTorch is installed; otherwise our own reader of
  the archive (``data.pkl`` + ``data/<key>`` storages), whose unpickler
  (``pickle_io``) maps PyTorch's tensor-rebuilding names onto numpy functions
  of this module: no callable is ever imported from ``torch``.
* **legacy** (``torch.save(..., _use_new_zipfile_serialization=False)``):
  ``torch.load(..., weights_only=True)`` where PyTorch is installed; refused
  with a message otherwise.
"""
import io
import pickle
import zipfile

import numpy as np

from .errors import CheckpointError, Refused, UnsafeFileError
from .pickle_io import PICKLE_ALLOWED_GLOBALS, WeightsUnpickler, unpickle_weights

# a deflated zip entry expands at most ~1032x; a larger declared ratio is a lie (or a bomb)
MAX_ZIP_RATIO = 1100
TORCH_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c


class _TorchDtype:
    """A ``torch.<dtype>`` or ``torch.<Type>Storage`` name: a numpy dtype name, no torch."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"torch dtype {self.name}"


# torch dtype / storage type names -> numpy dtype names ("bfloat16": read as uint16)
TORCH_DTYPES = {
    "float32": "float32", "float": "float32", "float64": "float64", "double": "float64",
    "float16": "float16", "half": "float16", "bfloat16": "bfloat16",
    "int64": "int64", "long": "int64", "int32": "int32", "int": "int32",
    "int16": "int16", "short": "int16", "int8": "int8", "uint8": "uint8", "bool": "bool",
}
TORCH_STORAGES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
    "UntypedStorage": "uint8",
}


def _numpy_dtype(name):
    return np.dtype(np.uint16 if name == "bfloat16" else name)


class _Storage:
    """A storage read from the archive: flat numpy array of its dtype."""

    def __init__(self, array, dtype_name):
        self.array, self.dtype_name = array, dtype_name


def _ints(values, what):
    if not isinstance(values, (tuple, list)) or not all(isinstance(v, int) and v >= 0 for v in values):
        raise pickle.UnpicklingError(f"tensor {what} {values!r} is not a tuple of non-negative ints")
    return tuple(values)


def _tensor(storage, offset, size, stride, dtype_name=None):
    """The tensor ``storage[offset]`` with ``size`` and ``stride`` (in elements), copied
    into its own C-contiguous array; a view that reaches outside the storage is refused."""
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError(f"tensor storage is {type(storage).__name__}, not a storage")
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    if len(size) != len(stride) or not isinstance(offset, int) or offset < 0:
        raise pickle.UnpicklingError(f"tensor size {size}, stride {stride}, offset {offset!r} do not fit")
    dtype_name = dtype_name or storage.dtype_name
    flat = storage.array
    if flat.dtype != _numpy_dtype(dtype_name):          # an untyped storage (_rebuild_tensor_v3)
        dtype = _numpy_dtype(dtype_name)
        if flat.nbytes % dtype.itemsize:
            raise pickle.UnpicklingError(f"storage of {flat.nbytes} bytes is no array of {dtype_name}")
        flat = flat.view(dtype)
    if 0 in size:
        out = np.zeros(size, flat.dtype)
    else:
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= flat.size:
            raise pickle.UnpicklingError(f"tensor view (offset {offset}, size {size}, stride {stride}) "
                                         f"reaches element {last} of a storage of {flat.size}")
        view = np.lib.stride_tricks.as_strided(flat[offset:], shape=size,
                                               strides=[s * flat.itemsize for s in stride], writeable=False)
        out = np.array(view, order="C")
    if dtype_name == "bfloat16":                          # numpy has none: widened exactly to float32
        out = (out.astype(np.uint32) << 16).view(np.float32)
    return out


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    return _tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype,
                       metadata=None):
    if not isinstance(dtype, _TorchDtype):
        raise pickle.UnpicklingError(f"tensor dtype {dtype!r}")
    return _tensor(storage, storage_offset, size, stride, dtype.name)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    if not isinstance(data, np.ndarray):
        raise pickle.UnpicklingError(f"parameter of {type(data).__name__}")
    return data


# The names a PyTorch zip's data.pkl may use besides PICKLE_ALLOWED_GLOBALS: the
# tensor-rebuilding functions, mapped to the numpy functions above, and dtype and
# storage type names, mapped to markers.  Nothing is imported from torch.
TORCH_ALLOWED_GLOBALS = {
    **PICKLE_ALLOWED_GLOBALS,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    **{("torch", name): _TorchDtype(dtype) for name, dtype in TORCH_STORAGES.items()},
    **{("torch", name): _TorchDtype(dtype) for name, dtype in TORCH_DTYPES.items()},
}


def _zip_entry(archive, info, expected_size=None):
    if expected_size is not None and info.file_size != expected_size:
        raise CheckpointError(f"entry {info.filename} holds {info.file_size} bytes, its tensor "
                              f"declares {expected_size}")
    if info.file_size > MAX_ZIP_RATIO * max(info.compress_size, 1) + 2 ** 16:
        raise CheckpointError(f"entry {info.filename} declares {info.file_size} bytes from "
                              f"{info.compress_size} compressed")
    return archive.read(info)


def read_torch_zip(path):
    """A PyTorch zip checkpoint (``archive/data.pkl`` + ``archive/data/<key>``) as
    numpy arrays in its containers, without PyTorch."""
    with zipfile.ZipFile(path) as archive:
        infos = {info.filename: info for info in archive.infolist()}
        pickles = [name for name in infos if name.endswith("data.pkl") and name.count("/") == 1]
        if len(pickles) != 1:
            raise CheckpointError(f"{path}: a zip, but not a PyTorch checkpoint (no archive/data.pkl)")
        prefix = pickles[0][:-len("data.pkl")]
        order = infos.get(prefix + "byteorder")
        byteorder = _zip_entry(archive, order).decode() if order else "little"
        if byteorder not in ("little", "big"):
            raise CheckpointError(f"{path}: byteorder {byteorder!r}")
        storages = {}

        def persistent_load(pid):
            if (not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage"
                    or not isinstance(pid[1], _TorchDtype) or not isinstance(pid[2], str)
                    or not isinstance(pid[4], int) or pid[4] < 0):
                raise Refused(f"persistent id {str(pid)[:200]}")
            _, kind, key, _location, numel = pid
            if key not in storages:
                dtype = _numpy_dtype(kind.name).newbyteorder("<" if byteorder == "little" else ">")
                info = infos.get(f"{prefix}data/{key}")
                if info is None:
                    raise CheckpointError(f"storage {key} is missing from the archive")
                raw = _zip_entry(archive, info, numel * dtype.itemsize)
                array = np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="), copy=False)
                storages[key] = _Storage(array, kind.name)
            return storages[key]

        data = _zip_entry(archive, infos[pickles[0]])
        return unpickle_weights(data, TORCH_ALLOWED_GLOBALS, persistent_load)


def _read_with_torch(path, torch):
    """``torch.load(weights_only=True)``; its refusals become ``UnsafeFileError``."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "Weights only load failed" not in text:
            raise
        lines = [ln.strip() for ln in text.splitlines() if "GLOBAL" in ln or "Unsupported" in ln]
        raise UnsafeFileError(f"{path}: refuses to load it: PyTorch's weights-only loader says: "
                              f"{lines[0] if lines else text.splitlines()[0]}; nothing was run") from None


def _torch_or_none():
    try:
        import torch
    except ImportError:
        return None
    return torch


def is_torch_legacy(head):
    """Whether ``head`` (the first bytes) starts with a pickle of PyTorch's legacy magic number."""
    try:
        return WeightsUnpickler(io.BytesIO(head), allowed={}).load() == TORCH_LEGACY_MAGIC
    except Exception:  # noqa: BLE001 - anything else is not that pickle
        return False


def read_torch_legacy(path):
    """A PyTorch legacy (pre-1.6, non-zip) checkpoint, through ``torch.load(weights_only=True)``;
    refused with a message where PyTorch is not installed."""
    torch = _torch_or_none()
    if torch is None:
        raise CheckpointError(f"{path}: a PyTorch checkpoint in the legacy (pre-1.6, non-zip) format, "
                              "which is read only with PyTorch installed (torch.load(weights_only=True)); "
                              "install PyTorch, or re-save it with a recent torch.save")
    return _read_with_torch(path, torch)


def read_torch_file(path):
    """A PyTorch zip checkpoint: ``torch.load(weights_only=True)`` where PyTorch is
    installed (torch tensors), else ``read_torch_zip`` (numpy arrays)."""
    torch = _torch_or_none()
    return read_torch_zip(path) if torch is None else _read_with_torch(path, torch)
