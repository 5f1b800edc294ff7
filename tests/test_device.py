"""train.device: auto picks the GPU only where Jittor found CUDA; cuda without CUDA is an error."""
import types

import pytest

from cten_common.config import load_run_config
from cten_jt import device


def _fake_jittor(has_cuda):
    return types.SimpleNamespace(has_cuda=has_cuda, flags=types.SimpleNamespace(use_cuda=-1))


@pytest.mark.parametrize("has_cuda,name,expected", [
    (False, "auto", "cpu"), (True, "auto", "cuda"), (True, "cpu", "cpu"), (True, "cuda", "cuda"),
    (False, "cpu", "cpu")])
def test_set_device_chooses_and_switches_jittor(monkeypatch, has_cuda, name, expected):
    fake = _fake_jittor(has_cuda)
    monkeypatch.setattr(device, "jt", fake)
    assert device.set_device(name) == expected
    assert fake.flags.use_cuda == int(expected == "cuda")


def test_cuda_without_cuda_and_unknown_devices_are_errors(monkeypatch):
    monkeypatch.setattr(device, "jt", _fake_jittor(False))
    with pytest.raises(RuntimeError, match="found no CUDA"):
        device.set_device("cuda")
    with pytest.raises(ValueError, match="train.device"):
        device.set_device("gpu")
    with pytest.raises(ValueError, match="train.device"):
        load_run_config(None, ["train.device=gpu"])
    assert load_run_config(None, []).train.device == "auto"


def test_this_machine_trains_where_jittor_can():
    import jittor as jt
    before = jt.flags.use_cuda
    try:
        assert device.set_device("auto") == ("cuda" if jt.has_cuda else "cpu")
    finally:
        jt.flags.use_cuda = before
