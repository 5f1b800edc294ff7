"""Every entry point that reads a file refuses malicious ones: nothing runs (the
canary file is never created), the error names the file, command lines exit 2
without a traceback, and nothing is written.  A full disk stops training cleanly
with the last checkpoint intact; older runs' .pkl checkpoints still resume."""
import errno
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import safetensors.numpy
import yaml

from cten_common.data.bank import FeatureBank, bank_meta
from cten_common.data.errors import DataError
from cten_common.config import load_run_config
from cten_common.checkpoint_io.errors import CheckpointError
from helpers import TINY_RUN_MODEL, make_tiny_run, run_checkpoint, write_malicious_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILE_KINDS = [f"{container}-{payload}" for container in ("pkl", "zip", "legacy")
              for payload in ("os.system", "builtins.exec", "subprocess.call")]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("entry")
    config_path = make_tiny_run(root, videos_per_class=2, train={"epochs": 1})
    video = next((root / "data" / "videos" / "Anger").iterdir())
    canary = root / "canary"
    return {"root": root, "config": str(config_path), "video": str(video), "canary": canary,
            "files": write_malicious_files(root / "malicious", canary)}


@pytest.fixture(scope="module")
def model():
    from cten_jt.models import build_model
    return build_model(dict(TINY_RUN_MODEL), init_seed=0)


def _feature_bank(folder):
    """A two-video bank whose index is sound (its files are replaced by the tests)."""
    meta = bank_meta({"snippet_duration": 4, "sample_size": 32, "visual_depth": 10, "seq_len": 2},
                     stride=4, variants=["eval"], dtype="float32", digest="0" * 64, eval_snippets=False)
    bank = FeatureBank.open_for_extraction(folder, meta)
    for vid in ("a", "b"):
        bank.write_video(vid, np.ones((1, 2, 8), np.float32), {"n_frames": 8, "height": 32, "width": 32, "fps": 8.0})
    return bank


# -- the entry points: each takes (malicious file, tiny, tmp_path, capsys) and returns the
#    error text, having checked that it failed the way its kind fails

def _raises(call, error=CheckpointError):
    with pytest.raises(error) as err:
        call()
    return str(err.value)


def _exits_2(main, argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def load_weights(path, tiny, tmp, capsys, model):
    import cten_jt
    return _raises(lambda: cten_jt.load_weights(model, path))


def torch_to_jittor(path, tiny, tmp, capsys, model):
    from weights_convert import torch_to_jittor
    return _raises(lambda: torch_to_jittor(path, tmp / "out.safetensors"))


def jittor_to_torch(path, tiny, tmp, capsys, model):
    from weights_convert import jittor_to_torch
    return _raises(lambda: jittor_to_torch(path, tmp / "out.pth"))


def torch2jittor_cli(path, tiny, tmp, capsys, model):
    from weights_convert.convert import main
    return _exits_2(lambda argv: main("torch2jittor", argv), [str(path), str(tmp / "out.safetensors")], capsys)


def jittor2torch_cli(path, tiny, tmp, capsys, model):
    from weights_convert.convert import main
    return _exits_2(lambda argv: main("jittor2torch", argv), [str(path), str(tmp / "out.pth")], capsys)


def evaluate_cli(path, tiny, tmp, capsys, model):
    from cten_jt.evaluate import main
    return _exits_2(main, ["--config", tiny["config"], "--weights", str(path), "--out", str(tmp / "out.json")],
                    capsys)


def predict_cli(path, tiny, tmp, capsys, model):
    from cten_jt.predict import main
    return _exits_2(main, [tiny["video"], "--weights", str(path), "--config", tiny["config"],
                           "--json", str(tmp / "out.json")], capsys)


def train_resume_cli(path, tiny, tmp, capsys, model):
    from cten_jt.train import main
    run = tmp / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(load_run_config(tiny["config"]).to_dict()))
    (run / "metrics.jsonl").write_text("")
    (run / "last.pkl").write_bytes(path.read_bytes())        # an older run's checkpoint name
    return _exits_2(main, ["--resume", str(run)], capsys).replace(str(run / "last.pkl"), str(path))


def _pretrained(which):
    def entry(path, tiny, tmp, capsys, model):
        from cten_jt.train import main
        return _exits_2(main, ["--config", tiny["config"], "--out", str(tmp / "out"),
                               "--set", f"train.pretrained_{which}={path}"], capsys)
    entry.__name__ = f"train_pretrained_{which}"
    return entry


def feature_bank(path, tiny, tmp, capsys, model):
    bank = _feature_bank(tmp / "bank")
    target = os.path.join(bank.root, "features", bank.info("b")["file"] + ".npy")
    with open(target, "wb") as f:
        f.write(path.read_bytes())
    text = _raises(lambda: FeatureBank(bank.root).check(bank.meta, ["a", "b"]), DataError)
    assert target in text
    return text.replace(target, str(path))


ENTRY_POINTS = [load_weights, torch_to_jittor, jittor_to_torch, torch2jittor_cli, jittor2torch_cli,
                evaluate_cli, predict_cli, train_resume_cli, _pretrained("visual"), _pretrained("audio"),
                feature_bank]


@pytest.mark.parametrize("kind", FILE_KINDS)
@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=lambda e: e.__name__)
def test_malicious_files_are_refused_everywhere(entry, kind, tiny, model, tmp_path, capsys):
    path = tiny["files"][kind]
    text = entry(path, tiny, tmp_path, capsys, model)
    assert str(path) in text, text
    assert not tiny["canary"].exists(), f"{entry.__name__} ran the payload of {kind}"
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix in (".safetensors", ".pth", ".pkl", ".json")
               and "bank" not in p.parts and p.name != "last.pkl"]
    assert not written, written


@pytest.mark.parametrize("kind", [k for k in FILE_KINDS if k.startswith(("pkl", "zip", "legacy"))])
@pytest.mark.parametrize("entry", [load_weights, torch_to_jittor], ids=lambda e: e.__name__)
def test_malicious_files_are_refused_without_pytorch(entry, kind, tiny, model, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    path = tiny["files"][kind]
    text = entry(path, tiny, tmp_path, capsys, model)
    assert str(path) in text and not tiny["canary"].exists()
    assert ("legacy" in text) if kind.startswith("legacy") else ("refuses to load" in text), text


@pytest.mark.parametrize("module, args", [
    ("weights_convert.cli", ["torch2jittor", "{evil}", "{tmp}/out.safetensors"]),
    ("weights_convert.cli", ["jittor2torch", "{evil}", "{tmp}/out.pth"]),
    ("cten_jt.evaluate", ["--config", "{config}", "--weights", "{evil}"]),
    ("cten_jt.predict", ["{video}", "--weights", "{evil}", "--config", "{config}"]),
])
def test_command_lines_exit_2_and_run_nothing(module, args, tiny, tmp_path):
    evil = tiny["files"]["pkl-os.system"]
    argv = [a.format(evil=evil, tmp=tmp_path, config=tiny["config"], video=tiny["video"]) for a in args]
    out = subprocess.run([sys.executable, "-m", module, *argv], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 2, out.stderr[-3000:]
    assert f"{evil}: refuses to load" in out.stderr and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert not tiny["canary"].exists() and os.listdir(tmp_path) == []


def _full_disk(tensors, filename, metadata=None):
    with open(filename, "wb") as f:
        f.write(b"\0" * 64)
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_stops_training_and_keeps_the_checkpoints(tiny, tmp_path, monkeypatch, capsys):
    from cten_jt.train import main, train
    run = tmp_path / "run"
    train(load_run_config(tiny["config"], ["train.epochs=2"]), str(run), progress=False, stop_after=1)
    before = {p.name: p.read_bytes() for p in run.glob("*.safetensors")}
    assert set(before) == {"last.safetensors", "best.safetensors"}
    monkeypatch.setattr(safetensors.numpy, "save_file", _full_disk)
    err = _exits_2(main, ["--resume", str(run)], capsys)
    assert "safetensors: not written" in err and "No space left" in err and "unchanged" in err, err
    assert {p.name: p.read_bytes() for p in run.glob("*.safetensors")} == before
    assert not [p for p in os.listdir(run) if p.startswith(".") or p.endswith(".tmp")]


def test_an_older_runs_pkl_checkpoint_still_resumes(tiny, tmp_path):
    """A run folder with last.pkl (the format before safetensors) resumes; the next
    checkpoint is written as last.safetensors."""
    from cten_jt.train import train
    run = tmp_path / "run"
    config = load_run_config(tiny["config"], ["train.epochs=2"])
    train(config, str(run), progress=False, stop_after=1)
    ckpt = run_checkpoint(run)
    with open(run / "last.pkl", "wb") as f:
        pickle.dump(ckpt, f, protocol=4)
    os.remove(run / "last.safetensors")
    train(config, str(run), resume=True, progress=False)
    resumed = run_checkpoint(run)
    assert (run / "last.safetensors").exists() and resumed["epoch"] == 1
    assert resumed["optimizer"]["n_step"] > ckpt["optimizer"]["n_step"]


def test_a_full_disk_keeps_the_feature_bank(tmp_path, monkeypatch):
    from cten_common.checkpoint_io.atomic import FileWriteError
    bank = _feature_bank(tmp_path / "bank")
    files = [os.path.join(bank.root, "bank.json"),
             os.path.join(bank.root, "features", bank.info("a")["file"] + ".npy")]
    before = [open(p, "rb").read() for p in files]

    def full_save(file, array, allow_pickle=True):
        file.write(b"\x93NUMPY half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(np, "save", full_save)
    with pytest.raises(FileWriteError, match=r"\.npy: not written"):
        bank.write_video("a", np.zeros((1, 2, 8), np.float32), bank.info("a"))
    monkeypatch.undo()
    assert [open(p, "rb").read() for p in files] == before
    leftovers = [n for d in (bank.root, os.path.join(bank.root, "features")) for n in os.listdir(d)
                 if n.startswith(".") or n.endswith(".tmp")]
    assert not leftovers
    FeatureBank(bank.root).check(bank.meta, ["a", "b"])
