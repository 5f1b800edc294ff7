"""Write the synthetic data set: real mp4 videos, wav audio, VideoEmotion-8 style JSON.

    cten-make-synthetic --out DIR [--classes K] [--videos-per-class N] [--seed S]

Layout: DIR/videos/{label}/{id}.mp4, DIR/audio/{label}/{id}.wav, DIR/annotations.json
(each entry records its evidence span as "segments": [[start_sec, end_sec]]).
"""
import argparse
import sys

from .synthetic import SyntheticSpec, make_synthetic_dataset


def main(argv=None):
    d = SyntheticSpec()
    p = argparse.ArgumentParser(prog="cten-make-synthetic", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--classes", type=int, default=d.classes)
    p.add_argument("--videos-per-class", type=int, default=d.videos_per_class)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--duration", type=float, default=d.duration, help="seconds per video")
    p.add_argument("--fps", type=int, default=d.fps)
    p.add_argument("--size", type=int, default=d.size, help="frame side in pixels")
    a = p.parse_args(argv)
    if a.classes < 2 or a.videos_per_class < 2:
        p.error("need at least 2 classes and 2 videos per class")
    spec = SyntheticSpec(classes=a.classes, videos_per_class=a.videos_per_class, seed=a.seed,
                         duration=a.duration, fps=a.fps, size=a.size)
    path = make_synthetic_dataset(a.out, spec)
    print(f"wrote {a.classes * a.videos_per_class} videos and {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
