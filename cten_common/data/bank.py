"""Feature banks: the frozen visual backbone's feature of every candidate snippet.

CTEN's 3D ResNet is frozen, yet normal training runs it on three views of every
video at every step.  A bank holds, per video, the backbone's feature of the
snippet of L frames starting at every ``stride``-th frame, for a few spatial
variants; training then looks snippets up instead of decoding and running the
backbone (``cten_jt.extract_features``, ``train.features``).

Layout of a bank folder::

    bank.json              format, meta (what it was built with), videos
    features/<n>.npy       one video: [variants, starts, visual_dim] (fp16 or fp32)
    features/<n>.eval.npy  with eval_snippets: the T evaluation snippets [T, visual_dim]

A snippet starting at frame s of a video of n frames is the frames
``(s + j) % n``, j < L: the consecutive frames, continued cyclically as the
sampler's loop-padding continues a short video.  Both files of a video are
written under temporary names and renamed, then the index is rewritten the same
way, so an extraction killed at any point leaves a valid bank of the videos
done so far, and a second run continues from there.

Where a looked-up snippet differs from what normal training feeds the backbone:

* a snippet is found by its first frame, rounded down to a multiple of the
  stride; its frames are taken as the L (cyclically) consecutive ones from
  there.  With stride 1 that is exact for the original view (the sampler's
  snippets are consecutive frames of the loop-padded video) and for an erased
  view's snippet that lies inside one run of kept frames; a snippet that spans
  a gap between kept segments, or the wrap-around of a short kept list, gets
  the feature of the consecutive frames from its first frame instead
  (``lookup`` counts them, the trainer logs the fraction);
* spatial augmentation is limited to the banked variants (``VARIANTS``): the
  training transform draws its crop and augmentation as in normal training,
  the crop position and a flip select the variant, rotation and brightness are
  not applied;
* the backbone's BatchNorm runs in eval mode (running statistics) when the bank
  is built, where normal training normalises with each batch's statistics
  (``train.backbone_eval: true`` makes normal training do the same);
* ``eval_snippets`` stores the T centred snippets of evaluation-style sampling
  (``sample_eval``, the evaluation transform) exactly, whatever the stride.
"""
import hashlib
import json
import os

import numpy as np

from ..checkpoint_io.atomic import atomic_write
from ..checkpoint_io.filter import to_numpy
from .errors import DataError
from .sampling import sample_eval
from .transforms import CROP_POSITIONS, EvalTransform, TrainParams, TrainTransform, crop_box

FORMAT = 1
INDEX = "bank.json"
# "eval": the evaluation transform (short side resized, centre crop); the others:
# the training transform's crop at a position, optionally flipped, nothing else
VARIANTS = ("eval",) + CROP_POSITIONS + tuple(f"{p}+flip" for p in CROP_POSITIONS)
# what a bank's features depend on, besides the backbone's weights
MODEL_KEYS = ("snippet_duration", "sample_size", "visual_depth", "seq_len")


def check_variants(variants):
    variants = list(variants)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise ValueError(f"feature bank variants must be among {list(VARIANTS)}, got {variants}")
    if len(set(variants)) != len(variants):
        raise ValueError(f"feature bank variants repeat: {variants}")
    return variants


def variant_transform(name, size):
    """``frames uint8 [N, H, W, 3] -> float32 [3, N, S, S]`` of a variant."""
    if name == "eval":
        return EvalTransform(size)
    position, _, flip = name.partition("+")
    train = TrainTransform(size, p_aug=0.0)

    def apply(frames):
        top, left, side = crop_box(position, frames.shape[1], frames.shape[2])
        return train.apply(frames, TrainParams(position, top, left, side, "flip" if flip else None))
    return apply


def variant_for(params, variants):
    """The banked variant closest to a training draw (``TrainParams``): its crop position,
    flipped if it drew a flip and the bank has that; else unflipped; else "eval"."""
    if params.augment == "flip" and f"{params.position}+flip" in variants:
        return f"{params.position}+flip"
    if params.position in variants:
        return params.position
    return "eval" if "eval" in variants else variants[0]


def snippet_starts(n_frames, stride):
    return np.arange(0, int(n_frames), int(stride), dtype=np.int64)


def snippet_frames(starts, n_frames, snippet_len):
    """int64 ``[len(starts), L]``: the (cyclically) consecutive frames of each snippet."""
    return (np.asarray(starts, np.int64)[:, None] + np.arange(snippet_len)) % int(n_frames)


def weights_digest(arrays):
    """sha256 of named float arrays (the visual backbone's state), in name order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def backbone_digest(model):
    """``weights_digest`` of a model's visual backbone (its ``resnet.*`` state), for a model
    of either framework."""
    return weights_digest({k: to_numpy(v) for k, v in model.state_dict().items() if k.startswith("resnet.")})


def expected_meta(config, model):
    """What a bank must have been built with to serve this run configuration (a
    ``RunConfig``) and model."""
    m = config.model.to_dict()
    return {"format": FORMAT, **{k: int(m[k]) for k in MODEL_KEYS}, "backbone_sha256": backbone_digest(model)}


def bank_meta(model_config, stride, variants, dtype, digest, eval_snippets):
    if int(stride) != stride or stride < 1:
        raise ValueError(f"stride must be a positive integer, got {stride}")
    if dtype not in ("float16", "float32"):
        raise ValueError(f"dtype must be float16 or float32, got {dtype!r}")
    return {"format": FORMAT, **{k: int(model_config[k]) for k in MODEL_KEYS},
            "stride": int(stride), "variants": check_variants(variants), "dtype": dtype,
            "backbone_sha256": digest, "eval_snippets": bool(eval_snippets)}


def _atomic_json(path, data):
    with atomic_write(path, "w") as f:      # a failed write (full disk) keeps the old index
        json.dump(data, f, indent=1)


def _atomic_npy(path, array):
    with atomic_write(path) as f:
        np.save(f, array, allow_pickle=False)


class FeatureBank:
    """A bank folder: ``meta``, ``videos`` {video_id: {file, n_frames, height, width, fps}}."""

    def __init__(self, root):
        self.root = str(root)
        path = os.path.join(self.root, INDEX)
        if not os.path.exists(path):
            raise DataError(self.root, "not a feature bank (no bank.json): build it with "
                                       "cten-extract-features")
        try:
            with open(path) as f:
                index = json.load(f)
            self.meta, self.videos = index["meta"], index["videos"]
        except (ValueError, KeyError) as exc:
            raise DataError(path, f"unreadable feature bank index ({exc})") from None
        if self.meta.get("format") != FORMAT:
            raise DataError(path, f"feature bank format {self.meta.get('format')}, expected {FORMAT}")
        self._arrays = {}
        self._reindex()

    def _reindex(self):
        self._ids = sorted(self.videos)
        self._order = {vid: i for i, vid in enumerate(self._ids)}

    # -- building ---------------------------------------------------------------
    @classmethod
    def open_for_extraction(cls, root, meta, overwrite=False):
        """The bank at ``root`` to continue (same meta) or a new one; a bank built
        with other settings or weights is refused unless ``overwrite``."""
        root = str(root)
        os.makedirs(os.path.join(root, "features"), exist_ok=True)
        path = os.path.join(root, INDEX)
        if os.path.exists(path) and not overwrite:
            bank = cls(root)
            diff = _differences(bank.meta, meta)
            if diff:
                raise DataError(root, "holds a feature bank built with other settings or weights ("
                                + "; ".join(diff) + "): choose another folder or pass --overwrite")
            return bank
        _atomic_json(path, {"meta": meta, "videos": {}})
        return cls(root)

    def write_video(self, video_id, features, info, eval_features=None):
        """Store one video (atomic), then record it in the index (atomic)."""
        name = f"{len(self.videos):06d}"
        if video_id in self.videos:
            name = self.videos[video_id]["file"]
        dtype = np.dtype(self.meta["dtype"])
        _atomic_npy(os.path.join(self.root, "features", name + ".npy"), features.astype(dtype))
        if eval_features is not None:
            _atomic_npy(os.path.join(self.root, "features", name + ".eval.npy"), eval_features.astype(dtype))
        self.videos[video_id] = {"file": name, **info}
        self._arrays = {k: v for k, v in self._arrays.items() if k[0] != video_id}
        self._reindex()
        _atomic_json(os.path.join(self.root, INDEX), {"meta": self.meta, "videos": self.videos})

    # -- checking ---------------------------------------------------------------
    def check(self, meta, video_ids):
        """Refuse a stale bank (other settings or backbone weights) or a partial one
        (videos of the data set missing), naming what differs or what is missing."""
        # (a bank extracted in bf16, "precision", serves any run: the same backbone's features)
        diff = _differences(self.meta, meta, ignore=("stride", "variants", "dtype", "eval_snippets", "precision"))
        if diff:
            raise DataError(self.root, "stale feature bank: built with " + "; ".join(diff)
                            + ". Rebuild it with cten-extract-features")
        missing = [v for v in video_ids if v not in self.videos]
        if missing:
            raise DataError(self.root, f"partial feature bank: {len(missing)} of {len(video_ids)} videos "
                                       f"missing (e.g. {missing[:3]}); run cten-extract-features "
                                       "again to finish it")
        for vid in video_ids:
            self._array(vid)         # every file opens and has its index's shape

    # -- looking up ---------------------------------------------------------------
    def info(self, video_id):
        return self.videos[video_id]

    def row(self, video_id):
        return self._order[video_id]

    def variant_index(self, name):
        return self.meta["variants"].index(name)

    def _array(self, video_id, kind=""):
        key = (video_id, kind)
        if key not in self._arrays:
            info = self.videos[video_id]
            path = os.path.join(self.root, "features", info["file"] + kind + ".npy")
            try:        # a .npy array only: never a pickle, never an object array
                a = np.load(path, mmap_mode="r", allow_pickle=False)
                if not isinstance(a, np.ndarray) or a.dtype.kind != "f":
                    raise ValueError(f"not a .npy array of floats: {type(a).__name__}")
            except (OSError, ValueError, EOFError) as exc:
                raise DataError(path, f"unreadable feature bank file ({exc}): run "
                                      "cten-extract-features again") from None
            if kind == "":
                want = (len(self.meta["variants"]), len(snippet_starts(info["n_frames"], self.meta["stride"])))
                if a.ndim != 3 or a.shape[:2] != want:
                    raise DataError(path, f"holds {list(a.shape)}, the index expects {list(want)} + [dim]")
            self._arrays[key] = a
        return self._arrays[key]

    def lookup(self, video_id, variant, frames, evaluation=False):
        """``(features float32 [T, dim], exact)`` for snippets ``frames`` int [T, L] of one
        video; ``exact`` counts the snippets whose bank entry has exactly their frames.
        ``evaluation``: the snippets are the evaluation sampler's (eval_snippets banks
        have them exactly)."""
        info = self.videos[video_id]
        n, stride, L = info["n_frames"], self.meta["stride"], self.meta["snippet_duration"]
        frames = np.asarray(frames, np.int64)
        if evaluation and self.meta["eval_snippets"] and variant == "eval":
            return np.asarray(self._array(video_id, ".eval"), np.float32), len(frames)
        starts = frames[:, 0]
        pos = np.minimum(starts // stride, len(snippet_starts(n, stride)) - 1)
        banked = snippet_frames(pos * stride, n, L)
        exact = int((banked == frames).all(axis=1).sum())
        return np.asarray(self._array(video_id)[self.variant_index(variant), pos], np.float32), exact

    def lookup_rows(self, rows, variants, frames):
        """Batched ``lookup``: ``rows`` (``row``) and variant indices [B], frames [B, T, L]."""
        feats, exact = [], 0
        for r, v, f in zip(np.asarray(rows), np.asarray(variants), np.asarray(frames)):
            out, e = self.lookup(self._ids[int(r)], self.meta["variants"][int(v)], f)
            feats.append(out)
            exact += e
        return np.stack(feats), exact


def eval_snippet_frames(n_frames, n_segments, snippet_len):
    """The evaluation sampler's snippets of a video (what eval_snippets banks hold)."""
    return sample_eval(np.arange(int(n_frames)), n_segments, snippet_len)


def _differences(have, want, ignore=()):
    keys = sorted(set(have) | set(want))
    return [f"{k} {have.get(k)!r}, now {want.get(k)!r}" for k in keys
            if k not in ignore and have.get(k) != want.get(k)]
