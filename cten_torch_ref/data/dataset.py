"""``torch.utils.data.Dataset`` over ``cten_common.data.datasets.VideoEmotionData``."""
import numpy as np
import torch
from torch.utils.data import Dataset

from cten_common.data.datasets import collate, sample_rng
from cten_common.training import epoch_order


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


class EpochOrder(torch.utils.data.Sampler):
    """The indices of the data set's current epoch in ``cten_common.training.epoch_order``
    (Jittor's shuffle: ``default_rng([seed, epoch]).permutation(n)``), or 0..n-1."""

    def __init__(self, dataset, shuffle=True):
        self.dataset, self.shuffle = dataset, shuffle

    def __len__(self):
        return len(self.dataset)

    def __iter__(self):
        n = len(self.dataset)
        order = epoch_order(self.dataset.seed, self.dataset.epoch, n) if self.shuffle else np.arange(n)
        return iter(order.tolist())


class CTENDataset(Dataset):
    """Sample ``i`` of epoch ``e`` is drawn with ``sample_rng(seed, e, i)``, as in
    ``cten_jt.data.CTENDataset``; ``loader(...)`` gives the batches (dicts of numpy
    arrays, as there) in the order Jittor's loader gives them; call ``set_epoch``
    at the start of each epoch."""

    def __init__(self, data, seed=0):
        self.data = data
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch):
        """Epoch ``epoch``'s samples and order, whatever came before (resume).  Worker
        processes get the data set when an epoch's iteration starts, this epoch included."""
        self.epoch = epoch

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        rng = sample_rng(self.seed, self.epoch, index) if self.data.train else None
        return self.data.load_or_skip(index, rng)     # a BadSample under data.on_bad_sample: skip

    @staticmethod
    def collate_batch(batch):
        return collate(batch)

    def loader(self, batch_size=32, shuffle=True, num_workers=0, drop_last=True):
        """A ``DataLoader`` of numpy batches: ``batch_size`` samples in ``EpochOrder``,
        ``num_workers`` processes preparing them (0: in the iterating thread, which
        ``cten_common.data.prefetch.batches`` makes a prefetch thread)."""
        sampler = torch.utils.data.BatchSampler(EpochOrder(self, shuffle), batch_size, drop_last)
        # its own generator for the workers' base seed: iterating draws nothing from torch's
        # global generator, which the epoch's dropout uses
        return torch.utils.data.DataLoader(self, batch_sampler=sampler, num_workers=num_workers,
                                           collate_fn=self.collate_batch,
                                           generator=torch.Generator().manual_seed(int(self.seed)))
