"""python -m cten_jt.train --config CONFIG.yaml [--set key=value ...] --out RUN_DIR
   python -m cten_jt.train --resume RUN_DIR

CTEN's training with temporal erasing on Jittor.  RUN_DIR gets config.yaml
(resolved), metrics.jsonl (one line per epoch), last.safetensors and
best.safetensors (model, optimiser, epoch, seeds; ``cten_common.safe_save``),
summary.json and curves.png.  Every epoch draws its
shuffle, augmentation, dropout and erasing from (seed, epoch) alone, so a run
resumed after epoch k ends with the same weights as an uninterrupted one.
``--set train.features=BANK_DIR`` trains from a feature bank
(``cten_jt.extract_features``; ``cten_common.data.bank`` says where it differs).
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import yaml

import cten_jt  # noqa: F401  (Jittor settings first)
import jittor as jt
from cten_common.data.bank import FeatureBank
from cten_common.data.datasets import build_data
from cten_common.data.errors import DataError
from cten_common.safe_load import find_run_checkpoint, read_run_checkpoint, run_checkpoint_path
from cten_common.safe_save import save_checkpoint_file
from cten_jt.checkpoint import load_pretrained_backbone, load_state_arrays, state_arrays
from cten_jt.data import CTENDataset
from cten_jt import distributed
from cten_jt.device import set_device
from cten_jt.engine import erasing_step
from cten_jt.evaluate import evaluate_model
from cten_jt.kernels import set_kernels
from cten_jt.models import build_model
from cten_jt.extract_features import expected_meta
from cten_jt.models.norm import set_sync_batchnorm, set_train_mode
from cten_jt.optim import Adam, adam_state, load_adam_state
from cten_common.data.prefetch import batches
from cten_common.run_config import load_run_config


class NonFiniteLoss(RuntimeError):
    pass


def save_checkpoint(path, model, optimizer, epoch, config, best, classes):
    """One safetensors file: arrays ``model/<name>``, ``optimizer/m/<name>``,
    ``optimizer/v/<name>``; epoch, config, best, classes, seed and Adam's step count
    as JSON in its metadata.  Atomic: a killed run or a full disk never leaves half a
    checkpoint, and the previous one stays as it was."""
    save_checkpoint_file(path, {"model": state_arrays(model), "optimizer": adam_state(optimizer, model),
                                "epoch": epoch, "config": config, "best": best, "classes": list(classes),
                                "seed": config["train"]["seed"]}, config["model"])


def plot_curves(history, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for key in ("loss", "loss_original", "loss_context", "loss_keyframe"):
        ax1.plot(epochs, [h[key] for h in history], label=key)
    ax1.set_xlabel("epoch")
    ax1.set_title("training loss")
    ax1.legend(fontsize=7)
    for key in ("train_acc_original", "train_acc_context", "train_acc_keyframe", "val_accuracy",
                "val_accuracy_mean_views", "val_mAP"):
        if all(h.get(key) is not None for h in history):
            ax2.plot(epochs, [h[key] for h in history], label=key)
    ax2.set_xlabel("epoch")
    ax2.set_title("accuracy / mAP")
    ax2.set_ylim(0, 1)
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def train(config, out, resume=False, progress=True, stop_after=None):
    """Train; returns the summary dict.  ``stop_after``: end after that many epochs
    of this call (to test resuming)."""
    from tqdm import tqdm

    tc = config["train"]
    set_kernels(tc.get("kernels", "fused"))
    device = set_device(tc.get("device", "auto"))
    rank, world = distributed.world()
    main_rank = rank == 0                   # the one that writes (MPI: mpirun -np N)
    progress = progress and main_rank
    distributed.check_batch(tc["batch_size"])
    if main_rank:
        os.makedirs(out, exist_ok=True)
    jt.set_global_seed(tc["seed"])
    bank = FeatureBank(tc["features"]) if tc.get("features") else None
    train_data = build_data(config, config["data"]["train_subset"], train=True, bank=bank)
    eval_data = build_data(config, config["data"]["eval_subset"], train=False, bank=bank)
    classes = train_data.class_names
    if len(classes) != config["model"]["n_classes"]:
        raise ValueError(f"model.n_classes is {config['model']['n_classes']} but the data set "
                         f"has {len(classes)} classes {classes}: add --set model.n_classes={len(classes)}")
    model = build_model(config["model"], init_seed=tc["seed"])
    set_sync_batchnorm(model, tc.get("sync_bn", False))
    for which in ("visual", "audio"):
        if tc[f"pretrained_{which}"]:
            load_pretrained_backbone(model, tc[f"pretrained_{which}"], which)
    if bank is not None:        # a bank serves this configuration and these backbone weights only
        bank.check(expected_meta(config, model), [it.video_id for it in train_data.items + eval_data.items])
    backbone_eval = bool(tc.get("backbone_eval")) or bank is not None
    optimizer = Adam(model.parameters(), lr=tc["lr"], weight_decay=tc["weight_decay"])
    loader = CTENDataset(train_data, batch_size=tc["batch_size"], shuffle=True,
                         num_workers=config["data"]["num_workers"], drop_last=True, seed=tc["seed"])
    if len(loader) == 0:
        raise ValueError(f"{len(train_data)} training videos make no batch of {tc['batch_size']} "
                         "(drop_last): lower train.batch_size")
    history, start, best = [], 0, {"val_accuracy": -1.0, "epoch": None}
    metrics_path = os.path.join(out, "metrics.jsonl")
    if resume:
        last = find_run_checkpoint(out, "last")
        if last is None:
            raise ValueError(f"{out}: no last checkpoint to resume from (no epoch finished)")
        ckpt = read_run_checkpoint(last)         # never runs code from the file, either format
        load_state_arrays(model, ckpt["model"], last)
        load_adam_state(optimizer, model, ckpt["optimizer"])
        start, best = ckpt["epoch"] + 1, ckpt["best"]
        with open(metrics_path) as f:
            history = [json.loads(line) for line in f if line.strip()][:start]
    elif main_rank:
        with open(os.path.join(out, "config.yaml"), "w") as f:
            yaml.safe_dump(config, f, sort_keys=False)
    if main_rank:
        with open(metrics_path, "w") as f:       # drop lines of an epoch that did not finish
            f.writelines(json.dumps(h) + "\n" for h in history)

    last_epoch = tc["epochs"] if stop_after is None else min(tc["epochs"], start + stop_after)
    for epoch in tqdm(range(start, last_epoch), desc="epochs", disable=not progress,
                      initial=start, total=tc["epochs"]):
        began = time.time()
        jt.set_global_seed((tc["seed"] * 1000003 + epoch) * 1009 + rank)  # dropout: (seed, epoch, rank)
        rng = np.random.default_rng([tc["seed"], epoch, 17])    # erasing
        if world > 1:
            rng = distributed.RankRows(rng, rank, world)        # this rank's rows of the batch's draws
        loader.set_epoch(epoch)
        model.train()
        if backbone_eval:
            set_train_mode(model.resnet, False)
        sums = {"loss": 0.0, "loss_original": 0.0, "loss_context": 0.0, "loss_keyframe": 0.0}
        correct, seen, steps, first_loss = np.zeros(3, np.int64), 0, 0, None
        bank_exact = np.zeros(2, np.int64)
        read_s, stepping = 0.0, time.time()
        feed = batches(loader, config["data"]["num_workers"])      # the next batch is made during the step
        bar = tqdm(feed, desc=f"epoch {epoch + 1}", leave=False, disable=not progress, total=len(loader))
        for batch in bar:
            out_step = erasing_step(model, optimizer, batch, rng, theta=tc["theta"], loss=tc["loss"],
                                    class_names=classes, pcce_lambda=tc["pcce_lambda"],
                                    audio_once=tc.get("audio_once", True), bank=bank,
                                    reader=train_data.read_views)
            read_s += out_step["read_s"]
            if world > 1:     # the global batch's losses, so that every rank stops alike
                losses = distributed.all_sum([out_step["loss"]] + out_step["view_losses"]) / world
                out_step["loss"], out_step["view_losses"] = float(losses[0]), [float(v) for v in losses[1:]]
            if not math.isfinite(out_step["loss"]):
                raise NonFiniteLoss(
                    f"epoch {epoch + 1}, step {steps + 1}: the loss is {out_step['loss']} "
                    f"(view losses {out_step['view_losses']}); stopped. {run_checkpoint_path(out)} holds "
                    f"the last good epoch ({start if start else 'none yet'}); lower train.lr or check the data")
            steps += 1
            if bank is not None:
                bank_exact += out_step["bank_exact"]
            first_loss = out_step["loss"] if first_loss is None else first_loss
            sums["loss"] += out_step["loss"]
            for name, value in zip(("original", "context", "keyframe"), out_step["view_losses"]):
                sums[f"loss_{name}"] += value
            labels = np.asarray(batch["label"])
            correct += [int((logits.argmax(1) == labels).sum()) for logits in out_step["logits"]]
            seen += len(labels)
            bar.set_postfix(loss=f"{out_step['loss']:.3f}")
        if world > 1:
            counts = distributed.all_sum(np.concatenate([correct, [seen], bank_exact]))
            correct, seen, bank_exact = counts[:3].astype(np.int64), int(counts[3]), counts[4:].astype(np.int64)
        record = {"epoch": epoch + 1, **{k: v / steps for k, v in sums.items()},
                  "first_step_loss": first_loss,
                  **{f"train_acc_{view}": float(c) / max(seen, 1)
                     for view, c in zip(("original", "context", "keyframe"), correct)},
                  "train_time_s": round(time.time() - began, 2), "time_s": 0.0,
                  # time the steps waited for data: the next batch, then the erased views' frames
                  "data_wait_s": round(feed.waited_s, 3), "view_read_s": round(read_s, 3),
                  "data_wait_fraction": round((feed.waited_s + read_s) / max(time.time() - stepping, 1e-9), 4)}
        if bank is not None:        # snippets whose banked features were exactly theirs
            record["bank_exact_fraction"] = float(bank_exact[0]) / max(int(bank_exact[1]), 1)
        model.eval()
        ev = evaluate_model(model, eval_data, tc, progress=False, bank=bank)
        record.update({"val_accuracy": ev["accuracy"], "val_accuracy_mean_views": ev["accuracy_mean_views"],
                       "val_mAP": ev.get("detection", {}).get("mAP")})
        record["time_s"] = round(time.time() - began, 2)
        history.append(record)
        improved = record["val_accuracy"] > best["val_accuracy"]
        if improved:
            best = {"val_accuracy": record["val_accuracy"], "epoch": epoch + 1}
        if main_rank:
            with open(metrics_path, "a") as f:
                f.write(json.dumps(record) + "\n")
            if improved:
                save_checkpoint(run_checkpoint_path(out, "best"), model, optimizer, epoch, config, best, classes)
            save_checkpoint(run_checkpoint_path(out, "last"), model, optimizer, epoch, config, best, classes)
            plot_curves(history, os.path.join(out, "curves.png"))
        if progress:
            tqdm.write(f"epoch {epoch + 1}: loss {record['loss']:.4f}  train acc {record['train_acc_original']:.3f}  "
                       f"val acc {record['val_accuracy']:.3f}  (mean of views {record['val_accuracy_mean_views']:.3f})"
                       f"  mAP {record['val_mAP'] if record['val_mAP'] is None else round(record['val_mAP'], 3)}"
                       f"  {record['time_s']:.1f} s")
    summary = {"device": device, "ranks": world, "epochs_done": len(history), "best": best,
               "last": history[-1] if history else None,
               "classes": classes, "train_videos": len(train_data), "eval_videos": len(eval_data)}
    if main_rank:
        with open(os.path.join(out, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
    return summary


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m cten_jt.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--config")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. --set train.epochs=5")
    p.add_argument("--out", help="run folder")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR")
    a = p.parse_args(argv)
    if a.resume:
        with open(os.path.join(a.resume, "config.yaml")) as f:
            config = yaml.safe_load(f)
        out = a.resume
        if find_run_checkpoint(out, "last") is None:
            p.error(f"{run_checkpoint_path(out)} not found: nothing to resume (no epoch finished)")
    else:
        if not (a.config and a.out):
            p.error("give --config and --out (or --resume RUN_DIR)")
        config, out = load_run_config(a.config, a.set), a.out
    try:
        summary = train(config, out, resume=bool(a.resume))
    except NonFiniteLoss as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except (DataError, ValueError, OSError) as exc:    # bad data or files; a failed write (full disk)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if distributed.is_main():
        print(json.dumps(summary["best"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
