"""benchmarks.bench_predict: the collections it builds are what cten-predict reads (N
videos, each its own path, the frame folders with their mp3 and rate), and its goals are
judged as the issue states them."""
import os

from benchmarks import bench_predict
from cten_common import collection


def _made(tmp_path):
    folder = tmp_path / "long_frames"
    folder.mkdir()
    (folder / "000001.jpg").write_bytes(b"")
    (folder / "n_frames").write_text("1\n")
    for name in ("long.mp4", "long.mp3"):
        (tmp_path / name).write_bytes(b"")
    return {"folder": str(folder), "mp4": str(tmp_path / "long.mp4"), "mp3": str(tmp_path / "long.mp3")}


def test_collections_hold_n_videos_each_its_own_path(tmp_path):
    made = _made(tmp_path)
    cache = tmp_path / "cache"
    mp4 = collection.gather(bench_predict.collection(str(cache), made, "mp4", 5))
    assert len({e.key for e in mp4}) == 5 and all(os.path.realpath(e.path) == made["mp4"] for e in mp4)
    args = bench_predict.collection(str(cache), made, "folder", 7)
    entries = collection.gather(args[:1], video_root=args[2], audio_root=args[4])
    assert len({e.key for e in entries}) == 7 and all(e.error is None for e in entries)
    assert all(os.path.realpath(e.path) == made["folder"] and os.path.realpath(e.audio) == made["mp3"]
               and e.fps == bench_predict.FPS for e in entries)
    # a larger collection after a smaller one: the links are reused, the listing is its own
    assert len(collection.gather(bench_predict.collection(str(cache), made, "mp4", 9))) == 9


def test_goals():
    report = {"model_only": {"videos_per_hour": 3600.0, "model_cpu_s_per_video": 1.8,
                             "decode_cpu_s_per_video": {"folder": 0.2, "mp4": 0.8}},
              "collection": [{"layout": "folder", "videos_per_hour": 3100.0},
                             {"layout": "mp4", "videos_per_hour": 2000.0}],
              "loop": {"videos_per_hour": 600.0},
              "memory": [{"videos": 200, "peak_rss_mb": 2100}, {"videos": 20, "peak_rss_mb": 2050}]}
    lines, met = bench_predict.goals(report)
    assert met == {"hidden_folder": True, "hidden_mp4": False, "against_loop": True, "memory_flat": True}
    assert "0.86 of the model-only rate" in lines[0] and "bound model / (model + decoding) here: 0.90" in lines[0]
    report["memory"][0]["peak_rss_mb"] = 2200
    report["loop"]["videos_per_hour"] = 700.0
    _, met = bench_predict.goals(report)
    assert not met["memory_flat"] and not met["against_loop"]
