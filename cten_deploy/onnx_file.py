"""Our metadata in an ONNX file, written and read without parsing the model.

An ONNX file is one protobuf ``ModelProto``; its ``metadata_props`` (field 14) are repeated
``StringStringEntryProto`` (key = 1, value = 2).  Protobuf lets repeated fields be appended to
a serialised message, so ``append_metadata`` adds entries at the end of the file, and
``read_metadata`` walks the top-level fields and seeks past the rest (the graph and its
540 MB of weights are never read).  ``onnx.load`` reads the same entries
(``tests/test_export.py``).
"""
import json
import os

FORMAT = "cten-onnx"                 # metadata "format" of a file cten-export wrote
FORMAT_VERSION = "1"
METADATA_FIELD = 14


class OnnxFileError(ValueError):
    """An ONNX file that is damaged or not cten-export's, with the file named."""


def _varint(value):
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number, payload):
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def append_metadata(path, entries):
    """Append ``{key: value}`` (strings) to the file's ``metadata_props``."""
    with open(path, "ab") as f:
        for key, value in entries.items():
            entry = _field(1, str(key).encode()) + _field(2, str(value).encode())
            f.write(_field(METADATA_FIELD, entry))
        f.flush()
        os.fsync(f.fileno())


def _read_varint(f, path):
    value, shift = 0, 0
    while True:
        b = f.read(1)
        if not b:
            raise EOFError
        value |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return value
        shift += 7
        if shift > 63:
            raise OnnxFileError(f"{path}: not an ONNX file (a varint longer than 64 bits)")


def _entry(data, path):
    """(key, value) of a serialised StringStringEntryProto."""
    import io
    f, got = io.BytesIO(data), {}
    while True:
        try:
            tag = _read_varint(f, path)
        except EOFError:
            break
        if tag & 7 != 2:
            raise OnnxFileError(f"{path}: a metadata entry with a field that is not a string")
        got[tag >> 3] = f.read(_read_varint(f, path)).decode("utf-8", "replace")
    return got.get(1, ""), got.get(2, "")


def read_metadata(path):
    """``{key: value}`` of the file's ``metadata_props`` (later entries win)."""
    size = os.path.getsize(path)
    found = {}
    with open(path, "rb") as f:
        while True:
            try:
                tag = _read_varint(f, path)
            except EOFError:
                break
            number, wire = tag >> 3, tag & 7
            if wire == 0:
                _read_varint(f, path)
            elif wire == 1:
                f.seek(8, os.SEEK_CUR)
            elif wire == 5:
                f.seek(4, os.SEEK_CUR)
            elif wire == 2:
                length = _read_varint(f, path)
                if f.tell() + length > size:
                    raise OnnxFileError(f"{path}: not an ONNX file, or cut short (a field runs past its end)")
                if number == METADATA_FIELD:
                    key, value = _entry(f.read(length), path)
                    found[key] = value
                else:
                    f.seek(length, os.SEEK_CUR)
            else:
                raise OnnxFileError(f"{path}: not an ONNX file (protobuf wire type {wire})")
    return found


def cten_metadata(path):
    """``(part, run configuration dict, class names)`` of a file cten-export wrote; an
    ``OnnxFileError`` naming the file for any other."""
    if not os.path.isfile(path):
        raise OnnxFileError(f"{path}: no such file")
    meta = read_metadata(path)
    if meta.get("format") != FORMAT:
        raise OnnxFileError(f"{path}: not a model cten-export wrote (no '{FORMAT}' metadata): export one "
                            "with cten-export")
    if meta.get("format_version") != FORMAT_VERSION:
        raise OnnxFileError(f"{path}: cten-onnx format {meta.get('format_version')!r}, this version reads "
                            f"{FORMAT_VERSION!r}")
    try:
        return meta["part"], json.loads(meta["config"]), json.loads(meta["classes"])
    except (KeyError, ValueError) as exc:
        raise OnnxFileError(f"{path}: its cten-onnx metadata is incomplete ({exc})") from None
