"""``jittor.dataset.Dataset`` over ``cten_common.data.datasets.VideoEmotionData``."""
import jittor as jt
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

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __getitem__(self, index):
        rng = sample_rng(self.seed, self.epoch, index) if self.data.train else None
        return self.data.load(index, rng)

    def collate_batch(self, batch):
        return {k: jt.array(v) if v.dtype.kind in "fiu" else v for k, v in collate(batch).items()}
