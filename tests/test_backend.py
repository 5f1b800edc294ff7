"""The two backends (cten_jt/backend.py, cten_torch_ref/backend.py) against the protocol
(cten_common/backend.py): every method implemented with the protocol's parameters, every
capability declared, the same answers where the frameworks must agree."""
import inspect

import numpy as np
import pytest

from cten_common.backend import CAPABILITIES, Backend
from cten_common.config import ModelConfig


def _backend(framework):
    if framework == "jittor":
        from cten_jt.backend import BACKEND
    else:
        from cten_torch_ref.backend import BACKEND
    return BACKEND


METHODS = [n for n, v in vars(Backend).items() if callable(v) and not n.startswith("_")]


@pytest.mark.parametrize("framework", ["jittor", "torch"])
def test_every_method_of_the_protocol_is_implemented(framework):
    backend = _backend(framework)
    for name in METHODS:
        mine = inspect.getattr_static(type(backend), name)
        if name == "evaluate":                   # once, in cten_common
            assert mine is vars(Backend)["evaluate"]
            continue
        assert mine is not vars(Backend)[name], f"{framework}: {name} is not implemented"
        params = [p for p in inspect.signature(getattr(Backend, name)).parameters if p != "self"]
        signature = inspect.signature(getattr(backend, name))
        try:                            # as fit calls it: the protocol's parameters by position ...
            signature.bind(*params)
        except TypeError:               # ... or the first by position and the rest by name
            signature.bind(params[0], **{p: p for p in params[1:]})
    assert set(backend.capabilities) == set(CAPABILITIES)
    assert all(v is True or (isinstance(v, str) and v) for v in backend.capabilities.values())
    assert backend.name == framework and backend.trainer.endswith(".train")


@pytest.mark.parametrize("framework", ["jittor", "torch"])
def test_the_backends_build_the_same_model_and_state(framework):
    """The same initial weights, and state arrays that load back exactly."""
    backend = _backend(framework)
    cfg = ModelConfig(n_classes=2, seq_len=2, snippet_duration=2, sample_size=32, audio_n_segments=2,
                      audio_embed_size=512, visual_depth=10)
    model = backend.build_model(cfg, init_seed=3)
    arrays = backend.state_arrays(model)
    other = _backend("torch" if framework == "jittor" else "jittor")
    theirs = other.state_arrays(other.build_model(cfg, init_seed=3))
    assert set(arrays) == set(theirs)
    for name in arrays:                  # num_batches_tracked: a scalar in one, [1] in the other
        assert np.array_equal(np.ravel(arrays[name]), np.ravel(theirs[name])), name
    backend.load_state_arrays(model, arrays, "its own state")
    assert backend.world() == (0, 1)
    assert np.array_equal(backend.all_sum(np.arange(3)), np.arange(3.0))


@pytest.mark.parametrize("framework", ["jittor", "torch"])
def test_a_model_built_to_be_loaded_holds_exactly_the_files_weights(framework, tmp_path):
    """``inference_model`` with weights builds without the initial state
    (``initialise=False``) and loads the file (consumed as it goes): every array equal to
    the file's, bit for bit, and the outputs those of a model initialised and then loaded."""
    from cten_common.checkpoint_io.safetensors_io import read_safetensors
    from cten_common.config import RunConfig
    from cten_common.inference import inference_model
    backend = _backend(framework)
    cfg = ModelConfig(n_classes=2, seq_len=2, snippet_duration=2, sample_size=32, audio_n_segments=2,
                      audio_embed_size=512, visual_depth=10)
    source = backend.build_model(cfg, init_seed=5)
    rng = np.random.default_rng(0)
    arrays = {k: (v + rng.normal(0, 0.01, v.shape)).astype(v.dtype) if v.dtype.kind == "f" else v
              for k, v in backend.state_arrays(source).items()}     # not the initial state of any seed
    backend.load_state_arrays(source, dict(arrays), "perturbed")
    path = tmp_path / "w.safetensors"
    if framework == "jittor":
        from cten_jt.checkpoint import save_weights
    else:
        from cten_torch_ref.checkpoint import save_weights
    save_weights(source, path)
    run = RunConfig().updated({"model": cfg.to_dict(), "train": {"device": "cpu"}})
    loaded, _ = inference_model(backend, run, str(path))
    got = backend.state_arrays(loaded)
    stored, _ = read_safetensors(path)
    assert set(got) == set(stored) == set(arrays)
    for name in got:
        assert np.ravel(got[name]).tobytes() == np.ravel(stored[name]).tobytes(), name
    reference = backend.build_model(cfg, init_seed=1)
    backend.load_weights(reference, str(path))
    backend.eval_mode(reference)
    batch = {"visual": rng.uniform(0, 255, (1, 2, 3, 2, 32, 32)).astype(np.float32),
             "audio": rng.normal(0, 1, (1, 200, 128)).astype(np.float32)}
    a, b = backend.predict_batch(loaded, batch), backend.predict_batch(reference, batch)
    for key in ("logits", "gamma"):
        assert np.array_equal(a[key], b[key]), key
