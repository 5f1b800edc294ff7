"""benchmarks/memory_levers.py (cten-bench memory): its table from worker results, and the
lever names it accepts."""
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
