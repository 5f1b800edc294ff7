"""Jittor's half of training: ``cten_common.backend.Backend`` for ``cten_common.fit``.

The protocol's names bound to the Jittor package's functions (the model, Adam,
the erasing step, the loader, MPI), so that ``cten_common.fit`` trains with
Jittor; ``cten_jt.train`` is the command.  Jittor has every capability:
feature banks (``train.features``) and BatchNorm over the MPI ranks' global
batch (``train.sync_bn``).
"""
import jittor as jt

from cten_common.backend import Backend
from . import distributed, engine
from .checkpoint import load_pretrained_backbone, load_weights
from .data import CTENDataset
from .device import set_device
from .models import build_model
from .models.norm import set_sync_batchnorm, set_train_mode
from .models.state import load_state_arrays, state_arrays
from .optim import Adam, adam_state, load_adam_state
from .precision import set_precision
from .switches import set_kernels


class JittorBackend(Backend):
    name = "jittor"
    command = "cten-train"
    trainer = "cten_jt.train"
    capabilities = {"feature_bank": True, "sync_bn": True}
    no_op = {}

    seed = staticmethod(jt.set_global_seed)
    set_device = staticmethod(set_device)
    set_kernels = staticmethod(set_kernels)
    world = staticmethod(distributed.world)
    all_sum = staticmethod(distributed.all_sum)

    build_model = staticmethod(build_model)
    set_sync_bn = staticmethod(set_sync_batchnorm)
    set_precision = staticmethod(set_precision)
    load_pretrained_backbone = staticmethod(load_pretrained_backbone)
    state_arrays = staticmethod(state_arrays)
    load_state_arrays = staticmethod(load_state_arrays)
    load_weights = staticmethod(load_weights)

    optimizer_state = staticmethod(adam_state)
    load_optimizer_state = staticmethod(load_adam_state)

    erasing_step = staticmethod(engine.erasing_step)
    predict_batch = staticmethod(engine.predict_batch)

    def to_device(self, model, device):
        """The model as it is: ``set_device`` (``jt.flags.use_cuda``) places every array."""
        return model

    def train_mode(self, model, backbone_eval):
        model.train()                      # cten_jt.models: PyTorch's meaning (the mode only)
        if backbone_eval:
            set_train_mode(model.resnet, False)    # the frozen backbone's BatchNorm on running statistics

    def eval_mode(self, model):
        model.eval()

    def make_optimizer(self, model, lr, weight_decay):
        return Adam(model.parameters(), lr=lr, weight_decay=weight_decay)

    def loader(self, data, batch_size, num_workers, seed):
        """Jittor's ``Dataset`` (``cten_jt.data.CTENDataset``): under MPI each rank reads its
        part of every global batch."""
        return CTENDataset(data, batch_size=batch_size, shuffle=True, num_workers=num_workers, drop_last=True,
                           seed=seed)


BACKEND = JittorBackend()
