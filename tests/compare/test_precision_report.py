"""cten-precision-report (cten_compare.precision_report; the GPU check's smoke and
precision steps): every precision this device runs, in both frameworks, against the same
model in float64, judged against PyTorch's own distance."""
import json

import numpy as np
import pytest

from cten_compare import precision_report as pr


def test_the_report_covers_each_precision_and_output_and_passes_here(tmp_path):
    out = tmp_path / "precision.json"
    rc = pr.main(["--depth", "10", "--segments", "2", "--frames", "4", "--size", "32", "--out", str(out)])
    report = json.loads(out.read_text())
    assert rc == 0 and report["all_ok"], [r for r in report["rows"] if r["verdict"] != "ok"]
    got = {(r["precision"], r["output"]) for r in report["rows"]}
    assert got == {(p, o) for p in ("fp32", "bf16") for o in pr.OUTPUTS}     # fp16, tf32: GPU only
    rows = {(r["precision"], r["output"]): r for r in report["rows"]}
    # the floors are what each precision does: fp32-sized in fp32, bf16-sized in bf16
    assert 0 < rows["fp32", "eval logits"]["d_torch"] < 1e-5
    assert 1e-4 < rows["bf16", "eval logits"]["d_torch"] < 0.1
    assert (tmp_path / "precision.md").read_text().count("| bf16 |") == len(pr.OUTPUTS)


def test_the_verdict_is_a_factor_of_the_floor():
    assert pr.verdict("bf16", 3.9e-3, 1e-3) == "ok"
    assert pr.verdict("bf16", 4.1e-3, 1e-3) == "OVER"
    assert pr.verdict("fp32", 5e-5, 1e-8) == "ok"          # within the fp32 parity bound
    assert pr.verdict("fp32", 2e-4, 1e-8) == "OVER"


def test_distance_over_a_dict_is_the_largest_difference_over_the_largest_value():
    ref = {"a": np.array([1.0, -4.0]), "b": np.array([0.5])}
    out = {"a": np.array([1.0, -4.0]), "b": np.array([0.7])}
    assert pr.distance(out, ref) == pytest.approx(0.2 / 4.0)


def test_gpu_only_precisions_are_refused_on_the_cpu(capsys):
    with pytest.raises(SystemExit):
        pr.main(["--precisions", "fp16", "--out", "/tmp/unused.json"])
    assert "runs on a CUDA GPU only" in capsys.readouterr().err
