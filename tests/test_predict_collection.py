"""cten-predict over a collection, as a user runs it: folders, lists and annotations in one
command, damaged videos named and counted (exit 1), a run killed with ``kill -9`` and
started again equal to an uninterrupted one, plots per video, and the same under
``mpirun -np 2`` (each rank its part, rank 0 merging)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from helpers import make_tiny_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPIRUN = shutil.which("mpirun")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny model's weights and config, its 8 synthetic videos, and 3 damaged files."""
    from cten_common.config import load_run_config
    from cten_jt.checkpoint import save_weights
    from cten_jt.models import build_model
    root = tmp_path_factory.mktemp("collection_cli")
    config_path = make_tiny_run(root, videos_per_class=4)
    save_weights(build_model(load_run_config(str(config_path)).model, init_seed=0), str(root / "w.safetensors"))
    videos = sorted(str(p) for p in (root / "data" / "videos").rglob("*.mp4"))
    bad = root / "bad"
    bad.mkdir()
    data = open(videos[0], "rb").read()
    (bad / "truncated.mp4").write_bytes(data[:len(data) // 4])
    (bad / "empty.mp4").write_bytes(b"")
    (bad / "notavideo.avi").write_text("hello")
    return root, config_path, videos, sorted(str(p) for p in bad.iterdir())


def _command(run, *args):
    root, config_path, _, _ = run
    return [sys.executable, "-m", "cten_jt.predict", *map(str, args), "--weights", str(root / "w.safetensors"),
            "--config", str(config_path), "--allow-silence"]


def _predict(run, *args, expect=0):
    proc = subprocess.run(_command(run, *args), cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == expect, f"exit {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _lines(path):
    return [json.loads(line) for line in open(path)]


def test_a_folder_with_damaged_videos(run, tmp_path):
    from cten_common.config import load_run_config
    root, config_path, videos, bad = run
    seq_len = load_run_config(str(config_path)).model.seq_len
    out = tmp_path / "r.jsonl"
    proc = _predict(run, root / "data" / "videos", root / "bad", "--out", out, "--plots", tmp_path / "plots",
                    "--batch", "2", expect=1)
    lines = _lines(out)
    assert [r["video"] for r in lines] == videos + bad                  # searched recursively, sorted
    assert [r["video"] for r in lines if not r["ok"]] == bad
    for r in lines[len(videos):]:                                        # named errors
        assert os.path.basename(r["video"]) in r["error"], r
    ok = lines[:len(videos)]
    assert all(len(r["segments"]) == seq_len and r["top"] and "intervals" in r for r in ok)
    assert sorted(os.listdir(tmp_path / "plots")) == sorted(os.path.basename(v)[:-4] + ".png" for v in videos)
    summary = (tmp_path / "r.csv").read_text().splitlines()
    assert len(summary) == 1 + len(lines) and all(os.path.basename(b) in proc.stdout for b in bad)
    # the same videos one at a time, listed in a text file, with the annotation's ground truth
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(videos) + "\n")
    _predict(run, listing, "--out", tmp_path / "one.jsonl", "--workers", "0")
    one = _lines(tmp_path / "one.jsonl")
    assert [r["video"] for r in one] == videos and all(r["label"] and r["ground_truth"] for r in one)
    # (batched by 2 or one by one: equal results are cten_common's test, with a model per video)
    # a second run with the same --out: nothing to do, the failed ones named again
    again = _predict(run, root / "data" / "videos", root / "bad", "--out", out, expect=1)
    assert _lines(out) == lines and "11 of 11 videos" in again.stdout and "0 predicted now" in again.stdout


def test_an_annotation_as_input(run, tmp_path):
    root, config_path, videos, _ = run
    gone = videos[-1]
    shutil.move(gone, tmp_path / "away.mp4")
    try:
        _predict(run, root / "data" / "annotations.json", "--video-root", root / "data" / "videos",
                 "--audio-root", root / "data" / "audio", "--out", tmp_path / "r.jsonl", expect=1)
    finally:
        shutil.move(tmp_path / "away.mp4", gone)
    lines = _lines(tmp_path / "r.jsonl")
    assert sorted(r["video"] for r in lines if r["ok"]) == sorted(videos[:-1])
    assert all(r["label"] == r["ground_truth"][0]["emotion"] for r in lines if r["ok"])
    (missing,) = [r for r in lines if not r["ok"]]
    assert os.path.basename(gone)[:-4] in missing["error"]


def _copies(run, folder, n):
    """``n`` videos (copies of the synthetic ones: each its own path)."""
    _, _, videos, _ = run
    folder.mkdir()
    for i in range(n):
        shutil.copy(videos[i % len(videos)], folder / f"v{i:03d}.mp4")
    return sorted(str(p) for p in folder.iterdir())


def test_killed_and_started_again_equals_one_run(run, tmp_path):
    videos = _copies(run, tmp_path / "videos", 40)
    whole = tmp_path / "whole.jsonl"
    _predict(run, tmp_path / "videos", "--out", whole, "--workers", "0")
    part = tmp_path / "part.jsonl"
    # run through sh, which reaps it: Jittor (loaded in this process by other tests) quits its
    # process when a child of its own dies of a signal other than SIGTERM
    pid_file, rc_file = tmp_path / "pid", tmp_path / "rc"
    wrapper = subprocess.Popen(["sh", "-c", '"$@" & echo $! > "$PID_FILE"; wait $!; echo $? > "$RC_FILE"', "sh",
                                *_command(run, tmp_path / "videos", "--out", part, "--workers", "0")],
                               cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT, PID_FILE=str(pid_file),
                                                  RC_FILE=str(rc_file)),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    began = time.time()
    while wrapper.poll() is None and time.time() - began < 300:
        if part.exists() and part.read_bytes().count(b"\n") >= 10:
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
            break
        time.sleep(0.005)
    wrapper.wait()
    assert rc_file.read_text().strip() == str(128 + signal.SIGKILL), "the run ended before it could be killed"
    killed = _lines(part)                                    # whole lines only
    assert 10 <= len(killed) < len(videos)
    _predict(run, tmp_path / "videos", "--out", part, "--workers", "0")
    resumed, reference = _lines(part), _lines(whole)
    assert [r["video"] for r in resumed] == videos            # each once, in order
    assert resumed == reference


def _mpirun(run, *args):
    return [MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", "2", "--mca", "btl", "self,vader",
            "-x", "PYTHONPATH"] + _command(run, *args)


def _ranks_of(out):
    """The pids of the cten-predict processes writing ``out`` (not mpirun's, not sh's, not
    the processes a rank forks, which share its command line)."""
    pids = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if argv[0].decode(errors="replace") == sys.executable and b"cten_jt.predict" in argv \
                and str(out).encode() in argv:
            pids[int(pid)] = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    return [pid for pid, parent in pids.items() if parent not in pids]


@pytest.mark.skipif(MPIRUN is None, reason="no mpirun (apt install openmpi-bin libopenmpi-dev)")
def test_two_ranks_killed_and_started_again_write_what_one_process_writes(run, tmp_path):
    _, _, _, bad = run
    videos = _copies(run, tmp_path / "videos", 30)
    results = tmp_path / "results"
    results.mkdir()
    one = results / "one.jsonl"
    _predict(run, tmp_path / "videos", *bad, "--out", one, "--workers", "0", expect=1)
    two = results / "two.jsonl"
    env = dict(os.environ, PYTHONPATH=ROOT)
    # both ranks killed with kill -9 once 10 lines are in their parts (mpirun reaped by sh: see above)
    wrapper = subprocess.Popen(["sh", "-c", '"$@"; exit 0', "sh",
                                *_mpirun(run, tmp_path / "videos", *bad, "--out", two, "--workers", "0")],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    began, killed = time.time(), []
    while wrapper.poll() is None and time.time() - began < 300:
        parts = [results / f"two.rank{r}.jsonl" for r in (0, 1)]
        if sum(p.read_bytes().count(b"\n") for p in parts if p.exists()) >= 10:
            for pid in _ranks_of(two):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            break
        time.sleep(0.005)
    wrapper.wait()
    assert len(killed) == 2, "the ranks ended before they could be killed"
    assert not two.exists() or len(_lines(two)) < 30      # parts left behind, not merged
    proc = subprocess.run(_mpirun(run, tmp_path / "videos", *bad, "--out", two, "--workers", "0"), cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, f"exit {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "by 2 ranks" in proc.stdout and "33 of 33 videos" in proc.stdout, proc.stdout
    assert _lines(two) == _lines(one)                 # merged in the input's order, every video once
    assert sorted(os.listdir(results)) == ["one.csv", "one.jsonl", "two.csv", "two.jsonl"]    # parts merged away
    assert (results / "two.csv").read_text() == (results / "one.csv").read_text()
