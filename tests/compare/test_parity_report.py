"""cten-parity-report (cten_compare.parity_report; also the GPU check's parity step,
--device cuda): its table covers forward, buffers and the erasing step, and passes on
this machine."""
import json

from cten_compare.parity_report import main


def test_parity_report_passes_and_covers_the_erasing_step(tmp_path):
    out = tmp_path / "parity.json"
    assert main(["--out", str(out)]) == 0
    report = json.loads(out.read_text())
    names = [r["output"] for r in report["rows"]]
    assert report["device"] == "cpu" and report["all_ok"] and report["round_trip_identical"]
    for expected in ("eval logits", "train gamma", "erasing: context view frames", "erasing: keyframe view logits",
                     "erasing: loss"):
        assert expected in names, expected
    assert all(r["relative"] <= r["tolerance"] or r["verdict"] == "at floor" for r in report["rows"])
