"""python -m cten_jt.evaluate --config CONFIG --weights W [--out FILE.json] [--set key=value]

Accuracy of the original view (the paper's metric) and of the mean of the
original and context views (the reference's other figure), per-class accuracy,
the confusion matrix (also as PNG beside --out), and, where the annotation has
ground-truth spans, weak detection mAP at tIoU 0.1..0.5 (intervals and scores
as cten_common.metrics states).  The JSON report lists each video's frame rate
and its source, its detected spans (start, end, class, score) and its
ground-truth spans; videos whose rate had no source are named in a warning.
"""
import argparse
import json
import os
import sys

import cten_jt  # noqa: F401  (Jittor settings first)
from cten_common.checkpoint_io.errors import CheckpointError
from cten_common.data.errors import DataError
from cten_common.evaluation import plot_confusion, print_report
from cten_jt.backend import BACKEND


def evaluate_model(model, data, train_config, batch_size=None, progress=True, bank=None):
    """Metrics of ``model`` (eval mode) on an evaluation ``VideoEmotionData`` with
    ``train_config`` (a ``TrainConfig``): ``cten_common.backend.Backend.evaluate`` on
    Jittor.  Under MPI the videos are split across the ranks and every prediction is
    gathered.  ``bank``: the data's FeatureBank (the context view is looked up there too)."""
    return BACKEND.evaluate(model, data, train_config, bank, progress, batch_size)


def main(argv=None):
    from cten_common.precision import add_precision_option, apply_precision_option
    from cten_common.config import load_run_config
    from cten_common.data.datasets import build_data
    from cten_common.inference import inference_model

    p = argparse.ArgumentParser(prog="cten-evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--weights", required=True,
                   help="weights or a run checkpoint (.safetensors; older .pkl), or a PyTorch .pth; "
                        "no code in the file is ever run")
    p.add_argument("--out", help="JSON report; the confusion matrix PNG goes beside it")
    p.add_argument("--subset", help="default: data.eval_subset")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    add_precision_option(p)
    a = p.parse_args(argv)
    try:
        config = apply_precision_option(load_run_config(a.config, a.set), a.precision)
    except ValueError as exc:       # names the file and the setting
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:            # the weights first: a refused file costs no data loading
        model, _ = inference_model(BACKEND, config, a.weights)
        data = build_data(config, a.subset or config.data.eval_subset, train=False)
    except (CheckpointError, DataError, ValueError) as exc:     # ValueError: fp16/tf32 without a GPU
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = evaluate_model(model, data, config.train)
    print_report(report, data.class_names)
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w") as f:
            json.dump(report, f, indent=1)
        png = os.path.splitext(a.out)[0] + "_confusion.png"
        plot_confusion(report, data.class_names, png)
        print(f"wrote {a.out} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
