"""The synthetic data set: files decode, spans recorded, seeds reproduce and differ."""
import hashlib
import json
import os

import cv2
import numpy as np
import soundfile

from cten_common.data.synthetic import SyntheticSpec, make_synthetic_dataset, render_video

SPEC = dict(classes=3, videos_per_class=3, duration=3.0, fps=8, size=32)


def _digest(root):
    h = hashlib.sha256()
    for dirpath, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            with open(os.path.join(dirpath, name), "rb") as f:
                h.update(f.read())
    return h.hexdigest()


def test_files_decode_and_spans_are_recorded(tmp_path):
    path = make_synthetic_dataset(str(tmp_path), SyntheticSpec(seed=1, **SPEC), progress=False)
    data = json.load(open(path))
    assert data["labels"] == ["Anger", "Anticipation", "Disgust"]
    assert len(data["database"]) == 9
    subsets = [e["subset"] for e in data["database"].values()]
    assert subsets.count("validation") == 3 and subsets.count("training") == 6
    for vid, entry in data["database"].items():
        label = entry["annotations"]["label"]
        (start, end), = entry["segments"]
        assert 0.15 * 3.0 - 1e-6 <= start < end <= 3.0
        cap = cv2.VideoCapture(str(tmp_path / "videos" / label / f"{vid}.mp4"))
        n = 0
        while cap.read()[0]:
            n += 1
        assert n == 24
        wave, sr = soundfile.read(str(tmp_path / "audio" / label / f"{vid}.wav"))
        assert sr == 16000 and len(wave) == 48000


def test_evidence_only_inside_the_span():
    spec = SyntheticSpec(seed=0, **SPEC)
    span = (1.0, 2.0)
    with_ev = render_video(spec, 0, span, np.random.default_rng(5))
    without = render_video(spec, 0, (10.0, 11.0), np.random.default_rng(5))
    inside = [i for i in range(24) if 1.0 <= i / 8 < 2.0]
    outside = [i for i in range(24) if i not in inside]
    assert np.array_equal(with_ev[outside], without[outside])     # first frame: clutter only
    assert all(np.abs(with_ev[i].astype(int) - without[i]).sum() > 0 for i in inside)


def test_one_seed_reproduces_two_seeds_differ(tmp_path):
    a = make_synthetic_dataset(str(tmp_path / "a"), SyntheticSpec(seed=3, **SPEC), progress=False)
    b = make_synthetic_dataset(str(tmp_path / "b"), SyntheticSpec(seed=3, **SPEC), progress=False)
    c = make_synthetic_dataset(str(tmp_path / "c"), SyntheticSpec(seed=4, **SPEC), progress=False)
    assert _digest(os.path.dirname(a)) == _digest(os.path.dirname(b))
    assert json.load(open(a))["database"] != json.load(open(c))["database"]


HARD = dict(evidence_length=(0.15, 0.3), evidence_strength=0.5, noise=12.0, distractors=2,
            distractor_length=(0.15, 0.3), distractor_strength=0.5)


def test_difficulty_options_at_their_defaults_change_nothing(tmp_path):
    """The options' defaults give the set the project always had (other tests train on it)."""
    from cten_common.data.synthetic import spec_record
    spelled = dict(evidence_length=(0.25, 0.5), evidence_start=0.15, evidence_strength=1.0, noise=6.0,
                   distractors=0, distractor_length=(0.1, 0.25), distractor_strength=1.0)
    a = make_synthetic_dataset(str(tmp_path / "a"), SyntheticSpec(seed=3, **SPEC), progress=False)
    b = make_synthetic_dataset(str(tmp_path / "b"), SyntheticSpec(seed=3, **SPEC, **spelled), progress=False)
    assert _digest(os.path.dirname(a)) == _digest(os.path.dirname(b))
    assert "distractors" not in json.load(open(a))["synthetic"]
    assert spec_record(SyntheticSpec(**HARD))["distractors"] == 2


def test_distractors_are_other_classes_in_one_modality_and_evidence_is_weaker():
    from cten_common.data.synthetic import draw_distractors, render_audio
    spec = SyntheticSpec(**{**SPEC, "classes": 6, **HARD})
    drawn = draw_distractors(spec, 2, np.random.default_rng(0))
    assert len(drawn) == 2 and all(k != 2 and 0 <= k < 6 and m in ("visual", "audio") for k, (s, e), m in drawn)
    strong = SyntheticSpec(**SPEC)
    span = (1.0, 2.0)
    weak_v = render_video(spec, 0, span, np.random.default_rng(5)).astype(int)
    strong_v = render_video(strong, 0, span, np.random.default_rng(5)).astype(int)
    colour = np.array([230, 40, 40])                     # class 0's colour: full in strong, blended in weak
    assert (np.abs(strong_v[12] - colour).sum(-1) == 0).sum() > 10
    assert (np.abs(weak_v[12] - colour).sum(-1) == 0).sum() == 0
    quiet = render_audio(spec, 0, span, np.random.default_rng(5))
    loud = render_audio(strong, 0, span, np.random.default_rng(5))
    inside = slice(int(1.2 * 16000), int(1.8 * 16000))
    assert np.abs(quiet[inside]).mean() < 0.75 * np.abs(loud[inside]).mean()
    # a visual distractor draws its class's shape outside the video's own span, and no tone
    visual = [(3, (0.0, 0.9), "visual")]
    with_d = render_video(spec, 0, span, np.random.default_rng(5), visual)
    without = render_video(spec, 0, span, np.random.default_rng(5))
    assert np.abs(with_d[2].astype(int) - without[2]).sum() > 0 and np.array_equal(with_d[20], without[20])
    assert np.array_equal(render_audio(spec, 0, span, np.random.default_rng(5), visual), quiet)
