"""How long cten-check-data takes on a VideoEmotion-8-sized set of frame folders.

    python -m benchmarks.bench_check [--videos 110] [--frames 3200] [--root /tmp/cten_bench_check]
                                     [--threads 1,4,8,16] [--out benchmarks/results/check_data]
                                     [--keep] [--reuse]

Generates the reference layout at a tenth of VideoEmotion-8's size by default
(110 frame folders x 3,200 JPEGs of 320x240, about 14 KB each: 352,000 files;
VideoEmotion-8 has ~1,100 videos, ~3.5 million frames), 8 distinct encoded
frames written over and over (the check reads bytes: identical content costs
what any does), an ``n_frames`` file per folder, an mp3 per video (the check
decodes each whole) and the annotation.  Then it times the default check
(``scan``: every JPEG's header and end marker, first and last frame decoded,
every mp3 decoded):

* cold: after ``sync; echo 3 > /proc/sys/vm/drop_caches`` (needs root; said
  when it could not be done), for each thread count;
* warm: the same again, the files in the page cache;
* ``--decode``'s rate: every frame of 2 folders decoded, frames per second.

It prints a table, writes ``check_data.json`` and ``check_data.md`` under
``--out`` with the extrapolation to VideoEmotion-8 (linear in the number of
files), and deletes the generated set unless ``--keep``.
"""
import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time

import cv2
import numpy as np

VE8_VIDEOS, VE8_FRAMES = 1101, 3_500_000


def _frames(k=8, seed=0):
    """``k`` distinct 320x240 JPEGs (bytes) of smooth colour fields with noise."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(k):
        low = rng.uniform(0, 255, (6, 8, 3)).astype(np.float32)
        img = cv2.resize(low, (320, 240), interpolation=cv2.INTER_CUBIC)
        img += rng.normal(0, 9, img.shape)
        ok, data = cv2.imencode(".jpg", np.clip(img, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 85])
        out.append(data.tobytes())
    return out


def generate(root, videos, frames):
    """The reference layout under ``root``; returns the annotation's path."""
    jpgs = _frames()
    labels = ["Anger", "Anticipation", "Disgust", "Fear", "Joy", "Sadness", "Surprise", "Trust"]
    mp3 = os.path.join(root, "tone.mp3")
    os.makedirs(root, exist_ok=True)
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"sine=frequency=440:duration={frames / 30:.0f}", "-ac", "2", "-ar", "44100",
                    "-c:a", "libmp3lame", "-b:a", "128k", mp3], check=True)
    database = {}
    for v in range(videos):
        label = labels[v % len(labels)]
        vid = f"{label}_{v:04d}"
        folder = os.path.join(root, "frames", label, vid)
        os.makedirs(folder, exist_ok=True)
        for i in range(frames):
            with open(os.path.join(folder, f"{i + 1:06d}.jpg"), "wb") as f:
                f.write(jpgs[(i // 25) % len(jpgs)])
        with open(os.path.join(folder, "n_frames"), "w") as f:
            f.write(f"{frames}\n")
        os.makedirs(os.path.join(root, "audio", label), exist_ok=True)
        shutil.copyfile(mp3, os.path.join(root, "audio", label, vid + ".mp3"))
        database[vid] = {"subset": "training" if v % 3 else "validation", "annotations": {"label": label}}
    ann = os.path.join(root, "annotation.json")
    with open(ann, "w") as f:
        json.dump({"labels": labels, "database": database}, f)
    return ann, sum(len(j) for j in jpgs) / len(jpgs)


def drop_caches():
    try:
        subprocess.run(["sync"], check=True)
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def _cpu_s():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def time_scan(data, threads, with_audio=True):
    """(wall seconds, CPU seconds of this process, items, problems) of one default check."""
    from cten_common.data.check import scan
    began, cpu = time.perf_counter(), _cpu_s()
    items, problems = scan(data, progress=False, threads=threads, with_audio=with_audio)
    return time.perf_counter() - began, _cpu_s() - cpu, len(items), len(problems)


def decode_rate(data, n_folders=2):
    """Frames per second of ``--decode``'s work (every frame of ``n_folders`` folders, one thread)."""
    from cten_common.data.annotations import build_index
    from cten_common.data.check import check_frame_folder
    items, _ = build_index(data, "training")
    began, cpu, frames = time.perf_counter(), _cpu_s(), 0
    for item in items[:n_folders]:
        problems, n = check_frame_folder(item.video_path, decode=True)
        assert not problems, problems
        frames += n
    return frames / (time.perf_counter() - began), frames / (_cpu_s() - cpu)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", type=int, default=110)
    p.add_argument("--frames", type=int, default=3200)
    p.add_argument("--root", default="/tmp/cten_bench_check")
    p.add_argument("--threads", default="1,4,8,16")
    p.add_argument("--out", default="benchmarks/results/check_data")
    p.add_argument("--keep", action="store_true", help="keep the generated set")
    p.add_argument("--reuse", action="store_true", help="use the set already under --root (made with the same sizes)")
    a = p.parse_args(argv)
    began = time.perf_counter()
    if a.reuse and os.path.isfile(os.path.join(a.root, "annotation.json")):
        ann, jpg_bytes = os.path.join(a.root, "annotation.json"), float(np.mean([len(j) for j in _frames()]))
    else:
        ann, jpg_bytes = generate(a.root, a.videos, a.frames)
    generate_s = time.perf_counter() - began
    data = {"annotation": ann, "video_root": os.path.join(a.root, "frames"),
            "audio_root": os.path.join(a.root, "audio")}
    files = a.videos * a.frames
    rows = []
    try:
        for threads in [int(t) for t in a.threads.split(",")]:
            for cache in ("cold", "warm"):
                dropped = drop_caches() if cache == "cold" else None
                load = os.getloadavg()[0]
                seconds, cpu, n_items, n_problems = time_scan(data, threads)
                assert n_items == a.videos and n_problems == 0, (n_items, n_problems)
                rows.append({"threads": threads, "cache": cache if dropped is not False else "warm (no root)",
                             "seconds": round(seconds, 2), "cpu_s": round(cpu, 2), "load_before": round(load, 1),
                             "files_per_s": round(files / seconds),
                             "ve8_minutes": round(seconds * VE8_FRAMES / files / 60, 1)})
                print(rows[-1], flush=True)
        # the same without audio: the frames' share
        drop_caches()
        seconds, cpu, _, _ = time_scan(data, 8, with_audio=False)
        frames_only = {"threads": 8, "cache": "cold", "seconds": round(seconds, 2), "cpu_s": round(cpu, 2),
                       "ve8_minutes": round(seconds * VE8_FRAMES / files / 60, 1)}
        rate, cpu_rate = decode_rate(data)
    finally:
        if not a.keep:
            shutil.rmtree(a.root, ignore_errors=True)
    result = {"videos": a.videos, "frames_per_video": a.frames, "files": files, "jpeg_bytes": round(jpg_bytes),
              "generate_s": round(generate_s, 1), "scans": rows, "frames_only_cold_8_threads": frames_only,
              "decode_frames_per_s_one_thread": round(rate), "decode_frames_per_cpu_s": round(cpu_rate),
              "cpus": os.cpu_count(),
              "machine": platform.platform(), "python": sys.version.split()[0],
              "ve8_decode_hours_one_thread": round(VE8_FRAMES / rate / 3600, 2)}
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "check_data.json"), "w") as f:
        json.dump(result, f, indent=1)
    lines = [f"# cten-check-data on {a.videos} frame folders x {a.frames} JPEGs ({files} files, "
             f"~{jpg_bytes / 1024:.0f} KB each) + {a.videos} mp3s", "",
             f"`python -m benchmarks.bench_check --videos {a.videos} --frames {a.frames}`, "
             f"{os.cpu_count()} CPU cores", "",
             "| threads | page cache | load average before | seconds | CPU seconds | files/s | "
             "VideoEmotion-8 (3.5 M frames), extrapolated |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['threads']} | {r['cache']} | {r['load_before']} | {r['seconds']} | {r['cpu_s']} | "
              f"{r['files_per_s']} | {r['ve8_minutes']} min |" for r in rows]
    lines += ["", f"Frames alone (no audio), 8 threads, cold: {frames_only['seconds']} s "
                  f"(VideoEmotion-8: {frames_only['ve8_minutes']} min).",
              f"`--decode`: {rate:.0f} frames/s in one thread ({cpu_rate:.0f} per CPU second): VideoEmotion-8 "
              f"about {result['ve8_decode_hours_one_thread']} h in one thread, "
              f"{VE8_FRAMES / cpu_rate / 3600 / (os.cpu_count() or 1):.1f} h on {os.cpu_count()} free cores."]
    with open(os.path.join(a.out, "check_data.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
