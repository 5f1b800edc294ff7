"""Annotation JSON (VideoEmotion-8 / Ekman-6) and CAER's folders: paths, labels, problems."""
import json
import os

import pytest

from cten_common.data.annotations import IndexProblems, load_annotation, load_caer
from cten_common.data.errors import DataError


def _touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "wb").close()


def _write_json(path, database, labels=("Joy", "Fear")):
    with open(path, "w") as f:
        json.dump({"labels": list(labels), "database": database}, f)


def test_frame_folders_video_files_and_audio(tmp_path):
    os.makedirs(tmp_path / "v" / "Joy" / "a1")                      # frame folder
    _touch(str(tmp_path / "v" / "Fear" / "b2.mkv"))                 # video file
    _touch(str(tmp_path / "au" / "Joy" / "a1.mp3"))
    _touch(str(tmp_path / "au" / "Fear" / "b2.wav"))
    db = {"a1": {"subset": "training", "annotations": {"label": "Joy"}, "segments": [[1, 2.5]]},
          "b2": {"subset": "training", "annotations": {"label": "Fear"}},
          "c3": {"subset": "validation", "annotations": {"label": "Joy"}}}
    _write_json(tmp_path / "a.json", db)
    items, classes = load_annotation(tmp_path / "a.json", str(tmp_path / "v"), str(tmp_path / "au"))
    assert classes == ["Joy", "Fear"]
    by_id = {i.video_id: i for i in items}
    assert set(by_id) == {"a1", "b2"}
    assert by_id["a1"].video_path.endswith(os.path.join("Joy", "a1")) and by_id["a1"].label == 0
    assert by_id["b2"].video_path.endswith("b2.mkv") and by_id["b2"].audio_path.endswith("b2.wav")
    assert by_id["a1"].segments == [[1.0, 2.5]]
    # without an audio root the video's own track is used
    items, _ = load_annotation(tmp_path / "a.json", str(tmp_path / "v"))
    assert all(i.audio_path is None for i in items)


def test_every_bad_entry_is_reported_at_once(tmp_path):
    _touch(str(tmp_path / "v" / "Joy" / "ok.mp4"))
    _touch(str(tmp_path / "v" / "Joy" / "noaudio.mp4"))
    _touch(str(tmp_path / "au" / "Joy" / "ok.wav"))
    db = {"ok": {"subset": "training", "annotations": {"label": "Joy"}},
          "gone": {"subset": "training", "annotations": {"label": "Joy"}},
          "weird": {"subset": "training", "annotations": {"label": "Boredom"}},
          "noaudio": {"subset": "training", "annotations": {"label": "Joy"}}}
    _write_json(tmp_path / "a.json", db)
    with pytest.raises(DataError) as err:
        load_annotation(tmp_path / "a.json", str(tmp_path / "v"), str(tmp_path / "au"))
    msg = str(err.value)
    assert "3 bad entries" in msg and "'gone'" in msg and "'Boredom'" in msg and "noaudio" in msg
    problems = IndexProblems()
    items, _ = load_annotation(tmp_path / "a.json", str(tmp_path / "v"), str(tmp_path / "au"),
                               problems=problems)
    assert [i.video_id for i in items] == ["ok"] and len(problems.problems) == 3


def test_missing_files_can_be_listed_apart_from_the_other_problems(tmp_path):
    """``missing`` (data.on_bad_sample: skip) takes the videos whose video or audio file is
    not on disk; every other problem still raises; without it the message is as before."""
    from cten_common.data.annotations import MissingFile
    _touch(str(tmp_path / "v" / "Joy" / "ok.mp4"))
    _touch(str(tmp_path / "v" / "Joy" / "noaudio.mp4"))
    _touch(str(tmp_path / "au" / "Joy" / "ok.wav"))
    db = {"ok": {"subset": "training", "annotations": {"label": "Joy"}},
          "gone": {"subset": "training", "annotations": {"label": "Joy"}},
          "noaudio": {"subset": "training", "annotations": {"label": "Joy"}}}
    _write_json(tmp_path / "a.json", db)
    missing = []
    items, _ = load_annotation(tmp_path / "a.json", str(tmp_path / "v"), str(tmp_path / "au"), missing=missing)
    assert [i.video_id for i in items] == ["ok"]
    assert all(isinstance(m, MissingFile) and m.subset == "training" for m in missing)
    assert [(m.video_id, m.path) for m in missing] == [("gone", str(tmp_path / "v" / "Joy" / "gone")),
                                                       ("noaudio", str(tmp_path / "au" / "Joy" / "noaudio"))]
    assert all("not found" in m.problem for m in missing)
    with pytest.raises(DataError, match="2 bad entries"):
        load_annotation(tmp_path / "a.json", str(tmp_path / "v"), str(tmp_path / "au"))
    db["weird"] = {"subset": "training", "annotations": {"label": "Boredom"}}
    _write_json(tmp_path / "a.json", db)
    with pytest.raises(DataError) as err:
        load_annotation(tmp_path / "a.json", str(tmp_path / "v"), str(tmp_path / "au"), missing=[])
    assert "1 bad entries" in str(err.value) and "'Boredom'" in str(err.value) and "'gone'" not in str(err.value)


def test_unreadable_annotation_files(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        load_annotation(tmp_path / "none.json", str(tmp_path))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_annotation(tmp_path / "bad.json", str(tmp_path))
    (tmp_path / "other.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="needs 'labels' and 'database'"):
        load_annotation(tmp_path / "other.json", str(tmp_path))


def test_caer_layout(tmp_path):
    for sub, cls, clip in [("train", "Happy", "0001.avi"), ("train", "Sad", "0002.avi"),
                           ("validation", "Happy", "0003.avi"), ("test", "Sad", "0004.avi")]:
        _touch(str(tmp_path / sub / cls / clip))
    items, classes = load_caer(str(tmp_path), "training")
    assert classes == ["Happy", "Sad"] and [(i.video_id, i.label) for i in items] == [("0001", 0), ("0002", 1)]
    items, _ = load_caer(str(tmp_path), "testing")
    assert [i.video_id for i in items] == ["0004"]
    with pytest.raises(DataError, match="CAER subset folder not found"):
        load_caer(str(tmp_path / "nowhere"), "training")


def test_every_common_span_layout_is_read(tmp_path):
    for vid in ("top", "inside", "anet", "none"):
        _touch(str(tmp_path / "v" / "Joy" / f"{vid}.mp4"))
    db = {"top": {"subset": "training", "annotations": {"label": "Joy"}, "segments": [[1, 2]]},
          "inside": {"subset": "training", "annotations": {"label": "Joy", "segments": [[0, 3.5], [4, 5]]}},
          "anet": {"subset": "training", "annotations": [{"segment": [2, 4], "label": "Joy"},
                                                         {"segment": [6.5, 7], "label": "Joy"}]},
          "none": {"subset": "training", "annotations": {"label": "Joy"}}}
    _write_json(tmp_path / "a.json", db)
    items, _ = load_annotation(tmp_path / "a.json", str(tmp_path / "v"))
    spans = {i.video_id: i.segments for i in items}
    assert spans == {"top": [[1.0, 2.0]], "inside": [[0.0, 3.5], [4.0, 5.0]], "anet": [[2.0, 4.0], [6.5, 7.0]],
                     "none": []}
    assert all(i.label == 0 for i in items)


def test_bad_spans_are_reported_with_the_video(tmp_path):
    for vid in ("mixed", "backwards", "words"):
        _touch(str(tmp_path / "v" / "Joy" / f"{vid}.mp4"))
    db = {"mixed": {"subset": "training", "annotations": [{"segment": [0, 1], "label": "Joy"},
                                                          {"segment": [2, 3], "label": "Fear"}]},
          "backwards": {"subset": "training", "annotations": {"label": "Joy"}, "segments": [[5, 2]]},
          "words": {"subset": "training", "annotations": {"label": "Joy", "segments": [["a", "b"]]}}}
    _write_json(tmp_path / "a.json", db)
    problems = IndexProblems()
    items, _ = load_annotation(tmp_path / "a.json", str(tmp_path / "v"), problems=problems)
    assert items == [] and len(problems.problems) == 3
    text = " ".join(str(p) for p in problems.problems)
    assert "'mixed'" in text and "one label" in text and "'backwards'" in text and "'words'" in text


def test_a_videos_rate_and_duration_are_read_and_bad_ones_reported(tmp_path):
    for vid in ("rate", "length", "neither", "zero", "word"):
        os.makedirs(tmp_path / "v" / "Joy" / vid)                    # frame folders
    db = {"rate": {"subset": "training", "annotations": {"label": "Joy"}, "fps": 29.97},
          "length": {"subset": "training", "annotations": {"label": "Joy"}, "duration": "107.2"},
          "neither": {"subset": "training", "annotations": {"label": "Joy"}},
          "zero": {"subset": "training", "annotations": {"label": "Joy"}, "fps": 0},
          "word": {"subset": "training", "annotations": {"label": "Joy"}, "duration": "long"}}
    _write_json(tmp_path / "a.json", db)
    problems = IndexProblems()
    items, _ = load_annotation(tmp_path / "a.json", str(tmp_path / "v"), problems=problems)
    by_id = {i.video_id: (i.fps, i.duration) for i in items}
    assert by_id == {"rate": (29.97, None), "length": (None, 107.2), "neither": (None, None)}
    text = " ".join(str(p) for p in problems.problems)
    assert len(problems.problems) == 2 and str(tmp_path / "a.json") in text
    assert "'zero'" in text and "'fps' is 0" in text and "'word'" in text and "'duration'" in text
