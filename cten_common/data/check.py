"""Scan a data set before training: every bad entry at once, each naming its file."""
from .annotations import IndexProblems, load_annotation, load_caer
from .audio import load_audio
from .datasets import load_cached_fbank
from .errors import DataError
from .video import open_video

FORMATS = ("ve8", "ekman6", "caer")


def build_index(data, subset, problems=None):
    """Items and class names of one subset, from a config's ``data`` section.

    ``format``: ve8 / ekman6 (``annotation`` JSON, ``video_root``, optional
    ``audio_root``) or caer (``video_root`` holding train/validation/test).
    """
    fmt = data.get("format", "ve8")
    if fmt not in FORMATS:
        raise ValueError(f"data.format must be one of {FORMATS}, got {fmt!r}")
    if fmt == "caer":
        return load_caer(data["video_root"], subset, problems)
    return load_annotation(data["annotation"], data["video_root"], data.get("audio_root"),
                           subset, problems)


def scan_items(items, with_audio=True, allow_silence=False, progress=True):
    """Open every video (and its audio) once; return the list of DataErrors."""
    from tqdm import tqdm

    problems = []
    for item in tqdm(items, desc="checking videos", disable=not progress):
        try:
            if open_video(item.video_path).n_frames < 1:
                problems.append(DataError(item.video_path, "no frames"))
                continue
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


def scan(data, subsets=("training", "validation"), with_audio=True, progress=True):
    """All problems of the data set described by a config's ``data`` section."""
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
        items, with_audio, bool(data.get("allow_silence", False)), progress)
    return items, problems
