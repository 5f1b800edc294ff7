"""JPEG bytes (cten_common.data.readers.jpeg): the size from the header alone."""
import cv2
import numpy as np

from cten_common.data.readers.jpeg import jpeg_header


def test_jpeg_header_parser():
    ok, data = cv2.imencode(".jpg", np.zeros((24, 40, 3), np.uint8))
    assert jpeg_header(data.tobytes()) == ((24, 40), None)
    assert jpeg_header(data.tobytes()[:10]) == (None, None)                 # read more
    assert "not a JPEG" in jpeg_header(b"GIF89a....")[1]
    assert "no marker" in jpeg_header(b"\xff\xd8\x00\x00\x00\x00")[1]
