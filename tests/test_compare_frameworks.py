"""benchmarks/compare_frameworks.py and framework_worker.py: every row names its algorithm and
precision, the arithmetic rate is FLOPs / time and its fractions of the peak probes, and the
worker's per-measure peak RSS resets."""
import numpy as np
import pytest

from benchmarks import compare_frameworks as cf
from benchmarks import flops
from benchmarks import framework_worker as fw
from helpers import TINY_AV


def _runs(precision="fp32", audio_once=True, batch=2):
    def run(times, rss):
        return {"device": "cpu", "batch": batch, "model": dict(TINY_AV), "precision": precision,
                "audio_once": audio_once, "peak_rss_mb": rss,
                "times": {m: list(times) for m in cf.MEASURES}}
    return {"jittor": [run([1.0, 2.0, 3.0], 900.0)], "torch": [run([2.0, 4.0, 6.0], 1000.0)]}


PROBE = {"rows": [{"framework": "PyTorch", "op": "gemm", "dtype": "fp32", "gflops": 100.0},
                  {"framework": "PyTorch", "op": "conv3d", "dtype": "fp32", "gflops": 80.0},
                  {"framework": "PyTorch", "op": "gemm", "dtype": "bf16", "gflops": 400.0},
                  {"framework": "Jittor", "op": "gemm", "dtype": "fp32", "gflops": 50.0},
                  {"framework": "Jittor", "op": "conv3d", "dtype": "fp32", "gflops": 125.0},
                  {"framework": "Jittor", "op": "conv3d", "dtype": "bf16", "gflops": "n/a"}]}


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_every_row_states_algorithm_and_precision(precision):
    table = cf.summarise(_runs(precision), epochs={"jittor": [1.0], "torch": [2.0]},
                         bank_epochs=[0.5], precision=precision, probe=PROBE)
    body = cf.rows(table)
    assert set(body) == set(cf.MEASURES) | {"memory_mb", "epoch_s", "epoch_bank_s"}
    for name, row in body.items():
        assert row["precision"] == precision, name
        assert "audio branch once" in row["algorithm"], name
    text = cf.render(table, {"device": "cpu", "description": "test"})
    table_lines = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert all(f"| {precision} |" in line for line in table_lines[1:] if not line.startswith("| measure"))
    assert "per view" in cf.algorithm(False) and "once" in cf.algorithm(True)


def test_a_run_of_another_precision_is_refused():
    runs = _runs("fp32")
    runs["torch"][0]["precision"] = "bf16"
    with pytest.raises(ValueError, match="bf16"):
        cf.summarise(runs, None, precision="fp32")


def test_gflops_are_flops_over_time_and_fractions_of_the_peaks():
    table = cf.summarise(_runs(), None, precision="fp32", probe=PROBE)
    count = flops.count(TINY_AV, 2)
    forward = 2 * count["forward"]["inside"]
    row = table["inference"]
    assert row["flops"]["performed"] == forward and row["flops"]["nominal"] == 2 * count["forward"]["nominal"]
    # medians: Jittor 2.0 s, PyTorch 4.0 s; peaks: PyTorch 100 (its best fp32 probe), Jittor 125, best 125
    assert row["jittor"]["efficiency"]["gflops"] == pytest.approx(forward / 2.0 / 1e9)
    assert row["torch"]["efficiency"]["gflops"] == pytest.approx(forward / 4.0 / 1e9)
    assert row["jittor"]["efficiency"]["of_own_peak"] == pytest.approx(forward / 2.0 / 1e9 / 125.0)
    assert row["torch"]["efficiency"]["of_own_peak"] == pytest.approx(forward / 4.0 / 1e9 / 100.0)
    assert row["torch"]["efficiency"]["of_best_peak"] == pytest.approx(forward / 4.0 / 1e9 / 125.0)
    step = count["training_step"]["inside"]["audio_once"]
    assert table["train_step"]["flops"]["performed"] == 2 * step
    assert table["backbone_inference"]["flops"]["performed"] == 2 * count["training_step"]["inside"]["Fvis"]
    assert cf.summarise(_runs(audio_once=False), None)["train_step"]["flops"]["performed"] == \
        2 * count["training_step"]["inside"]["per_view"]


def test_a_precision_without_a_probe_has_no_fraction():
    assert cf.peaks(PROBE, "bf16") == {"torch": 400.0, "jittor": None, "best": 400.0}
    table = cf.summarise(_runs("bf16"), None, precision="bf16", probe=PROBE)
    eff = table["inference"]["jittor"]["efficiency"]
    assert eff["of_own_peak"] is None and eff["of_best_peak"] is not None
    assert "n/a" in cf.render(table, {"device": "cpu", "description": "test"})
    no_probe = cf.summarise(_runs(), None)
    assert no_probe["inference"]["torch"]["efficiency"]["of_best_peak"] is None


_RESET_CHECK = """
import numpy as np
from benchmarks import framework_worker as fw
if not fw.reset_peak_rss():
    print("unsupported")
    raise SystemExit(0)
_, before = fw.rss_mb()
block = np.ones(200 * 2**20 // 8)           # 200 MB, touched
_, high = fw.rss_mb()
assert high >= before + 150, (before, high)
del block
assert fw.reset_peak_rss()
cur, low = fw.rss_mb()
assert low < high - 150 and abs(low - cur) < 50, (high, low, cur)
print("ok")
"""


def test_the_worker_resets_the_peak_rss_mark():
    """In a fresh process: what earlier tests did to this one's heap (glibc keeps freed
    blocks once Jittor or PyTorch has run) would hide the drop."""
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", _RESET_CHECK], cwd=root, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=root))
    assert done.returncode == 0, done.stderr[-2000:]
    if done.stdout.strip() == "unsupported":
        pytest.skip("this kernel does not let a process reset its peak RSS")
    assert done.stdout.strip() == "ok"