"""cten_common.collection: the inputs of a collection, its results file (whole lines,
resuming, a torn line), decoding ahead in order, batching, bad videos, the summary.

The model here is a stand-in (``_predict``): logits and attention computed from each
sample's own pixels, so that every video's result depends on its decoded frames only and
batching, ordering and resuming can be checked exactly, without a framework."""
import csv
import dataclasses
import json
import os
import shutil

import numpy as np
import pytest

from cten_common import collection
from cten_common.config import load_run_config
from cten_common.data.datasets import clip_config
from cten_common.data.errors import DataError
from helpers import make_tiny_run

CLASSES = ["Anger", "Anticipation"]


def _predict(batch):
    """Logits and attention from the batch's pixels: a function of each video alone."""
    v = np.asarray(batch["visual"], np.float64)           # [B, T, 3, L, S, S]
    per_segment = v.mean(axis=(2, 3, 4, 5))               # [B, T]
    logits = np.stack([per_segment.mean(1), -per_segment.mean(1) + 0.3], 1)
    return {"logits": logits.astype(np.float32), "gamma": per_segment.astype(np.float32)}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """A tiny synthetic data set: its folder of videos, its annotation, the eval clip config."""
    root = tmp_path_factory.mktemp("collection")
    config = load_run_config(str(make_tiny_run(root, videos_per_class=3)))
    # the synthetic videos' sound is beside them (data/audio): as files, they play silent
    return root, config, dataclasses.replace(clip_config(config, train=False), allow_silence=True)


def _files(root):
    return sorted(str(p) for p in (root / "data" / "videos").rglob("*.mp4"))


def test_gather_reads_files_folders_lists_and_annotations(videos, tmp_path):
    root, config, _ = videos
    files = _files(root)
    assert len(files) == 6
    # a folder is searched recursively, in sorted order; a frame folder is one video
    frames = tmp_path / "frames" / "clipA"
    frames.mkdir(parents=True)
    (frames / "000001.jpg").write_bytes(b"")
    (frames / "n_frames").write_text("1")
    found = [e.path for e in collection.gather([str(root / "data" / "videos"), str(tmp_path / "frames")])]
    assert found == files + [str(frames)]
    # a list: relative lines from the list's folder, comments and blank lines skipped, each once
    listing = tmp_path / "list.txt"
    listing.write_text(f"# two videos\n{os.path.relpath(files[0], tmp_path)}\n\n{files[1]}\n{files[0]}\n")
    assert [e.key for e in collection.gather([str(listing)])] == [files[0], files[1]]
    # an annotation: every subset's videos with their ground truth; a missing one fails by name
    gone = files[2]
    moved = tmp_path / "moved.mp4"
    shutil.move(gone, moved)
    try:
        entries = collection.gather([config.data.annotation], config.data.video_root, config.data.audio_root)
    finally:
        shutil.move(moved, gone)
    ok = [e for e in entries if e.error is None]
    assert sorted(e.path for e in ok) == sorted(set(files) - {gone})
    assert all(e.label in CLASSES and e.spans and e.fps == 8.0 for e in ok)
    (bad,) = [e for e in entries if e.error is not None]
    assert os.path.splitext(os.path.basename(gone))[0] in bad.path + bad.error
    with pytest.raises(DataError, match="video-root"):
        collection.gather([config.data.annotation])
    with pytest.raises(DataError, match="not found"):
        collection.gather([str(tmp_path / "nothing_here")])


def test_ground_truth_from_an_annotation_by_video_id(videos):
    root, config, _ = videos
    entries = collection.with_ground_truth(collection.gather(_files(root)), config.data.annotation)
    ann = json.load(open(config.data.annotation))["database"]
    for e in entries:
        truth = ann[collection.video_id_of(e.path)]
        assert e.label == truth["annotations"]["label"]
        assert e.spans == [list(s) for s in truth["segments"]] or e.spans == truth["segments"]


def test_results_file_keeps_whole_lines_and_resumes(tmp_path):
    out = tmp_path / "r.jsonl"
    rf = collection.ResultsFile(str(out))
    rf.write({"video": "a.mp4", "ok": True})
    rf.write({"video": "b.mp4", "ok": False, "error": "b.mp4: broken"})
    rf.close()
    # a kill in the middle of a write: a torn last line is dropped (and that video redone)
    with open(out, "ab") as f:
        f.write(b'{"video": "c.mp4", "ok": tr')
    again = collection.ResultsFile(str(out))
    assert again.done == {os.path.abspath("a.mp4"), os.path.abspath("b.mp4")}
    again.write({"video": "c.mp4", "ok": True})
    again.close()
    lines = out.read_text().splitlines()
    assert [json.loads(x)["video"] for x in lines] == ["a.mp4", "b.mp4", "c.mp4"]
    # failed ones again; afresh
    retry = collection.ResultsFile(str(out), retry_failed=True)
    retry.close()
    assert retry.done == {os.path.abspath("a.mp4"), os.path.abspath("c.mp4")}
    assert [json.loads(x)["video"] for x in out.read_text().splitlines()] == ["a.mp4", "c.mp4"]
    # an output in a folder that does not exist yet: made
    deep = tmp_path / "new" / "folder" / "r.jsonl"
    assert collection.merge_parts(str(deep), []) == 0
    collection.ResultsFile(str(deep)).close()
    assert deep.exists()
    fresh = collection.ResultsFile(str(out), overwrite=True)
    fresh.close()
    assert fresh.done == set() and out.read_text() == ""
    # not a results file: refused by name, untouched
    other = tmp_path / "other.jsonl"
    other.write_text('{"something": 1}\n')
    with pytest.raises(DataError) as e:
        collection.ResultsFile(str(other))
    assert e.value.path == str(other) and other.read_text() == '{"something": 1}\n'


def _run(entries, out, **kw):
    results = collection.ResultsFile(str(out), overwrite=kw.pop("overwrite", False))
    try:
        report = collection.predict_collection(entries, kw.pop("clip"), CLASSES, _predict, results,
                                               progress=False, **kw)
    finally:
        results.close()
    return report, [json.loads(x) for x in out.read_text().splitlines()]


def _damaged(tmp_path, root):
    """A truncated mp4, an empty one and a file that is not a video."""
    src = _files(root)[0]
    truncated = tmp_path / "truncated.mp4"
    data = open(src, "rb").read()
    truncated.write_bytes(data[:len(data) // 4])
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "notavideo.avi").write_text("hello")
    return [str(truncated), str(tmp_path / "empty.mp4"), str(tmp_path / "notavideo.avi")]


@pytest.mark.parametrize("batch,workers,held", [(1, 0, False), (3, 0, False), (2, 2, False), (2, 2, True)])
def test_batches_and_workers_give_the_same_lines_bad_videos_named(videos, tmp_path, batch, workers, held):
    root, config, clip = videos
    good = _files(root)
    bad = _damaged(tmp_path, root)
    order = good[:2] + bad[:1] + good[2:4] + bad[1:] + good[4:]
    entries = collection.gather(order)
    ref_report, ref = _run(entries, tmp_path / "one.jsonl", clip=clip, batch=1, workers=0)
    assert [r["video"] for r in ref] == order                      # in the order given
    assert [r["video"] for r in ref if not r["ok"]] == bad
    assert all(os.path.basename(r["video"]) in r["error"] for r in ref if not r["ok"])
    assert ref_report.predicted == 6 and len(ref_report.failed) == 3
    report, lines = _run(entries, tmp_path / "other.jsonl", clip=clip, batch=batch, workers=workers,
                         pause_decoding=held)
    assert lines == ref                      # the stand-in model is per video: equal, whatever the batch
    assert (report.predicted, len(report.failed)) == (6, 3)
    # the line of a good video: segments with times, top-k, the detected spans
    r = ref[0]
    assert len(r["segments"]) == config.model.seq_len and r["segments"][0]["start_s"] == 0.0
    assert r["segments"][-1]["end_s"] == pytest.approx(r["duration_s"])
    assert [t["emotion"] for t in r["top"]] and r["fps_source"]


def test_a_second_run_skips_what_is_done_and_redoes_a_torn_line(videos, tmp_path):
    root, _, clip = videos
    entries = collection.gather(_files(root))
    _, whole = _run(entries, tmp_path / "whole.jsonl", clip=clip)
    part = tmp_path / "part.jsonl"
    _, first = _run(entries[:3], part, clip=clip)
    with open(part, "ab") as f:                    # killed while writing the 4th line
        f.write(json.dumps(whole[3]).encode()[:40])
    report, lines = _run(entries, part, clip=clip)
    assert (report.skipped, report.predicted) == (3, 3)
    assert lines == whole                            # 6 lines, none twice, each as in one run


def test_max_bad_share_stops_early(videos, tmp_path):
    root, _, clip = videos
    bad = _damaged(tmp_path, root)
    entries = collection.gather(bad + _files(root))
    report, lines = _run(entries, tmp_path / "r.jsonl", clip=clip, max_bad_share=0.2)
    # 9 videos: the 2nd failure is more than 0.2 of them
    assert report.stopped and "max-bad-share" in report.stopped
    assert len(report.failed) == 2 and len(lines) == 2


def test_summary_csv(videos, tmp_path):
    root, _, clip = videos
    entries = collection.gather(_files(root)[:2] + _damaged(tmp_path, root)[:1])
    _, lines = _run(entries, tmp_path / "r.jsonl", clip=clip)
    collection.write_summary(lines, str(tmp_path / "r.csv"))
    rows = list(csv.DictReader(open(tmp_path / "r.csv")))
    assert [r["ok"] for r in rows] == ["1", "1", "0"]
    assert rows[0]["emotion"] == lines[0]["top"][0]["emotion"] and rows[2]["error"]


def test_a_silent_video_fails_without_allow_silence(videos, tmp_path):
    root, _, clip = videos
    entries = collection.gather(_files(root)[:1])
    strict = dataclasses.replace(clip, allow_silence=False)
    report, (line,) = _run(entries, tmp_path / "r.jsonl", clip=strict)
    assert not line["ok"] and "no audio track" in line["error"] and line["video"] in line["error"]
    assert report.failed and report.predicted == 0


def test_a_data_error_crosses_processes():
    # a decoding worker's error is pickled to the parent (unpicklable, the pool hung)
    import pickle
    e = pickle.loads(pickle.dumps(DataError("a.mp4", "truncated")))
    assert isinstance(e, DataError) and (e.path, e.problem, str(e)) == ("a.mp4", "truncated", "a.mp4: truncated")


def test_readers_offer_a_pause_point_between_frames_and_before_the_audio(videos, tmp_path):
    # what holds a decoding process while the model computes (Decoder.held)
    from cten_common.data.readers import base
    root, _, clip = videos
    calls = []
    base.set_pause_point(lambda: calls.append(1))
    try:
        sample, _, error = collection._decode((collection.gather(_files(root)[:1])[0], clip, CLASSES))
    finally:
        base.set_pause_point(None)
    assert error is None
    n_read = len(np.unique(sample["frame_indices"]))
    assert len(calls) >= n_read + 2        # a packet at least per frame read, and twice for the audio
    calls.clear()
    collection._decode((collection.gather(_files(root)[:1])[0], clip, CLASSES))
    assert calls == []                     # none set: never held


def test_held_decoders_wait_and_go_on(videos):
    import threading
    root, _, clip = videos
    decoder = collection.Decoder(collection.gather(_files(root)[:2]), clip, CLASSES, workers=1, pause_held=True)
    results, first = decoder.results(), []
    try:
        with decoder.held():             # the model computing: no video can come out
            taker = threading.Thread(target=lambda: first.append(next(results)))
            taker.start()
            taker.join(5)
            assert taker.is_alive() and not first
        taker.join(120)                  # let go: the decoder goes on where it was held
        assert not taker.is_alive() and first[0][3] is None
        assert [r[3] for r in results] == [None]
    finally:
        decoder.close()
    assert collection.Decoder([], clip, CLASSES, workers=0, pause_held=True).gate is None
