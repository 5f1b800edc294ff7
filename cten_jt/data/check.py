"""python -m cten_jt.data.check --config CONFIG.yaml | --annotation A --video-root V [--audio-root R]

Reads every video and audio file of the data set once and reports every bad
entry at once (missing, corrupt, silent, unknown label), before training starts.
Exit status 1 when anything is wrong.
"""
import argparse
import sys

from cten_common.data.check import FORMATS, scan


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m cten_jt.data.check", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="YAML with a 'data' section (format, annotation, video_root, audio_root)")
    p.add_argument("--format", choices=FORMATS)
    p.add_argument("--annotation")
    p.add_argument("--video-root")
    p.add_argument("--audio-root")
    p.add_argument("--allow-silence", action="store_true", help="videos without audio track are not errors")
    p.add_argument("--no-audio", action="store_true", help="visual-only: do not check audio")
    a = p.parse_args(argv)
    data = {}
    if a.config:
        from cten_common.run_config import load_run_config
        data = {k: v for k, v in load_run_config(a.config)["data"].items() if v is not None}
    for key in ("format", "annotation", "video_root", "audio_root"):
        if getattr(a, key) is not None:
            data[key] = getattr(a, key)
    if a.allow_silence:
        data["allow_silence"] = True
    if "video_root" not in data or (data.get("format", "ve8") != "caer" and "annotation" not in data):
        p.error("give --config or --annotation and --video-root (--format caer: --video-root)")
    items, problems = scan(data, with_audio=not a.no_audio)
    for problem in problems:
        print(f"BAD {problem}")
    print(f"{len(items)} videos indexed, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
