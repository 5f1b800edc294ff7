"""benchmarks/memory_levers.py (cten-bench memory): its table from worker results, and the
lever names it accepts."""
import os

import pytest

from benchmarks import memory_levers as ml


def _worker(peak, start):
    return {"precision": "fp32", "peak_rss_mb": peak, "times": {"train_step": [2.0, 4.0]},
            "peak_rss_by_measure_mb": {"train_step": peak}, "rss_before_measure_mb": {"train_step": start},
            "loadavg_start": [3.0, 2.0, 1.0], "started_utc": "2026-01-01T00:00:00Z", "env": {}}


def test_the_table_gives_each_lever_its_peak_and_ratio_to_pytorch():
    runs = [ml.record("baseline", "the defaults", "torch", _worker(1000.0, 500.0), ["train_step"]),
            ml.record("baseline", "the defaults", "jittor", _worker(1100.0, 600.0), ["train_step"]),
            ml.record("no_sfrl_allocator", ml.LEVERS["no_sfrl_allocator"][0], "jittor", _worker(800.0, 400.0),
                      ["train_step"]),
            ml.record("baseline", "the defaults", "torch", _worker(1000.0, 500.0), ["train_step"])]
    assert runs[0]["time_s"]["train_step"] == 3.0 and runs[0]["precision"] == "fp32"
    result = {"description": "test", "measures": ["train_step"], "runs": runs, "torch_peak_rss_mb": 1000.0,
              "levers": {"no_sfrl_allocator": "x"}, "started_utc": "a", "finished_utc": "b", "note": "shared"}
    text = ml.render(result)
    rows = [r for r in text.splitlines() if r.startswith("| ")]
    assert len(rows) == 1 + 4
    assert "| no_sfrl_allocator | jittor | 800 | 0.80 | 400 / 800 | 3.00 | 3.0 |" in rows
    assert "| baseline | jittor | 1100 | 1.10 |" in text
    assert all(r.count("|") == rows[0].count("|") for r in rows)


def test_unknown_levers_are_refused():
    with pytest.raises(SystemExit):
        ml.main(["--levers", "baseline,no_such_lever"])
    assert set(ml.DEFAULT.split(",")) <= set(ml.LEVERS)


def test_inference_processes_load_a_weights_file_and_measure_inference(monkeypatch, tmp_path):
    calls = []

    def worker(framework, a, env, extra, out):
        calls.append((framework, a.measures, list(extra)))
        return _worker(1000.0, 500.0) | {"times": {"inference": [1.0]}, "peak_rss_by_measure_mb": {},
                                        "rss_before_measure_mb": {}}

    monkeypatch.setattr(ml, "run_worker", worker)
    monkeypatch.setattr(ml, "weights_file", lambda a, folder: "W.safetensors")
    assert ml.main(["--inference-process", "--levers", "baseline,gc_each_iteration",
                    "--out", str(tmp_path / "m.json")]) == 0
    assert [c[0] for c in calls] == ["torch", "jittor", "jittor", "torch"]
    assert all(c[1] == "inference" and c[2][-2:] == ["--weights", "W.safetensors"] for c in calls)
    assert calls[2][2][0] == "--jittor-gc"
    assert "inference processes" in (tmp_path / "m.md").read_text()


@pytest.mark.parametrize("framework", ["jittor", "torch"])
def test_the_worker_loads_the_weights_as_cten_predict_and_makes_the_optimiser_at_the_first_step(framework,
                                                                                                   tmp_path):
    """``--weights``: the model of ``inference_model`` (the file's arrays, eval mode); no
    optimiser until a training step is measured (Jittor's Adam holds its state from when it
    is made, which an inference process must not pay for)."""
    import numpy as np

    from benchmarks import framework_worker as fw
    from cten_common.checkpoint_io.safetensors_io import read_safetensors
    from cten_common.config import load_run_config
    config = load_run_config(os.path.join(ml.ROOT, "configs", "synthetic.yaml"), []).to_dict()
    path = ml.shared_weights(os.path.join(ml.ROOT, "configs", "synthetic.yaml"), [], str(tmp_path))
    runner = (fw._Jittor if framework == "jittor" else fw._Torch)(config, "cpu", path)
    stored, _ = read_safetensors(path)
    if framework == "jittor":
        from cten_jt.models.state import state_arrays
    else:
        from cten_torch_ref.models.state import state_arrays
    held = state_arrays(runner.model)
    for k in stored:            # Jittor keeps num_batches_tracked as int32
        same = np.array_equal if stored[k].dtype.kind == "i" else lambda a, b: a.tobytes() == b.tobytes()
        assert same(np.ravel(held[k]), np.ravel(stored[k])), k
    runner.prepare(fw.make_batch(config, 1))
    runner.inference()
    assert runner.optimizer is None
    runner.train_step(np.random.default_rng(0))
    assert runner.optimizer is not None
