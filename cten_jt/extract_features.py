"""python -m cten_jt.extract_features --config CONFIG --out BANK_DIR [--stride K]
       [--variants eval,center,center+flip] [--dtype float16|float32] [--eval-snippets]
       [--chunk 32] [--set key=value ...] [--overwrite]

Builds a feature bank (``cten_common.data.bank``): for every video of the
configuration's training and evaluation subsets, the frozen visual backbone's
feature of the snippet of L frames starting at every K-th frame, for each
spatial variant, with the backbone in eval mode.  The backbone is the one
training builds from the same configuration: ``train.seed``'s initialisation,
or ``train.pretrained_visual``; the bank records its weights' digest and
training refuses a bank built from other weights or settings.

Resumable: each video is written whole (temporary name, then renamed) and then
recorded in the index, so a killed extraction leaves a valid bank of the videos
done so far; running the same command again continues.  Then train with
``--set train.features=BANK_DIR``.
"""
import argparse
import os
import sys
import time

import numpy as np

import cten_jt  # noqa: F401  (Jittor settings first)
import jittor as jt
from cten_common.data import bank as bank_lib
from cten_common.data.annotations import build_index
from cten_common.data.errors import DataError
from cten_common.data.readers import open_video
from cten_common.precision import add_precision_option, apply_precision_option
from cten_common.config import load_run_config
from cten_common.inference import inference_model
from cten_jt.backend import BACKEND


def backbone_model(config):
    """The CTEN whose visual backbone training will use (train.seed, pretrained_visual), in
    eval mode (the bank's BatchNorm: running statistics): ``cten_common.inference``."""
    tc = config.train
    model, _ = inference_model(BACKEND, config, init_seed=tc.seed, pretrained_visual=tc.pretrained_visual)
    return model


def video_items(config):
    """Every video of the training and evaluation subsets, once."""
    items = {}
    for subset in (config.data.train_subset, config.data.eval_subset):
        for item in build_index(config.data.to_dict(), subset)[0]:
            items.setdefault(item.video_id, item)
    return list(items.values())


def _features(model, video, transforms, frames, chunk):
    """``{variant: features [len(frames), dim]}`` of the snippets ``frames`` [N, L] of
    ``video``: ``chunk`` snippets at a time, each of their frames read once for all
    variants, so that a long video is never held whole."""
    out = {name: [] for name in transforms}
    for i in range(0, len(frames), chunk):
        part = frames[i:i + chunk]
        used, position = np.unique(part, return_inverse=True)
        raw = video.read(used)
        position = position.reshape(part.shape)
        for name, transform in transforms.items():
            clip = transform(raw)                                                      # [3, U, S, S]
            snippets = np.ascontiguousarray(clip[:, position].transpose(1, 0, 2, 3, 4))  # [c, 3, L, S, S]
            out[name].append(model.backbone_features(jt.array(snippets)).numpy())
    return {name: np.concatenate(f) for name, f in out.items()}


def extract(config, out, stride=1, variants=("eval",), dtype="float16", eval_snippets=False, chunk=32,
            overwrite=False, progress=True, stop_after=None):
    """Build or continue the bank at ``out``; returns the FeatureBank.  ``stop_after``:
    return after that many new videos (to test resuming)."""
    from tqdm import tqdm

    m = config.model
    L, S, T = m.snippet_duration, m.sample_size, m.seq_len
    model = backbone_model(config)
    meta = bank_lib.bank_meta(m.to_dict(), stride, variants, dtype, bank_lib.backbone_digest(model), eval_snippets)
    if model.precision != "fp32":     # recorded where it is not the default (older banks have no key)
        meta["precision"] = model.precision
    bank = bank_lib.FeatureBank.open_for_extraction(out, meta, overwrite)
    items = video_items(config)
    todo = [it for it in items if it.video_id not in bank.videos]
    transforms = {v: bank_lib.variant_transform(v, S) for v in meta["variants"]}
    eval_transform = bank_lib.variant_transform("eval", S)
    done = 0
    bar = tqdm(todo, desc="extracting", disable=not progress, initial=len(items) - len(todo), total=len(items))
    for item in bar:
        if stop_after is not None and done >= stop_after:
            break
        video = open_video(item.video_path)
        n = video.n_frames
        frames = bank_lib.snippet_frames(bank_lib.snippet_starts(n, stride), n, L)
        feats = _features(model, video, transforms, frames, chunk)
        feats = np.stack([feats[v] for v in meta["variants"]])
        eval_feats = None
        if eval_snippets:
            eval_feats = _features(model, video, {"eval": eval_transform},
                                   bank_lib.eval_snippet_frames(n, T, L), chunk)["eval"]
        bank.write_video(item.video_id, feats, {"n_frames": int(n), "height": int(video.height),
                                                "width": int(video.width), "fps": float(video.fps or 0.0)},
                         eval_feats)
        done += 1
    return bank


def main(argv=None):
    p = argparse.ArgumentParser(prog="cten-extract-features", description=__doc__.split("\n\n")[1])
    p.add_argument("--config", required=True)
    p.add_argument("--out", required=True, help="bank folder")
    p.add_argument("--stride", type=int, default=1, help="a snippet at every K-th frame (default 1: every frame)")
    p.add_argument("--variants", default="eval",
                   help=f"comma-separated spatial variants among {','.join(bank_lib.VARIANTS)}")
    p.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    p.add_argument("--eval-snippets", action="store_true",
                   help="also store the T evaluation snippets of every video exactly")
    p.add_argument("--chunk", type=int, default=32, help="snippets per backbone call")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--overwrite", action="store_true", help="replace a bank built with other settings")
    add_precision_option(p)
    a = p.parse_args(argv)
    try:
        config = apply_precision_option(load_run_config(a.config, a.set), a.precision)
        began = time.time()
        bank = extract(config, a.out, a.stride, a.variants.split(","), a.dtype, a.eval_snippets, a.chunk,
                       a.overwrite)
    except (DataError, ValueError, OSError) as exc:    # OSError: a failed write (full disk)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(bank.videos)} videos in {a.out} ({time.time() - began:.1f} s); train with "
          f"--set train.features={os.path.abspath(a.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
