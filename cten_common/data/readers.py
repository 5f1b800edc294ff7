"""``open_video``: the reader for a path, whatever holds its frames.

Above both readers' modules (``video``: video files and frame folders;
``frame_store``: frame stores), so that neither imports the other's opener.
"""
import os

from .frame_store import FrameStore
from .video import STORE_EXTENSION, FrameFolder, VideoFile


def open_video(path):
    """A folder is a ``FrameFolder``, a ``.frames`` file a ``FrameStore``, anything else a ``VideoFile``."""
    path = str(path)
    if os.path.isdir(path):
        return FrameFolder(path)
    if path.lower().endswith(STORE_EXTENSION):
        return FrameStore(path)
    return VideoFile(path)
