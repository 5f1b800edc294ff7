"""Writes that publish a whole file or leave the previous one as it was.

Every write goes to a temporary file in the target's folder, is flushed and
fsynced, and replaces the target in one ``os.replace``; if it fails (a full
disk), the temporary file is removed, the previous file is left as it was and
``FileWriteError`` names the file.  The formats' writers (``safetensors_io``,
``pickle_io``) and the data tools write through these.
"""
import contextlib
import errno
import os
import tempfile


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
