"""benchmarks/scaling.py (cten-bench scaling): the grid, the growth fit's arithmetic, and the
command end to end on a tiny grid at a toy shape (a well-formed table, JSON and plot)."""
import json
import math
import os

import pytest
import yaml

from benchmarks import scaling
from benchmarks.cli import main as bench_main
from helpers import TINY_AV


def test_grid_is_two_lines_through_the_largest_segments():
    assert scaling.grid([4, 8, 16], [1, 2, 4]) == [(4, 1), (8, 1), (16, 1), (16, 2), (16, 4)]
    assert scaling.grid([4], [1], points=[(2, 1), (2, 1), (4, 2)]) == [(2, 1), (4, 2)]


def test_fit_recovers_an_exponent_and_the_ratio_per_doubling():
    xs = [4, 8, 16]
    got = scaling.fit(xs, [3.0 * x ** 1.5 for x in xs])
    assert got["exponent"] == pytest.approx(1.5)
    assert got["per_doubling"] == pytest.approx(2 ** 1.5)
    # memory: 1000 MB of weights + 100 MB per segment: added per doubling = (2600 - 1400) / 2
    mem = scaling.fit(xs, [1000 + 100 * x for x in xs])
    assert mem["added_per_doubling"] == pytest.approx(600.0)
    assert 0 < mem["exponent"] < 1
    assert scaling.fit([4], [1.0]) is None and scaling.fit([4, 4], [1.0, 2.0]) is None
    assert scaling.fit([4, 8], [None, 2.0]) is None


def test_scaling_command_on_a_tiny_grid(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({"model": dict(TINY_AV), "train": {"batch_size": 1}}))
    out = tmp_path / "scaling.json"
    assert bench_main(["scaling", "--config", str(config), "--segments", "2,4", "--batches", "1,2",
                       "--measures", "inference", "--iters", "1", "--warmup", "0", "--note", "test run",
                       "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["points"] == [[2, 1], [4, 1], [4, 2]]
    for key in ("2x1", "4x1", "4x2"):
        for fw in ("jittor", "torch"):
            d = result["data"][key][fw]
            assert d["time_s"]["inference"] > 0 and d["peak_rss_mb"]["inference"] > 0
            assert d["precision"] == "fp32"
        # the two frameworks' workers took turns: a paired ratio per point
        assert result["data"][key]["paired_ratio"]["inference"] > 0
    for line in ("segments", "batch"):
        g = result["growth"][line]["jittor"]["inference"]
        assert math.isfinite(g["time"]["exponent"]) and math.isfinite(g["memory"]["exponent"])
    md = (tmp_path / "scaling.md").read_text()
    rows = [r for r in md.splitlines() if r.startswith("|")]
    header = rows[0].count("|")
    point_rows = rows[2:5]
    assert len(point_rows) == 3 and all(r.count("|") == header for r in point_rows)
    assert [r.split("|")[1:3] for r in point_rows] == [[" 2 ", " 1 "], [" 4 ", " 1 "], [" 4 ", " 2 "]]
    assert "test run" in md and "median of the paired ratios" in md
    assert os.path.getsize(tmp_path / "scaling.png") > 1000
    # the ONNX runtimes installed (setup.sh installs both) took their turns at every point
    import importlib.util
    runtimes = [rt for rt in scaling.RUNTIMES if importlib.util.find_spec(rt)]
    for key in ("2x1", "4x1", "4x2"):
        for rt in runtimes:
            r = result["data"][key]["runtimes"][rt]
            assert r["time_s"] > 0 and r["jittor_over"] > 0 and r["precision"] == "fp32", (key, rt)
    if runtimes:
        assert "ONNX runtimes beside them" in md and "| 4 | 2 | OpenVINO | fp32 |" in md


def test_the_paired_ratio_is_the_median_of_back_to_back_iterations():
    def run(times, served=True):
        return {"served": served, "times": {"inference": times}}
    results = {"jittor": [run([1.0, 3.0]), run([2.0])], "torch": [run([2.0, 3.0]), run([8.0])]}
    # ratios 0.5, 1.0, 0.25: median 0.5 (the ratio of the medians would be 2/3)
    assert scaling.paired_ratio(results, "inference") == 0.5
    results["torch"][1]["served"] = False
    assert scaling.paired_ratio(results, "inference") is None
    assert scaling.paired_ratio({"jittor": [run([1.0])], "torch": [run([1.0])]}, "train_step") is None
