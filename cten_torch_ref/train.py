"""python -m cten_torch_ref.train --config CONFIG.yaml [--set key=value ...] --out RUN_DIR

The same training as ``cten_jt.train`` in PyTorch (same config files, data,
sampling, erasing, seeds per epoch and initial weights), so that the two
frameworks can be trained side by side (benchmarks/compare_training.py).
Writes config.yaml, metrics.jsonl, last.safetensors (the model, epoch, config
and seed, as ``cten_jt.train`` writes them, without the optimiser) and
summary.json.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import yaml

from cten_common.data.datasets import build_data
from cten_common.evaluation import evaluate_model
from cten_common.run_config import load_run_config
from cten_common.safe_load import run_checkpoint_path
from cten_common.safe_save import save_checkpoint_file
from cten_torch_ref.checkpoint import state_arrays
from cten_torch_ref.data import CTENDataset
from cten_torch_ref.engine import erasing_step, predict_batch
from cten_torch_ref.models import build_model


def train(config, out, progress=True):
    from tqdm import tqdm

    tc = config["train"]
    if tc.get("features"):
        raise ValueError("train.features (feature-bank training) is a cten_jt feature; the PyTorch "
                         "reference trains from the videos")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.yaml"), "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    torch.manual_seed(tc["seed"])
    train_data = build_data(config, config["data"]["train_subset"], train=True)
    eval_data = build_data(config, config["data"]["eval_subset"], train=False)
    model = build_model(config["model"], init_seed=tc["seed"])
    optimizer = torch.optim.Adam(model.parameters(), lr=tc["lr"], weight_decay=tc["weight_decay"])
    dataset = CTENDataset(train_data, seed=tc["seed"])
    history = []
    for epoch in tqdm(range(tc["epochs"]), desc="epochs (torch)", disable=not progress):
        began = time.time()
        torch.manual_seed(tc["seed"] * 1000003 + epoch)
        rng = np.random.default_rng([tc["seed"], epoch, 17])
        dataset.set_epoch(epoch)
        order = np.random.default_rng([tc["seed"], epoch]).permutation(len(dataset))
        model.train()
        if tc.get("backbone_eval"):
            model.resnet.eval()            # the frozen backbone's BatchNorm on running statistics
        losses, correct, seen = [], 0, 0
        bs = tc["batch_size"]
        for start in range(0, len(order) - bs + 1, bs):                     # drop_last
            batch = dataset.collate_batch([dataset[int(i)] for i in order[start:start + bs]])
            step = erasing_step(model, optimizer, batch, rng, theta=tc["theta"], loss=tc["loss"],
                                class_names=train_data.class_names, pcce_lambda=tc["pcce_lambda"],
                                reader=train_data.read_views)
            if not math.isfinite(step["loss"]):
                raise RuntimeError(f"epoch {epoch + 1}: the loss is {step['loss']}; stopped")
            losses.append(step["loss"])
            correct += int((step["logits"][0].argmax(1) == batch["label"]).sum())
            seen += bs
        train_time = round(time.time() - began, 2)
        model.eval()
        ev = evaluate_model(model, eval_data, tc, predict_batch, progress=False)
        record = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "first_step_loss": losses[0],
                  "train_acc_original": correct / seen,
                  "val_accuracy": ev["accuracy"], "val_accuracy_mean_views": ev["accuracy_mean_views"],
                  "val_mAP": ev.get("detection", {}).get("mAP"), "train_time_s": train_time,
                  "time_s": round(time.time() - began, 2)}
        history.append(record)
        with open(os.path.join(out, "metrics.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")
    save_checkpoint_file(run_checkpoint_path(out, "last"),
                         {"model": state_arrays(model), "epoch": tc["epochs"] - 1, "config": config,
                          "classes": list(train_data.class_names), "seed": tc["seed"]}, config["model"])
    summary = {"epochs_done": len(history), "last": history[-1] if history else None}
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m cten_torch_ref.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    print(json.dumps(train(load_run_config(a.config, a.set), a.out)["last"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
