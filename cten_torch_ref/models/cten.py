"""CTEN: cross-modal temporal erasing network (PyTorch reference).

Parameter names are those of the reference checkpoints without DataParallel's
``module.`` prefix; ``cten_jt.models.cten`` is the same file in Jittor.
"""
import torch
from torch import nn

from cten_common.config import AUDIO_FRAMES_PER_SEGMENT, AUDIO_MEL_BINS, ModelConfig
from cten_common.init import iter_initial_state
from ..precision import under_policy
from .attention import MultiHeadAttention, NonLocalBlock
from .norm import BatchNorm1d
from .resnet import audio_backbone, visual_backbone
from .state import load_state_items, state_shapes

PIXEL_SCALE = 255.0
PIXEL_MEAN = 100.0 / 255.0


class TemporalAttention(nn.Module):
    """Segment weights gamma = ReLU(fc(tanh(BN(conv1x1(f))))) from fused features f [B, T, C]."""

    def __init__(self, dim, seq_len):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv1d(dim, 1, 1, bias=False), BatchNorm1d(1), nn.Tanh())
        self.fc = nn.Linear(seq_len, seq_len)
        self.relu = nn.ReLU()

    def forward(self, f):
        b, t, _ = f.shape
        h = self.conv(f.transpose(1, 2)).reshape(b, t)
        return self.relu(self.fc(h))


class CTEN(nn.Module):
    """``logits [B, n_classes], gamma [B, T] = CTEN(...)(visual [B, T, 3, L, S, S], audio [B, 100*T, 128])``.

    ``precision``: what it computes in (``cten_torch_ref.precision.set_precision``).
    ``init_seed``: the initial state (``cten_common.init``, the same in both frameworks);
    ``initialise=False`` leaves the framework's own initial values (in Jittor never computed),
    for a model whose weights are loaded next, strictly (``cten_common.inference``)."""

    precision = "fp32"

    def __init__(self, n_classes=8, seq_len=16, snippet_duration=16, sample_size=112,
                 audio_n_segments=16, audio_embed_size=2048, visual_depth=101,
                 audio_arch="resnet18", modality="av", dropout=0.2, init_seed=None,
                 initialise=True):
        super().__init__()
        cfg = ModelConfig(n_classes=n_classes, seq_len=seq_len, snippet_duration=snippet_duration,
                          sample_size=sample_size, audio_n_segments=audio_n_segments,
                          audio_embed_size=audio_embed_size, visual_depth=visual_depth,
                          audio_arch=audio_arch, modality=modality, dropout=dropout)
        self.config = cfg
        self.resnet = visual_backbone(cfg.visual_depth, cfg.snippet_duration, cfg.sample_size)
        for p in self.resnet.parameters():
            p.requires_grad_(False)
        self.nl = nn.Sequential(NonLocalBlock(cfg.visual_dim))
        if cfg.modality == "av":
            self.a_resnet = audio_backbone(cfg.audio_arch)
            self.a_fc = nn.Sequential(nn.Linear(cfg.audio_backbone_dim, cfg.audio_embed_size),
                                      BatchNorm1d(cfg.audio_embed_size), nn.Tanh())
            self.nl_a = nn.Sequential(NonLocalBlock(cfg.audio_embed_size))
            self.v2a_attn = MultiHeadAttention(cfg.visual_dim)
            self.a2v_attn = MultiHeadAttention(cfg.visual_dim)
        self.ta_net = TemporalAttention(cfg.fused_dim, cfg.seq_len)
        self.drop = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(cfg.fused_dim, cfg.n_classes)
        if initialise:            # False: weights are loaded next, strictly (all of them)
            self.reset_parameters(init_seed)

    def reset_parameters(self, seed=None):
        """Initialise every parameter and buffer (cten_common.init); ``seed=None`` draws from torch."""
        if seed is None:
            seed = int(torch.randint(0, 2 ** 31 - 1, ()).item())
        load_state_items(self, iter_initial_state(state_shapes(self), seed))

    # train() and eval() are nn.Module's: they change the mode only (cten_jt's do the same)

    def _check_inputs(self, visual, audio, audio_features=None):
        cfg = self.config
        want = ("B", cfg.seq_len, 3, cfg.snippet_duration, cfg.sample_size, cfg.sample_size)
        features = visual.dim() == 3 and tuple(visual.shape[1:]) == (cfg.seq_len, cfg.visual_dim)
        if not features and (visual.dim() != 6 or tuple(visual.shape[1:]) != want[1:]):
            raise ValueError(f"visual must have shape [B, T, 3, L, S, S] = {list(want)} (snippets) or "
                             f"[B, T, visual_dim] = [B, {cfg.seq_len}, {cfg.visual_dim}] (backbone "
                             f"features, e.g. from a feature bank), got {list(visual.shape)}")
        if cfg.modality == "visual":
            if audio is not None:
                raise ValueError("this CTEN is visual-only (modality='visual'): pass no audio")
            return
        if audio_features is not None:
            return
        want_a = [visual.shape[0], cfg.audio_frames, AUDIO_MEL_BINS]
        if audio is None or list(audio.shape) != want_a:
            got = None if audio is None else list(audio.shape)
            raise ValueError(f"audio must have shape [B, {AUDIO_FRAMES_PER_SEGMENT}*audio_n_segments, "
                             f"{AUDIO_MEL_BINS}] = {want_a}, got {got}")

    def encode_visual(self, visual):
        """Frozen 3D ResNet features of every snippet: [B, T, visual_dim].  ``visual``
        [B, T, visual_dim] is taken as those features already (feature-bank training)."""
        if visual.dim() == 3:
            return visual.detach()
        b, t = visual.shape[:2]
        return self.backbone_features(visual.reshape(b * t, *visual.shape[2:])).reshape(b, t, -1)

    @under_policy
    def backbone_features(self, snippets):
        """The frozen 3D ResNet's feature of each snippet [N, 3, L, S, S] (pixels 0..255):
        [N, visual_dim], no gradient."""
        v = snippets / PIXEL_SCALE - PIXEL_MEAN
        with torch.no_grad():
            v = self.resnet(v)
        if tuple(v.shape[1:]) != (self.config.visual_dim, 1, 1, 1):
            raise ValueError(f"visual backbone output {list(v.shape[1:])} is not pooled to one "
                             "feature per snippet: snippet_duration/sample_size do not match the input")
        return v.reshape(v.shape[0], -1)

    def encode_audio(self, audio):
        """Audio ResNet features of every 100-frame segment: [B, Ta, audio_embed_size]."""
        b, n_seg = audio.shape[0], self.config.audio_n_segments
        a = audio.reshape(b, n_seg, AUDIO_FRAMES_PER_SEGMENT, AUDIO_MEL_BINS).transpose(0, 1)
        a = a.reshape(n_seg * b, 1, AUDIO_FRAMES_PER_SEGMENT, AUDIO_MEL_BINS)  # row = seg*B + b
        a = self.a_fc(self.a_resnet(a).flatten(1))
        return a.reshape(n_seg, b, -1).transpose(0, 1)

    @under_policy
    def audio_branch(self, audio):
        """See cten_jt.models.cten.CTEN.audio_branch."""
        return self.nl_a(self.encode_audio(audio))

    def fuse(self, visual, audio=None, audio_features=None):
        """Segment features after intra- and inter-modal attention: [B, T, fused_dim]."""
        v = self.nl(self.encode_visual(visual))
        if self.config.modality == "visual":
            return v
        a = audio_features if audio_features is not None else self.audio_branch(audio)
        v2a = self.v2a_attn(a, v, v)
        a2v = self.a2v_attn(v, a, a)
        return torch.cat((v + v2a, a + a2v), dim=-1)

    @under_policy
    def forward(self, visual, audio=None, audio_features=None):
        self._check_inputs(visual, audio, audio_features)
        f = self.fuse(visual, audio, audio_features)
        gamma = self.ta_net(f)
        pooled = (f * gamma.unsqueeze(-1)).mean(dim=1)
        return self.fc(self.drop(pooled)), gamma
