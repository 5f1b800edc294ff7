"""Writing frame stores (``readers.frame_store``: the format and its reader).

Frames are resized so that their short side is ``short_side`` (default 240,
the reference's ``scale=-1:240`` for landscape videos; for portrait videos the
reference fixes the height, this the short side, so both stay >= 240 px
wherever the crop is taken), with ``cv2.INTER_AREA`` when shrinking and
``cv2.INTER_CUBIC`` when enlarging, then JPEG-encoded by OpenCV at ``quality``
(default 90).  The model crops the short side and resizes it to 112 px, so any
short side >= 112 feeds it; a smaller side such as 128 stores 3.5x fewer
pixels (measured on 640x360 testsrc2 at quality 90: 6.8 instead of 15.0 KB a
frame, 0.23 instead of 0.54 ms of CPU to read one; quality 75 at 240: 10.0 KB,
0.42 ms; the reference's ffmpeg-made frame folder: 0.74 ms) but rescales
the 112 px crop from 128 px instead of 240 px, i.e. the frames the model sees
are no longer the reference's (slightly blurrier); keep 240 to match the
reference, use 128 when disk or reading speed matters more.

Disk cost, measured on testsrc2 640x360 H.264 videos (a busy synthetic
pattern; real footage usually compresses better): short side 240 (427x240)
at quality 90 is ~15 KB a frame, 27 MB per minute at 29.97 fps (22.6 at 25
fps); short side 128 (228x128) is 12.2 MB per minute.  For comparison the
mp4 itself is 5-6 MB per minute and the reference's frame folder (``ffmpeg
-vf scale=-1:240 %06d.jpg``, ffmpeg's default JPEG quantiser, visibly lower
quality: ~4 KB a frame) 6.3-7.5 MB per minute, plus one file per frame.
Writing a 107 s 360p video (3207 frames) took ~16 s on 2 busy CPU cores.

Writing decodes the source once, sequentially, is atomic (a temporary file in
the same folder, fsync, ``os.replace``) and resumable: a store whose header
records the source's current size and mtime and the same short side and
quality is left alone.
"""
import os

import cv2
import numpy as np

from cten_common.checkpoint_io.atomic import fsync_folder
from cten_common.data.errors import DataError
from cten_common.data.readers import open_video
from cten_common.data.readers.frame_store import HEADER, StoreHeader, read_header


def store_size(height, width, short_side):
    """(height, width) of frames whose short side becomes ``short_side`` (0: unchanged)."""
    if not short_side:
        return height, width
    scale = short_side / min(height, width)
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def encode_frame(rgb, size, quality):
    """JPEG bytes of an RGB frame resized to ``size`` (height, width): the store's encoding."""
    height, width = size
    if (height, width) != rgb.shape[:2]:
        shrink = height * width < rgb.shape[0] * rgb.shape[1]
        rgb = cv2.resize(rgb, (width, height),
                         interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("OpenCV could not encode a frame as JPEG")
    return data.tobytes()


def is_current(store_path, source_path, short_side, quality):
    """Whether ``store_path`` is a complete, valid store of the current ``source_path``
    written with these settings (then a rerun leaves it alone)."""
    if not os.path.isfile(store_path):
        return False
    try:
        header, _ = read_header(store_path)
    except DataError:
        return False
    st = os.stat(source_path)
    return (header.source_size, header.source_mtime_ns, header.short_side, header.quality) == \
        (st.st_size, st.st_mtime_ns, int(short_side), int(quality))


def write_store(source_path, store_path, short_side=240, quality=90, progress=False):
    """Write the frame store of a video (file or frame folder); returns "written" or
    "skipped" (already current).  The source is decoded once, frame by frame."""
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    if is_current(store_path, source_path, short_side, quality):
        return "skipped"
    st = os.stat(source_path)
    video = open_video(source_path)
    n = video.n_frames
    size = store_size(video.height, video.width, short_side)
    header = StoreHeader(n, video.fps, size[0], size[1], int(quality), int(short_side),
                         st.st_size, st.st_mtime_ns)
    folder = os.path.dirname(os.path.abspath(store_path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{store_path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            _write_frames(f, header, video, progress)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, store_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    fsync_folder(folder)
    return "written"


def _write_frames(f, header, video, progress):
    """Header, placeholder offsets, the JPEGs, then the real offsets."""
    n = header.n_frames
    table_end = HEADER.size + 8 * (n + 1)
    f.write(header.pack())
    f.write(b"\0" * 8 * (n + 1))
    offsets = np.empty(n + 1, "<u8")
    offsets[0] = pos = table_end
    frames = video.iter_frames()
    if progress:
        from tqdm import tqdm
        frames = tqdm(frames, total=n, desc=os.path.basename(video.path), unit="frame", leave=False)
    count = 0
    for i, rgb in enumerate(frames):
        if i >= n:
            raise DataError(video.path, f"more frames decode than the {n} it reported")
        data = encode_frame(rgb, (header.height, header.width), header.quality)
        f.write(data)
        pos += len(data)
        offsets[i + 1] = pos
        count += 1
    if count != n:
        raise DataError(video.path, f"only {count} of its {n} frames decode")
    f.seek(HEADER.size)
    f.write(offsets.tobytes())
