"""benchmarks/training_parity.py's statistics and report, on made-up runs (the study
itself is a benchmark: benchmarks/results/training_parity.md)."""
import numpy as np
import pytest

from benchmarks import training_parity as study


def test_paired_interval_is_the_t_interval_of_the_differences():
    a, b = [0.70, 0.65, 0.72, 0.60, 0.68], [0.69, 0.66, 0.70, 0.62, 0.66]
    iv = study.paired_interval(a, b)
    d = np.subtract(a, b)
    half = 2.7764451 * d.std(ddof=1) / np.sqrt(5)          # t(0.975, 4 dof), from tables
    assert iv["mean"] == pytest.approx(d.mean()) and iv["half_width"] == pytest.approx(half, rel=1e-6)
    assert iv["low"] == pytest.approx(d.mean() - half) and iv["high"] == pytest.approx(d.mean() + half)
    assert study.paired_interval([0.5], [0.4])["low"] is None


def _records(acc, loss, epochs=3):
    return [{"epoch": e + 1, "loss": loss + 0.1 * (epochs - e), "val_accuracy": acc, "val_accuracy_mean_views": acc,
             "val_mAP": acc / 2, "time_s": 1.0} for e in range(epochs)]


def test_the_verdict_fails_a_shift_and_sees_the_sensitivity_runs(tmp_path):
    seeds = [0, 1, 2, 3, 4]
    jit = [0.70, 0.64, 0.72, 0.61, 0.68]
    runs = {"jittor": {s: _records(a, 0.5) for s, a in zip(seeds, jit)},
            "torch": {s: _records(a + d, 0.5) for s, a, d in zip(seeds, jit, [0.01, -0.01, 0.0, 0.01, -0.005])},
            "jittor, no erasing": {s: _records(a - 0.15 + 0.01 * s, 0.4) for s, a in zip(seeds, jit)},
            "jittor, theta 0.0": {s: _records(a + 0.004 * (-1) ** s, 0.5) for s, a in zip(seeds, jit)}}
    a = study.analyse(runs, seeds)
    assert a["verdict"]["contains_zero"] and a["verdict"]["within_goal"]
    assert a["verdict"]["sensitivity_detected"] == {"jittor, no erasing": True, "jittor, theta 0.0": False}
    assert a["verdict"]["sensitivity_significant"] == {"jittor, no erasing": True, "jittor, theta 0.0": False}
    shifted = dict(runs, torch={s: _records(a - 0.08 + 0.002 * s, 0.5) for s, a in zip(seeds, jit)})
    assert not study.analyse(shifted, seeds)["verdict"]["contains_zero"]
    result = {"argv": [], "spec": study.PRESET_SPEC, "config": study.PRESET_CONFIG, "seeds": seeds, "epochs": 3, "eval_videos": 120,
              "train_videos": 120, "machine": {"cpus": 2}, "wall_s": 60.0, "runs_trained": 20, "runs_reused": 0,
              "run_s_median": 3.0, "analysis": a}
    text = study.report(result)
    assert "contains 0" in text and "| jittor, no erasing |" in text
    assert a["verdict"]["sensitivity_moved"]["jittor, no erasing"] == ["val_accuracy", "val_accuracy_mean_views",
                                                                     "val_mAP", "loss", "val_accuracy_over_epochs"]
    assert a["verdict"]["sensitivity_moved"]["jittor, theta 0.0"] == []
    rows = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| jittor, ")}
    assert rows["| jittor, theta 0.0"].endswith(" | nothing |")
    assert rows["| jittor, no erasing"].endswith(" | validation accuracy, mean-of-views accuracy, detection mAP, "
                                                 "training loss, mean validation accuracy over epochs |")
    study.plot(runs, str(tmp_path / "p.png"))
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_the_reference_floor_is_paired_with_the_torch_runs_and_reported():
    seeds = [3, 4, 5]                      # --first-seed 3
    torch_acc = [0.60, 0.55, 0.58]
    runs = {"jittor": {s: _records(a + 0.01, 0.5) for s, a in zip(seeds, torch_acc)},
            "torch": {s: _records(a, 0.5) for s, a in zip(seeds, torch_acc)},
            "torch, oneDNN off": {s: _records(a + d, 0.5) for s, a, d in zip(seeds, torch_acc, [0.02, -0.01, 0.0])}}
    a = study.analyse(runs, seeds)
    assert a["floor"]["val_accuracy"]["differences"] == pytest.approx([0.02, -0.01, 0.0])
    assert a["parity"]["val_accuracy"]["differences"] == pytest.approx([0.01, 0.01, 0.01])
    result = {"argv": [], "spec": study.PRESET_SPEC, "config": study.PRESET_CONFIG, "seeds": seeds, "epochs": 3,
              "eval_videos": 102, "train_videos": 102, "machine": {"cpus": 2}, "wall_s": 60.0, "runs_trained": 9,
              "runs_reused": 0, "run_s_median": 3.0, "analysis": a}
    text = study.report(result)
    assert "PyTorch against itself: +0.3" in text and "Jittor's against PyTorch 1.0" in text
    assert "| validation accuracy | +1.0, +1.0, +1.0 |" in text and "+2.0, -1.0, +0.0 |" in text


def test_spec_overrides_are_typed_and_unknown_keys_refused():
    import argparse
    parser = argparse.ArgumentParser()
    got = study._spec_overrides(["evidence_length=[0.3, 0.5]", "distractors=1", "noise=4.5"], parser)
    assert got == {"evidence_length": (0.3, 0.5), "distractors": 1, "noise": 4.5}
    with pytest.raises(SystemExit):
        study._spec_overrides(["evidense=1"], parser)


def test_parting_step_is_the_first_step_beyond_the_tolerance():
    a = [{"step_losses": [1.0, 0.9]}, {"step_losses": [0.8, 0.7]}]
    b = [{"step_losses": [1.0, 0.9 * (1 + 5e-4)]}, {"step_losses": [0.8 * (1 + 2e-3), 0.6]}]
    assert study.parting_step(a, b) == 3
    assert study.parting_step(a, a) is None
    assert study.parting_step([{"loss": 1.0}], [{"loss": 1.0}]) is None     # older records


def test_the_floor_trainer_is_the_twin_with_onednn_off():
    """The floor's launcher starts cten_torch_ref.train's main with oneDNN switched off
    (run here with --help: the same entry point, no training)."""
    import subprocess
    import sys
    code = study.TRAINERS["torch-no-onednn"][1]
    probe = code.replace("from cten_torch_ref.train import main; sys.exit(main(sys.argv[1:]))",
                         "print(torch.backends.mkldnn.enabled)")
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "False"
    done = subprocess.run([sys.executable, *study.TRAINERS["torch-no-onednn"], "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "cten_torch_ref.train" in done.stdout, done.stderr


def test_the_report_shows_the_command_without_its_notes():
    assert study._command(["--seeds", "8", "--notes", "long text", "--jobs", "2"]) == '--seeds 8 --notes "..." --jobs 2'
    assert study._command(["--notes=x y"]) == '--notes "..."'
