"""Shared test helpers: one recursive comparison that names the failing leaf,
tiny configurations, and the in-memory weight copy between frameworks."""
import numpy as np

from cten_common.checkpoint_io.filter import to_numpy

# fp32 tolerances of the project (docs/parity.md)
MODULE_ATOL = 1e-5       # max abs difference per module
MODEL_RTOL = 1e-4        # whole model: max abs difference / max abs of the reference output

TINY_AV = dict(n_classes=5, seq_len=4, snippet_duration=8, sample_size=32, audio_n_segments=4,
               audio_embed_size=512, visual_depth=10, audio_arch="resnet18", modality="av")
TINY_VISUAL = dict(n_classes=3, seq_len=4, snippet_duration=8, sample_size=32, audio_n_segments=4,
                   visual_depth=18, modality="visual")


def assert_close(reference, port, name="output", atol=None, rtol_scale=None):
    """Compare nested outputs leaf by leaf (dict, list, tuple or array-like).

    ``atol``: max abs difference allowed; ``rtol_scale``: max abs difference
    relative to the reference leaf's max abs value.  The assertion message
    names the leaf, the difference and the allowed bound.
    """
    if isinstance(reference, dict):
        assert set(reference) == set(port), (
            f"{name}: keys differ: only reference {sorted(set(reference) - set(port))}, "
            f"only port {sorted(set(port) - set(reference))}")
        for k in reference:
            assert_close(reference[k], port[k], f"{name}.{k}", atol, rtol_scale)
        return
    if isinstance(reference, (list, tuple)):
        assert len(reference) == len(port), f"{name}: {len(reference)} vs {len(port)} items"
        for i, (r, p) in enumerate(zip(reference, port)):
            assert_close(r, p, f"{name}[{i}]", atol, rtol_scale)
        return
    r = np.asarray(to_numpy(reference), dtype=np.float64)
    p = np.asarray(to_numpy(port), dtype=np.float64)
    if r.shape != p.shape and r.size == p.size == 1:
        r, p = r.reshape(1), p.reshape(1)       # 0-d in PyTorch is (1,) in Jittor
    assert r.shape == p.shape, f"{name}: shape {r.shape} (reference) vs {p.shape} (port)"
    assert np.all(np.isfinite(p)) == np.all(np.isfinite(r)), f"{name}: non-finite values differ"
    diff = float(np.max(np.abs(r - p))) if r.size else 0.0
    bound = atol if atol is not None else 0.0
    if rtol_scale is not None:
        scale = float(np.max(np.abs(r))) if r.size else 0.0
        bound = max(bound, rtol_scale * max(scale, 1e-12))
    assert diff <= bound, f"{name}: max abs difference {diff:.3e} exceeds {bound:.3e}"


def copy_torch_to_jittor(torch_module, jittor_module):
    """Copy every parameter and buffer of a torch module into its Jittor twin, strictly."""
    from cten_jt.models.state import load_state_arrays
    arrays = {k: v.detach().cpu().numpy() for k, v in torch_module.state_dict().items()}
    load_state_arrays(jittor_module, arrays, "torch module")


def random_inputs(cfg, batch, seed=0):
    """Visual [B, T, 3, L, S, S] in 0..255 and audio [B, 100*T, 128] as numpy."""
    rng = np.random.default_rng(seed)
    t, l, s = cfg["seq_len"], cfg["snippet_duration"], cfg["sample_size"]
    visual = rng.uniform(0, 255, (batch, t, 3, l, s, s)).astype(np.float32)
    audio = rng.normal(0, 1, (batch, 100 * t, 128)).astype(np.float32)
    return visual, audio


TINY_RUN_MODEL = {"n_classes": 2, "seq_len": 2, "snippet_duration": 4, "sample_size": 32, "audio_n_segments": 2,
                  "audio_embed_size": 512, "visual_depth": 10}


def make_tiny_run(root, videos_per_class=4, duration=2.0, seed=5, model=None, data=None, train=None):
    """A synthetic data set of 2 classes (32x32, 8 fps) under ``root/data`` and a run
    config ``root/tiny.yaml`` over it (TINY_RUN_MODEL, updated by ``model``, ``data``,
    ``train``); returns the config's path."""
    import yaml
    from cten_common.data.synthetic import SyntheticSpec, make_synthetic_dataset
    make_synthetic_dataset(str(root / "data"), SyntheticSpec(classes=2, videos_per_class=videos_per_class,
                                                             duration=duration, fps=8, size=32, seed=seed),
                           progress=False)
    config = {"model": {**TINY_RUN_MODEL, **(model or {})},
              "data": {"annotation": "data/annotations.json", "video_root": "data/videos",
                       "audio_root": "data/audio", **(data or {})},
              "train": {"epochs": 2, "batch_size": 2, "seed": 3, **(train or {})}}
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_checkpoint(run, which="last"):
    """A run folder's ``last``/``best`` checkpoint as its dict (``model``, ``optimizer``,
    ``epoch``, ...), read as the trainer reads it."""
    from cten_common.checkpoint_io.run_paths import find_run_checkpoint, read_run_checkpoint
    path = find_run_checkpoint(run, which)
    assert path is not None, f"{run}: no {which} checkpoint"
    return read_run_checkpoint(path)


class _Payload:
    """Unpickling this calls ``func(*args)``: what a malicious weights file does."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def payloads(canary):
    """``{name: object}``: objects whose unpickling creates the file ``canary``, through
    ``os.system``, ``builtins.exec`` and ``subprocess.call``, each inside a state dict."""
    import os
    import subprocess
    canary = str(canary)
    calls = {"os.system": (os.system, (f"touch '{canary}'",)),
             "builtins.exec": (exec, (f"open({canary!r}, 'w').close()",)),
             "subprocess.call": (subprocess.call, (["touch", canary],))}
    return {name: {"state_dict": {"fc.weight": _Payload(*call)}} for name, call in calls.items()}


def write_malicious_files(folder, canary):
    """``{id: path}``: for each payload, a Jittor-style ``.pkl``, a PyTorch zip ``.pth``
    whose ``data.pkl`` is the payload, and a PyTorch legacy (non-zip) ``.pth``."""
    import pickle
    import zipfile
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, obj in payloads(canary).items():
        stem = name.replace(".", "_")
        path = folder / f"{stem}.pkl"
        path.write_bytes(pickle.dumps(obj, protocol=4))
        files[f"pkl-{name}"] = path
        path = folder / f"{stem}_zip.pth"
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("archive/data.pkl", pickle.dumps(obj, protocol=2))
            z.writestr("archive/byteorder", "little")
            z.writestr("archive/version", "3\n")
        files[f"zip-{name}"] = path
        path = folder / f"{stem}_legacy.pth"
        with open(path, "wb") as f:
            for header in (0x1950a86a20f9469cfc6c, 1001,
                           {"protocol_version": 1001, "little_endian": True, "type_sizes": {}}):
                pickle.dump(header, f, protocol=2)
            pickle.dump(obj, f, protocol=2)
            pickle.dump([], f, protocol=2)
        files[f"legacy-{name}"] = path
    return files


class StandInModel:
    """A model for ``cten_common.evaluation.evaluate_model`` with ``stand_in_predict``."""

    def eval(self):
        return self


def stand_in_predict(model, batch, rng=None, theta=0.7, reader=None):
    """Stands in for a framework's predict_batch: class 0 everywhere, rising attention."""
    b, t = len(batch["label"]), batch["visual"].shape[1]
    logits = np.tile(np.array([[2.0, 0.0]], np.float32), (b, 1))
    return {"logits": logits, "gamma": np.tile(np.linspace(0, 1, t, dtype=np.float32), (b, 1)),
            "context_logits": logits}
