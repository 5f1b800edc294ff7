"""Build annotation JSON files from a folder of labelled videos, with splits, and
optionally cache frames (the reference's frame-folder layout) and audio tracks.

    cten-prepare-dataset --videos ROOT --out ANN.json [--ratio 2:1 --runs 10 | --folds 5]
                         [--seed 0] [--frames-out DIR] [--audio-out DIR]
                         [--features-out DIR [--audio-in DIR]]
                         [--store-out DIR [--store-short-side 240] [--store-quality 90]]

ROOT holds ``{label}/{id}.{mp4,avi,mkv,webm}`` (or frame folders ``{label}/{id}/``).
``--ratio 2:1 --runs 10`` writes ANN_01.json .. ANN_10.json, each a stratified
random 2:1 training/validation split (the reference's VideoEmotion-8 protocol);
``--folds k`` writes k files, file i using fold i as validation.  A single run
writes ANN.json itself.  ``--frames-out`` decodes every video into
``DIR/{label}/{id}/000001.jpg ...`` plus ``n_frames`` and ``fps`` (the video's
frame rate; a variable rate is written as its mean, frames / seconds, and said); ``--audio-out`` extracts
each video's audio track to ``DIR/{label}/{id}.wav``; ``--features-out DIR``
caches each video's Kaldi filterbank as ``DIR/{label}/{id}.npy``, which the data
sets read instead of decoding audio when DIR is their audio root.

``--store-out DIR`` writes each video's frame store ``DIR/{label}/{id}.frames``
(cten_common.data.readers.frame_store): every frame as a JPEG of short side
``--store-short-side`` (default 240, the reference's frame height; 0 keeps the
source size) at ``--store-quality`` (default 90), in one random-access file per
video that the data sets read like a video when DIR is their video root.  It is
the fast layout for real-length videos: a training step reads only its frames,
without one file per frame.  Each video is decoded once; writes are atomic, and
a rerun skips the stores that are current (same source size and mtime, same
settings), so an interrupted run resumes.
"""
import argparse
import json
import os
import sys

import numpy as np

from .annotations import VE8_CLASSES, VIDEO_EXTENSIONS
from .errors import DataError


def find_videos(root):
    """``{label: [(id, path), ...]}`` of a labelled folder of videos."""
    found = {}
    if not os.path.isdir(root):
        raise DataError(root, "video folder not found")
    for label in sorted(os.listdir(root)):
        class_dir = os.path.join(root, label)
        if not os.path.isdir(class_dir):
            continue
        for name in sorted(os.listdir(class_dir)):
            stem, ext = os.path.splitext(name)
            path = os.path.join(class_dir, name)
            if ext.lower() in VIDEO_EXTENSIONS or (os.path.isdir(path) and not ext):
                found.setdefault(label, []).append((stem, path))
    if not found:
        raise DataError(root, "no {label}/{id}.{mp4,avi,mkv,webm} videos found")
    return found


def ordered_labels(labels):
    """VideoEmotion-8's order when the labels are its classes, else sorted."""
    if set(labels) <= set(VE8_CLASSES):
        return [c for c in VE8_CLASSES if c in labels]
    return sorted(labels)


def ratio_split(videos, train_parts, val_parts, rng):
    """``{id: subset}``: per class, a random train_parts:val_parts split."""
    subset = {}
    for label in sorted(videos):
        ids = [vid for vid, _ in videos[label]]
        order = rng.permutation(len(ids))
        n_val = int(round(len(ids) * val_parts / (train_parts + val_parts)))
        for rank, i in enumerate(order):
            subset[ids[i]] = "validation" if rank < n_val else "training"
    return subset


def fold_splits(videos, k, rng):
    """k ``{id: subset}`` dicts; per class, every video is in exactly one validation fold."""
    splits = [{} for _ in range(k)]
    for label in sorted(videos):
        ids = [vid for vid, _ in videos[label]]
        folds = np.array_split(rng.permutation(len(ids)), k)
        for f in range(k):
            val = {ids[i] for i in folds[f]}
            for vid in ids:
                splits[f][vid] = "validation" if vid in val else "training"
    return splits


def annotation(videos, subset):
    labels = ordered_labels(videos)
    return {"labels": labels,
            "database": {vid: {"subset": subset[vid], "annotations": {"label": label}}
                         for label in labels for vid, _ in videos[label]}}


def folder_rate(video):
    """``(fps, note)``: the rate to write in a frame folder's ``fps`` file for a reader; None
    when it knows none.  A variable rate (timestamps more than half a frame off i / fps)
    becomes its mean, frames / seconds, with a note: a folder keeps no timestamps."""
    from .timing import frame_timing
    timing = frame_timing(video)
    if not timing.reliable:
        return None, None
    n = video.n_frames
    times = timing.frame_times
    if times is not None and np.abs(times - np.arange(n + 1) / timing.fps).max() > 0.5 / timing.fps:
        mean = n / float(times[-1])
        return mean, (f"variable frame rate: the folder's fps file holds the mean, {mean:.3f} fps; "
                      f"frame times inside the video are approximate")
    return timing.fps, None


def cache_frames(videos, out):
    """``out/{label}/{id}/000001.jpg ...`` + ``n_frames`` + ``fps``: one sequential decode per
    video, one frame in memory at a time."""
    import cv2
    from tqdm import tqdm

    from .readers import open_video
    from .readers.frame_folder import write_rate_file
    for label in sorted(videos):
        for vid, path in tqdm(videos[label], desc=f"frames {label}"):
            video = open_video(path)
            folder = os.path.join(out, label, vid)
            os.makedirs(folder, exist_ok=True)
            for i, frame in enumerate(video.iter_frames()):
                cv2.imwrite(os.path.join(folder, f"{i + 1:06d}.jpg"), frame[:, :, ::-1],
                            [cv2.IMWRITE_JPEG_QUALITY, 95])
            with open(os.path.join(folder, "n_frames"), "w") as f:
                f.write(f"{video.n_frames}\n")
            fps, note = folder_rate(video)
            if fps is None:
                print(f"NOTE {path}: no frame rate known, {folder} gets no fps file")
            else:
                write_rate_file(folder, fps)
            if note:
                print(f"NOTE {path}: {note}")


def cache_stores(videos, out, short_side=240, quality=90):
    """``out/{label}/{id}.frames``: the frame store of every video; current stores are
    skipped.  Returns the DataErrors of videos that could not be stored."""
    from tqdm import tqdm

    from .frame_store_writer import write_store
    from .readers.base import STORE_EXTENSION
    problems, skipped = [], 0
    for label in sorted(videos):
        for vid, path in tqdm(videos[label], desc=f"stores {label}"):
            try:
                done = write_store(path, os.path.join(out, label, vid + STORE_EXTENSION),
                                   short_side=short_side, quality=quality, progress=True)
            except DataError as exc:
                problems.append(exc)
                continue
            skipped += done == "skipped"
    if skipped:
        print(f"stores: {skipped} already current, left alone")
    return problems


def cache_audio(videos, out):
    import soundfile
    from tqdm import tqdm

    from cten_common.data.audio import load_audio
    problems = []
    for label in sorted(videos):
        os.makedirs(os.path.join(out, label), exist_ok=True)
        for vid, path in tqdm(videos[label], desc=f"audio {label}"):
            try:
                wave, sr = load_audio(path)
            except DataError as exc:
                problems.append(exc)
                continue
            soundfile.write(os.path.join(out, label, vid + ".wav"), wave.T, sr)
    return problems


def cache_features(videos, out, audio_in=None):
    """``out/{label}/{id}.npy``: the Kaldi filterbank of each video's audio (its own
    track, or ``audio_in/{label}/{id}.{mp3,wav,flac,m4a}``); use ``out`` as audio_root."""
    from tqdm import tqdm

    from .annotations import find_audio
    from cten_common.data.audio import load_audio
    from cten_common.data.fbank import kaldi_fbank
    problems = []
    for label in sorted(videos):
        os.makedirs(os.path.join(out, label), exist_ok=True)
        for vid, path in tqdm(videos[label], desc=f"features {label}"):
            source = (find_audio(audio_in, label, vid) if audio_in else None) or path
            try:
                np.save(os.path.join(out, label, vid + ".npy"), kaldi_fbank(*load_audio(source)))
            except DataError as exc:
                problems.append(exc)
    return problems


def main(argv=None):
    p = argparse.ArgumentParser(prog="cten-prepare-dataset", description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", required=True, help="folder of {label}/{id}.{ext}")
    p.add_argument("--out", required=True, help="annotation JSON (numbered _01.. with several runs/folds)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--ratio", default="2:1", help="training:validation per class (default 2:1)")
    group.add_argument("--folds", type=int, help="k-fold splits instead of ratio splits")
    p.add_argument("--runs", type=int, default=1, help="number of random ratio splits")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames-out", help="also write the frame-folder layout here")
    p.add_argument("--audio-out", help="also extract audio tracks to wav here")
    p.add_argument("--features-out", help="also cache each video's filterbank (.npy) here; "
                                          "pass it as the data set's audio root")
    p.add_argument("--audio-in", help="with --features-out: separate audio files "
                                      "{audio-in}/{label}/{id}.{ext} instead of the videos' tracks")
    p.add_argument("--store-out", help="also write each video's frame store "
                                       "DIR/{label}/{id}.frames (pass DIR as the video root)")
    p.add_argument("--store-short-side", type=int, default=240,
                   help="short side of the stored frames in pixels (default 240; 0: source size)")
    p.add_argument("--store-quality", type=int, default=90, help="JPEG quality of the store (default 90)")
    a = p.parse_args(argv)
    if a.store_short_side < 0:
        p.error("--store-short-side must be >= 0")
    if not 1 <= a.store_quality <= 100:
        p.error("--store-quality must be in 1..100")
    try:
        videos = find_videos(a.videos)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rng = np.random.default_rng(a.seed)
    if a.folds:
        if a.folds < 2 or a.folds > min(len(v) for v in videos.values()):
            p.error(f"--folds must be between 2 and the smallest class size "
                    f"({min(len(v) for v in videos.values())})")
        splits = fold_splits(videos, a.folds, rng)
    else:
        try:
            train_parts, val_parts = (float(x) for x in a.ratio.split(":"))
        except ValueError:
            p.error(f"--ratio must look like 2:1, got {a.ratio!r}")
        splits = [ratio_split(videos, train_parts, val_parts, rng) for _ in range(a.runs)]
    stem, ext = os.path.splitext(a.out)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    for i, subset in enumerate(splits):
        path = a.out if len(splits) == 1 else f"{stem}_{i + 1:02d}{ext or '.json'}"
        with open(path, "w") as f:
            json.dump(annotation(videos, subset), f, indent=1)
        print(f"wrote {path}")
    if a.frames_out:
        cache_frames(videos, a.frames_out)
    problems = cache_audio(videos, a.audio_out) if a.audio_out else []
    if a.features_out:
        problems += cache_features(videos, a.features_out, a.audio_in)
    if a.store_out:
        problems += cache_stores(videos, a.store_out, a.store_short_side, a.store_quality)
    for exc in problems:
        print(f"BAD {exc}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
