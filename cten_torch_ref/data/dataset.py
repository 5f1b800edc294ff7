"""``torch.utils.data.Dataset`` over ``cten_common.data.datasets.VideoEmotionData``."""
import numpy as np
import torch
from torch.utils.data import Dataset

from cten_common.data.datasets import collate, sample_rng


def model_visual(visual, brightness=None, device=None):
    """See cten_jt.data.model_visual: uint8 frames -> float32 on ``device`` with each
    sample's brightness factor; anything else passes through (moved to ``device``)."""
    v = visual if isinstance(visual, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(visual))
    v = v if device is None else v.to(device)
    if v.dtype != torch.uint8:
        return v
    v = v.float()
    if brightness is None:
        return v
    b = brightness if isinstance(brightness, torch.Tensor) else torch.from_numpy(np.asarray(brightness, np.float32))
    b = b.to(v.device).float().reshape((-1,) + (1,) * (v.dim() - 1))
    return torch.clamp(v * b, max=255.0)


class CTENDataset(Dataset):
    """Sample ``i`` of epoch ``e`` is drawn with ``sample_rng(seed, e, i)``, as in
    ``cten_jt.data.CTENDataset``; ``loader(...)`` gives the batches (dicts of numpy
    arrays, as there)."""

    def __init__(self, data, seed=0):
        self.data = data
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        rng = sample_rng(self.seed, self.epoch, index) if self.data.train else None
        return self.data.load(index, rng)

    @staticmethod
    def collate_batch(batch):
        return collate(batch)

    def loader(self, batch_size=32, shuffle=True, num_workers=0, drop_last=True):
        return torch.utils.data.DataLoader(self, batch_size=batch_size, shuffle=shuffle,
                                           num_workers=num_workers, drop_last=drop_last,
                                           collate_fn=self.collate_batch)
