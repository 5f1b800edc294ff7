"""benchmarks.gpu_epoch's long-video set (made without ffmpeg, as on the GPU machine): frame
folders in the reference's layout at each video's own rate, no rate file, a cached
filterbank each; the data path reads them, the rate from the filterbank's length."""
import json
import os

import numpy as np

from benchmarks import gpu_epoch
from cten_common.config import load_run_config
from cten_common.data.datasets import build_data


def test_the_set_is_read_by_the_data_path_at_each_videos_rate(tmp_path):
    annotation, video_root, audio_root, labels, specs, counts = gpu_epoch.make_set(
        str(tmp_path), distinct=3, n_train=4, n_val=2, quick=True, processes=2)
    assert counts == [int(round(s[2] * s[3])) for s in specs]
    for (video_id, _, _, _, width, height), n in zip(specs, counts):
        folder = tmp_path / "distinct" / video_id
        assert (folder / "n_frames").read_text() == str(n) and not (folder / "fps").exists()
        assert len([f for f in os.listdir(folder) if f.endswith(".jpg")]) == n
    database = json.loads(open(annotation).read())["database"]
    assert sum(e["subset"] == "training" for e in database.values()) == 4 and len(database) == 6
    config = load_run_config(None, [f"data.annotation={annotation}", f"data.video_root={video_root}",
                                    f"data.audio_root={audio_root}", f"model.n_classes={len(labels)}",
                                    "model.seq_len=2", "model.audio_n_segments=2", "model.snippet_duration=4",
                                    "model.sample_size=32"])
    data = build_data(config, "training", train=False)
    assert len(data) == 4
    for i in range(len(data)):
        timing = data.timing(i)
        spec = next(s for s in specs if data.items[i].video_id.startswith(s[0] + "_"))
        assert timing.source == "audio duration" and abs(timing.fps - spec[3]) < 1e-6, (timing, spec)
    sample = data.load(0)
    assert sample["visual"].shape == (2, 3, 4, 32, 32) and np.isfinite(sample["audio"]).all()
    again = gpu_epoch.make_set(str(tmp_path), distinct=3, n_train=4, n_val=2, quick=True, processes=2)
    assert again[5] == counts           # made once: a second call reuses the folders
