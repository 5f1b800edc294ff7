"""The main job on the built-in synthetic data set: generate it, train CTEN on
Jittor with temporal erasing, evaluate the best epoch, predict one video, report.

    cten-main-job [--out runs/synthetic] [--set train.epochs=3 ...]
    (or python -m cten_jt.main_job)

The defaults (``configs/synthetic.yaml``, ``runs/synthetic``) are under the
checkout this package lives in.
"""
import argparse
import json
import os
import shutil
import sys
import time

import cten_jt  # noqa: F401
from cten_common.checkpoint_io.run_paths import run_checkpoint_path
from cten_common.data.synthetic import SyntheticSpec, make_synthetic_dataset
from cten_common.config import load_run_config

# the checkout's root: the default config and output folder are under it
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv=None):
    p = argparse.ArgumentParser(prog="cten-main-job", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=os.path.join(ROOT, "configs", "synthetic.yaml"))
    p.add_argument("--out", default=os.path.join(ROOT, "runs", "synthetic"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    a = p.parse_args(argv)
    started = time.time()
    try:
        config = load_run_config(a.config, a.set)
    except ValueError as exc:       # names the file and the setting
        print(f"error: {exc}", file=sys.stderr)
        return 2
    annotation = config.data.annotation
    if not os.path.exists(annotation):
        print(f"1/4 generating the synthetic data set in {os.path.dirname(annotation)}")
        make_synthetic_dataset(os.path.dirname(annotation),
                               SyntheticSpec(classes=config.model.n_classes, videos_per_class=16, seed=0))
    else:
        print(f"1/4 synthetic data set found: {annotation}")

    from cten_common.evaluation import plot_confusion, print_report
    from cten_jt.evaluate import evaluate_model
    from cten_jt.predict import load_for_prediction, plot_prediction, predict_video
    from cten_common.data.datasets import build_data
    from cten_jt.train import train

    print(f"2/4 training ({config.train.epochs} epochs) into {a.out}")
    if os.path.isdir(a.out):
        shutil.rmtree(a.out)
    summary = train(config, a.out)

    print("3/4 evaluating best.safetensors on the validation split")
    model, _, classes = load_for_prediction(run_checkpoint_path(a.out, "best"))
    data = build_data(config, config.data.eval_subset, train=False)
    report = evaluate_model(model, data, config.train, progress=False)
    print_report(report, classes)
    with open(os.path.join(a.out, "evaluation.json"), "w") as f:
        json.dump(report, f, indent=1)
    plot_confusion(report, classes, os.path.join(a.out, "confusion.png"))

    item = data.items[0]
    print(f"4/4 predicting {item.video_path}")
    result = predict_video(model, config, classes, item.video_path, item.audio_path)
    plot_prediction(result, os.path.join(a.out, "prediction.png"))
    top = result["top"][0]
    spans = ", ".join(f"{i['start_s']:.1f}-{i['end_s']:.1f} s" for i in result["intervals"]) or "none"
    print(f"  true {item.label_name}, predicted {top['emotion']} ({top['probability']:.2f}); "
          f"detected {spans}; ground truth {item.segments}")

    det = report.get("detection", {})
    final = {"accuracy": report["accuracy"], "accuracy_mean_views": report["accuracy_mean_views"],
             "chance": 1 / len(classes), "mAP": det.get("mAP"),
             **{k: v for k, v in det.items() if k.startswith("mAP@")},
             "best_epoch": summary["best"]["epoch"], "minutes": round((time.time() - started) / 60, 1)}
    with open(os.path.join(a.out, "report.json"), "w") as f:
        json.dump(final, f, indent=1)
    print("\nreport: " + json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in final.items()}))
    print(f"files in {a.out}: metrics.jsonl, curves.png, best.safetensors, last.safetensors, evaluation.json, "
          "confusion.png, prediction.png, report.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
