"""Where a run folder keeps its checkpoints, and reading one back to resume."""
import os

from .errors import CheckpointError
from .sniff import read_checkpoint

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
