"""``torch.utils.data.Dataset`` over ``cten_common.data.datasets.VideoEmotionData``."""
import torch
from torch.utils.data import Dataset

from cten_common.data.datasets import collate, sample_rng


class CTENDataset(Dataset):
    """Sample ``i`` of epoch ``e`` is drawn with ``sample_rng(seed, e, i)``, as in
    ``cten_jt.data.CTENDataset``; ``loader(...)`` gives the batches."""

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
        return {k: torch.from_numpy(v) for k, v in collate(batch).items()}

    def loader(self, batch_size=32, shuffle=True, num_workers=0, drop_last=True):
        return torch.utils.data.DataLoader(self, batch_size=batch_size, shuffle=shuffle,
                                           num_workers=num_workers, drop_last=drop_last,
                                           collate_fn=self.collate_batch)
