"""Readers of every weights and checkpoint format that never run code from the file.

Every file the project reads goes through ``read_checkpoint`` (weights, run
checkpoints, pretrained backbones, converters' sources).  The format is told by
the file's first bytes, not its name (a ``.safetensors`` name always means
safetensors):

* **safetensors** (ours; weights and run checkpoints): the header is checked
  here first (its length against the file, every tensor's dtype, size and
  offsets), so a lying header gives a clear error in bounded memory, then the
  arrays are read with ``safetensors.numpy``.  A run checkpoint's non-array
  part is JSON in the metadata (``CHECKPOINT_FORMAT``).
* **pickle** (Jittor's ``.pkl``): a restricted unpickler that builds numpy
  arrays, dtypes, ``OrderedDict`` and builtin values only
  (``PICKLE_ALLOWED_GLOBALS``); any other name (``os.system``, ``exec``, a
  class) is refused before anything is called.  The opcodes are scanned first,
  so a declared length beyond the file's end fails without allocating it.
* **PyTorch zip** (``.pth``/``.pt`` since PyTorch 1.6): ``torch.load(...,
  weights_only=True)`` where PyTorch is installed; otherwise our own reader of
  the archive (``data.pkl`` + ``data/<key>`` storages), whose unpickler maps
  PyTorch's tensor-rebuilding names onto numpy functions of this module: no
  callable is ever imported from ``torch``.
* **PyTorch legacy** (``torch.save(..., _use_new_zipfile_serialization=False)``):
  ``torch.load(..., weights_only=True)`` where PyTorch is installed; refused
  with a message otherwise.

A file that would run code raises ``UnsafeFileError``; a damaged or foreign one
``CheckpointError``; both are ``ValueError`` and name the file.
"""
import hashlib
import io
import json
import os
import pickle
import pickletools
import struct
import zipfile
from collections import OrderedDict

import numpy as np

WEIGHTS_FORMAT = "cten-weights"          # safetensors metadata "format" of model weights
CHECKPOINT_FORMAT = "cten-checkpoint"    # ... and of a run checkpoint (arrays + JSON "state")
FORMAT_VERSION = "1"
TREE_SEPARATOR = "/"                     # "model/fc.weight", "optimizer/m/fc.weight"

MAX_SAFETENSORS_HEADER = 100 * 2 ** 20   # the format's own readers refuse larger headers too
# a deflated zip entry expands at most ~1032x; a larger declared ratio is a lie (or a bomb)
MAX_ZIP_RATIO = 1100
JITTOR_TRAILER = b"HCAJSLHD"            # jt.save: pickle + sha1(pickle) + this
TORCH_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file."""


class UnsafeFileError(CheckpointError):
    """A file whose loading would call something other than array constructors."""


# ---------------------------------------------------------------------------
# the restricted unpickler


def _numpy_module(name):
    """numpy's ``core.<name>`` (numpy 1) or ``_core.<name>`` (numpy 2), whichever exists."""
    import importlib
    try:
        return importlib.import_module(f"numpy._core.{name}")
    except ImportError:
        return importlib.import_module(f"numpy.core.{name}")


class _Refused(pickle.UnpicklingError):
    def __init__(self, what):
        super().__init__(what)
        self.what = what


def _reconstruct(cls, shape, dtype):
    """``numpy.core.multiarray._reconstruct``, for the empty ndarray that ``__setstate__``
    then fills (numpy pickles always pass shape ``(0,)``); anything else is refused."""
    if cls is not np.ndarray:
        raise _Refused(f"_reconstruct of {cls!r}")
    if int(np.prod(shape)) != 0:
        raise pickle.UnpicklingError(f"_reconstruct of a non-empty shape {shape}")
    return _numpy_module("multiarray")._reconstruct(np.ndarray, (0,), dtype)


def _scalar(dtype, data=None):
    """``numpy.core.multiarray.scalar``: a numpy scalar from its dtype and bytes."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise _Refused(f"scalar of dtype {dtype!r}")
    return _numpy_module("multiarray").scalar(dtype, data)


def _frombuffer(buffer, dtype, shape, order):
    """``numpy.core.numeric._frombuffer`` (pickle protocol 5, as ``jt.save`` writes)."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise _Refused(f"_frombuffer of dtype {dtype!r}")
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order)


def _latin1_bytes(text, encoding="latin1"):
    """``_codecs.encode``, as pickle protocols 0-2 spell ``bytes``: latin-1 text only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused(f"_codecs.encode to {encoding!r}")
    return text.encode("latin1")


def _empty_bytes(*args):
    """``bytes()``, as pickle protocols 0-2 spell ``b""`` (an empty array's data)."""
    if args:
        raise _Refused(f"bytes{args!r:.40}")
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
            raise _Refused(f"{module}.{name}") from None

    def persistent_load(self, pid):
        if self.storages is None:
            raise _Refused(f"persistent id {str(pid)[:200]}")
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


def _refusal(path, exc):
    return UnsafeFileError(f"{path}: refuses to load {exc.what}: a weights file holds arrays only "
                           "(numpy arrays, numbers, strings, dicts, lists); nothing was run")


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


# ---------------------------------------------------------------------------
# PyTorch's formats without PyTorch


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
                raise _Refused(f"persistent id {str(pid)[:200]}")
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


# ---------------------------------------------------------------------------
# safetensors

# safetensors dtype names -> numpy (the float8s have none; refused with a message).  BF16
# has none either: its 2-byte values are read as uint16 and widened exactly to float32
# (``widen_bf16``), so a bf16 checkpoint loads into a float32 model
SAFETENSORS_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16, "I64": np.int64,
    "I32": np.int32, "I16": np.int16, "I8": np.int8, "U64": np.uint64, "U32": np.uint32,
    "U16": np.uint16, "U8": np.uint8, "BOOL": np.bool_,
}


def widen_bf16(bits):
    """float32 array of the bfloat16 values whose bit patterns ``bits`` (uint16) hold: exact
    (a bfloat16 is a float32 with its low 16 bits zero)."""
    return (np.asarray(bits, np.uint16).astype(np.uint32) << 16).view(np.float32)


def _read_bf16(path, info):
    """One BF16 tensor of a checked safetensors file, as float32."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        begin, end = info["data_offsets"]
        f.seek(8 + n + begin)
        raw = f.read(end - begin)
    return widen_bf16(np.frombuffer(raw, "<u2")).reshape(info["shape"])


def safetensors_header(path):
    """The checked header of a safetensors file: ``(tensors {name: info}, metadata)``.

    Refused: a header length beyond the file or ``MAX_SAFETENSORS_HEADER``, a header
    that is not a JSON object, an unknown dtype, a shape whose size differs from its
    byte range, a byte range outside the data or overlapping another.  Reads the
    header only, so a lying file costs no more memory than its header."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: not a safetensors file: {size} bytes, no header length")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8 or n > MAX_SAFETENSORS_HEADER:
            raise CheckpointError(f"{path}: safetensors header declares {n} bytes; the file has "
                                  f"{size - 8} after the length (limit {MAX_SAFETENSORS_HEADER})")
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except ValueError as exc:
        raise CheckpointError(f"{path}: safetensors header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(f"{path}: safetensors metadata must map strings to strings")
    data_size, ranges = size - 8 - n, []
    for name, info in header.items():
        where = f"{path}: tensor {name!r}"
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise CheckpointError(f"{where}: entry needs exactly dtype, shape, data_offsets")
        dtype = info["dtype"]
        if dtype not in SAFETENSORS_DTYPES:
            raise CheckpointError(f"{where}: dtype {dtype!r} is not readable as numpy "
                                  f"(known: {sorted(SAFETENSORS_DTYPES)})")
        shape, offsets = info["shape"], info["data_offsets"]
        if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
            raise CheckpointError(f"{where}: shape {shape!r} is not a list of non-negative ints")
        if not (isinstance(offsets, list) and len(offsets) == 2
                and all(type(o) is int for o in offsets) and 0 <= offsets[0] <= offsets[1] <= data_size):
            raise CheckpointError(f"{where}: byte range {offsets!r} is outside the {data_size} bytes of data")
        nbytes = int(np.prod(shape, dtype=object)) * np.dtype(SAFETENSORS_DTYPES[dtype]).itemsize
        if nbytes != offsets[1] - offsets[0]:
            raise CheckpointError(f"{where}: shape {shape} of {dtype} needs {nbytes} bytes, its byte "
                                  f"range holds {offsets[1] - offsets[0]}")
        ranges.append((offsets[0], offsets[1], name))
    ranges.sort()
    for (_, end, a), (begin, _, b) in zip(ranges, ranges[1:]):
        if begin < end:
            raise CheckpointError(f"{path}: tensors {a!r} and {b!r} overlap")
    return header, metadata


def read_safetensors(path):
    """``(arrays {name: ndarray} in the header's order, metadata {str: str})``."""
    from safetensors import safe_open

    header, metadata = safetensors_header(path)
    arrays = OrderedDict()
    with safe_open(path, framework="np") as f:
        for name, info in header.items():
            arrays[name] = _read_bf16(path, info) if info["dtype"] == "BF16" else f.get_tensor(name)
    return arrays, metadata


def unflatten_tree(arrays, state):
    """A run checkpoint's nested dict: ``state`` (JSON) with every ``a/b/c`` array put
    at ``tree[a][b][c]``."""
    tree = state
    for key, value in arrays.items():
        *parents, leaf = key.split(TREE_SEPARATOR)
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise CheckpointError(f"array {key!r} sits below a non-dict value")
        node[leaf] = value
    return tree


def read_safetensors_checkpoint(path):
    """Our weights (a flat ``{name: array}``) or run checkpoint (the nested dict that was
    saved), or any other safetensors file (flat)."""
    arrays, metadata = read_safetensors(path)
    if metadata.get("format") != CHECKPOINT_FORMAT:
        return arrays
    try:
        state = json.loads(metadata["state"])
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{path}: run checkpoint without a readable state ({exc})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: run checkpoint state is not a JSON object")
    return unflatten_tree(arrays, state)


def read_model_config(path):
    """The ``model`` configuration (dict) that our safetensors files carry, or None."""
    _, metadata = safetensors_header(os.fspath(path))
    return json.loads(metadata["model"]) if "model" in metadata else None


# ---------------------------------------------------------------------------
# dispatch


FORMAT_NAMES = {"safetensors": "a safetensors file", "pickle": "a pickle (Jittor .pkl)",
                "torch-zip": "a PyTorch zip checkpoint", "torch-legacy": "a PyTorch legacy checkpoint"}


def _is_torch_legacy(head):
    """Whether ``head`` (the first bytes) starts with a pickle of PyTorch's legacy magic number."""
    try:
        return WeightsUnpickler(io.BytesIO(head), allowed={}).load() == TORCH_LEGACY_MAGIC
    except Exception:  # noqa: BLE001 - anything else is not that pickle
        return False


def sniff_format(path):
    """``"safetensors"``, ``"torch-zip"``, ``"torch-legacy"`` or ``"pickle"``, from the
    first bytes (``.safetensors`` names are always read as safetensors)."""
    with open(path, "rb") as f:
        head = f.read(64)
    if str(path).endswith(".safetensors"):
        return "safetensors"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "torch-zip"
    if len(head) > 8 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] <= os.path.getsize(path):
        return "safetensors"
    if _is_torch_legacy(head):
        return "torch-legacy"
    return "pickle"


def _read_torch_legacy(path):
    torch = _torch_or_none()
    if torch is None:
        raise CheckpointError(f"{path}: a PyTorch checkpoint in the legacy (pre-1.6, non-zip) format, "
                              "which is read only with PyTorch installed (torch.load(weights_only=True)); "
                              "install PyTorch, or re-save it with a recent torch.save")
    return _read_with_torch(path, torch)


def _read_torch_zip(path):
    torch = _torch_or_none()
    return read_torch_zip(path) if torch is None else _read_with_torch(path, torch)


READERS = {"safetensors": read_safetensors_checkpoint, "pickle": read_pickle,
           "torch-zip": _read_torch_zip, "torch-legacy": _read_torch_legacy}


def read_checkpoint(path):
    """The object stored in a weights or checkpoint file, built without running any code
    from it: numpy arrays (torch tensors where PyTorch read the file) in dicts, lists
    and builtin values.  Errors name the file and what was refused or damaged."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file")
    kind = sniff_format(path)
    try:
        return READERS[kind](path)
    except _Refused as exc:
        raise _refusal(path, exc) from None
    except CheckpointError as exc:
        if str(exc).startswith(path):
            raise
        raise CheckpointError(f"{path}: {exc}") from None
    except MemoryError:
        raise CheckpointError(f"{path}: declares more data than fits in memory; damaged?") from None
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file
        raise CheckpointError(f"{path}: cannot be read as {FORMAT_NAMES[kind]}: "
                              f"{type(exc).__name__}: {exc}") from None


# ---------------------------------------------------------------------------
# run folders

RUN_CHECKPOINT_EXT = ".safetensors"
LEGACY_RUN_CHECKPOINT_EXT = ".pkl"       # runs trained before the safetensors format


def run_checkpoint_path(run_dir, which="last"):
    """Where a run's ``last`` or ``best`` checkpoint is written."""
    return os.path.join(os.fspath(run_dir), which + RUN_CHECKPOINT_EXT)


def find_run_checkpoint(run_dir, which="last"):
    """The run's ``which`` checkpoint to read: ``<which>.safetensors``, else an older
    run's ``<which>.pkl``; None if neither exists."""
    for ext in (RUN_CHECKPOINT_EXT, LEGACY_RUN_CHECKPOINT_EXT):
        path = os.path.join(os.fspath(run_dir), which + ext)
        if os.path.isfile(path):
            return path
    return None


RUN_CHECKPOINT_KEYS = ("model", "optimizer", "epoch", "config", "best", "classes")


def read_run_checkpoint(path):
    """A run checkpoint (``cten_jt.train``'s last/best, either format) as its dict;
    refused with a message if it lacks what resuming needs."""
    ckpt = read_checkpoint(path)
    missing = [k for k in RUN_CHECKPOINT_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: not a run checkpoint (lacks {missing})")
    return ckpt
