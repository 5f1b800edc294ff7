"""A training step on the synthetic set with lazily read erased views equals the step of
the former design, whose samples held the whole transformed video as float32 and
gathered the erased views from it: the same loss and the same updated parameters."""
import numpy as np

import cten_jt.optim
from cten_common.data.datasets import build_data, collate, sample_rng
from cten_common.data.transforms import apply_brightness, params_from_array
from cten_common.data.readers import open_video
from cten_common.erasing import ClipViews
from cten_common.config import load_run_config
from cten_jt import engine
from cten_jt.models.state import state_arrays
from cten_jt.models import build_model
from helpers import make_tiny_run


def _whole_clips(data, batch):
    """Every frame of each video through the float transform, zero-padded: the old ``clip``."""
    clips = []
    for index, row in zip(batch["index"], batch["transform"]):
        frames = open_video(data.items[int(index)].video_path).read_all()
        params = params_from_array(row)
        clips.append(data.transform.apply(frames, params).transpose(1, 0, 2, 3))
    padded = np.zeros((len(clips), max(len(c) for c in clips)) + clips[0].shape[1:], np.float32)
    for i, c in enumerate(clips):
        padded[i, :len(c)] = c
    return padded


def test_a_step_with_lazily_read_views_equals_the_whole_clip_step(tmp_path):
    path = make_tiny_run(tmp_path, videos_per_class=4, duration=3.0, model={"dropout": 0.0},
                         train={"batch_size": 4, "seed": 2})
    config = load_run_config(str(path))
    data = build_data(config, "training", train=True)
    data.transform.p_aug = 1.0                   # every sample augmented: flips, rotations, brightness
    batch = collate([data.load(i, sample_rng(2, 0, i)) for i in range(4)])
    drawn = {params_from_array(row).augment for row in batch["transform"]}
    assert "brightness" in drawn and len(drawn) >= 2, drawn     # the float step is exercised
    old = {k: v for k, v in batch.items() if k not in ("brightness", "transform")}
    old["visual"] = np.stack([apply_brightness(v, b) for v, b in zip(batch["visual"], batch["brightness"])])
    results = []
    for step_batch, reader in ((batch, data.read_views), (old, ClipViews(_whole_clips(data, batch)))):
        model = build_model(config.model, init_seed=2)
        model.train()
        optimizer = cten_jt.optim.Adam(model.parameters(), lr=1e-3, weight_decay=5e-4)
        out = engine.erasing_step(model, optimizer, step_batch, np.random.default_rng(8), reader=reader)
        results.append((out, state_arrays(model)))
    (new, new_params), (former, former_params) = results
    assert new["loss"] == former["loss"], (new["loss"], former["loss"])
    for view in ("context", "keyframe"):
        assert np.array_equal(new["indices"][view], former["indices"][view]), view
    for name in former_params:
        assert np.array_equal(new_params[name], former_params[name]), name
