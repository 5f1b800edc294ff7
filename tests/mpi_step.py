"""One erasing step's loss, gradients and BatchNorm statistics, written by rank 0
(tests/test_distributed.py runs it once alone and once under mpirun -np 2).

    python tests/mpi_step.py OUT.npz

Under MPI each rank takes its contiguous part of the batch and its rows of the
erasing draws (RankRows), BatchNorm uses the global batch (set_sync_batchnorm),
and the gradients are the ones the trainer's optimiser holds after its backward
(Jittor's optimiser averages them over the ranks).
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cten_jt  # noqa: E402,F401  (settings first)
import jittor as jt  # noqa: E402
from cten_common.erasing import ClipViews, RankRows  # noqa: E402
from cten_jt import distributed, engine  # noqa: E402
from cten_jt.models import CTEN  # noqa: E402
from cten_jt.models.norm import set_sync_batchnorm  # noqa: E402
from cten_jt.optim import Adam  # noqa: E402

CFG = dict(n_classes=2, seq_len=2, snippet_duration=4, sample_size=32, audio_n_segments=2,
           audio_embed_size=512, visual_depth=10, dropout=0.0)


def main(out):
    rank, size = distributed.world()
    model = CTEN(init_seed=0, **CFG)
    set_sync_batchnorm(model)
    model.train()
    rng = np.random.default_rng(1)
    b_total, n_frames = 4, np.array([20, 13, 17, 20])
    clips = rng.uniform(0, 255, (b_total, 20, 3, 32, 32)).astype(np.float32)
    idx = np.sort(rng.integers(0, 13, (b_total, 8)), 1).reshape(b_total, 2, 4)
    visual = clips[np.arange(b_total)[:, None, None], idx].transpose(0, 1, 3, 2, 4, 5).copy()
    batch = {"visual": visual, "audio": rng.normal(size=(b_total, 200, 128)).astype(np.float32),
             "label": np.array([0, 1, 1, 0]), "n_frames": n_frames, "clip": clips}
    draws = np.random.default_rng(5)
    if size > 1:
        b = b_total // size
        rows = slice(rank * b, (rank + 1) * b)
        batch = {k: v[rows] for k, v in batch.items()}
        draws = RankRows(draws, rank, size)
    loss, info = engine.erasing_loss(model, batch, draws, reader=ClipViews(batch["clip"]))
    params = {n: p for n, p in model.named_parameters() if not p.is_stop_grad()}
    optimizer = Adam(list(params.values()), lr=2e-4, weight_decay=5e-4)
    optimizer.backward(loss)
    grads = {n: g.numpy() for n, g in zip(params, optimizer.param_groups[0]["grads"])}
    result = {f"grad/{n}": g for n, g in grads.items()}
    # every rank must hold the same (averaged) gradients
    result["grad_spread"] = np.array([max(float(np.abs(distributed.all_sum(g) / size - g).max())
                                          for g in grads.values())])
    result["loss"] = distributed.all_sum(loss.numpy()) / size
    for view in ("context", "keyframe"):        # every rank's frames, in batch order
        local = info["indices"][view].astype(np.float64)
        full = np.zeros((b_total,) + local.shape[1:])
        full[rank * len(local):(rank + 1) * len(local)] = local
        result[f"indices/{view}"] = distributed.all_sum(full)
    # integer counts go through float64: Jittor maps an int64 all-reduce to the wrong MPI type
    result["counts"] = distributed.all_sum(np.array([rank + 1, 2 ** 40 + rank], np.int64))
    for name, value in model.state_dict().items():
        if name.endswith(("running_mean", "running_var")):
            result[f"buffer/{name}"] = value.numpy()
    if rank == 0:
        np.savez(out, **result)


if __name__ == "__main__":
    main(sys.argv[1])
