"""cten_common/training.py's per-epoch draws, as both trainers take them."""
import itertools

import pytest

from cten_common.run_config import load_run_config
from cten_common.training import dropout_seed, epoch_order, erasing_rng


def test_dropout_seeds_are_32_bit_distinct_and_accepted_by_both_frameworks():
    """Jittor's set_global_seed passes its seed to np.random.seed (< 2**32): the former
    formula crashed the Jittor trainer from train.seed 5 on."""
    import jittor as jt
    import torch
    grid = list(itertools.product([0, 1, 4, 5, 1234, 2 ** 32 - 1], [0, 1, 99], [0, 3]))
    seeds = [dropout_seed(s, e, r) for s, e, r in grid]
    assert all(isinstance(x, int) and 0 <= x < 2 ** 32 for x in seeds)
    assert len(set(seeds)) == len(grid)                       # every (seed, epoch, rank) its own
    assert seeds == [dropout_seed(s, e, r) for s, e, r in grid]          # and the same each time
    for x in (min(seeds), max(seeds), dropout_seed(5, 0)):
        jt.set_global_seed(x)
        torch.manual_seed(x)


def test_epoch_draws_depend_on_seed_and_epoch_alone():
    assert (epoch_order(5, 2, 10) == epoch_order(5, 2, 10)).all()
    assert not (epoch_order(5, 2, 50) == epoch_order(5, 3, 50)).all()
    assert erasing_rng(7, 1).integers(1 << 30) == erasing_rng(7, 1).integers(1 << 30)


@pytest.mark.parametrize("value", ["-1", "4294967296", "1.5", "true", "abc"])
def test_a_seed_outside_32_bits_is_refused_by_name(value):
    with pytest.raises(ValueError, match=r"train.seed must be an integer in \[0, 2\*\*32\)"):
        load_run_config(None, [f"train.seed={value}"])
    assert load_run_config(None, ["train.seed=4294967295"])["train"]["seed"] == 2 ** 32 - 1
