"""Does training CTEN on Jittor give what training it on PyTorch gives?  A study that can fail.

    python -m benchmarks.training_parity [--seeds 8] [--first-seed 0] [--data-seed 0] [--epochs 10] [--jobs 2] [--quick]
                                         [--modality visual|av] [--videos-per-class 34]
                                         [--out benchmarks/results/training_parity]

A synthetic task that neither framework saturates (PRESET_SPEC: six classes,
short evidence, weaker one-modality spans of other classes' cues as
distractors; 102 validation videos by default) is trained with
``cten_jt.train`` and ``cten_torch_ref.train`` for each seed: per seed both
start from the same weights (``cten_common.init``) and draw the same batches,
samples and erased views (``cten_common.training``); the preset has no dropout,
the one draw the two frameworks cannot share.  Reported, from the final epoch:
per framework mean +- std over seeds of validation accuracy, mean-of-views
accuracy, detection mAP and training loss; the paired difference Jittor -
PyTorch per seed and its 95 % confidence interval (t, n-1 degrees of freedom).
The goal: the interval contains 0 and is at most +-3 points wide.

The study must be able to fail, so its report also shows that it would notice a
real change: Jittor runs of the same seeds without temporal erasing
(``train.erasing=false``: the original view alone) and with a misplaced
threshold (``train.theta=0.0``: the keyframe view keeps every segment above the
least attended, the context view keeps none and so falls back to the whole
video) must move the figures by more than the parity interval.

``--precision bf16`` (the mixed-precision study): the parity pair trains in
bfloat16 (``train.precision``) in both frameworks, and two float32 runs of the
same seeds join them: "jittor, fp32" (the interval Jittor bf16 - Jittor fp32,
with the same goal) and "torch, fp32" (the floor: PyTorch autocast - PyTorch
fp32).  Its runs live in their own folder.

Every run is a process of its own (``--jobs`` at a time, the CPU's threads
shared out); a run whose summary.json shows all its epochs is not run again,
so a stopped study continues where it stopped.  Writes {out}.json, {out}.md,
{out}.png and the run folders under {out}_runs/ (one folder per data set and
modality).
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from benchmarks.common import describe

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# how each framework's trainer is started: python -m MODULE, or python -c CODE
TRAINERS = {"jittor": ["-m", "cten_jt.train"], "torch": ["-m", "cten_torch_ref.train"],
            # the reference on its other convolution kernels (ATen's own instead of oneDNN's),
            # as cten-parity-report's floor rows: the same arithmetic, rounded otherwise
            "torch-no-onednn": ["-c", "import sys, torch; torch.backends.mkldnn.enabled = False; "
                                      "from cten_torch_ref.train import main; sys.exit(main(sys.argv[1:]))"]}
# 6 classes x 34 videos, half for validation: 102 to train on, 102 to validate; 3 s at
# 8 fps, 32 px; the evidence 30-50 % of the video; two distractor spans of other classes'
# cues, each in one modality, at 0.3 strength.  Tuned so that neither framework saturates:
# 10 epochs of the visual model reach 60-65 % (evidence 20-35 % and distractors at 0.4 gave
# 42-54 %, under the 50-85 % band the study aims for)
PRESET_SPEC = dict(classes=6, videos_per_class=34, seed=0, duration=3.0, fps=8, size=32,
                   validation_fraction=0.5, evidence_length=(0.3, 0.5), evidence_strength=1.0,
                   noise=6.0, distractors=2, distractor_length=(0.1, 0.2), distractor_strength=0.3)
QUICK_SPEC = dict(PRESET_SPEC, videos_per_class=6)
PRESET_CONFIG = {
    "model": {"n_classes": 6, "seq_len": 4, "snippet_duration": 4, "sample_size": 32, "audio_n_segments": 4,
              "audio_embed_size": 512, "visual_depth": 10, "audio_arch": "resnet18", "modality": "av",
              "dropout": 0.0},
    "data": {"format": "ve8", "annotation": "data/annotations.json", "video_root": "data/videos",
             "audio_root": "data/audio"},
    "train": {"batch_size": 8, "lr": 1e-3, "weight_decay": 5e-4, "theta": 0.7, "loss": "ce"},
}
# the conditions: (name, framework, overrides)
PARITY = [("jittor", "jittor", []), ("torch", "torch", [])]
# the reference against itself: PyTorch runs of the same seeds on its other convolution
# kernels (oneDNN off), which round differently: the spread that fp32 rounding alone gives,
# the floor the Jittor - PyTorch interval is read against
FLOOR = [("torch, oneDNN off", "torch-no-onednn", [])]
SENSITIVITY = [("jittor, no erasing", "jittor", ["train.erasing=false"]),
               ("jittor, theta 0.0", "jittor", ["train.theta=0.0"])]
METRICS = {"val_accuracy": "validation accuracy", "val_accuracy_mean_views": "mean-of-views accuracy",
           "val_mAP": "detection mAP", "loss": "training loss",
           # the whole curve, not its last point: how fast a run learns
           "val_accuracy_over_epochs": "mean validation accuracy over epochs"}
GOAL_HALF_WIDTH = 0.03          # the interval at most +-3 points


def make_data(root, spec, modality="av"):
    """The synthetic set under ``root``/data and the run configuration ``root``/parity.yaml
    (made once: a set whose annotation records this spec is reused)."""
    import yaml
    from cten_common.data.synthetic import SyntheticSpec, make_synthetic_dataset, spec_record
    annotation = os.path.join(root, "data", "annotations.json")
    wanted = spec_record(SyntheticSpec(**spec))
    if not (os.path.exists(annotation) and json.load(open(annotation)).get("synthetic") == wanted):
        make_synthetic_dataset(os.path.join(root, "data"), SyntheticSpec(**spec), progress=False)
    config = json.loads(json.dumps(PRESET_CONFIG))
    config["model"]["n_classes"] = spec["classes"]
    config["model"]["modality"] = modality
    path = os.path.join(root, "parity.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    return path


def run_dir(runs, name, seed):
    return os.path.join(runs, name.replace(", ", "_").replace(" ", "_"), f"seed{seed}")


def finished(out, epochs):
    """The run's metric records if it finished ``epochs`` epochs, else None."""
    try:
        with open(os.path.join(out, "summary.json")) as f:
            if json.load(f)["epochs_done"] != epochs:
                return None
        with open(os.path.join(out, "metrics.jsonl")) as f:
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError, KeyError):
        return None


def train_run(framework, config, out, seed, epochs, overrides, threads):
    """One training process; returns its metric records and its wall time (None: reused)."""
    records = finished(out, epochs)
    if records is not None:
        return records, None
    cmd = [sys.executable, *TRAINERS[framework], "--config", config, "--out", out,
           "--set", f"train.seed={seed}", "--set", f"train.epochs={epochs}",
           *sum((["--set", s] for s in overrides), [])]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=ROOT, CUDA_VISIBLE_DEVICES="",
               TQDM_DISABLE="1")
    os.makedirs(out, exist_ok=True)
    began = time.time()
    with open(os.path.join(out, "train.log"), "w") as log:
        done = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}); see {out}/train.log")
    return finished(out, epochs), time.time() - began


def paired_interval(a, b, level=0.95):
    """Mean of the paired differences a - b, their sample std and the ``level`` confidence
    interval of the mean (Student's t with n-1 degrees of freedom)."""
    from scipy import stats
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    n = len(d)
    if n < 2:
        return {"n": n, "mean": float(d.mean()) if n else None, "sd": None, "low": None, "high": None,
                "half_width": None, "differences": d.tolist()}
    sd = float(d.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * sd / np.sqrt(n))
    return {"n": n, "mean": float(d.mean()), "sd": sd, "low": float(d.mean()) - half,
            "high": float(d.mean()) + half, "half_width": half, "differences": d.tolist()}


PART_RTOL = 1e-3        # two runs have parted once a step's loss differs by more than 0.1 %


def parting_step(a, b):
    """The first step (1-based, over all epochs) whose training loss differs by more than
    PART_RTOL between the runs' records ``a`` and ``b``; None if they never part (or the
    records predate ``step_losses``)."""
    sa = [x for r in a for x in r.get("step_losses") or []]
    sb = [x for r in b for x in r.get("step_losses") or []]
    if not sa or len(sa) != len(sb):
        return None
    for i, (x, y) in enumerate(zip(sa, sb)):
        if abs(x - y) > PART_RTOL * abs(y):
            return i + 1
    return None


def final(records, key):
    """The run's figure ``key`` (METRICS): the last epoch's, or, for the ``_over_epochs``
    figures, the mean over the epochs."""
    if key.endswith("_over_epochs"):
        values = [r[key[:-len("_over_epochs")]] for r in records]
        return float("nan") if None in values else float(np.mean(values))
    value = records[-1][key]
    return float("nan") if value is None else float(value)


def _moved(shift, parity):
    if shift["half_width"] is None or parity["half_width"] is None:
        return False
    return bool(abs(shift["mean"]) > 2 * parity["half_width"] and not shift["low"] <= 0 <= shift["high"])


def precision_conditions(precision):
    """(parity, floor, against fp32) conditions of a study in ``precision``."""
    if precision == "fp32":
        return PARITY, FLOOR, []
    low = [f"train.precision={precision}"]
    return ([("jittor", "jittor", low), ("torch", "torch", low)], [("torch, fp32", "torch", [])],
            [("jittor, fp32", "jittor", [])])


def analyse(runs, seeds, floor_conditions=FLOOR):
    """The figures of ``runs`` ({condition: {seed: records}}): per condition mean and std of
    the final metrics; the parity intervals (jittor - torch) and the sensitivity shifts
    (each Jittor variant - jittor) per metric, paired by seed; with a "jittor, fp32"
    condition (a low-precision study), the interval jittor - "jittor, fp32" too."""
    out = {"conditions": {}, "parity": {}, "floor": {}, "sensitivity": {}, "against_fp32": {}}
    for name, by_seed in runs.items():
        out["conditions"][name] = {
            key: {"mean": float(np.mean([final(by_seed[s], key) for s in seeds])),
                  "std": float(np.std([final(by_seed[s], key) for s in seeds], ddof=1)) if len(seeds) > 1 else None,
                  "values": [final(by_seed[s], key) for s in seeds]}
            for key in METRICS}
    for key in METRICS:
        out["parity"][key] = paired_interval([final(runs["jittor"][s], key) for s in seeds],
                                             [final(runs["torch"][s], key) for s in seeds])
    out["parting"] = {"jittor vs torch": [parting_step(runs["jittor"][s], runs["torch"][s]) for s in seeds]}
    for name, _, _ in floor_conditions:
        if name in runs:
            out["parting"]["torch vs itself"] = [parting_step(runs[name][s], runs["torch"][s]) for s in seeds]
            out["floor"] = {key: paired_interval([final(runs[name][s], key) for s in seeds],
                                                 [final(runs["torch"][s], key) for s in seeds])
                            for key in METRICS}
    for name, _, _ in SENSITIVITY:
        if name in runs:
            out["sensitivity"][name] = {
                key: paired_interval([final(runs[name][s], key) for s in seeds],
                                     [final(runs["jittor"][s], key) for s in seeds]) for key in METRICS}
    if "jittor, fp32" in runs:
        out["against_fp32"] = {key: paired_interval([final(runs["jittor"][s], key) for s in seeds],
                                                    [final(runs["jittor, fp32"][s], key) for s in seeds])
                               for key in METRICS}
    acc = out["parity"]["val_accuracy"]
    fp32 = out["against_fp32"].get("val_accuracy")
    out["verdict"] = {
        # the mixed-precision issue's wording: the whole interval within +-3 points
        "parity_within_pm_goal": None if acc["low"] is None
        else bool(max(abs(acc["low"]), abs(acc["high"])) <= GOAL_HALF_WIDTH),
        "against_fp32_contains_zero": None if fp32 is None or fp32["low"] is None
        else bool(fp32["low"] <= 0 <= fp32["high"]),
        "against_fp32_within_goal": None if fp32 is None or fp32["half_width"] is None
        else bool(max(abs(fp32["low"]), abs(fp32["high"])) <= GOAL_HALF_WIDTH),
        "contains_zero": acc["low"] is not None and acc["low"] <= 0 <= acc["high"],
        "within_goal": acc["half_width"] is not None and acc["half_width"] <= GOAL_HALF_WIDTH,
        # a variant moves the figures by more than the parity interval's whole width ...
        "sensitivity_detected": {name: bool(acc["half_width"] is not None
                                            and abs(s["val_accuracy"]["mean"]) > 2 * acc["half_width"])
                                 for name, s in out["sensitivity"].items()},
        # ... and, with these seeds, its own interval excludes 0
        "sensitivity_significant": {name: bool(s["val_accuracy"]["half_width"] is not None
                                               and not (s["val_accuracy"]["low"] <= 0 <= s["val_accuracy"]["high"]))
                                    for name, s in out["sensitivity"].items()},
        # every figure a variant moves by more than the parity interval's whole width, with
        # its own interval excluding 0
        "sensitivity_moved": {name: [key for key in METRICS if _moved(s[key], out["parity"][key])]
                              for name, s in out["sensitivity"].items()},
    }
    return out


def plot(runs, path):
    """Every run's training loss and validation accuracy per epoch, one colour per condition."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    colours = {"jittor": "tab:blue", "torch": "tab:orange", "torch, oneDNN off": "tab:purple",
               "jittor, no erasing": "tab:green", "jittor, theta 0.0": "tab:red"}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, by_seed in runs.items():
        for i, records in enumerate(by_seed.values()):
            epochs = [r["epoch"] for r in records]
            style = dict(color=colours.get(name, "grey"), alpha=0.8, lw=1.2,
                         ls="--" if name.startswith("torch") else "-", label=name if i == 0 else None)
            ax1.plot(epochs, [r["loss"] for r in records], **style)
            ax2.plot(epochs, [r["val_accuracy"] for r in records], **style)
    ax1.set(xlabel="epoch", ylabel="training loss (mean of the trained views)", title="training loss, every run")
    ax2.set(xlabel="epoch", ylabel="validation accuracy", title="validation accuracy, every run", ylim=(0, 1))
    ax1.legend(fontsize=8)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _pm(stat, scale=100.0, digits=1):
    if stat["std"] is None:
        return f"{stat['mean'] * scale:.{digits}f}"
    return f"{stat['mean'] * scale:.{digits}f} ± {stat['std'] * scale:.{digits}f}"


def _interval(iv, scale=100.0, digits=1):
    if iv["low"] is None:
        return f"{iv['mean'] * scale:+.{digits}f} (one seed: no interval)"
    return (f"{iv['mean'] * scale:+.{digits}f} [{iv['low'] * scale:+.{digits}f}, {iv['high'] * scale:+.{digits}f}]"
            f" (±{iv['half_width'] * scale:.{digits}f})")


def _command(argv):
    """The study's command line as the report shows it: the notes, printed at the end, elided."""
    shown, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--notes":
            shown.append('--notes "..."')
            skip = True
        elif arg.startswith("--notes="):
            shown.append('--notes "..."')
        else:
            shown.append(arg)
    return " ".join(shown)


def report(result):
    """The study's markdown."""
    a, seeds, epochs = result["analysis"], result["seeds"], result["epochs"]
    n_val = result["eval_videos"]
    precision = result.get("precision", "fp32")
    title = "" if precision == "fp32" else f", both in {precision}"
    lines = [f"# Training parity, Jittor vs PyTorch{title} ({len(seeds)} seeds x {epochs} epochs)", "",
             f"`python -m benchmarks.training_parity {_command(result['argv'])}`: synthetic preset "
             f"({result['spec']['classes']} classes, {result['train_videos']} training and {n_val} validation "
             f"videos, {result['spec']['duration']:g} s at {result['spec']['fps']} fps, {result['spec']['size']} px, "
             f"evidence strength {result['spec']['evidence_strength']}, {result['spec']['distractors']} "
             f"one-modality distractor spans, data seed {result['spec']['seed']}), CTEN with a 3D ResNet-{PRESET_CONFIG['model']['visual_depth']} "
             + ("and ResNet-18 audio" if result["config"]["model"]["modality"] == "av" else
                "without its audio branch (modality visual)")
             + f", no dropout, {result['epochs']} epochs; seeds {seeds}. Time on {result['machine']['cpus']} "
             f"CPU cores: one run takes {result['run_s_median']:.0f} s (median of the runs' summed epoch times, "
             f"training and validation), {result.get('run_s_total', 0) / 60:.1f} min for all "
             f"{result['runs_trained'] + result['runs_reused']} runs, {result.get('jobs', 1)} at a time; "
             f"this call's wall time {result['wall_s'] / 60:.1f} min ({result['runs_trained']} runs trained, "
             f"{result['runs_reused']} reused from an earlier call).", "",
             "Final epoch, mean ± std over seeds (accuracy and mAP in points):", "",
             "| condition | " + " | ".join(METRICS.values()) + " |", "|---" * (len(METRICS) + 1) + "|"]
    for name, stats in a["conditions"].items():
        lines.append(f"| {name} | " + " | ".join(
            _pm(stats[k], 1.0, 3) if k == "loss" else _pm(stats[k]) for k in METRICS) + " |")
    floor_words = ("; beside it, the reference against itself: PyTorch on its other convolution kernels "
                   "(oneDNN off) - PyTorch, the spread fp32 rounding alone gives:" if precision == "fp32" else
                   f"; beside it, the reference against itself: PyTorch fp32 - PyTorch {precision} (autocast), "
                   f"the spread {precision} alone gives:")
    lines += ["", f"Paired difference Jittor - PyTorch (same seed{title}), mean [95 % CI, t with n-1 dof]"
              + (floor_words if a["floor"] else ":"), "",
              "| metric | per seed | mean [95 % CI] |" + (" PyTorch vs itself: per seed | mean [95 % CI] |"
                                                          if a["floor"] else ""),
              "|---|---|---|" + ("---|---|" if a["floor"] else "")]
    for k, label in METRICS.items():
        scale, digits = (1.0, 3) if k == "loss" else (100.0, 1)
        row = f"| {label} |"
        for iv in [a["parity"][k]] + ([a["floor"][k]] if a["floor"] else []):
            per_seed = ", ".join(f"{d * scale:+.{digits}f}" for d in iv["differences"])
            row += f" {per_seed} | {_interval(iv, scale, digits)} |"
        lines.append(row)
    v = a["verdict"]
    acc = a["parity"]["val_accuracy"]
    if acc["half_width"] is None:
        lines += ["", "**Verdict:** none; one seed gives no interval."]
    else:
        lines += ["", f"**Verdict (validation accuracy):** the interval "
                  f"{'contains' if v['contains_zero'] else 'does NOT contain'} 0; its half-width "
                  f"(±{acc['half_width'] * 100:.1f}) {'is within' if v['within_goal'] else 'EXCEEDS'} "
                  f"the goal of ±{GOAL_HALF_WIDTH * 100:.0f} points."]
        if precision != "fp32":
            lines[-1] += (f" The whole interval {'lies' if v['parity_within_pm_goal'] else 'does NOT lie'} "
                          f"within ±{GOAL_HALF_WIDTH * 100:.0f} points.")
        floor = a["floor"].get("val_accuracy")
        if floor and floor["half_width"] is not None:
            lines[-1] += (f" PyTorch against itself: {_interval(floor)}; its mean absolute per-seed difference "
                          f"{np.mean(np.abs(floor['differences'])) * 100:.1f} points, Jittor's against PyTorch "
                          f"{np.mean(np.abs(acc['differences'])) * 100:.1f}.")
    fp32 = a.get("against_fp32", {})
    if fp32:
        lines += ["", f"Jittor {precision} - Jittor fp32 (same seeds), mean [95 % CI]:", "",
                  "| metric | per seed | mean [95 % CI] |", "|---|---|---|"]
        for k, label in METRICS.items():
            scale, digits = (1.0, 3) if k == "loss" else (100.0, 1)
            iv = fp32[k]
            per_seed = ", ".join(f"{d * scale:+.{digits}f}" for d in iv["differences"])
            lines.append(f"| {label} | {per_seed} | {_interval(iv, scale, digits)} |")
        iv = fp32["val_accuracy"]
        if iv["half_width"] is not None:
            lines += ["", f"**Verdict (validation accuracy, Jittor {precision} - Jittor fp32):** the interval "
                      f"{'contains' if v['against_fp32_contains_zero'] else 'does NOT contain'} 0 and "
                      f"{'lies within' if v['against_fp32_within_goal'] else 'does NOT lie within'} "
                      f"±{GOAL_HALF_WIDTH * 100:.0f} points."]
    steps = len(next(iter(result["runs"]["jittor"].values()))[0].get("step_losses") or []) \
        if result.get("runs") else 0
    if any(v is not None for v in a.get("parting", {}).get("jittor vs torch", [])) or steps:
        lines += ["", f"Where the runs part: the first step whose training loss differs by more than "
                  f"{PART_RTOL * 100:g} % ({steps} steps an epoch; '-': never in {epochs} epochs), per seed:", ""]
        for pair, at in a["parting"].items():
            lines.append(f"- {pair}: " + ", ".join("-" if k is None else str(k) for k in at))
    if a["sensitivity"]:
        lines += ["", "Sensitivity: Jittor variants minus Jittor (same seeds), mean [95 % CI]. *Moved*: the "
                  "figures whose shift exceeds the parity interval's whole width and whose own interval "
                  "excludes 0 with these seeds:", "",
                  "| variant | " + " | ".join(METRICS.values()) + " | moved |", "|---" * (len(METRICS) + 2) + "|"]
        for name, s in a["sensitivity"].items():
            moved = ", ".join(METRICS[k] for k in v["sensitivity_moved"][name]) or "nothing"
            lines.append(f"| {name} | " + " | ".join(
                _interval(s[k], 1.0, 3) if k == "loss" else _interval(s[k]) for k in METRICS) + f" | {moved} |")
    lines += ["", f"Loss and accuracy curves of every run: {result.get('plot', 'training_parity.png')}.", ""]
    if result.get("notes"):
        lines += [result["notes"], ""]
    return "\n".join(lines)


def _spec_overrides(items, parser):
    """``--spec KEY=VALUE`` items as SyntheticSpec fields (lists become tuples)."""
    import yaml
    from cten_common.data.synthetic import SyntheticSpec
    known = SyntheticSpec.__dataclass_fields__
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in known:
            parser.error(f"--spec {item!r}: expected KEY=VALUE with KEY one of {sorted(known)}")
        value = yaml.safe_load(value)
        out[key] = tuple(value) if isinstance(value, list) else value
    return out


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=8,
                   help="N seeds per condition, FIRST..FIRST+N-1 (8: two runs that part end a few points "
                        "apart; with 5 seeds the interval's half-width came to 2.8 of the allowed 3)")
    p.add_argument("--first-seed", type=int, default=0, help="the first training seed (default 0)")
    p.add_argument("--data-seed", type=int, default=PRESET_SPEC["seed"],
                   help="the synthetic set's seed: another value generates an independent set")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--jobs", type=int, default=2, help="training processes at a time")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: 36 videos, 2 seeds, 2 epochs, parity and floor runs only (figures meaningless)")
    p.add_argument("--no-sensitivity", action="store_true", help="no sensitivity runs")
    p.add_argument("--no-floor", action="store_true", help="no PyTorch-against-itself runs")
    p.add_argument("--videos-per-class", type=int, default=PRESET_SPEC["videos_per_class"],
                   help="half of them validate (at least 17 for 100 validation videos)")
    p.add_argument("--modality", choices=("av", "visual"), default="visual",
                   help="visual (default): CTEN without its audio branch, ~10 s an epoch on 2 cores; "
                        "av: with it, ~20x slower on a CPU (the ResNet-18 audio backbone is ~95 %% of a step)")
    p.add_argument("--spec", action="append", default=[], metavar="KEY=VALUE",
                   help="change the preset's SyntheticSpec, e.g. --spec evidence_strength=0.8 (a YAML value)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="bf16: both frameworks train in bfloat16 (train.precision), against fp32 runs of "
                        "the same seeds (docs/precision.md)")
    p.add_argument("--notes", default="", help="a paragraph added to the report")
    p.add_argument("--out", default=None,
                   help="default benchmarks/results/training_parity (fp32) or training_parity_bf16")
    a = p.parse_args(argv)
    if a.out is None:
        a.out = os.path.join(ROOT, "benchmarks", "results",
                             "training_parity" + ("" if a.precision == "fp32" else f"_{a.precision}"))
    parity, floor, against_fp32 = precision_conditions(a.precision)
    spec = dict(QUICK_SPEC if a.quick else dict(PRESET_SPEC, videos_per_class=a.videos_per_class),
                seed=a.data_seed)
    spec.update(_spec_overrides(a.spec, p))
    seeds = list(range(a.first_seed, a.first_seed + (2 if a.quick else a.seeds)))
    epochs = 2 if a.quick else a.epochs
    conditions = parity + against_fp32 + ([] if a.no_floor else floor) + \
        ([] if a.quick or a.no_sensitivity else SENSITIVITY)
    # one folder per data set and model: a run is reused only by a study of the same ones
    key = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:8]
    work = os.path.join(a.out + "_runs", f"{a.modality}_data{spec['seed']}_{key}" + ("_quick" if a.quick else "")
                        + ("" if a.precision == "fp32" else f"_{a.precision}"))
    os.makedirs(work, exist_ok=True)
    config = make_data(work, spec, a.modality)
    threads = max(1, (os.cpu_count() or 1) // max(a.jobs, 1))
    jobs = [(name, framework, overrides, seed) for seed in seeds for name, framework, overrides in conditions]
    began = time.time()
    with ThreadPoolExecutor(max(a.jobs, 1)) as pool:
        done = list(pool.map(lambda j: train_run(j[1], config, run_dir(work, j[0], j[3]), j[3], epochs, j[2],
                                                 threads), jobs))
    wall = time.time() - began
    runs = {name: {} for name, _, _ in conditions}
    for (name, _, _, seed), (records, _) in zip(jobs, done):
        runs[name][seed] = records
    times = [sum(r["time_s"] for r in records) for records, _ in done]
    with open(os.path.join(run_dir(work, "jittor", seeds[0]), "summary.json")) as f:
        first = json.load(f)
    result = {"argv": argv, "spec": spec, "config": dict(PRESET_CONFIG, model=dict(PRESET_CONFIG["model"], modality=a.modality)),
              "seeds": seeds, "epochs": epochs,
              "conditions": {name: overrides for name, _, overrides in conditions},
              "train_videos": first["train_videos"], "eval_videos": first["eval_videos"],
              "wall_s": wall, "runs_trained": sum(s is not None for _, s in done),
              "runs_reused": sum(s is None for _, s in done), "run_s_median": float(np.median(times)),
              "run_s_total": float(np.sum(times)), "jobs": a.jobs,
              "precision": a.precision,
              "analysis": analyse(runs, seeds, floor), "runs": {n: {str(s): r for s, r in b.items()} for n, b in runs.items()},
              "machine": describe(), "notes": a.notes, "plot": os.path.basename(a.out) + ".png"}
    with open(a.out + ".json", "w") as f:
        json.dump(result, f, indent=1)
    plot(runs, a.out + ".png")
    text = report(result)
    with open(a.out + ".md", "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
