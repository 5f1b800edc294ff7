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
