"""``jittor.dataset.Dataset`` over ``cten_common.data.datasets.VideoEmotionData``."""
import jittor as jt
import numpy as np
from jittor.dataset import Dataset

from cten_common.data.datasets import collate, sample_rng
from cten_common.training import shuffle_rng


def model_visual(visual, brightness=None):
    """The model's float32 visual input from a batch's frames.

    uint8 frames [B, ..., S, S] become float32 on the device and get each
    sample's brightness factor ``brightness`` [B] (float32: ``min(v * b, 255)``,
    the same product as ``cten_common.data.transforms.apply_brightness``; a
    factor of 1 changes nothing).  Anything else (float frames, bank features)
    passes through as a Var.
    """
    v = visual if isinstance(visual, jt.Var) else jt.array(np.ascontiguousarray(visual))
    if v.dtype != "uint8":
        return v
    v = v.float32()
    if brightness is None:
        return v
    b = brightness if isinstance(brightness, jt.Var) else jt.array(np.asarray(brightness, np.float32))
    return jt.minimum(v * b.float32().reshape((-1,) + (1,) * (v.ndim - 1)), 255.0)


class CTENDataset(Dataset):
    """Batches of dicts of numpy arrays, as the reference trains (batch 32, shuffled).

    Sample ``i`` of epoch ``e`` is drawn with ``sample_rng(seed, e, i)``, so it
    is the same with any number of workers and in the PyTorch twin; call
    ``set_epoch`` at the start of each epoch.  Batches stay numpy (uint8 frames)
    until the engine moves what the model consumes to the device, so that they
    can be prepared in a thread or in worker processes.
    """

    def __init__(self, data, batch_size=32, shuffle=True, num_workers=0, drop_last=True, seed=0):
        super().__init__()
        self.data = data
        self.seed = seed
        self.epoch = 0
        self.set_attrs(total_len=len(data), batch_size=batch_size, shuffle=shuffle,
                       num_workers=num_workers, drop_last=drop_last, keep_numpy_array=True)

    def set_epoch(self, epoch):
        """Epoch ``epoch``'s samples and shuffle order, whatever came before (resume)."""
        self.epoch = epoch
        self._shuffle_rng = shuffle_rng(self.seed, epoch)   # Jittor's shuffle generator

    def __getitem__(self, index):
        rng = sample_rng(self.seed, self.epoch, index) if self.data.train else None
        return self.data.load_or_skip(index, rng)     # a BadSample under data.on_bad_sample: skip

    def collate_batch(self, batch):
        return collate(batch)
