"""benchmarks/compare_frameworks.py and framework_worker.py: every row names its algorithm and
precision, the arithmetic rate is FLOPs / time and its fractions of the peak probes, and the
worker's per-measure peak RSS resets."""
import numpy as np
import pytest

from benchmarks import compare_frameworks as cf
from benchmarks import flops
from benchmarks import framework_worker as fw
from helpers import TINY_AV


TIMED = [m for m in cf.MEASURES if m != "conv3d_probe"]     # the probe alongside: its own test


def _runs(precision="fp32", audio_once=True, batch=2):
    def run(times, rss):
        return {"device": "cpu", "batch": batch, "model": dict(TINY_AV), "precision": precision,
                "audio_once": audio_once, "peak_rss_mb": rss,
                "times": {m: list(times) for m in TIMED}}
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
    assert set(body) == set(TIMED) | {"memory_mb", "epoch_s", "epoch_bank_s"}
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


def test_a_probe_timed_alongside_is_the_peak():
    """Where the workers timed the conv3d probe with the rest, its rates (this run's minutes)
    are the peaks, whatever probe file was given; the probe counts every tap (no padding)."""
    runs = _runs()
    runs["jittor"][0]["times"]["conv3d_probe"] = [0.5, 0.4, 0.6]       # median 0.5 s
    runs["torch"][0]["times"]["conv3d_probe"] = [0.25, 0.3, 0.2]       # median 0.25 s
    table = cf.summarise(runs, None, probe=PROBE)
    probe = flops.probe_conv_flops()
    assert probe == 2 * 16 * 256 * 256 * 27 * 4 * 14 * 14
    peak = table["_peak_gflops"]
    assert peak["jittor"] == pytest.approx(probe / 0.5 / 1e9) and peak["torch"] == pytest.approx(probe / 0.25 / 1e9)
    assert peak["best"] == peak["torch"] and peak["alongside"]
    forward = 2 * flops.count(TINY_AV, 2)["forward"]["inside"]
    eff = table["inference"]["jittor"]["efficiency"]
    assert eff["of_own_peak"] == pytest.approx(forward / 2.0 / probe * 0.5)
    assert eff["of_best_peak"] == pytest.approx(forward / 2.0 / probe * 0.25)
    text = cf.render(table, {"device": "cpu", "description": "test"})
    assert "conv3d probe timed alongside" in text and "| peak probe: conv3d" in text


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

# --- the interleaved runs (framework_worker --serve, compare_frameworks._interleaved) ---

def _served_runs(jittor_times, torch_times):
    runs = _runs()
    for fw, times in (("jittor", jittor_times), ("torch", torch_times)):
        runs[fw][0]["served"] = True
        runs[fw][0]["times"] = {m: list(times) for m in TIMED}
    return runs


def test_the_ratio_of_interleaved_runs_is_the_median_of_the_paired_ratios():
    # rounds: Jittor 1, 4, 3 s against PyTorch 2, 4, 10 s: paired ratios 0.5, 1.0, 0.3 (median 0.5);
    # the ratio of the medians would be 3/4 = 0.75, the ratio of the minima 1/2
    table = cf.summarise(_served_runs([1.0, 4.0, 3.0], [2.0, 4.0, 10.0]), None)
    row = table["train_step"]
    assert row["paired_ratio"]["median"] == pytest.approx(0.5)
    assert (row["paired_ratio"]["min"], row["paired_ratio"]["max"]) == (pytest.approx(0.3), pytest.approx(1.0))
    assert cf.ratio(row) == pytest.approx(0.5)
    text = cf.render(table, {"device": "cpu", "description": "test"})
    line = next(x for x in text.splitlines() if x.startswith("| training step"))
    assert "| 0.50 (0.30-1.00) | 0.50 |" in line, line
    assert "median of 3 paired ratios" in text
    # runs not interleaved: the ratio of the medians, and no paired column
    plain = cf.summarise(_runs(), None)["train_step"]
    assert "paired_ratio" not in plain and cf.ratio(plain) == pytest.approx(0.5)


def test_paired_runs_of_unequal_length_are_refused():
    runs = _served_runs([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="2 Jittor iterations against 3 PyTorch"):
        cf.summarise(runs, None)


def _serve(requests, calls=None):
    import io
    log = []
    calls = calls or {m: (lambda m=m: log.append(m)) for m in cf.MEASURES}
    result = {"times": {}}
    recorder = fw._Recorder(result)
    answers = io.StringIO()
    fw.serve(calls, lambda: log.append("sync"), recorder, io.StringIO(requests), answers)
    recorder.stop()
    return answers.getvalue().splitlines(), log, result


def test_the_serving_worker_runs_what_it_is_asked_and_times_it():
    answers, log, result = _serve("warmup inference 2\ntime inference\ntime inference\n\nwarmup train_step 0\n"
                                  "time train_step\ndone\ntime inference\n")
    assert answers[0] == "up" and answers[1] == "ready" and answers[4] == "ready"
    assert [a.split()[0] for a in answers] == ["up", "ready", "time", "time", "ready", "time"]
    assert float(answers[2].split()[1]) == result["times"]["inference"][0]
    # every call closed by a synchronisation; nothing after "done"
    assert log == ["inference", "inference", "sync", "inference", "sync", "inference", "sync", "sync",
                   "train_step", "sync"]
    assert len(result["times"]["inference"]) == 2 and len(result["times"]["train_step"]) == 1
    assert len(result["time_started"]["inference"]) == 2
    assert set(result["peak_rss_by_measure_mb"]) == {"inference", "train_step"}


@pytest.mark.parametrize("requests, error", [("warmup nothing 1\ndone\n", ValueError),
                                             ("time inference extra\ndone\n", ValueError),
                                             ("time inference\n", EOFError)])
def test_the_serving_worker_refuses_what_it_does_not_know(requests, error):
    with pytest.raises(error, match="framework_worker --serve"):
        _serve(requests)


def test_interleaved_workers_take_turns_and_swap_the_order_every_round(tmp_path):
    """Both frameworks' real workers at a tiny shape: every measure's timed iterations
    alternate J,P, P,J, ... on the wall clock, and the table has the paired ratios."""
    import argparse
    import os
    config = tmp_path / "tiny.yaml"
    model = "\n".join(f"  {k}: {v}" for k, v in {**TINY_AV, "seq_len": 2, "audio_n_segments": 2, "snippet_duration": 4}.items())
    config.write_text(f"model:\n{model}\ntrain:\n  batch_size: 1\n  lr: 2.0e-4\n  weight_decay: 5.0e-4\n")
    a = argparse.Namespace(config=str(config), device="cpu", iters=3, warmup=1, batch=None, set=[],
                           precision="fp32")
    runs = cf._interleaved(a, str(tmp_path), 0)
    for measure in cf.MEASURES:
        starts = sorted((t, name) for name in cf.FRAMEWORKS for t in runs[name]["time_started"][measure])
        assert [name for _, name in starts] == ["jittor", "torch", "torch", "jittor", "jittor", "torch"], measure
    table = cf.summarise({name: [r] for name, r in runs.items()}, None)
    assert table["inference"]["paired_ratio"]["n"] == 3
    # a kept folder's pair is reused, not run again
    again = cf._interleaved(a, str(tmp_path), 0)
    assert again["jittor"]["time_started"] == runs["jittor"]["time_started"]
    assert os.path.exists(tmp_path / "torch_0.json")


def test_the_onnx_runtimes_take_turns_in_inference_only(tmp_path):
    """A worker per runtime beside the two frameworks, on cten-export's file of the same
    weights: it takes its turn in the inference measures only; the runtimes' table gives
    Jittor's time over each runtime's as the median of their paired ratios."""
    import argparse
    config = tmp_path / "tiny.yaml"
    model = "\n".join(f"  {k}: {v}" for k, v in {**TINY_AV, "seq_len": 2, "audio_n_segments": 2, "snippet_duration": 4}.items())
    config.write_text(f"model:\n{model}\ntrain:\n  batch_size: 1\n  lr: 2.0e-4\n  weight_decay: 5.0e-4\n")
    a = argparse.Namespace(config=str(config), device="cpu", iters=2, warmup=1, batch=None, set=[],
                           precision="fp32", runtimes=["openvino", "onnxruntime"])
    from benchmarks.common import exported_onnx
    onnx = exported_onnx(a.config, a.set, str(tmp_path))
    runs = cf._interleaved(a, str(tmp_path), 0, onnx)
    for rt in a.runtimes:
        assert set(runs[rt]["times"]) == set(cf.RUNTIME_MEASURES) and runs[rt]["precision"] == "fp32"
    starts = sorted((t, name) for name in runs for t in runs[name]["time_started"]["inference"])
    assert [name for _, name in starts] == ["jittor", "torch", "openvino", "onnxruntime",
                                            "onnxruntime", "openvino", "torch", "jittor"]
    assert not any("train_step" in runs[rt]["time_started"] for rt in a.runtimes)
    runs = {name: [r] for name, r in runs.items()}
    table = cf.summarise(runs, None)
    table["_runtimes"] = deploy = cf.summarise_runtimes(runs, table)
    for measure in cf.RUNTIME_MEASURES:
        for rt in a.runtimes:
            row = deploy[measure][rt]
            pairs = [j / r for j, r in zip(runs["jittor"][0]["times"][measure], runs[rt][0]["times"][measure])]
            assert row["jittor_over"]["median"] == pytest.approx(float(np.median(pairs)))
    text = cf.render(table, {"device": "cpu", "description": "test"})
    assert "| inference forward (s) | OpenVINO | fp32 |" in text and "| ONNX Runtime | fp32 |" in text


def test_a_runtime_without_bf16_here_runs_fp32_and_says_so(monkeypatch):
    """OpenVINO refusing bf16 (no bf16 units, or none it can use): the worker runs fp32 and
    its result's precision says so; ONNX Runtime is fp32 in a bf16 run anyway."""
    from cten_deploy import runtimes
    opened = []

    class Refusing:
        def __init__(self, path, runtime, precision="fp32", threads=None):
            if precision != "fp32":
                raise ValueError("no bf16 here")
            opened.append((path, runtime, precision))
            self.inputs = ["visual"]

    monkeypatch.setattr(runtimes, "OnnxModel", Refusing)
    config = {"train": {"precision": "bf16"}}
    assert fw._Runtime(config, "openvino", "m.onnx").precision == "fp32"
    assert fw._Runtime(config, "onnxruntime", "m.onnx").precision == "fp32"
    assert opened == [("m.onnx", "openvino", "fp32"), ("m.onnx", "onnxruntime", "fp32")]
