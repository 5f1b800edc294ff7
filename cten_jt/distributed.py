"""Data-parallel training over MPI: ``mpirun -np N python -m cten_jt.train ...``.

Jittor starts in MPI mode when launched by OpenMPI's ``mpirun`` (it compiles
its MPI ops at first import where ``mpicc`` exists).  What CTEN does with it:

* every rank reads its own contiguous part of each global batch (Jittor's
  ``Dataset`` splits ``train.batch_size`` across ranks); the shuffle order
  comes from (seed, epoch), so all ranks agree on it;
* gradients are averaged across ranks at every step (Jittor's optimiser), and
  the parameters start from rank 0's;
* BatchNorm: each rank normalises with its own shard's statistics and keeps its
  own running statistics, rank 0's being saved, like the reference's
  ``DataParallel``; ``train.sync_bn: true`` uses the global batch's statistics
  instead (forward and backward), so that N ranks of batch b take the step one
  process takes with batch N*b;
* erasing: each rank draws its rows of the global batch's draws
  (``cten_common.erasing.RankRows``);
* rank 0 alone writes checkpoints, logs and plots; evaluation splits the videos
  across ranks and gathers every prediction, so the metrics cover the split once.

Sums go through float64 (Jittor maps int64 to the wrong MPI type, and
``jt.array`` turns float64 into float32 unless told not to).
"""
import jittor as jt
import numpy as np


def world():
    """``(rank, size)``: ``(0, 1)`` outside MPI."""
    if not jt.in_mpi:
        return 0, 1
    return int(jt.rank), int(jt.world_size)


def all_sum(array):
    """The elementwise sum of a numpy array over the ranks (float64)."""
    array = np.asarray(array, np.float64)
    if not jt.in_mpi:
        return array
    with jt.flag_scope(auto_convert_64_to_32=0):      # jt.array would make float64 float32
        return jt.array(array).mpi_all_reduce("add").numpy().reshape(array.shape)

