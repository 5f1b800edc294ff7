"""PyTorch's half of training: ``cten_common.backend.Backend`` for ``cten_common.fit``.

The protocol's names bound to the PyTorch twin's functions, so that
``cten_common.fit`` trains the reference with the same loop, configuration, data,
batch order, sampling, erasing, seeds per epoch and initial weights as Jittor
(``benchmarks/training_parity.py`` trains both side by side); ``cten_torch_ref.train``
is the command.  One process: no MPI, so no ``train.sync_bn``; no feature banks.
``train.kernels`` (Jittor's compiled kernels) is accepted and changes nothing.
"""
import numpy as np
import torch

from cten_common.backend import Backend
from . import engine
from .checkpoint import load_pretrained_backbone, load_weights
from .data import CTENDataset
from .device import set_device
from .models import build_model
from .models.state import load_state_arrays, state_arrays
from .optim import Adam, adam_state, load_adam_state
from .precision import set_precision


class EpochLoader:
    """The twin's ``DataLoader`` as the protocol's loader: ``len()``, ``set_epoch(e)``, ``iter()``."""

    def __init__(self, data, batch_size, num_workers, seed):
        self.dataset = CTENDataset(data, seed=seed)
        self.batches = self.dataset.loader(batch_size=batch_size, shuffle=True, num_workers=num_workers,
                                           drop_last=True)

    def set_epoch(self, epoch):
        self.dataset.set_epoch(epoch)

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


class TorchBackend(Backend):
    name = "torch"
    command = "cten-train-torch"
    trainer = "cten_torch_ref.train"
    capabilities = {
        "feature_bank": "feature-bank training is cten_jt's (cten_jt.extract_features, cten_jt.train); "
                        "the PyTorch twin trains from the videos",
        "sync_bn": "the PyTorch twin runs one process (no MPI), where BatchNorm over the global batch "
                   "is BatchNorm over the batch: leave it false",
    }
    no_op = {
        "train.kernels": "Jittor's compiled attention and erasing kernels; the twin computes the composed "
                         "operations, which give the same erasing indices and logits (tests/kernels)",
    }

    seed = staticmethod(torch.manual_seed)
    set_device = staticmethod(set_device)

    build_model = staticmethod(build_model)
    set_precision = staticmethod(set_precision)
    load_pretrained_backbone = staticmethod(load_pretrained_backbone)
    state_arrays = staticmethod(state_arrays)
    load_state_arrays = staticmethod(load_state_arrays)
    load_weights = staticmethod(load_weights)

    optimizer_state = staticmethod(adam_state)
    load_optimizer_state = staticmethod(load_adam_state)

    erasing_step = staticmethod(engine.erasing_step)
    predict_batch = staticmethod(engine.predict_batch)

    def set_kernels(self, mode):
        """Nothing to do: ``no_op["train.kernels"]``."""

    def world(self):
        return 0, 1                        # one process

    def all_sum(self, array):
        return np.asarray(array, np.float64)      # one rank: the sum is the array

    def to_device(self, model, device):
        return model.to(device)

    def set_sync_bn(self, model, enabled):
        if enabled:                        # fit refuses it first (capabilities)
            raise ValueError(f"train.sync_bn: {self.capabilities['sync_bn']}")

    def train_mode(self, model, backbone_eval):
        model.train()
        if backbone_eval:
            model.resnet.eval()            # the frozen backbone's BatchNorm on running statistics

    def eval_mode(self, model):
        model.eval()

    def make_optimizer(self, model, lr, weight_decay):
        return Adam(model.parameters(), lr=lr, weight_decay=weight_decay)

    def loader(self, data, batch_size, num_workers, seed):
        return EpochLoader(data, batch_size, num_workers, seed)


BACKEND = TorchBackend()
