"""The numpy core of CTEN's data sets: one video in, model-ready arrays out.

``VideoEmotionData.load(index, rng)`` runs the named steps: read the frames
(one pass over the file), sample T snippets of L frames (TSN; training and
evaluation paths kept apart), transform every frame of the view with the same
parameters, and compute the audio features.  The Jittor and PyTorch data sets
(``cten_jt.data``, ``cten_torch_ref.data``) only wrap it, so for the same seed
they give identical arrays.

A sample keeps the whole transformed clip (``clip``, [n_frames, 3, S, S]):
the erased views of the training step re-sample snippets from it without
another pass over the disk.
"""
import logging
from dataclasses import dataclass

import numpy as np

from . import audio as audio_io
from .errors import DataError
from .fbank import audio_features, features_from_fbank
from .bank import variant_for as bank_variant_for
from .sampling import sample_eval, sample_train, segment_bounds
from .transforms import EvalTransform, TrainTransform
from .video import open_video

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipConfig:
    n_segments: int = 16          # T, also the number of audio segments
    snippet_len: int = 16         # L
    sample_size: int = 112        # S
    with_audio: bool = True
    allow_silence: bool = False   # a video without audio track gets silence (logged) instead of an error
    keep_clip: bool = True        # keep the transformed clip for the erased views
    p_augment: float = 0.3
    augment: bool = True          # False: training frames get the evaluation transform


def sample_rng(seed, epoch, index):
    """The generator of one sample: the same (seed, epoch, index) gives the same sample,
    whatever the worker, the framework or the batch order."""
    return np.random.default_rng([int(seed), int(epoch), int(index)])


class VideoEmotionData:
    """``bank``: a ``FeatureBank`` (cten_common.data.bank); samples then carry the
    banked backbone features of their snippets as ``visual`` [T, dim] instead of
    frames, and no video is decoded."""

    def __init__(self, items, class_names, clip=ClipConfig(), train=True, bank=None):
        self.items = list(items)
        self.class_names = list(class_names)
        self.clip = clip
        self.train = train
        self.bank = bank
        self.transform = (TrainTransform(clip.sample_size, clip.p_augment) if train and clip.augment
                          else EvalTransform(clip.sample_size))

    def __len__(self):
        return len(self.items)

    def load_audio(self, item, duration):
        """Waveform and rate of an item: its audio file, else its video's own track."""
        source = item.audio_path or item.video_path
        try:
            return audio_io.load_audio(source)
        except DataError as exc:
            if self.clip.allow_silence and "no audio track" in exc.problem:
                log.warning("%s: no audio track, using %.1f s of silence (allow_silence)",
                            source, duration)
                sr = 16000
                return audio_io.silence(max(duration, 1.0), sr), sr
            raise

    def load(self, index, rng=None):
        """One sample as a dict of numpy arrays; ``rng`` drives every random choice
        (required in training, unused in evaluation)."""
        item = self.items[index]
        if self.train and rng is None:
            raise ValueError("training samples need a random generator (sample_rng)")
        if self.bank is not None:
            return self._load_banked(index, rng)
        T, L = self.clip.n_segments, self.clip.snippet_len
        video = open_video(item.video_path)
        n = video.n_frames
        frames = video.read(range(n)) if self.clip.keep_clip else None
        all_frames = np.arange(n)
        indices = (sample_train(all_frames, T, L, rng) if self.train
                   else sample_eval(all_frames, T, L))
        if frames is None:
            used = np.unique(indices)
            lookup = {f: i for i, f in enumerate(used)}
            frames = video.read(used)
            local = np.vectorize(lookup.get)(indices)
        else:
            local = indices
        if isinstance(self.transform, TrainTransform):
            clip = self.transform(frames, rng)            # [3, N, S, S]
        else:
            clip = self.transform(frames)
        clip = np.ascontiguousarray(clip.transpose(1, 0, 2, 3))   # [N, 3, S, S]
        visual = clip[local].transpose(0, 2, 1, 3, 4)               # [T, 3, L, S, S]
        sample = {
            "visual": np.ascontiguousarray(visual, dtype=np.float32),
            "label": np.int64(item.label),
            "frame_indices": indices.astype(np.int64),
            "n_frames": np.int64(n),
            "fps": np.float32(video.fps or 0.0),
            "segment_bounds": np.asarray(segment_bounds(n, T), np.int64),
            "index": np.int64(index),
        }
        if self.clip.keep_clip:
            sample["clip"] = clip
        self._add_audio(sample, item, n, video.fps, rng)
        return sample

    def _load_banked(self, index, rng):
        """A sample from the feature bank: the same draws as ``load`` in the same order
        (snippet offsets, the transform's crop and augmentation, the audio), the
        crop and a flip choosing the banked variant."""
        item = self.items[index]
        info = self.bank.info(item.video_id)
        T, L, n = self.clip.n_segments, self.clip.snippet_len, int(info["n_frames"])
        indices = (sample_train(np.arange(n), T, L, rng) if self.train else sample_eval(np.arange(n), T, L))
        variant = "eval"
        if isinstance(self.transform, TrainTransform):
            params = self.transform.sample_params(rng, int(info["height"]), int(info["width"]))
            variant = bank_variant_for(params, self.bank.meta["variants"])
        features, exact = self.bank.lookup(item.video_id, variant, indices, evaluation=not self.train)
        sample = {
            "visual": features,
            "label": np.int64(item.label),
            "frame_indices": indices.astype(np.int64),
            "n_frames": np.int64(n),
            "fps": np.float32(info["fps"]),
            "segment_bounds": np.asarray(segment_bounds(n, T), np.int64),
            "index": np.int64(index),
            "bank_row": np.int64(self.bank.row(item.video_id)),
            "bank_variant": np.int64(self.bank.variant_index(variant)),
            "bank_exact": np.int64(exact),
        }
        self._add_audio(sample, item, n, info["fps"], rng)
        return sample

    def _add_audio(self, sample, item, n, fps, rng):
        T = self.clip.n_segments
        if self.clip.with_audio and (item.audio_path or "").endswith(".npy"):
            sample["audio"] = features_from_fbank(load_cached_fbank(item.audio_path), T,
                                                  rng if self.train else None)
        elif self.clip.with_audio:
            wave, sr = self.load_audio(item, n / (fps or 30.0))
            if wave.shape[-1] < int(sr * 0.025):
                raise DataError(item.audio_path or item.video_path,
                                "audio shorter than one 25 ms filterbank frame")
            sample["audio"] = audio_features(wave, sr, T, rng if self.train else None)


def load_cached_fbank(path):
    """A filterbank cached by scripts/prepare_dataset.py --features-out: float32 [n, 128]."""
    try:
        fbank = np.load(path)
    except (OSError, ValueError) as exc:
        raise DataError(path, f"cannot read the cached filterbank: {exc}") from exc
    if fbank.ndim != 2 or fbank.shape[1] != 128 or fbank.shape[0] < 1:
        raise DataError(path, f"a cached filterbank must be [frames, 128], got {list(fbank.shape)}")
    return fbank


def collate(samples):
    """Stack samples into a batch; clips of different lengths are zero-padded at the
    end (``n_frames`` says how many frames each has)."""
    out = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        if key == "clip":
            longest = max(v.shape[0] for v in values)
            padded = np.zeros((len(values), longest) + values[0].shape[1:], values[0].dtype)
            for i, v in enumerate(values):
                padded[i, :v.shape[0]] = v
            out[key] = padded
        else:
            out[key] = np.stack(values)
    return out


def clip_config(config, train):
    """The ClipConfig of a run configuration (cten_common.run_config)."""
    m, d = config["model"], config["data"]
    return ClipConfig(n_segments=m["seq_len"], snippet_len=m["snippet_duration"],
                      sample_size=m["sample_size"], with_audio=m["modality"] == "av",
                      allow_silence=bool(d["allow_silence"]), keep_clip=True,
                      augment=bool(d.get("augment", True)))


def build_data(config, subset, train, bank=None):
    """The VideoEmotionData of one subset of a run configuration (``bank``: read the
    visual features from this FeatureBank)."""
    from .check import build_index
    items, classes = build_index(config["data"], subset)
    return VideoEmotionData(items, classes, clip_config(config, train), train, bank)
