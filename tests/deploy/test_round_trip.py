"""Train, export, predict with each engine: the same top-1 on every video of the validation
split (the check the export issue asks for, on the tiny synthetic set)."""
import json
import os
import subprocess
import sys

from helpers import make_tiny_run

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(*args):
    done = subprocess.run([sys.executable, "-m", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


def test_train_export_and_predict_with_each_engine(tmp_path):
    config = make_tiny_run(tmp_path)
    run = tmp_path / "run"
    _run("cten_jt.train", "--config", config, "--out", run, "--set", "train.epochs=1")
    _run("cten_deploy.export", run / "best.safetensors", tmp_path / "m.onnx")        # the run carries its config
    annotation = json.loads((tmp_path / "data" / "annotations.json").read_text())
    roots = ["--video-root", tmp_path / "data" / "videos", "--audio-root", tmp_path / "data" / "audio"]
    top = {}
    for engine, weights in (("jittor", run / "best.safetensors"), ("onnxruntime", tmp_path / "m.onnx"),
                            ("openvino", tmp_path / "m.onnx")):
        out = tmp_path / f"{engine}.jsonl"
        _run("cten_deploy.predict", tmp_path / "data" / "annotations.json", "--engine", engine, "--weights", weights,
             *roots, "--out", out, "--workers", "0")
        lines = [json.loads(x) for x in out.read_text().splitlines()]
        assert all(x["ok"] for x in lines)
        top[engine] = {x["video"]: x["top"][0]["emotion"] for x in lines}
    validation = [k for k, v in annotation["database"].items() if v.get("subset") == "validation"]
    assert validation and len(top["jittor"]) == len(annotation["database"])
    assert top["onnxruntime"] == top["jittor"] == top["openvino"]
