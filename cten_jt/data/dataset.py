"""``jittor.dataset.Dataset`` over ``cten_common.data.datasets.VideoEmotionData``."""
import jittor as jt
import numpy as np
from jittor.dataset import Dataset

from cten_common.data.datasets import collate, sample_rng


class CTENDataset(Dataset):
    """Batches of dicts of arrays, as the reference trains (batch 32, shuffled).

    Sample ``i`` of epoch ``e`` is drawn with ``sample_rng(seed, e, i)``, so it
    is the same with any number of workers and in the PyTorch twin; call
    ``set_epoch`` at the start of each epoch.
    """

    def __init__(self, data, batch_size=32, shuffle=True, num_workers=0, drop_last=True, seed=0):
        super().__init__()
        self.data = data
        self.seed = seed
        self.epoch = 0
        self.set_attrs(total_len=len(data), batch_size=batch_size, shuffle=shuffle,
                       num_workers=num_workers, drop_last=drop_last)

    # what the model consumes becomes jt.Var; the rest (clips for the erased views,
    # frame indices, bounds) stays numpy
    MODEL_INPUTS = ("visual", "audio", "label")

    def set_epoch(self, epoch):
        """Epoch ``epoch``'s samples and shuffle order, whatever came before (resume)."""
        self.epoch = epoch
        self._shuffle_rng = np.random.default_rng([self.seed, epoch])   # Jittor's shuffle generator

    def __getitem__(self, index):
        rng = sample_rng(self.seed, self.epoch, index) if self.data.train else None
        return self.data.load(index, rng)

    def collate_batch(self, batch):
        return {k: jt.array(v) if k in self.MODEL_INPUTS else v for k, v in collate(batch).items()}
