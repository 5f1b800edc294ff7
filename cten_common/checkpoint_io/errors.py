"""The errors of reading a checkpoint: every message names the file."""
import pickle


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file."""


class UnsafeFileError(CheckpointError):
    """A file whose loading would call something other than array constructors."""


class Refused(pickle.UnpicklingError):
    """What an unpickler refused to build (a name, a persistent id, a dtype), before
    anything was called; ``read_checkpoint`` turns it into an ``UnsafeFileError``
    naming the file (``for_file``)."""

    def __init__(self, what):
        super().__init__(what)
        self.what = what

    def for_file(self, path):
        """The ``UnsafeFileError`` that tells the user about ``path``."""
        return UnsafeFileError(f"{path}: refuses to load {self.what}: a weights file holds arrays only "
                               "(numpy arrays, numbers, strings, dicts, lists); nothing was run")
