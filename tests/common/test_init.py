"""cten_common/init.py: the initial state, whole or one array at a time."""
import numpy as np

from cten_common.init import initial_state, iter_initial_state

SHAPES = {"resnet.0.weight": ((4, 3, 3, 3, 3), "float32"), "resnet.1.weight": ((4,), "float32"),
          "resnet.1.bias": ((4,), "float32"), "resnet.1.running_mean": ((4,), "float32"),
          "resnet.1.running_var": ((4,), "float32"), "resnet.1.num_batches_tracked": ((), "int64"),
          "fc.weight": ((2, 4), "float32"), "fc.bias": ((2,), "float32"), "nl.alpha": ((1,), "float32"),
          "a_resnet.0.weight": ((8, 1, 7, 7), "float32")}


def test_one_array_at_a_time_is_the_whole_state_in_sorted_order():
    whole = initial_state(SHAPES, seed=11)
    streamed = list(iter_initial_state(SHAPES, seed=11))
    assert [name for name, _ in streamed] == sorted(SHAPES)
    for name, value in streamed:
        assert value.dtype == whole[name].dtype and value.shape == SHAPES[name][0], name
        assert value.tobytes() == whole[name].tobytes(), name
    again = dict(iter_initial_state(SHAPES, seed=12))
    assert not np.array_equal(again["fc.weight"], whole["fc.weight"])       # the seed is used
