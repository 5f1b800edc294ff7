"""Whole-model parity of CTEN: names, initialisation, eval and train forward,
gradients, one Adam step, batch size 1, the real depth 101, input checks."""
import jittor as jt
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import cten_jt
import cten_jt.optim
from cten_jt.models import CTEN as JCTEN
from cten_torch_ref.models import CTEN as TCTEN
from helpers import (MODEL_RTOL, TINY_AV, TINY_VISUAL, assert_close, copy_torch_to_jittor,
                     random_inputs)

CONFIGS = {"av": TINY_AV, "visual": TINY_VISUAL}


def _pair(cfg, seed=0, **extra):
    kw = {**cfg, **extra}
    return TCTEN(init_seed=seed, **kw), JCTEN(init_seed=seed, **kw)


def _perturb_torch(model, seed=0):
    """Random BatchNorm statistics and a non-zero residual gate, so that eval
    mode and the non-local blocks are exercised beyond their initial values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict(keep_vars=True).items():
            if name.endswith("running_mean"):
                t.copy_(torch.rand(t.shape, generator=g) * 0.2 - 0.1)
            elif name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) * 0.5 + 0.75)
            elif name.endswith("alpha"):
                t.fill_(0.5)


def _synced_pair(cfg, mode, **extra):
    """Both models with the same perturbed weights, in ``mode`` ("train" or "eval")."""
    t_model, j_model = _pair(cfg, **extra)
    _perturb_torch(t_model)
    copy_torch_to_jittor(t_model, j_model)
    getattr(t_model, mode)()
    getattr(j_model, mode)()
    return t_model, j_model


def _run(t_model, j_model, cfg, batch, seed=0):
    visual, audio = random_inputs(cfg, batch, seed)
    a_t = torch.from_numpy(audio) if cfg["modality"] == "av" else None
    a_j = jt.array(audio) if cfg["modality"] == "av" else None
    t_out = t_model(torch.from_numpy(visual), a_t)
    j_out = j_model(jt.array(visual), a_j)
    return t_out, j_out


def _trainable(model_t, model_j):
    t_names = {n for n, p in model_t.named_parameters() if p.requires_grad}
    j_names = {n for n, p in model_j.named_parameters() if not p.is_stop_grad()}
    return t_names, j_names


@pytest.mark.parametrize("modality", ["av", "visual"])
def test_names_shapes_and_trainable_set_match_the_reference_layout(modality):
    t_model, j_model = _pair(CONFIGS[modality])
    t_shapes = {k: tuple(v.shape) for k, v in t_model.state_dict().items()}
    j_shapes = {k: tuple(v.shape) for k, v in j_model.state_dict().items()}
    assert set(t_shapes) == set(j_shapes)
    for name in ("resnet.0.weight", "resnet.1.running_var", "resnet.4.0.conv1.weight",
                 "resnet.7.0.downsample.0.weight", "nl.0.theta.weight", "nl.0.alpha",
                 "ta_net.conv.0.weight", "ta_net.conv.1.running_mean", "ta_net.fc.bias", "fc.weight"):
        assert name in t_shapes, name
    if modality == "av":
        for name in ("a_resnet.0.weight", "a_resnet.4.0.conv1.weight", "a_fc.0.weight",
                     "a_fc.1.running_var", "nl_a.0.out.weight", "v2a_attn.linear_q.weight",
                     "a2v_attn.linear_o.bias"):
            assert name in t_shapes, name
        assert t_shapes["a_resnet.0.weight"] == (64, 1, 7, 1)
    else:
        assert not any(n.startswith(("a_", "nl_a", "v2a", "a2v")) for n in t_shapes)
    t_train, j_train = _trainable(t_model, j_model)
    assert t_train == j_train
    assert not any(n.startswith("resnet.") for n in t_train), "visual backbone must be frozen"
    assert ("a_resnet.0.weight" in t_train) == (modality == "av"), "audio branch is trained"


def test_same_seed_gives_same_weights_in_both_frameworks():
    t_model, j_model = _pair(TINY_AV, seed=7)
    t_state = {k: v.numpy() for k, v in t_model.state_dict().items()}
    assert_close(t_state, cten_jt.state_arrays(j_model), "initial state", atol=0.0)
    other = TCTEN(init_seed=8, **TINY_AV)
    assert not np.array_equal(other.state_dict()["fc.weight"].numpy(), t_state["fc.weight"])


@pytest.mark.parametrize("modality", ["av", "visual"])
def test_eval_forward(modality):
    cfg = CONFIGS[modality]
    t_model, j_model = _synced_pair(cfg, "eval")
    with torch.no_grad():
        (t_logits, t_gamma), (j_logits, j_gamma) = _run(t_model, j_model, cfg, batch=2)
    assert t_logits.shape == (2, cfg["n_classes"]) and t_gamma.shape == (2, cfg["seq_len"])
    assert_close(t_logits, j_logits, f"{modality} eval logits", rtol_scale=MODEL_RTOL)
    assert_close(t_gamma, j_gamma, f"{modality} eval gamma", rtol_scale=MODEL_RTOL)


@pytest.mark.parametrize("modality", ["av", "visual"])
def test_train_forward_and_running_statistics(modality):
    cfg = CONFIGS[modality]
    t_model, j_model = _synced_pair(cfg, "train", dropout=0.0)
    with torch.no_grad():
        (t_logits, t_gamma), (j_logits, j_gamma) = _run(t_model, j_model, cfg, batch=2)
    assert_close(t_logits, j_logits, f"{modality} train logits", rtol_scale=MODEL_RTOL)
    assert_close(t_gamma, j_gamma, f"{modality} train gamma", rtol_scale=MODEL_RTOL)
    # running statistics after the train-mode forward, frozen backbone included
    t_state = {k: v.numpy() for k, v in t_model.state_dict().items()}
    j_state = cten_jt.state_arrays(j_model)
    stats = [k for k in t_state if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert t_state["resnet.1.num_batches_tracked"] == 1, "frozen backbone BN must update in train mode"
    assert_close({k: t_state[k] for k in stats}, {k: j_state[k] for k in stats},
                 f"{modality} running statistics", rtol_scale=MODEL_RTOL)


@pytest.mark.parametrize("modality", ["av", "visual"])
def test_gradients_and_one_adam_step(modality):
    """Cross-entropy gradients of every trainable parameter and one Adam step
    (lr 2e-4, L2 weight decay 5e-4, as the reference trains), BatchNorm in eval mode.

    Why eval mode: in train mode each BatchNorm divides by a batch standard
    deviation, CTEN's over as few as B*T values (the temporal attention's
    BatchNorm1d(1) over 8 here), and its backward subtracts nearly equal
    terms; fp32 rounding differences of the convolutions (1e-7 relative) then
    reach the audio ResNet's gradients at 1e-4..1e-3 of the largest gradient,
    and a pre-activation that rounds to +1e-6 in one framework and -1e-6 in the
    other flips a ReLU.  Measured: with every BatchNorm in eval mode the worst
    gradient differs by 1.8e-5 of the largest; with train-mode BatchNorms by
    up to 1.1e-3.  Train-mode BatchNorm forward and backward are checked module
    by module (tests/models/test_norm.py, test_pool.py) and train-mode forward, loss and
    running statistics of the whole model above."""
    cfg = CONFIGS[modality]
    t_model, j_model = _synced_pair(cfg, "eval", dropout=0.0)
    labels = np.array([1, 2], dtype=np.int64)
    (t_logits, _), (j_logits, _) = _run(t_model, j_model, cfg, batch=2)
    t_loss = F.cross_entropy(t_logits, torch.from_numpy(labels))
    j_loss = jt.nn.cross_entropy_loss(j_logits, jt.array(labels))
    assert_close(t_loss, j_loss, f"{modality} loss", rtol_scale=MODEL_RTOL)

    t_params = {n: p for n, p in t_model.named_parameters() if p.requires_grad}
    j_params = {n: p for n, p in j_model.named_parameters() if not p.is_stop_grad()}
    assert set(t_params) == set(j_params)
    t_grads = dict(zip(t_params, torch.autograd.grad(t_loss, list(t_params.values()),
                                                      retain_graph=True)))
    j_grads = dict(zip(j_params, jt.grad(j_loss, list(j_params.values()), retain_graph=True)))
    scale = max(float(g.abs().max()) for g in t_grads.values())
    for name in t_grads:       # each gradient against the largest one: a gradient of ~0 is noise
        assert_close(t_grads[name], j_grads[name], f"{modality} grad {name}",
                     atol=MODEL_RTOL * scale)

    # one Adam step in Jittor equals PyTorch's Adam applied to the same gradients
    # (fed the same gradients, the two optimisers agree to rounding; from
    # gradients that differ by 1e-5 Adam's first step, about lr * g / |g|,
    # would move a near-zero gradient's weight by up to lr either way)
    before = {n: p.numpy().copy() for n, p in j_model.named_parameters()}
    j_opt = cten_jt.optim.Adam(j_model.parameters(), lr=2e-4, weight_decay=5e-4)
    j_opt.step(j_loss)
    after_j = {n: p.numpy() for n, p in j_model.named_parameters()}
    ref = {n: torch.nn.Parameter(torch.from_numpy(before[n].copy())) for n in j_params}
    for n, p in ref.items():
        p.grad = torch.from_numpy(j_grads[n].numpy())
    torch.optim.Adam(ref.values(), lr=2e-4, weight_decay=5e-4).step()
    for name in j_params:
        assert not np.array_equal(after_j[name], before[name]), f"{name} did not move"
        assert_close(ref[name].detach(), after_j[name], f"{modality} param after Adam {name}",
                     atol=1e-7)
    assert_close(after_j["resnet.0.weight"], before["resnet.0.weight"], "frozen conv1", atol=0)


def test_batch_size_one_and_inputs_left_untouched():
    t_model, j_model = _pair(TINY_AV, dropout=0.0)
    copy_torch_to_jittor(t_model, j_model)
    visual, audio = random_inputs(TINY_AV, 1, seed=3)
    for mode in ("eval", "train"):
        getattr(t_model, mode)()
        getattr(j_model, mode)()
        v_t, a_t = torch.from_numpy(visual.copy()), torch.from_numpy(audio.copy())
        v_j, a_j = jt.array(visual), jt.array(audio)
        with torch.no_grad():
            t_logits, t_gamma = t_model(v_t, a_t)
        j_logits, j_gamma = j_model(v_j, a_j)
        assert t_logits.shape == (1, TINY_AV["n_classes"]) and tuple(j_gamma.shape) == (1, 4)
        assert_close((t_logits, t_gamma), (j_logits, j_gamma), f"batch 1 {mode}",
                     rtol_scale=MODEL_RTOL)
        assert np.array_equal(v_t.numpy(), visual) and np.array_equal(a_t.numpy(), audio)
        assert np.array_equal(v_j.numpy(), visual) and np.array_equal(a_j.numpy(), audio)


def test_depth101_resnet18_small_input():
    cfg = dict(n_classes=8, seq_len=2, snippet_duration=4, sample_size=16, audio_n_segments=2,
               audio_embed_size=2048, visual_depth=101, audio_arch="resnet18", modality="av")
    t_model, j_model = _synced_pair(cfg, "eval")
    with torch.no_grad():
        t_out, j_out = _run(t_model, j_model, cfg, batch=2)
    assert_close(t_out, j_out, "depth-101 (logits, gamma)", rtol_scale=MODEL_RTOL)


def test_depth101_train_mode_within_the_references_own_rounding_noise():
    """Train mode at depth 101 from a random initialisation amplifies fp32 rounding
    through 100 batch-normalised layers: PyTorch against itself (pixels scaled by
    1 + 1e-7, or oneDNN switched off: its other conv kernels) differs by ~3e-3
    here (reports/parity_depth101.txt).  The port is held to 3x the larger of the
    two (a wrong port is off by O(1)); the 1e-4 bound holds in eval mode and at
    the tiny depths above.  8 snippets: with fewer, BatchNorm over 2-4 values per
    channel makes even the reference's own floor ~1e-1."""
    cfg = dict(n_classes=8, seq_len=4, snippet_duration=8, sample_size=32, audio_n_segments=4,
               audio_embed_size=2048, visual_depth=101, audio_arch="resnet18", modality="av",
               dropout=0.0)
    t_model, j_model = _pair(cfg)
    copy_torch_to_jittor(t_model, j_model)
    initial = {k: v.clone() for k, v in t_model.state_dict().items()}
    t_model.train()
    j_model.train()
    visual, audio = random_inputs(cfg, 2)

    def reference(v):
        t_model.load_state_dict(initial)
        with torch.no_grad():
            return [x.numpy() for x in t_model(torch.from_numpy(v), torch.from_numpy(audio))]
    others = [reference(visual * np.float32(1 + 1e-7))]
    with torch.backends.mkldnn.flags(enabled=False):
        others.append(reference(visual))
    t_out = reference(visual)
    j_out = j_model(jt.array(visual), jt.array(audio))
    for i, name in enumerate(("logits", "gamma")):
        ref = t_out[i]
        scale = np.abs(ref).max()
        floor = max(np.abs(ref - o[i]).max() for o in others) / scale
        assert_close(ref, j_out[i], f"depth-101 train {name} (reference floor {floor:.1e})",
                     rtol_scale=max(MODEL_RTOL, 3 * floor))


def test_bad_inputs_are_refused_with_the_expected_shape():
    _, j_model = _pair(TINY_AV)
    t_model = TCTEN(init_seed=0, **TINY_AV)
    visual, audio = random_inputs(TINY_AV, 1)
    for model, arr in ((t_model, torch.from_numpy), (j_model, jt.array)):
        with pytest.raises(ValueError, match=r"visual must have shape"):
            model(arr(visual[:, :3]), arr(audio))
        with pytest.raises(ValueError, match=r"audio must have shape"):
            model(arr(visual), None)
        with pytest.raises(ValueError, match=r"audio must have shape"):
            model(arr(visual), arr(audio[:, :300]))
    with pytest.raises(ValueError, match="audio_n_segments"):
        TCTEN(**{**TINY_AV, "audio_n_segments": 3})
    with pytest.raises(ValueError, match="audio_embed_size"):
        JCTEN(**{**TINY_AV, "audio_embed_size": 256})


def test_audio_features_given_once_equal_the_audio_path_in_both_frameworks():
    visual, audio = random_inputs(TINY_AV, 2)
    t_model, j_model = TCTEN(init_seed=0, **TINY_AV).eval(), JCTEN(init_seed=0, **TINY_AV)
    j_model.eval()
    with torch.no_grad():
        tv, ta = torch.from_numpy(visual), torch.from_numpy(audio)
        t_ref = t_model(tv, ta)
        t_got = t_model(tv, audio_features=t_model.audio_branch(ta))
    jv, ja = jt.array(visual), jt.array(audio)
    j_ref = j_model(jv, ja)
    j_got = j_model(jv, audio_features=j_model.audio_branch(ja))
    assert_close([x.numpy() for x in t_ref], [x.numpy() for x in t_got], "torch, audio_features", atol=0)
    assert_close([x.numpy() for x in j_ref], [x.numpy() for x in j_got], "jittor, audio_features", atol=0)
    with pytest.raises(ValueError, match="visual must have shape"):     # visual still checked
        j_model(jv[:, :2], audio_features=j_model.audio_branch(ja))
    with pytest.raises(ValueError, match="visual must have shape"):
        t_model(tv[:, :2], audio_features=t_model.audio_branch(ta))


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_dropout_keeps_1_minus_p_scaled_by_1_over_1_minus_p_in_train_mode_only(p):
    """The one draw the frameworks cannot share (their generators differ) is dropout's
    mask; its semantics must still be the same: in train mode each element is kept with
    probability 1 - p and scaled by 1 / (1 - p), in eval mode it passes unchanged, and
    CTEN's train()/eval() switch its head's dropout in both frameworks."""
    t_model, j_model = _pair(TINY_VISUAL, dropout=p)
    x = np.full((200, 500), 3.0, np.float32)
    n = x.size
    for mode in ("train", "eval"):
        getattr(t_model, mode)()
        getattr(j_model, mode)()
        with torch.no_grad():
            t_out = t_model.drop(torch.from_numpy(x)).numpy()
        j_out = j_model.drop(jt.array(x)).numpy()
        for name, out in (("torch", t_out), ("jittor", j_out)):
            if mode == "eval":
                assert np.array_equal(out, x), f"{name}: eval-mode dropout changed its input"
                continue
            kept = out != 0
            # the kept share: within 5 standard deviations of 1 - p
            assert abs(kept.mean() - (1 - p)) <= 5 * np.sqrt(p * (1 - p) / n), (name, kept.mean())
            np.testing.assert_allclose(out[kept], 3.0 / (1 - p), rtol=1e-6, err_msg=f"{name} scale")
