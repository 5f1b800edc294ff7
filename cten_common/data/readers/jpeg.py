"""JPEG bytes: decoded to RGB (``decode_jpeg``), and the size read from the header alone
(``jpeg_header``), for frame folders, frame stores and the data check."""
import cv2
import numpy as np

from cten_common.data.errors import DataError

def decode_jpeg(data, path, what="cannot decode as an image", size=None, out=None,
                wrong_size="differs from the expected"):
    """RGB uint8 [H, W, 3] of encoded image bytes, written into ``out`` when given (a
    C-contiguous uint8 [H, W, 3]: no temporary RGB copy); a DataError naming ``path``
    when the bytes do not decode or the image is not (height, width) ``size``."""
    frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if len(data) else None
    if frame is None:
        raise DataError(path, what)
    if size is not None and frame.shape[:2] != tuple(size):
        raise DataError(path, f"size {frame.shape[:2]} {wrong_size} {tuple(size)}")
    if out is None:
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB, dst=out)
    if not np.shares_memory(rgb, out):       # OpenCV allocated instead (out not usable as is)
        out[...] = rgb
    return out



# start-of-frame markers: every SOFn but DHT (C4), JPG (C8) and DAC (CC)
SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def jpeg_header(head):
    """``((height, width), None)`` from a JPEG's first bytes, or ``(None, problem)``;
    ``(None, None)`` when the header runs past ``head`` (read more)."""
    if len(head) < 2 or head[:2] != b"\xff\xd8":
        return None, "not a JPEG (no start-of-image marker FFD8)"
    pos = 2
    while pos + 4 <= len(head):
        if head[pos] != 0xFF:
            return None, f"corrupt JPEG header (no marker at byte {pos})"
        marker = head[pos + 1]
        if marker == 0xFF:                 # fill byte
            pos += 1
            continue
        if marker in (0xD9, 0xDA):
            return None, "corrupt JPEG header (no start-of-frame marker before the image data)"
        length = (head[pos + 2] << 8) | head[pos + 3]
        if length < 2:
            return None, f"corrupt JPEG header (segment length {length} at byte {pos})"
        if marker in SOF_MARKERS:
            if pos + 9 > len(head):
                return None, None
            height, width = (head[pos + 5] << 8) | head[pos + 6], (head[pos + 7] << 8) | head[pos + 8]
            if not (height and width):
                return None, f"JPEG header gives an impossible size {height}x{width}"
            return (height, width), None
        pos += 2 + length
    return None, None


