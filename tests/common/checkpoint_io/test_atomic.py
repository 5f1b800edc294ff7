"""cten_common.checkpoint_io.atomic and its writers: a write that fails (a full disk) leaves the previous file
byte for byte and no temporary file, and says which file it could not write."""
import errno
import os

import numpy as np
import pytest
import safetensors.numpy

from cten_common.checkpoint_io.atomic import FileWriteError, atomic_write
from cten_common.checkpoint_io.pickle_io import save_pickle_weights
from cten_common.checkpoint_io.safetensors_io import save_checkpoint_file, save_weights_file
from cten_common.checkpoint_io.sniff import read_checkpoint


def _disk_full_after(nbytes):
    """A ``safetensors.numpy.save_file`` that writes ``nbytes`` and then fails as a full disk does."""
    def save_file(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"\0" * nbytes)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return save_file


@pytest.mark.parametrize("writer", ["weights", "checkpoint"])
def test_a_full_disk_keeps_the_previous_safetensors_file(tmp_path, monkeypatch, writer):
    path = tmp_path / "last.safetensors"
    old, new = {"w": np.ones(3, np.float32)}, {"w": np.zeros(3, np.float32)}
    save = (lambda a: save_weights_file(path, a)) if writer == "weights" else \
        (lambda a: save_checkpoint_file(path, {"model": a, "epoch": 1}))
    save(old)
    before = path.read_bytes()
    monkeypatch.setattr(safetensors.numpy, "save_file", _disk_full_after(40))
    with pytest.raises(FileWriteError) as err:
        save(new)
    assert err.value.errno == errno.ENOSPC and str(path) in str(err.value)
    assert "previous file" in str(err.value)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["last.safetensors"]
    monkeypatch.undo()
    save(new)
    got = read_checkpoint(path)
    assert np.array_equal(got["w"] if writer == "weights" else got["model"]["w"], new["w"])


def test_a_full_disk_keeps_the_previous_pickle_and_json(tmp_path, monkeypatch):
    save_pickle_weights(tmp_path / "w.pkl", {"w": np.ones(2)})
    with atomic_write(tmp_path / "bank.json", "w") as f:
        f.write('{"videos": {}}')
    before = {p: (tmp_path / p).read_bytes() for p in ("w.pkl", "bank.json")}

    class FullDisk:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(data[:5])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    real_open = open

    def full_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        return FullDisk(f) if "w" in mode and str(file).endswith(".tmp") else f
    monkeypatch.setattr("builtins.open", full_open)
    with pytest.raises(FileWriteError, match="w.pkl: not written"):
        save_pickle_weights(tmp_path / "w.pkl", {"w": np.zeros(2)})
    with pytest.raises(FileWriteError, match="bank.json: not written"):
        with atomic_write(tmp_path / "bank.json", "w") as f:
            f.write('{"videos": {"a": 1}}')
    monkeypatch.undo()
    assert {p: (tmp_path / p).read_bytes() for p in before} == before
    assert sorted(os.listdir(tmp_path)) == ["bank.json", "w.pkl"]


def test_an_interrupted_write_is_not_published(tmp_path):
    (tmp_path / "f.json").write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(tmp_path / "f.json", "w") as f:
            f.write("new, half")
            raise KeyboardInterrupt
    assert (tmp_path / "f.json").read_text() == "old" and os.listdir(tmp_path) == ["f.json"]
