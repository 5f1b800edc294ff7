"""cten_jt.predict on a frame folder: its rate comes from the annotation, its ground-truth
spans are listed and drawn on the timeline plot."""
import json

import cv2
import numpy as np
import pytest

from cten_common.config import load_run_config
from helpers import make_tiny_run

GREEN = np.array([44, 160, 44])          # matplotlib's tab:green, RGB


def _green_pixels(png):
    rgb = cv2.imread(str(png))[:, :, ::-1].astype(int)
    return int((np.abs(rgb - GREEN).max(axis=2) <= 30).sum())


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A tiny untrained model's config and one synthetic video as a frame folder without fps file."""
    from cten_common.data.readers import open_video
    root = tmp_path_factory.mktemp("predict")
    path = make_tiny_run(root, videos_per_class=2)
    ann = json.loads((root / "data" / "annotations.json").read_text())
    video_id = sorted(v for v in ann["database"] if ann["database"][v]["annotations"]["label"] == "Anger")[0]
    folder = root / "frames" / "Anger" / video_id
    folder.mkdir(parents=True)
    video = open_video(str(root / "data" / "videos" / "Anger" / f"{video_id}.mp4"))
    for i, frame in enumerate(video.iter_frames()):
        cv2.imwrite(str(folder / f"{i + 1:06d}.jpg"), frame[:, :, ::-1])
    (folder / "n_frames").write_text(str(video.n_frames))
    return root, path, video_id, folder, ann["database"][video_id]


def test_predict_a_frame_folder_with_its_annotation(tiny_folder, tmp_path):
    from cten_jt.models import build_model
    from cten_jt.predict import plot_prediction, predict_video
    root, path, video_id, folder, entry = tiny_folder
    config = load_run_config(str(path))
    model = build_model(config.model, init_seed=0)
    audio = str(root / "data" / "audio" / "Anger" / f"{video_id}.wav")
    result = predict_video(model, config, ["Anger", "Anticipation"], str(folder), audio,
                           annotation=config.data.annotation)
    # the annotation's fps (8) wins over the wav's length, which agrees with it: no note
    assert (result["fps"], result["fps_source"], result["fps_note"]) == (8.0, "annotation fps", None)
    assert result["duration_s"] == pytest.approx(entry["duration"])
    assert result["ground_truth"] == [{"emotion": "Anger", "start_s": s, "end_s": e} for s, e in entry["segments"]]
    assert result["segments"][-1]["end_s"] == pytest.approx(16 / 8.0)
    plot_prediction(result, tmp_path / "with.png")
    plot_prediction({**result, "ground_truth": []}, tmp_path / "without.png")
    assert _green_pixels(tmp_path / "with.png") > 200          # the ground-truth band and its label
    assert _green_pixels(tmp_path / "without.png") == 0
    # without the annotation the folder's rate comes from the audio's length; no spans to draw
    bare = predict_video(model, config, ["Anger", "Anticipation"], str(folder), audio)
    assert (bare["fps"], bare["fps_source"], bare["ground_truth"]) == (8.0, "audio duration", [])


def test_a_bad_annotation_entry_names_the_file(tiny_folder, tmp_path):
    from cten_common.data.errors import DataError
    from cten_jt.predict import annotation_entry
    root, path, video_id, folder, entry = tiny_folder
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"labels": ["Anger"], "database": {video_id: {**entry, "fps": -8}}}))
    with pytest.raises(DataError) as e:
        annotation_entry(str(bad), str(folder))
    assert e.value.path == str(bad) and "'fps'" in str(e.value)
    assert annotation_entry(str(bad), str(tmp_path / "elsewhere.mp4")) is None
