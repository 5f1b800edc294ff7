"""Readers of a video's frames, whatever holds them; ``open_video`` picks one for a path.

==================  ==========================================================
``base``            the interface every reader has (``VideoReader``), the file
                    extensions, and the helpers the readers share
``video_file``      ``VideoFile``: a video file, decoded with PyAV
``frame_folder``    ``FrameFolder``: the reference's folder of JPEGs
``frame_store``     ``FrameStore``: one file of JPEGs (``cten-prepare-dataset
                    --store-out``; written by ``cten_common.data.frame_store_writer``)
``jpeg``            JPEG bytes decoded, and their size read from the header
==================  ==========================================================
"""
import os

from .base import STORE_EXTENSION
from .frame_folder import FrameFolder
from .frame_store import FrameStore
from .video_file import VideoFile


def open_video(path):
    """A folder is a ``FrameFolder``, a ``.frames`` file a ``FrameStore``, anything else a ``VideoFile``."""
    path = str(path)
    if os.path.isdir(path):
        return FrameFolder(path)
    if path.lower().endswith(STORE_EXTENSION):
        return FrameStore(path)
    return VideoFile(path)
