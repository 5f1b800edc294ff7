"""cten-check-data --config CONFIG.yaml | --annotation A --video-root V [--audio-root R]

Reads every video and audio file of the data set once and reports every bad
entry at once (missing, corrupt, silent, unknown label), before training starts,
and lists each video's frame rate and where it came from (RATE lines; see
cten_common.data.timing): videos with no rate source are named, since their
detection times would be guesses.  Exit status 1 when anything is wrong.  Needs no framework: also
``python -m cten_common.data.check`` (or ``python -m cten_jt.data.check``).
"""
import argparse
import sys
from collections import Counter

from .annotations import FORMATS, IndexProblems, build_index
from .audio import load_audio
from .errors import DataError
from .fbank import load_cached_fbank
from .readers import open_video
from .timing import assumed_rate_warning, frame_timing


def scan_items(items, with_audio=True, allow_silence=False, progress=True, rates=None, frame_fps=None):
    """Open every video (and its audio) once; return the list of DataErrors.  ``rates``: a
    list that gets ``(item, FrameTiming)`` of every video that opens (``frame_fps``:
    data.frame_fps)."""
    from tqdm import tqdm

    problems = []
    for item in tqdm(items, desc="checking videos", disable=not progress):
        try:
            video = open_video(item.video_path)
            if video.n_frames < 1:
                problems.append(DataError(item.video_path, "no frames"))
                continue
            if rates is not None:
                rates.append((item, frame_timing(video, item, frame_fps)))
        except DataError as exc:
            problems.append(exc)
            continue
        if not with_audio:
            continue
        try:
            if (item.audio_path or "").endswith(".npy"):
                load_cached_fbank(item.audio_path)
            else:
                load_audio(item.audio_path or item.video_path)
        except DataError as exc:
            if not (allow_silence and "no audio track" in exc.problem):
                problems.append(exc)
    return problems


def scan(data, subsets=("training", "validation"), with_audio=True, progress=True, rates=None):
    """All problems of the data set described by a config's ``data`` section (``rates``: as
    in ``scan_items``)."""
    index_problems = IndexProblems()
    items = []
    for subset in subsets:
        try:
            found, _ = build_index(data, subset, index_problems)
        except DataError as exc:
            index_problems.problems.append(exc)
            continue
        items += found
    problems = index_problems.problems + scan_items(
        items, with_audio, bool(data.get("allow_silence", False)), progress, rates, data.get("frame_fps"))
    return items, problems


def print_rates(rates):
    """One RATE line per video (rate, source, any note), a count per source, and the
    videos whose rate is assumed."""
    for item, timing in rates:
        print(f"RATE {item.video_id} {timing.describe()}  [{item.video_path}]")
    counts = Counter(timing.source for _, timing in rates)
    print("frame rates from: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "-"))
    assumed = [item.video_id for item, timing in rates if not timing.reliable]
    if assumed:
        print(f"WARNING: {assumed_rate_warning(assumed)}")


def main(argv=None, prog="cten-check-data"):
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[1])
    p.add_argument("--config", help="YAML with a 'data' section (format, annotation, video_root, audio_root)")
    p.add_argument("--format", choices=FORMATS)
    p.add_argument("--annotation")
    p.add_argument("--video-root")
    p.add_argument("--audio-root")
    p.add_argument("--allow-silence", action="store_true", help="videos without audio track are not errors")
    p.add_argument("--no-audio", action="store_true", help="visual-only: do not check audio")
    p.add_argument("--frame-fps", type=float, help="data.frame_fps: the rate of videos with no other source")
    a = p.parse_args(argv)
    data = {}
    if a.config:
        from ..run_config import load_run_config
        try:
            data = {k: v for k, v in load_run_config(a.config)["data"].items() if v is not None}
        except ValueError as exc:   # names the file and the setting
            print(f"error: {exc}", file=sys.stderr)
            return 2
    for key in ("format", "annotation", "video_root", "audio_root"):
        if getattr(a, key) is not None:
            data[key] = getattr(a, key)
    if a.allow_silence:
        data["allow_silence"] = True
    if a.frame_fps is not None:
        if not a.frame_fps > 0:
            p.error("--frame-fps must be a positive number of frames per second")
        data["frame_fps"] = a.frame_fps
    if "video_root" not in data or (data.get("format", "ve8") != "caer" and "annotation" not in data):
        p.error("give --config or --annotation and --video-root (--format caer: --video-root)")
    rates = []
    items, problems = scan(data, with_audio=not a.no_audio, rates=rates)
    print_rates(rates)
    for problem in problems:
        print(f"BAD {problem}")
    print(f"{len(items)} videos indexed, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(prog="python -m cten_common.data.check"))
