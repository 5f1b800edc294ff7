"""safetensors files: the header checked before anything is read, and ours written.

Our weights (``save_weights_file``) and run checkpoints (``save_checkpoint_file``)
are safetensors (``safetensors.numpy``, no framework needed to read them):

* weights: ``{"format": "cten-weights", "model": <model config as JSON>}`` in
  the metadata;
* a run checkpoint: one file whose arrays are the nested dict's arrays under
  ``a/b/c`` keys (``model/<name>``, ``optimizer/m/<name>``, ...) and whose
  metadata holds the rest as JSON (``"state"``), so one ``os.replace``
  publishes both together.

Reading checks the header first (its length against the file, every tensor's
dtype, size and offsets, ``safetensors_header``), so a lying header gives a
clear error in bounded memory; then each array is read straight into a numpy array of
its own (``read_safetensors``: not through ``safetensors.numpy``, whose reader maps the
file, so that its pages sit in the resident set beside the copies: twice the file at the
peak, 1.07 GB for the paper's 540 MB of weights).  Writes are atomic (``atomic.atomic_path``)
and go through ``safetensors.numpy``.
"""
import json
import os
import struct
from collections import OrderedDict

import numpy as np

from .atomic import atomic_path
from .errors import CheckpointError

WEIGHTS_FORMAT = "cten-weights"          # safetensors metadata "format" of model weights
CHECKPOINT_FORMAT = "cten-checkpoint"    # ... and of a run checkpoint (arrays + JSON "state")
FORMAT_VERSION = "1"
TREE_SEPARATOR = "/"                     # "model/fc.weight", "optimizer/m/fc.weight"

MAX_SAFETENSORS_HEADER = 100 * 2 ** 20   # the format's own readers refuse larger headers too

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


def _read_tensor(f, data_start, info, where):
    """One tensor of a checked safetensors file (``f`` open on it), read into an array of
    its own; BF16 as float32 (numpy has no bfloat16)."""
    dtype = stored_dtype(info["dtype"], where).newbyteorder("<")     # the format is little-endian
    array = np.empty(info["shape"], dtype)
    begin, end = info["data_offsets"]
    if end > begin:
        f.seek(data_start + begin)
        if f.readinto(memoryview(array.reshape(-1)).cast("B")) != end - begin:
            raise CheckpointError(f"{where}: the file ends inside the tensor's bytes")
    array = array.astype(dtype.newbyteorder("="), copy=False)
    return widen_bf16(array) if info["dtype"] == "BF16" else array


def stored_dtype(dtype, where):
    """The numpy dtype of a tensor stored as safetensors ``dtype`` (``"F32"``, ...); a
    ``CheckpointError`` that starts with ``where`` for a dtype numpy cannot read."""
    if dtype not in SAFETENSORS_DTYPES:
        raise CheckpointError(f"{where}: dtype {dtype!r} is not readable as numpy "
                              f"(known: {sorted(SAFETENSORS_DTYPES)})")
    return np.dtype(SAFETENSORS_DTYPES[dtype])


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
        itemsize = stored_dtype(dtype, where).itemsize
        shape, offsets = info["shape"], info["data_offsets"]
        if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
            raise CheckpointError(f"{where}: shape {shape!r} is not a list of non-negative ints")
        if not (isinstance(offsets, list) and len(offsets) == 2
                and all(type(o) is int for o in offsets) and 0 <= offsets[0] <= offsets[1] <= data_size):
            raise CheckpointError(f"{where}: byte range {offsets!r} is outside the {data_size} bytes of data")
        nbytes = int(np.prod(shape, dtype=object)) * itemsize
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
    header, metadata = safetensors_header(path)
    arrays = OrderedDict()
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        for name, info in header.items():
            arrays[name] = _read_tensor(f, 8 + n, info, f"{path}: tensor {name!r}")
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


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _json(value):
    return json.dumps(value, default=_json_default, allow_nan=True)


def _is_array(value):
    return isinstance(value, np.ndarray)


def flatten_tree(tree, prefix=""):
    """``(arrays {"a/b/c": ndarray}, rest)`` of a nested dict: every array leaves the tree
    under its path; ``rest`` keeps everything else (dicts left empty by that vanish)."""
    arrays, rest = {}, {}
    for key, value in tree.items():
        if not isinstance(key, str) or TREE_SEPARATOR in key:
            raise ValueError(f"checkpoint key {prefix}{key!r}: keys are strings without "
                             f"{TREE_SEPARATOR!r}")
        if _is_array(value):
            arrays[prefix + key] = value
        elif isinstance(value, dict):
            sub_arrays, sub_rest = flatten_tree(value, prefix + key + TREE_SEPARATOR)
            arrays.update(sub_arrays)
            if sub_rest or not sub_arrays:
                rest[key] = sub_rest
        else:
            rest[key] = value
    return arrays, rest


def _save_safetensors(path, arrays, metadata):
    import safetensors.numpy as st_numpy

    tensors = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    with atomic_path(path) as tmp:
        st_numpy.save_file(tensors, tmp, metadata=metadata)


def save_weights_file(path, arrays, model_config=None):
    """Model weights ``{name: ndarray}`` as safetensors, with the model configuration
    (a dict, stored as JSON under ``"model"``) in the metadata."""
    metadata = {"format": WEIGHTS_FORMAT, "format_version": FORMAT_VERSION}
    if model_config is not None:
        metadata["model"] = _json(model_config)
    _save_safetensors(path, arrays, metadata)


def save_checkpoint_file(path, tree, model_config=None):
    """A run checkpoint (a nested dict of arrays and JSON values) as one safetensors
    file: arrays under their ``a/b/c`` path, the rest as JSON in the metadata."""
    arrays, rest = flatten_tree(tree)
    metadata = {"format": CHECKPOINT_FORMAT, "format_version": FORMAT_VERSION, "state": _json(rest)}
    if model_config is not None:
        metadata["model"] = _json(model_config)
    _save_safetensors(path, arrays, metadata)
