"""The framework-free evaluation driver: a split without ground-truth spans says so
instead of reporting no detection figure silently."""
import json

import pytest

from cten_common.config import TrainConfig
from cten_common.data.annotations import load_annotation
from cten_common.data.datasets import ClipConfig, VideoEmotionData
from cten_common.data.synthetic import SyntheticSpec, make_synthetic_dataset
from cten_common.evaluation import evaluate_model, print_report
from helpers import StandInModel, stand_in_predict




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
    config = TrainConfig(batch_size=2, seed=0, theta=0.7)
    with_spans = evaluate_model(StandInModel(), _data(tmp_path / "a", True), config, stand_in_predict, progress=False)
    assert "detection" in with_spans and "detection_skipped" not in with_spans
    without = evaluate_model(StandInModel(), _data(tmp_path / "b", False), config, stand_in_predict, progress=False)
    assert "detection" not in without and "no ground-truth spans" in without["detection_skipped"]
    print_report(without, ["a", "b"])
    assert "weak detection: not measured: no ground-truth spans" in capsys.readouterr().out


@pytest.mark.parametrize("framework", ["jittor", "torch"])
def test_both_frameworks_report_each_videos_spans_beside_its_ground_truth(framework, tmp_path):
    from cten_common.data.datasets import build_data
    from cten_common.config import load_run_config
    from helpers import make_tiny_run
    config = load_run_config(str(make_tiny_run(tmp_path, videos_per_class=2)))
    data = build_data(config, "validation", train=False)
    if framework == "jittor":
        from cten_jt.evaluate import evaluate_model as evaluate
        from cten_jt.models import build_model
        report = evaluate(build_model(config.model, init_seed=0), data, config.train, progress=False)
    else:
        from cten_torch_ref.engine import predict_batch
        from cten_torch_ref.models import build_model
        report = evaluate_model(build_model(config.model), data, config.train, predict_batch, progress=False)
    truth = {it.video_id: it.segments for it in data.items}
    assert len(report["per_video"]) == len(truth) == 2
    for video in report["per_video"]:
        assert (video["fps"], video["fps_source"], video["n_frames"]) == (8.0, "container", 16)
        assert video["ground_truth"] == [{"start_s": s, "end_s": e, "class": data.class_names[video["label"]]}
                                         for s, e in truth[video["video_id"]]]
        assert video["detections"], video            # the most attended segment is always kept
        for det in video["detections"]:
            assert det["class"] == data.class_names[video["pred"]]
            assert 0 <= det["start_s"] < det["end_s"] <= 2.0 and 0 < det["score"] <= 1
    assert report["frame_rates"] == {"sources": {"container": 2}, "assumed": [], "notes": {}}
    assert "frame_rate_warning" not in report


def test_the_printed_report_names_rate_sources_notes_and_the_warning(capsys):
    report = {"n": 2, "accuracy": 1.0, "accuracy_mean_views": 1.0, "per_class_accuracy": {"a": 1.0, "b": None},
              "confusion_matrix": [[2, 0], [0, 0]],
              "frame_rates": {"sources": {"fps file": 1, "assumed": 1}, "assumed": ["v2"],
                              "notes": {f"v{i}": "the audio lasts longer" for i in range(25)}},
              "frame_rate_warning": "1 video(s) have no frame rate source ... v2"}
    print_report(report, ["a", "b"])
    out = capsys.readouterr().out
    assert "frame rates from: assumed 1, fps file 1" in out
    assert "  v0: the audio lasts longer" in out and "  v24:" not in out and "and 5 more notes" in out
    assert "WARNING: 1 video(s) have no frame rate source ... v2" in out
