"""The CTEN model configuration, its validation and its inference from weights."""
from dataclasses import asdict, dataclass, fields, replace

# depth -> (block type, blocks per stage) of Hara et al.'s 3D ResNets
VISUAL_DEPTHS = {
    10: ("basic", (1, 1, 1, 1)),
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 24, 36, 3)),
}
# torchvision ResNets usable as the audio backbone
AUDIO_ARCHS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}
EXPANSION = {"basic": 1, "bottleneck": 4}
MODALITIES = ("av", "visual")

AUDIO_FRAMES_PER_SEGMENT = 100   # 1 s of 10 ms filterbank frames
AUDIO_MEL_BINS = 128
NONLOCAL_INNER = 256
ATTENTION_HEADS = 8


@dataclass(frozen=True)
class ModelConfig:
    """Constructor arguments of ``CTEN`` in both frameworks (reference defaults)."""
    n_classes: int = 8
    seq_len: int = 16
    snippet_duration: int = 16
    sample_size: int = 112
    audio_n_segments: int = 16
    audio_embed_size: int = 2048
    visual_depth: int = 101
    audio_arch: str = "resnet18"
    modality: str = "av"
    dropout: float = 0.2

    def __post_init__(self):
        problems = []
        if self.modality not in MODALITIES:
            problems.append(f"modality must be one of {MODALITIES}, got {self.modality!r}")
        if self.visual_depth not in VISUAL_DEPTHS:
            problems.append(f"visual_depth must be one of {sorted(VISUAL_DEPTHS)}, got {self.visual_depth}")
        if self.audio_arch not in AUDIO_ARCHS:
            problems.append(f"audio_arch must be one of {sorted(AUDIO_ARCHS)}, got {self.audio_arch!r}")
        for name in ("n_classes", "seq_len", "snippet_duration", "sample_size",
                     "audio_n_segments", "audio_embed_size"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be a positive integer, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be in [0, 1), got {self.dropout}")
        if not problems and self.modality == "av":
            if self.audio_n_segments != self.seq_len:
                problems.append(f"audio_n_segments ({self.audio_n_segments}) must equal seq_len "
                                f"({self.seq_len}): the cross-modal attention adds segment to segment")
            if self.audio_embed_size != self.visual_dim:
                problems.append(f"audio_embed_size ({self.audio_embed_size}) must equal the visual "
                                f"feature size of depth {self.visual_depth} ({self.visual_dim}): "
                                "the cross-modal attention maps one onto the other")
            if self.audio_embed_size % ATTENTION_HEADS:
                problems.append(f"audio_embed_size ({self.audio_embed_size}) must be divisible by "
                                f"{ATTENTION_HEADS} attention heads")
        if problems:
            raise ValueError("invalid CTEN configuration: " + "; ".join(problems))

    @property
    def visual_dim(self):
        block, _ = VISUAL_DEPTHS[self.visual_depth]
        return 512 * EXPANSION[block]

    @property
    def audio_backbone_dim(self):
        block, _ = AUDIO_ARCHS[self.audio_arch]
        return 512 * EXPANSION[block]

    @property
    def fused_dim(self):
        return self.visual_dim + (self.audio_embed_size if self.modality == "av" else 0)

    @property
    def audio_frames(self):
        return AUDIO_FRAMES_PER_SEGMENT * self.audio_n_segments

    def to_dict(self):
        return asdict(self)

    def replace(self, **changes):
        return replace(self, **changes)

    @classmethod
    def from_dict(cls, values):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown model settings {unknown}; known: {sorted(known)}")
        return cls(**values)


def _stage_blocks(shapes, stage_prefix):
    """Number of blocks and block type of one ResNet stage, read off parameter names."""
    indices = set()
    bottleneck = False
    for name in shapes:
        if name.startswith(stage_prefix):
            rest = name[len(stage_prefix):].split(".")
            if rest[0].isdigit():
                indices.add(int(rest[0]))
                bottleneck = bottleneck or rest[1] == "conv3"
    return len(indices), ("bottleneck" if bottleneck else "basic")


def _depth_from_stages(shapes, prefix, table, what):
    stages = [_stage_blocks(shapes, f"{prefix}.{i}.") for i in (4, 5, 6, 7)]
    counts = tuple(n for n, _ in stages)
    block = stages[0][1]
    for key, (blk, layers) in table.items():
        if blk == block and layers == counts:
            return key
    raise ValueError(f"the {what} has {block} blocks {counts} per stage, which matches none "
                     f"of {sorted(table)}")


def infer_config(shapes, **overrides):
    """ModelConfig read off a state dict's names and shapes (``{name: shape}``).

    ``snippet_duration`` and ``sample_size`` leave no trace in the weights and
    keep their defaults unless overridden; ``audio_n_segments`` follows seq_len.
    """
    shapes = {k: tuple(v) for k, v in shapes.items()}
    for name in ("fc.weight", "ta_net.fc.weight", "resnet.0.weight"):
        if name not in shapes:
            raise ValueError(f"not a CTEN state dict: it has no parameter {name!r} "
                             f"(first names: {sorted(shapes)[:5]})")
    values = {
        "n_classes": shapes["fc.weight"][0],
        "seq_len": shapes["ta_net.fc.weight"][0],
        "visual_depth": _depth_from_stages(shapes, "resnet", VISUAL_DEPTHS, "visual backbone"),
        "modality": "av" if "a_fc.0.weight" in shapes else "visual",
    }
    values["audio_n_segments"] = values["seq_len"]
    if values["modality"] == "av":
        values["audio_embed_size"] = shapes["a_fc.0.weight"][0]
        values["audio_arch"] = _depth_from_stages(shapes, "a_resnet", AUDIO_ARCHS, "audio backbone")
    values.update({k: v for k, v in overrides.items() if v is not None})
    return ModelConfig.from_dict(values)
