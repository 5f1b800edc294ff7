"""Which format a weights or checkpoint file is, and ``read_checkpoint``, the one way
every file the project reads is read (weights, run checkpoints, pretrained
backbones, converters' sources).

The format is told by the file's first bytes, not its name (a ``.safetensors``
name always means safetensors): safetensors (``safetensors_io``), pickle
(Jittor's ``.pkl``, ``pickle_io``), PyTorch zip or legacy (``torch_files``).
Writers pick theirs by the extension (``weights_kind``).
"""
import os
import struct

from .errors import CheckpointError, Refused
from .pickle_io import read_pickle
from .safetensors_io import read_safetensors_checkpoint
from .torch_files import is_torch_legacy, read_torch_file, read_torch_legacy

FORMAT_NAMES = {"safetensors": "a safetensors file", "pickle": "a pickle (Jittor .pkl)",
                "torch-zip": "a PyTorch zip checkpoint", "torch-legacy": "a PyTorch legacy checkpoint"}


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
    if is_torch_legacy(head):
        return "torch-legacy"
    return "pickle"


READERS = {"safetensors": read_safetensors_checkpoint, "pickle": read_pickle,
           "torch-zip": read_torch_file, "torch-legacy": read_torch_legacy}


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
    except Refused as exc:
        raise exc.for_file(path) from None
    except CheckpointError as exc:
        if str(exc).startswith(path):
            raise
        raise CheckpointError(f"{path}: {exc}") from None
    except MemoryError:
        raise CheckpointError(f"{path}: declares more data than fits in memory; damaged?") from None
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file
        raise CheckpointError(f"{path}: cannot be read as {FORMAT_NAMES[kind]}: "
                              f"{type(exc).__name__}: {exc}") from None


WEIGHT_WRITERS = {".safetensors": "safetensors", ".pkl": "pickle"}


def weights_kind(path):
    """``"safetensors"`` or ``"pickle"`` by the file's extension; others are refused."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in WEIGHT_WRITERS:
        raise ValueError(f"{path}: weights are written as .safetensors (or .pkl for Jittor's "
                         f"Module.load), not {ext or 'no extension'}")
    return WEIGHT_WRITERS[ext]
