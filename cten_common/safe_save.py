"""Writers of our files: pickle-free, atomic, and losing nothing when a write fails.

* Weights: ``save_weights_file`` writes safetensors (``safetensors.numpy``, no
  framework needed to read them) with ``{"format": "cten-weights", "model":
  <model config as JSON>}`` in the metadata; ``.pkl`` is written on request
  only (``save_pickle_weights``, Jittor's own layout for ``Module.load``).
* Run checkpoints: ``save_checkpoint_file`` writes one safetensors file whose
  arrays are the nested dict's arrays under ``a/b/c`` keys (``model/<name>``,
  ``optimizer/m/<name>``, ...) and whose metadata holds the rest as JSON
  (``"state"``), so one ``os.replace`` publishes both together.

Every write goes to a temporary file in the target's folder, is flushed and
fsynced, and replaces the target in one ``os.replace``; if it fails (a full
disk), the temporary file is removed, the previous file is left as it was and
``FileWriteError`` names the file.
"""
import contextlib
import errno
import hashlib
import json
import os
import pickle
import tempfile

import numpy as np

from .safe_load import (CHECKPOINT_FORMAT, FORMAT_VERSION, JITTOR_TRAILER, TREE_SEPARATOR,
                        WEIGHTS_FORMAT)


class FileWriteError(OSError):
    """A file could not be written; whatever was there before is unchanged."""


def fsync_folder(folder):
    """Make a rename in ``folder`` durable (where the platform can open folders)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return                      # not every platform opens folders
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; after the block, fsync it and move it onto
    ``path``.  If the block (or the move) fails, remove it and raise ``FileWriteError``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, FileWriteError):
            raise FileWriteError(exc.errno or errno.EIO,
                                 f"{path}: not written ({exc.strerror or exc}); "
                                 "the previous file, if any, is unchanged") from exc
        raise
    fsync_folder(folder)


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """``open(path, mode)`` that publishes the file only once it is whole (``atomic_path``)."""
    with atomic_path(path) as tmp:
        with open(tmp, mode) as f:
            yield f
            f.flush()


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


def save_pickle_weights(path, arrays):
    """``{name: ndarray}`` in Jittor's ``jt.save`` layout (pickle protocol 4, its sha1,
    the trailer): for Jittor's own ``Module.load``.  Written on request only."""
    body = pickle.dumps({k: np.asarray(v) for k, v in arrays.items()}, protocol=4)
    with atomic_write(path) as f:
        f.write(body + hashlib.sha1(body).digest() + JITTOR_TRAILER)


WEIGHT_WRITERS = {".safetensors": "safetensors", ".pkl": "pickle"}


def weights_kind(path):
    """``"safetensors"`` or ``"pickle"`` by the file's extension; others are refused."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in WEIGHT_WRITERS:
        raise ValueError(f"{path}: weights are written as .safetensors (or .pkl for Jittor's "
                         f"Module.load), not {ext or 'no extension'}")
    return WEIGHT_WRITERS[ext]
