"""Model configuration: validation and inference from checkpoint names and shapes."""
import pytest
import torch

from cten_common.config import AUDIO_ARCHS, VISUAL_DEPTHS, ModelConfig, infer_config
from cten_torch_ref.models import CTEN




def _meta_shapes(**kw):
    from cten_torch_ref.models.resnet import audio_backbone, visual_backbone
    cfg = ModelConfig(**kw)
    with torch.device("meta"):
        shapes = {f"resnet.{k}": tuple(v.shape) for k, v in
                  visual_backbone(cfg.visual_depth, 16, 112).state_dict().items()}
        shapes.update({f"a_resnet.{k}": tuple(v.shape) for k, v in
                       audio_backbone(cfg.audio_arch).state_dict().items()})
    shapes.update({"fc.weight": (cfg.n_classes, cfg.fused_dim),
                   "ta_net.fc.weight": (cfg.seq_len, cfg.seq_len),
                   "a_fc.0.weight": (cfg.audio_embed_size, cfg.audio_backbone_dim)})
    return shapes


@pytest.mark.parametrize("depth", sorted(VISUAL_DEPTHS))
@pytest.mark.parametrize("arch", sorted(AUDIO_ARCHS))
def test_depth_and_arch_are_read_off_the_names(depth, arch):
    dim = 512 * (4 if VISUAL_DEPTHS[depth][0] == "bottleneck" else 1)
    shapes = _meta_shapes(visual_depth=depth, audio_arch=arch, audio_embed_size=dim,
                          n_classes=6, seq_len=10, audio_n_segments=10)
    cfg = infer_config(shapes)
    assert (cfg.visual_depth, cfg.audio_arch, cfg.n_classes, cfg.seq_len, cfg.audio_n_segments,
            cfg.audio_embed_size, cfg.modality) == (depth, arch, 6, 10, 10, dim, "av")


def test_visual_only_and_overrides():
    model = CTEN(**{"n_classes": 3, "seq_len": 4, "snippet_duration": 8, "sample_size": 32,
                    "audio_n_segments": 4, "visual_depth": 18, "modality": "visual"})
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    cfg = infer_config(shapes, sample_size=32, snippet_duration=8)
    assert cfg == model.config


def test_invalid_settings_are_listed():
    with pytest.raises(ValueError, match="visual_depth must be one of"):
        ModelConfig(visual_depth=20)
    with pytest.raises(ValueError, match="unknown model settings"):
        ModelConfig.from_dict({"n_class": 3})
    with pytest.raises(ValueError, match="not a CTEN state dict"):
        infer_config({"conv1.weight": (64, 3, 7, 7, 7)})
