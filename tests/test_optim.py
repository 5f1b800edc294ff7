"""Adam: PyTorch's arithmetic in Jittor (epsilon after the bias correction, L2 decay)."""
import jittor as jt
import numpy as np
import torch

import cten_jt.optim
from helpers import assert_close


def _run_adam(make_jt_opt, steps=5, seed=0):
    rng = np.random.default_rng(seed)
    p0 = rng.normal(size=(40,)).astype(np.float32)
    targets = [rng.normal(size=(40,)).astype(np.float32) * 10 ** rng.uniform(-6, 0, 40).astype(np.float32)
               for _ in range(steps)]
    t_p = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    t_opt = torch.optim.Adam([t_p], lr=2e-4, weight_decay=5e-4)
    j_p = jt.array(p0.copy())
    j_opt = make_jt_opt([j_p])
    for target in targets:           # loss = sum(p * target): gradient = target, tiny ones included
        t_opt.zero_grad()
        (t_p * torch.from_numpy(target)).sum().backward()
        t_opt.step()
        j_opt.step((j_p * jt.array(target)).sum())
    return t_p.detach().numpy(), j_p.numpy()


def test_adam_matches_torch_over_several_steps():
    t_p, j_p = _run_adam(lambda ps: cten_jt.optim.Adam(ps, lr=2e-4, weight_decay=5e-4))
    assert_close(t_p, j_p, "parameters after 5 Adam steps", atol=1e-7)


def test_jittors_own_adam_differs_where_gradients_are_small():
    """The trap this Adam exists for: Jittor's epsilon placement."""
    t_p, j_p = _run_adam(lambda ps: jt.optim.Adam(ps, lr=2e-4, weight_decay=5e-4))
    assert np.max(np.abs(t_p - j_p)) > 1e-6


def test_adam_keeps_no_state_for_frozen_parameters():
    import jittor as jt
    import cten_jt.optim
    live = [jt.array(np.ones((3,), np.float32)), jt.array(np.ones((2, 2), np.float32))]
    frozen = [jt.array(np.ones((1000,), np.float32)).stop_grad()]
    opt = cten_jt.optim.Adam(live + frozen, lr=0.1)
    held = opt.param_groups[0]["params"]
    assert len(held) == 2 and all(any(h is p for p in live) for h in held)
    loss = (live[0] * 2).sum() + (live[1] ** 2).sum() + frozen[0].sum()
    before = frozen[0].numpy().copy()
    opt.step(loss)
    assert not np.allclose(live[0].numpy(), 1) and np.array_equal(frozen[0].numpy(), before)


def test_adam_updates_in_chunks_take_the_same_step(monkeypatch):
    # a sync every parameter (SYNC_BYTES=1) against one sync for all: same parameters
    rng = np.random.default_rng(3)
    shapes = [(5, 4), (7,), (3, 3, 2)]
    init = [rng.normal(size=s).astype(np.float32) for s in shapes]
    targets = [rng.normal(size=s).astype(np.float32) for s in shapes]
    results = {}
    for chunk in (1, 2 ** 40):
        monkeypatch.setattr(cten_jt.optim.Adam, "SYNC_BYTES", chunk)
        ps = [jt.array(a.copy()) for a in init]
        opt = cten_jt.optim.Adam(ps, lr=1e-2, weight_decay=5e-4)
        for _ in range(3):
            opt.step(sum((p * jt.array(t)).sum() for p, t in zip(ps, targets)))
        results[chunk] = [p.numpy() for p in ps]
    for a, b in zip(results[1], results[2 ** 40]):
        np.testing.assert_array_equal(a, b)
