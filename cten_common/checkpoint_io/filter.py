"""Checkpoint filter shared by both frameworks: unwrap, strip, rename, check.

Every foreign or own checkpoint goes through these functions before it meets a
model: ``unwrap_state_dict`` finds the state dict inside a training checkpoint,
``strip_prefix`` removes DataParallel's ``module.``, ``rename_backbone`` maps a
pretrained ResNet's names onto CTEN's using the layouts below (data, not code),
and ``match_state_dict`` checks names and shapes against the model and lists
every problem at once; ``read_state`` applies them to a file (read by
``sniff.read_checkpoint``, which never runs code from it) or a dict.
"""
from collections import OrderedDict

import numpy as np

from .errors import CheckpointError
from .sniff import read_checkpoint

DATA_PARALLEL_PREFIX = "module."
STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict")

# Hara et al.'s 3D ResNet (Kinetics checkpoints) -> CTEN's ``resnet`` Sequential
VISUAL_BACKBONE_LAYOUT = {
    "conv1": "resnet.0", "bn1": "resnet.1",
    "layer1": "resnet.4", "layer2": "resnet.5", "layer3": "resnet.6", "layer4": "resnet.7",
}
VISUAL_BACKBONE_DROPPED = ("fc",)
# torchvision's ImageNet ResNet -> CTEN's ``a_resnet`` Sequential; its conv1
# takes RGB images and is replaced by a one-channel (7, 1) convolution
AUDIO_BACKBONE_LAYOUT = {
    "bn1": "a_resnet.1",
    "layer1": "a_resnet.4", "layer2": "a_resnet.5", "layer3": "a_resnet.6", "layer4": "a_resnet.7",
}
AUDIO_BACKBONE_DROPPED = ("conv1", "fc")
BACKBONES = {
    "visual": ("resnet.", VISUAL_BACKBONE_LAYOUT, VISUAL_BACKBONE_DROPPED, ()),
    "audio": ("a_resnet.", AUDIO_BACKBONE_LAYOUT, AUDIO_BACKBONE_DROPPED, ("a_resnet.0.",)),
}


class CheckpointMismatchError(CheckpointError):
    """Names or shapes of a checkpoint differ from the model's; lists them all."""

    def __init__(self, source, missing=(), unexpected=(), misshaped=()):
        self.source = source
        self.missing = sorted(missing)
        self.unexpected = sorted(unexpected)
        self.misshaped = sorted(misshaped)
        lines = [f"{source} does not fit the model:"]
        if self.missing:
            lines.append(f"  {len(self.missing)} missing (in the model, not in the file):")
            lines += [f"    {n}" for n in self.missing]
        if self.unexpected:
            lines.append(f"  {len(self.unexpected)} unexpected (in the file, not in the model):")
            lines += [f"    {n}" for n in self.unexpected]
        if self.misshaped:
            lines.append(f"  {len(self.misshaped)} misshaped (file shape vs model shape):")
            lines += [f"    {n}: {tuple(a)} vs {tuple(b)}" for n, a, b in self.misshaped]
        super().__init__("\n".join(lines))


def to_numpy(value):
    """A numpy array from a numpy array, a torch tensor or a Jittor Var."""
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach"):          # torch.Tensor
        return value.detach().cpu().numpy()
    if hasattr(value, "numpy"):           # jittor.Var
        return value.numpy()
    if isinstance(value, (int, float, np.number)):
        return np.asarray(value)
    raise TypeError(f"not an array: {type(value).__name__}")


def _is_array(value):
    return isinstance(value, np.ndarray) or hasattr(value, "shape") and hasattr(value, "dtype")


def unwrap_state_dict(obj, source):
    """The ``{name: array}`` state dict inside ``obj`` (a checkpoint or a state dict)."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"{source}: expected a dict, found {type(obj).__name__}")
    for key in STATE_DICT_KEYS:
        if isinstance(obj.get(key), dict):
            return unwrap_state_dict(obj[key], f"{source}[{key!r}]")
    if obj and all(_is_array(v) for v in obj.values()):
        return OrderedDict((k, to_numpy(v)) for k, v in obj.items())
    non_arrays = sorted(k for k, v in obj.items() if not _is_array(v))[:8]
    raise CheckpointError(f"{source}: no state dict found: it has no key {STATE_DICT_KEYS} "
                          f"and entries that are not arrays, e.g. {non_arrays}")


def strip_prefix(state, prefix=DATA_PARALLEL_PREFIX):
    return OrderedDict((k[len(prefix):] if k.startswith(prefix) else k, v) for k, v in state.items())


def rename_backbone(state, backbone, source):
    """Map a pretrained ResNet's names onto CTEN's; drop its heads (see BACKBONES)."""
    _, layout, dropped, _ = BACKBONES[backbone]
    renamed, unknown = OrderedDict(), []
    for name, value in state.items():
        head, _, rest = name.partition(".")
        if head in dropped:
            continue
        if head not in layout:
            unknown.append(name)
            continue
        renamed[f"{layout[head]}.{rest}"] = value
    if unknown:
        raise CheckpointMismatchError(f"{source} (as a {backbone} backbone)", unexpected=unknown)
    return renamed


def backbone_shapes(model_shapes, backbone):
    """The part of a model's ``{name: shape}`` that a pretrained backbone fills."""
    prefix, _, _, kept = BACKBONES[backbone]
    return OrderedDict((n, s) for n, s in model_shapes.items()
                       if n.startswith(prefix) and not n.startswith(kept))


def _scalar_shapes(a, b):
    return {tuple(a), tuple(b)} == {(), (1,)}


def match_state_dict(state, expected_shapes, source):
    """Check ``state`` against ``{name: shape}``; return it in the model's order.

    A missing ``num_batches_tracked`` (old checkpoints have none) becomes 0;
    anything else missing, unexpected or misshaped is an error that lists all.
    """
    missing, misshaped, out = [], [], OrderedDict()
    for name, shape in expected_shapes.items():
        if name not in state:
            if name.endswith("num_batches_tracked"):
                out[name] = np.zeros(shape, np.int64)
            else:
                missing.append(name)
            continue
        value = to_numpy(state[name])
        if _scalar_shapes(value.shape, shape):
            value = value.reshape(shape)    # Jittor stores 0-d tensors as shape (1,)
        if tuple(value.shape) != tuple(shape):
            misshaped.append((name, tuple(value.shape), tuple(shape)))
        out[name] = value
    unexpected = [n for n in state if n not in expected_shapes]
    if missing or unexpected or misshaped:
        raise CheckpointMismatchError(source, missing, unexpected, misshaped)
    return out


def consume_items(mapping):
    """``mapping``'s items in its order, each taken out of it as it is handed on: a loader
    that copies them one by one lets each array go once copied."""
    for name in list(mapping):
        yield name, mapping.pop(name)


class ReadCheckpoint:
    """A checkpoint file already read (``read_checkpoint``'s object) and the file's name:
    ``read_state`` takes it as it takes the path, without reading the file again (a run's
    checkpoint gives its configuration and its weights from one reading).  Loading consumes
    it: ``read_state`` lets go of the checkpoint, so that its arrays are freed once loaded."""

    def __init__(self, checkpoint, name):
        self.checkpoint, self.name = checkpoint, str(name)


def read_state(source):
    """``(state dict, name)`` from a checkpoint path, a ``ReadCheckpoint`` or an in-memory
    dict: unwrapped, ``module.`` stripped, arrays as numpy; ``name`` is what error messages
    call it."""
    if isinstance(source, dict):
        obj, name = source, "the given state dict"
    elif isinstance(source, ReadCheckpoint):
        if source.checkpoint is None:
            raise CheckpointError(f"{source.name}: already loaded once (a ReadCheckpoint is consumed)")
        obj, name = source.checkpoint, source.name
        source.checkpoint = None
    else:
        obj, name = read_checkpoint(source), str(source)
    return strip_prefix(unwrap_state_dict(obj, name)), name


def with_backbone(arrays, path, backbone):
    """``(arrays, name)``: a model's state ``arrays`` (``{name: array}``) with its visual
    (Kinetics 3D ResNet) or audio (torchvision ImageNet ResNet) ``backbone`` filled from
    the checkpoint ``path``, strictly (a file that does not fit is a CheckpointError
    listing every problem); ``name`` is what error messages call the file.  Each
    framework's ``checkpoint.load_pretrained_backbone`` loads the result."""
    state, name = read_state(path)
    expected = backbone_shapes({k: v.shape for k, v in arrays.items()}, backbone)
    filled = dict(arrays)
    filled.update(match_state_dict(rename_backbone(state, backbone, name), expected,
                                   f"{name} (as the {backbone} backbone)"))
    return filled, name
