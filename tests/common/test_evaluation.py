"""The framework-free evaluation driver: a split without ground-truth spans says so
instead of reporting no detection figure silently."""
import json

import numpy as np

from cten_common.data.annotations import load_annotation
from cten_common.data.datasets import ClipConfig, VideoEmotionData
from cten_common.data.synthetic import SyntheticSpec, make_synthetic_dataset
from cten_common.evaluation import evaluate_model, print_report


class _Model:
    def eval(self):
        return self


def _predict(model, batch, rng=None, theta=0.7, reader=None):
    """Stands in for a framework's predict_batch: class 0 everywhere, rising attention."""
    b, t = len(batch["label"]), batch["visual"].shape[1]
    logits = np.tile(np.array([[2.0, 0.0]], np.float32), (b, 1))
    return {"logits": logits, "gamma": np.tile(np.linspace(0, 1, t, dtype=np.float32), (b, 1)),
            "context_logits": logits}


def _data(tmp_path, with_spans):
    path = make_synthetic_dataset(str(tmp_path), SyntheticSpec(classes=2, videos_per_class=2, duration=2.0,
                                                               fps=8, size=32, seed=3), progress=False)
    if not with_spans:
        ann = json.load(open(path))
        for entry in ann["database"].values():
            entry.pop("segments", None)
        json.dump(ann, open(path, "w"))
    items, classes = load_annotation(path, str(tmp_path / "videos"), None, "validation")
    return VideoEmotionData(items, classes, ClipConfig(2, 2, 32, with_audio=False), train=False)


def test_a_split_without_spans_says_so(tmp_path, capsys):
    config = {"batch_size": 2, "seed": 0, "theta": 0.7}
    with_spans = evaluate_model(_Model(), _data(tmp_path / "a", True), config, _predict, progress=False)
    assert "detection" in with_spans and "detection_skipped" not in with_spans
    without = evaluate_model(_Model(), _data(tmp_path / "b", False), config, _predict, progress=False)
    assert "detection" not in without and "no ground-truth spans" in without["detection_skipped"]
    print_report(without, ["a", "b"])
    assert "weak detection: not measured: no ground-truth spans" in capsys.readouterr().out
