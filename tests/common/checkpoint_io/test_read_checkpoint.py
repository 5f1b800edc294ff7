"""cten_common.checkpoint_io.sniff.read_checkpoint: no file runs code, damaged files fail clearly in bounded
memory, and every supported format reads back exactly (PyTorch zips also without
PyTorch)."""
import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

from cten_common.checkpoint_io.errors import CheckpointError, UnsafeFileError
from cten_common.checkpoint_io.pickle_io import PICKLE_ALLOWED_GLOBALS, save_pickle_weights
from cten_common.checkpoint_io.safetensors_io import (WEIGHTS_FORMAT, read_safetensors, save_checkpoint_file,
                                                     save_weights_file)
from cten_common.checkpoint_io.sniff import read_checkpoint
from cten_common.checkpoint_io.torch_files import read_torch_zip
from helpers import write_malicious_files

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


@pytest.fixture
def no_torch(monkeypatch):
    """``import torch`` fails, as where PyTorch is not installed."""
    monkeypatch.setitem(sys.modules, "torch", None)


@pytest.fixture(scope="module")
def malicious(tmp_path_factory):
    root = tmp_path_factory.mktemp("malicious")
    return root / "canary", write_malicious_files(root / "files", root / "canary")


@pytest.mark.parametrize("with_torch", [True, False], ids=["torch", "no-torch"])
def test_no_malicious_file_runs_code(malicious, with_torch, monkeypatch):
    canary, files = malicious
    if not with_torch:
        monkeypatch.setitem(sys.modules, "torch", None)
    for kind, path in files.items():
        with pytest.raises(CheckpointError) as err:
            read_checkpoint(path)
        message = str(err.value)
        assert message.startswith(str(path)), message
        if kind.startswith("legacy") and not with_torch:
            assert "legacy" in message and "PyTorch installed" in message, message
        else:
            assert isinstance(err.value, UnsafeFileError), (kind, message)
            assert "refuses to load" in message, message
        assert not canary.exists(), f"{kind} ran its payload"


def test_refusal_names_what_was_refused(malicious, no_torch):
    """The name as the pickle spells it (protocol 2 writes Python 2's module names)."""
    _, files = malicious
    for kind in ("pkl", "zip"):
        for payload in ("os.system", "builtins.exec", "subprocess.call"):
            func = payload.split(".")[1]
            with pytest.raises(UnsafeFileError, match=rf"refuses to load [\w.]+\.{func}: a weights file"):
                read_checkpoint(files[f"{kind}-{payload}"])


def test_the_allow_list_admits_arrays_and_containers_only():
    names = {f"{m}.{n}" for m, n in PICKLE_ALLOWED_GLOBALS}
    assert names == {"collections.OrderedDict", "_codecs.encode", "builtins.bytes", "__builtin__.bytes",
                     "numpy.ndarray", "numpy.dtype",
                     *{f"numpy.{core}.{name}" for core in ("core", "_core")
                       for name in ("multiarray._reconstruct", "multiarray.scalar", "numeric._frombuffer")}}


ARRAYS = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "n": np.array([7], np.int64),
          "h": np.linspace(0, 1, 5).astype(np.float16), "b": np.array([True, False]),
          "d": np.float64(2.5), "empty": np.zeros((0, 3), np.float32)}


@pytest.mark.parametrize("protocol", range(0, 6))
def test_pickles_of_numpy_arrays_read_back_in_every_protocol(tmp_path, protocol):
    from collections import OrderedDict
    obj = {"state_dict": OrderedDict(ARRAYS), "epoch": 3, "names": ["a", "b"], "raw": b"\x00\xff",
           "dtype": np.dtype("<f2"), "pair": (1, None)}
    path = tmp_path / "w.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    out = read_checkpoint(path)
    assert out.keys() == obj.keys() and list(out["state_dict"]) == list(ARRAYS)
    for name, value in ARRAYS.items():
        got = out["state_dict"][name]
        assert np.asarray(got).dtype == np.asarray(value).dtype and np.array_equal(got, value), name
    assert (out["epoch"], out["names"], out["raw"], out["dtype"], out["pair"]) == \
        (3, ["a", "b"], b"\x00\xff", np.dtype("<f2"), (1, None))


def test_numpy_2_spellings_and_jittor_files(tmp_path):
    import jittor as jt
    path = tmp_path / "np2.pkl"         # numpy 2 writes numpy._core.multiarray._reconstruct
    path.write_bytes(pickle.dumps(ARRAYS["w"], protocol=2).replace(b"numpy.core.multiarray",
                                                                      b"numpy._core.multiarray"))
    assert b"numpy._core" in path.read_bytes() and np.array_equal(read_checkpoint(path), ARRAYS["w"])
    jt.save({"w": ARRAYS["w"], "n": ARRAYS["n"]}, str(tmp_path / "jt.pkl"))     # Jittor's own writer
    out = read_checkpoint(tmp_path / "jt.pkl")
    assert np.array_equal(out["w"], ARRAYS["w"]) and np.array_equal(out["n"], ARRAYS["n"])
    save_pickle_weights(tmp_path / "ours.pkl", ARRAYS)                           # ours: jt.load reads it
    assert all(np.array_equal(jt.load(str(tmp_path / "ours.pkl"))[k], v) for k, v in ARRAYS.items())
    data = bytearray((tmp_path / "jt.pkl").read_bytes())
    data[40] ^= 1
    (tmp_path / "flipped.pkl").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="flipped.pkl: damaged Jittor file"):
        read_checkpoint(tmp_path / "flipped.pkl")


def _torch_state():
    base = torch.arange(48, dtype=torch.float64).reshape(6, 8)
    return {
        "float32": base.float(), "float64": base, "int64": base.long()[1:, 2:],
        "float16": base.half().t(), "bool": base.long() % 3 == 0,
        "view": base.float()[1:5:2, 3:7],               # non-contiguous, offset into its storage
        "scalar": torch.tensor(5), "empty": torch.zeros(0, 4), "bfloat16": base.bfloat16()[2],
        "param": torch.nn.Parameter(torch.ones(3)),
    }


def test_our_zip_reader_equals_torch_load(tmp_path, monkeypatch):
    state = _torch_state()
    assert not state["view"].is_contiguous() and state["view"].storage_offset() > 0
    torch.save({"state_dict": state, "epoch": 4, "hyper": {"lr": 2e-4}}, tmp_path / "m.pth")
    reference = torch.load(tmp_path / "m.pth", weights_only=True)
    monkeypatch.setitem(sys.modules, "torch", None)
    ours = read_checkpoint(tmp_path / "m.pth")
    monkeypatch.undo()
    assert ours["epoch"] == 4 and ours["hyper"] == {"lr": 2e-4}
    for name, tensor in reference["state_dict"].items():
        expected = (tensor.detach().float() if tensor.dtype == torch.bfloat16 else tensor.detach()).numpy()
        got = ours["state_dict"][name]
        assert isinstance(got, np.ndarray) and got.flags.c_contiguous, name
        assert got.dtype == expected.dtype and got.shape == expected.shape, name
        assert np.array_equal(got, expected), name


def test_legacy_torch_files_need_torch(tmp_path, monkeypatch):
    torch.save({"w": torch.ones(2)}, tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    assert torch.equal(read_checkpoint(tmp_path / "old.pth")["w"], torch.ones(2))
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(CheckpointError, match="old.pth: a PyTorch checkpoint in the legacy"):
        read_checkpoint(tmp_path / "old.pth")


def test_safetensors_weights_and_checkpoints_read_back_bit_identical(tmp_path):
    arrays = {k: np.asarray(v) for k, v in ARRAYS.items()}
    save_weights_file(tmp_path / "w.safetensors", arrays, {"n_classes": 2, "modality": "av"})
    back, metadata = read_safetensors(tmp_path / "w.safetensors")
    assert metadata["format"] == WEIGHTS_FORMAT and json.loads(metadata["model"])["n_classes"] == 2
    assert back.keys() == arrays.keys()
    for k, v in arrays.items():
        assert back[k].dtype == v.dtype and back[k].tobytes() == v.tobytes(), k
    tree = {"model": arrays, "optimizer": {"n_step": 9, "m": {"a.b": np.ones(3, np.float32)}, "v": {}},
            "epoch": 2, "best": {"val_accuracy": 0.75, "epoch": None}, "classes": ["x", "y"]}
    save_checkpoint_file(tmp_path / "c.safetensors", tree)
    got = read_checkpoint(tmp_path / "c.safetensors")
    assert got["epoch"] == 2 and got["best"] == tree["best"] and got["classes"] == ["x", "y"]
    assert got["optimizer"]["n_step"] == 9 and got["optimizer"]["v"] == {}
    assert got["optimizer"]["m"]["a.b"].tobytes() == np.ones(3, np.float32).tobytes()
    assert all(got["model"][k].tobytes() == v.tobytes() for k, v in arrays.items())


def test_our_safetensors_reader_equals_the_librarys(tmp_path):
    """Every dtype numpy reads, scalars and empty tensors: the arrays ``safetensors.numpy``
    reads from the same file, bit for bit (our reader reads each into its own array)."""
    from safetensors.numpy import load_file, save_file
    rng = np.random.default_rng(0)
    arrays = {f"a_{t}": (rng.normal(0, 100, (3, 5)) if t.startswith("f") else rng.integers(0, 100, (3, 5))).astype(t)
              for t in ("float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint8", "uint16",
                        "uint32", "uint64")}
    arrays.update({"flag": np.array([True, False, True]), "scalar": np.array(3.5, np.float32),
                   "none": np.zeros((2, 0, 4), np.int64), "odd": np.arange(7, dtype=np.int8)})
    save_file(arrays, str(tmp_path / "x.safetensors"))
    ours, _ = read_safetensors(tmp_path / "x.safetensors")
    theirs = load_file(str(tmp_path / "x.safetensors"))
    assert set(ours) == set(theirs)
    for name, value in theirs.items():
        assert ours[name].dtype == value.dtype and ours[name].shape == value.shape, name
        assert ours[name].tobytes() == value.tobytes() == arrays[name].tobytes(), name
        assert ours[name].flags.writeable and ours[name].flags.c_contiguous, name


READ_PROBE = """
import sys
from benchmarks.framework_worker import reset_peak_rss, rss_mb
from cten_common.checkpoint_io.safetensors_io import read_safetensors
reset_peak_rss()
before = rss_mb()[0]
arrays, _ = read_safetensors(sys.argv[1])
print(rss_mb()[1] - before, sum(a.nbytes for a in arrays.values()) / 2 ** 20)
"""


def test_reading_safetensors_holds_the_data_once(tmp_path):
    """The read's peak: the arrays themselves (1.0x the file's data), not a mapping of the
    file beside copies of it (2.0x, ``safetensors.numpy``'s reader; 1.07 GB for the paper's
    540 MB of weights).  Bound 1.5x, between the two; 64 layers of 1 MB, as weights are."""
    from cten_common.checkpoint_io.safetensors_io import save_weights_file
    save_weights_file(tmp_path / "w.safetensors", {f"layer{i}": np.full((256, 1024), i, np.float32)
                                                   for i in range(64)})
    out = subprocess.run([sys.executable, "-c", READ_PROBE, str(tmp_path / "w.safetensors")], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.returncode == 0, out.stderr[-3000:]
    grew, data = map(float, out.stdout.split()[-2:])
    assert data == 64.0 and grew < 1.5 * data, f"reading {data:.0f} MB of arrays raised the peak RSS by {grew:.0f} MB"


def _safetensors(header, data=b"", length=None):
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


def _damaged_files(folder):
    """``{file name: bytes}`` of damaged and lying files."""
    folder.mkdir(exist_ok=True)
    good_pkl = pickle.dumps({"w": np.ones((64, 64), np.float32)}, protocol=4)
    torch.save({"w": torch.ones(64, 64)}, folder / "good.pth")
    good_zip = (folder / "good.pth").read_bytes()
    save_weights_file(folder / "good.safetensors", {"w": np.ones((64, 64), np.float32)})
    good_st = (folder / "good.safetensors").read_bytes()
    rng = np.random.default_rng(0)
    f32 = {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}
    huge_pickle = (b"\x80\x04\x8e" + struct.pack("<Q", 2 ** 40) + b"\x00" * 32)      # BINBYTES8 of 1 TiB
    return {
        "truncated.pkl": good_pkl[:len(good_pkl) // 2],
        "truncated_zip.pth": good_zip[:len(good_zip) // 2],
        "truncated.safetensors": good_st[:len(good_st) - 100],
        "random.pkl": rng.bytes(4096), "random.pth": rng.bytes(4096), "random.safetensors": rng.bytes(4096),
        "huge_bytes.pkl": huge_pickle,
        "header_beyond_file.safetensors": _safetensors({}, length=2 ** 62),
        "header_not_json.safetensors": struct.pack("<Q", 5) + b"{{{{{" + b"\x00" * 8,
        "offsets_beyond_data.safetensors": _safetensors({"w": {**f32, "data_offsets": [0, 2 ** 40]}}, b"\x00" * 16),
        "size_mismatch.safetensors": _safetensors({"w": {**f32, "shape": [3, 3]}}, b"\x00" * 16),
        "absurd_shape.safetensors": _safetensors({"w": {**f32, "shape": [2 ** 40, 2 ** 40]}}, b"\x00" * 16),
        "overlap.safetensors": _safetensors({"w": f32, "v": {**f32, "data_offsets": [8, 24]}}, b"\x00" * 24),
        "unknown_dtype.safetensors": _safetensors({"w": {**f32, "dtype": "F128"}}, b"\x00" * 16),
    }


def test_damaged_files_fail_with_the_file_named(tmp_path):
    for name, data in _damaged_files(tmp_path / "src").items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(CheckpointError) as err:
            read_checkpoint(path)
        assert str(err.value).startswith(str(path)), (name, str(err.value))


def test_zip_storage_that_lies_about_its_size(tmp_path, no_torch):
    torch_state = {"w": np.ones(4, np.float32)}          # the archive is written by hand
    with zipfile.ZipFile(tmp_path / "lie.pth", "w") as z:
        pid = ("storage", "FloatStorage", "0", "cpu", 2 ** 40)
        z.writestr("archive/data.pkl", _storage_pickle(pid, (4,)))
        z.writestr("archive/data/0", torch_state["w"].tobytes())
    with pytest.raises(CheckpointError, match="lie.pth: .*holds 16 bytes"):
        read_checkpoint(tmp_path / "lie.pth")
    with zipfile.ZipFile(tmp_path / "view.pth", "w") as z:   # a view past its storage's end
        z.writestr("archive/data.pkl", _storage_pickle(("storage", "FloatStorage", "0", "cpu", 4), (8,)))
        z.writestr("archive/data/0", torch_state["w"].tobytes())
    with pytest.raises(CheckpointError, match="view.pth: .*reaches element 7 of a storage of 4"):
        read_checkpoint(tmp_path / "view.pth")


def _storage_pickle(pid, size):
    """data.pkl of ``{"w": tensor}`` whose storage has persistent id ``pid`` (the storage
    type spelled as PyTorch does, a GLOBAL ``torch.<Type>Storage``)."""
    storage_type = pid[1]
    body = (b"\x80\x02}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n("
            b"(X\x07\x00\x00\x00storagectorch\n" + storage_type.encode() + b"\n"
            + pickle.dumps(pid[2], 2)[2:-1] + pickle.dumps(pid[3], 2)[2:-1] + pickle.dumps(pid[4], 2)[2:-1]
            + b"tQ" + pickle.dumps(0, 2)[2:-1] + pickle.dumps(size, 2)[2:-1]
            + pickle.dumps((1,) * len(size), 2)[2:-1] + b"\x89tRs.")
    return body


MEMORY_PROBE = """
import resource, sys
sys.modules["torch"] = None          # our own readers, without PyTorch's import in the figure
from cten_common.checkpoint_io.errors import CheckpointError
from cten_common.checkpoint_io.sniff import read_checkpoint
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for path in sys.argv[1:]:
    try:
        read_checkpoint(path)
    except CheckpointError:
        continue
    raise SystemExit(f"{path} was read")
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_lying_files_fail_in_bounded_memory(tmp_path):
    paths = []
    for name, data in _damaged_files(tmp_path / "src").items():
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, *paths], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.returncode == 0, out.stderr[-3000:]
    assert int(out.stdout.split()[-1]) < 64, f"max RSS grew by {out.stdout.split()[-1]} MiB"


def test_our_zip_reader_is_used_without_torch_only(tmp_path, monkeypatch):
    torch.save({"w": torch.ones(2)}, tmp_path / "m.pth")
    assert isinstance(read_checkpoint(tmp_path / "m.pth")["w"], torch.Tensor)       # torch.load
    assert isinstance(read_torch_zip(tmp_path / "m.pth")["w"], np.ndarray)
    monkeypatch.setitem(sys.modules, "torch", None)
    assert isinstance(read_checkpoint(tmp_path / "m.pth")["w"], np.ndarray)
