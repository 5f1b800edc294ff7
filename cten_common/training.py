"""The pieces of the training loop (``cten_common.fit``) that are no framework's.

The loop asks its backend (``cten_common.backend``) for the model, the optimiser,
the step, the device and the checkpoint's arrays; these are its other parts,
used by both frameworks alike:

* the per-epoch generators: a run's epoch ``e`` draws its shuffle order, its
  samples, its erasing and its dropout from ``(seed, e)`` alone, so a resumed
  run takes the steps a straight one takes, and both frameworks draw alike
  (dropout excepted: each framework has its own generator, seeded alike);
* the meters of an epoch and its record (``metrics.jsonl``'s keys);
* the run folder: config.yaml, metrics.jsonl, summary.json, curves.png, the
  best and last checkpoints' layout and what resuming reads back;
* the stop on a non-finite loss;
* the videos a run leaves out under ``data.on_bad_sample: skip`` (``SkippedVideos``).
"""
import json
import logging
import math
import os
import time

import numpy as np
import yaml

from .checkpoint_io.run_paths import find_run_checkpoint, read_run_checkpoint, run_checkpoint_path
from .checkpoint_io.safetensors_io import save_checkpoint_file
from .config import load_run_config
from .erasing import VIEWS

DROPOUT_STREAM = 23          # the dropout seed's fourth word
ERASING_STREAM = 17          # the erasing generator's third seed word, apart from the samples' (seed, epoch, index)


log = logging.getLogger(__name__)


class NonFiniteLoss(RuntimeError):
    """A step's loss is NaN or infinite: training stops, the last good checkpoint stays."""


class TooMuchBadData(ValueError):
    """More than ``data.max_bad_share`` of a run's videos failed to read (``on_bad_sample:
    skip``): training stops, the last good checkpoint stays."""


# ---------------------------------------------------------------------------
# the per-epoch generators


def shuffle_rng(seed, epoch):
    """The generator of epoch ``epoch``'s batch order: ``permutation(n)`` of it is the order
    (Jittor's Dataset draws it so from ``_shuffle_rng``; the PyTorch loader's sampler too)."""
    return np.random.default_rng([int(seed), int(epoch)])


def epoch_order(seed, epoch, n):
    """The training videos' order in epoch ``epoch``: indices 0..n-1, permuted."""
    return shuffle_rng(seed, epoch).permutation(n)


def erasing_rng(seed, epoch):
    """The generator of epoch ``epoch``'s erasing draws (the erased views' snippet offsets)."""
    return np.random.default_rng([int(seed), int(epoch), ERASING_STREAM])


def dropout_seed(seed, epoch, rank=0):
    """The framework generator's seed for epoch ``epoch`` on MPI rank ``rank`` (dropout):
    one integer in [0, 2**31) drawn from (seed, epoch, rank).  2**31 is the bound:
    ``jt.set_global_seed`` hands its seed to ``np.random.seed`` (which refuses 2**32 and
    more: the former ``(seed * 1000003 + epoch) * 1009 + rank`` passed it from train.seed 5
    on) and keeps it as a signed 32-bit integer, which each of Jittor's loader processes
    reads back (``jt.get_seed()``) to seed numpy: a seed of 2**31 or more came back
    negative and every loader process died (``data.num_workers`` > 0, half the epochs)."""
    words = [int(seed), int(epoch), int(rank), DROPOUT_STREAM]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint32)[0] >> np.uint32(1))


# ---------------------------------------------------------------------------
# the meters of an epoch


def check_finite(loss, view_losses, epoch, step, out, last_good):
    """Raise NonFiniteLoss if ``loss`` is NaN or infinite; the message says where and what is kept."""
    if not math.isfinite(loss):
        raise NonFiniteLoss(
            f"epoch {epoch + 1}, step {step}: the loss is {loss} (view losses {view_losses}); "
            f"stopped. {run_checkpoint_path(out)} holds the last good epoch "
            f"({last_good if last_good else 'none yet'}); lower train.lr or check the data")


class EpochMeter:
    """What an epoch's steps add up to, and the epoch's record.

    ``epoch``: 0-based, so it is also the number of epochs finished before it (the
    last good checkpoint's, which a non-finite loss names).
    ``views``: the views the steps train (all three with erasing, the original
    alone without).  ``all_sum`` (an elementwise float64 sum over MPI ranks) and
    ``world``: each step's losses are averaged over the ranks before the
    non-finite check, so that every rank stops alike, and the counts are summed
    over the ranks in ``record``.
    """

    def __init__(self, epoch, out, views=VIEWS, all_sum=None, world=1):
        self.epoch, self.out = epoch, out
        self.views = tuple(views)
        self.all_sum, self.world = all_sum, world
        self.loss_sums = {"loss": 0.0, **{f"loss_{v}": 0.0 for v in self.views}}
        self.correct = np.zeros(len(self.views), np.int64)
        self.bank_exact = np.zeros(2, np.int64)         # [exact, looked up] snippets of a feature bank
        self.seen = self.steps = 0
        self.first_step_loss = None
        self.step_losses = []           # every step's loss, in order (where two runs part)
        self.view_read_s = 0.0
        self.began = time.time()

    def add(self, step, labels):
        """Count one step's output (``engine.erasing_step``'s dict) on a batch with ``labels``."""
        loss, view_losses = step["loss"], list(step["view_losses"])
        if self.world > 1:
            mean = self.all_sum([loss] + view_losses) / self.world
            loss, view_losses = float(mean[0]), [float(v) for v in mean[1:]]
        check_finite(loss, view_losses, self.epoch, self.steps + 1, self.out, last_good=self.epoch)
        self.steps += 1
        self.first_step_loss = loss if self.first_step_loss is None else self.first_step_loss
        self.step_losses.append(loss)
        self.loss_sums["loss"] += loss
        for view, value in zip(self.views, view_losses):
            self.loss_sums[f"loss_{view}"] += value
        labels = np.asarray(labels)
        if step.get("rows") is not None:        # videos left out of the step (on_bad_sample: skip)
            labels = labels[np.asarray(step["rows"], np.int64)]
        self.correct += [int((np.asarray(logits).argmax(1) == labels).sum()) for logits in step["logits"]]
        self.seen += len(labels)
        self.view_read_s += step.get("read_s", 0.0)
        if step.get("bank_exact") is not None:
            self.bank_exact += np.asarray(step["bank_exact"], np.int64)
        return loss

    def record(self, data_wait_s, banked=False):
        """The epoch's training record (``metrics.jsonl``'s keys, validation added later).

        ``data_wait_s``: the time the steps waited for their next batch (the
        prefetcher's ``waited_s``); ``view_read_s`` is the time they spent reading the
        erased views' frames; ``data_wait_fraction`` is both over the time stepping took.
        A view that was not trained (erasing off) gets None."""
        correct, seen, bank_exact = self.correct, self.seen, self.bank_exact
        if self.world > 1:
            counts = self.all_sum(np.concatenate([correct, [seen], bank_exact]))
            n = len(self.views)
            correct, seen, bank_exact = (counts[:n].astype(np.int64), int(counts[n]),
                                         counts[n + 1:].astype(np.int64))
        steps = max(self.steps, 1)
        record = {"epoch": self.epoch + 1, "loss": self.loss_sums["loss"] / steps}
        for view in VIEWS:
            record[f"loss_{view}"] = (self.loss_sums[f"loss_{view}"] / steps if view in self.views else None)
        record["first_step_loss"] = self.first_step_loss
        record["step_losses"] = list(self.step_losses)
        for view in VIEWS:
            record[f"train_acc_{view}"] = (float(correct[self.views.index(view)]) / max(seen, 1)
                                           if view in self.views else None)
        elapsed = time.time() - self.began
        record.update({
            "train_time_s": round(elapsed, 2), "time_s": 0.0,
            "data_wait_s": round(data_wait_s, 3), "view_read_s": round(self.view_read_s, 3),
            "data_wait_fraction": round((data_wait_s + self.view_read_s) / max(elapsed, 1e-9), 4),
            # snippets whose banked features were exactly theirs (feature-bank training)
            "bank_exact_fraction": float(bank_exact[0]) / max(int(bank_exact[1]), 1) if banked else None,
        })
        return record


class SkippedVideos:
    """The videos a run leaves out (``data.on_bad_sample: skip``), for its records.

    ``take(batch, epoch)`` notes the videos ``collate`` left out of a batch (their
    ``BadSample``) and gives the batch back, or None when none of its videos is left;
    ``add`` notes one (also those the step or the validation left out); every one is
    logged with its file and problem; ``add_missing`` notes the annotated videos that
    are not on disk (the data sets' ``missing``), at the start of every epoch.  A video
    is counted once per epoch and subset (a missing validation video, noted at the
    epoch's start, comes back in the validation report).  ``end_epoch(record, report)``
    puts the epoch's count (``skipped_videos``) and list (``skipped``) in its record,
    validation included; ``summary()`` lists every video skipped in the run, with its
    epochs.  Once more than ``data.max_bad_share`` of the run's ``n_videos`` (training
    and validation, the missing ones included) have been skipped, ``TooMuchBadData``
    stops the run.  ``history``: the records of the epochs before a resume."""

    def __init__(self, config, n_videos, history=()):
        self.policy, self.max_share = config.data.on_bad_sample, float(config.data.max_bad_share)
        self.n_videos = int(n_videos)
        self.videos = {}            # (subset, video_id) -> entry with its epochs
        self.epoch_entries = []
        self._epoch_keys = set()    # (subset, video_id) of epoch_entries
        for record in history:
            for entry in record.get("skipped") or []:
                self._note(entry)

    def _note(self, entry):
        key = (entry["subset"], entry["video_id"])
        seen = self.videos.setdefault(key, {k: entry[k] for k in ("video_id", "subset", "path", "problem", "where")})
        seen.setdefault("epochs", [])
        if entry["epoch"] not in seen["epochs"]:
            seen["epochs"].append(entry["epoch"])

    def add(self, bad, epoch, subset="training"):
        """Note one skipped video (a ``BadSample`` or its ``as_dict()``); stop the run when
        too many are bad."""
        entry = {**(bad if isinstance(bad, dict) else bad.as_dict()), "subset": subset, "epoch": int(epoch) + 1}
        if (subset, entry["video_id"]) in self._epoch_keys:
            return                  # already counted this epoch
        self._epoch_keys.add((subset, entry["video_id"]))
        log.warning("epoch %d: skipped %s video %s (%s): %s: %s", entry["epoch"], subset, entry["video_id"],
                    entry["where"], entry["path"], entry["problem"])
        self.epoch_entries.append(entry)
        self._note(entry)
        bad_videos = len(self.videos)
        if bad_videos > self.max_share * self.n_videos:
            listed = "\n".join(f"  {v['path']}: {v['problem']}" for v in self.videos.values())
            raise TooMuchBadData(
                f"{bad_videos} of the run's {self.n_videos} videos failed to read "
                f"({100.0 * bad_videos / max(self.n_videos, 1):.1f} %), more than data.max_bad_share = "
                f"{self.max_share}: stopped (the last checkpoint holds the last finished epoch); "
                f"run cten-check-data. Skipped:\n{listed}")

    def add_missing(self, epoch, train_data, eval_data=None):
        """Note the videos of ``train_data`` and ``eval_data`` (``VideoEmotionData``) left out
        of their index because their file is not on disk (their ``missing``), in epoch
        ``epoch``; stop the run when too many are bad."""
        for data, subset in ((train_data, "training"), (eval_data, "validation")):
            for bad in getattr(data, "missing", None) or ():
                self.add(bad, epoch, subset)

    def take(self, batch, epoch):
        """``batch`` without its ``skipped`` list (noted here), or None when collate left no video in it."""
        for bad in batch.pop("skipped", None) or []:
            self.add(bad, epoch)
        if "slot" in batch and not len(batch["slot"]):
            return None
        return batch

    def end_epoch(self, record, epoch, report=None):
        """The epoch's count and list of skipped videos into ``record`` (validation's from ``report``)."""
        for bad in (report or {}).get("skipped", []):
            self.add(bad, epoch, "validation")
        record["skipped_videos"] = len(self.epoch_entries)
        record["skipped"] = self.epoch_entries
        self.epoch_entries, self._epoch_keys = [], set()
        return record

    def summary(self):
        """Every video skipped in the run: file, problem, subset, where, epochs."""
        return sorted(self.videos.values(), key=lambda v: (v["subset"], v["video_id"]))


def add_validation(record, report, began):
    """The validation figures of ``report`` (``cten_common.evaluation.evaluate_model``) and the
    epoch's whole time (training and validation, since ``began``)."""
    record.update({"val_accuracy": report["accuracy"], "val_accuracy_mean_views": report["accuracy_mean_views"],
                   "val_mAP": report.get("detection", {}).get("mAP"), "time_s": round(time.time() - began, 2)})
    return record


def improved_best(best, record):
    """``(best, improved)``: the best epoch so far by validation accuracy (ties keep the first)."""
    if record["val_accuracy"] > best["val_accuracy"]:
        return {"val_accuracy": record["val_accuracy"], "epoch": record["epoch"]}, True
    return best, False


def progress_line(record):
    """One line per epoch for the console."""
    mAP = record["val_mAP"]
    return (f"epoch {record['epoch']}: loss {record['loss']:.4f}  train acc {record['train_acc_original']:.3f}  "
            f"val acc {record['val_accuracy']:.3f}  (mean of views {record['val_accuracy_mean_views']:.3f})"
            f"  mAP {mAP if mAP is None else round(mAP, 3)}  {record['time_s']:.1f} s")


# ---------------------------------------------------------------------------
# the run folder


def resume_config(run_dir):
    """The ``RunConfig`` of the run in ``run_dir`` (its config.yaml), over today's defaults:
    a key added since the run started gets its default.  Read and checked as any
    ``--config`` file (``config.load_run_config``), and every section must be there: a
    damaged or edited config.yaml (bad YAML, a bad value, a missing section) is a
    ValueError naming it, before anything runs.  Its data paths are taken as written:
    resolved when the run started, or relative to the working folder as ``--set`` gave them."""
    return load_run_config(os.path.join(os.fspath(run_dir), "config.yaml"), rebase_paths=False, complete=True)


class RunFolder:
    """A run's folder: ``config.yaml`` (the resolved configuration), ``metrics.jsonl``
    (one record per finished epoch), ``last``/``best`` checkpoints, ``summary.json``
    and ``curves.png``.  ``write=False`` (MPI ranks other than 0): nothing is written."""

    def __init__(self, out, write=True):
        self.out, self.write = os.fspath(out), write
        self.metrics = os.path.join(self.out, "metrics.jsonl")
        if write:
            os.makedirs(self.out, exist_ok=True)

    def last_checkpoint(self):
        """The last checkpoint to resume from, read without running code from the file
        (``cten_common.checkpoint_io``); ValueError if no epoch finished."""
        path = find_run_checkpoint(self.out, "last")
        if path is None:
            raise ValueError(f"{self.out}: no last checkpoint to resume from (no epoch finished)")
        return path, read_run_checkpoint(path)

    def start(self, config, start_epoch=0):
        """The history of epochs before ``start_epoch`` (resuming: from metrics.jsonl, cut back
        to the epochs the checkpoint finished; a new run: none, and config.yaml is written)."""
        history = []
        if start_epoch:
            with open(self.metrics) as f:
                history = [json.loads(line) for line in f if line.strip()][:start_epoch]
        elif self.write:
            with open(os.path.join(self.out, "config.yaml"), "w") as f:
                yaml.safe_dump(config.to_dict(), f, sort_keys=False)
        if self.write:
            with open(self.metrics, "w") as f:       # drop lines of an epoch that did not finish
                f.writelines(json.dumps(h) + "\n" for h in history)
        return history

    def save_checkpoint(self, which, model_arrays, optimizer_state, epoch, config, best, classes,
                        loss_scaler=None):
        """``which`` ("last"/"best"): one safetensors file, arrays ``model/<name>``,
        ``optimizer/m/<name>``, ``optimizer/v/<name>``; epoch, config, best, classes, seed,
        Adam's step count and (fp16) the loss scaler's state (``loss_scaler``: scale, good
        steps in a row, skipped steps) as JSON in its metadata.  Atomic: a killed run or a
        full disk never leaves half a checkpoint, and the previous one stays as it was."""
        if not self.write:
            return
        tree = {"model": model_arrays, "optimizer": optimizer_state, "epoch": epoch, "config": config.to_dict(),
                "best": best, "classes": list(classes), "seed": config.train.seed}
        if loss_scaler is not None:
            tree["loss_scaler"] = dict(loss_scaler)
        save_checkpoint_file(run_checkpoint_path(self.out, which), tree, config.model.to_dict())

    def end_epoch(self, record, history):
        """Append the finished epoch's record to metrics.jsonl and redraw curves.png."""
        if not self.write:
            return
        with open(self.metrics, "a") as f:
            f.write(json.dumps(record) + "\n")
        plot_curves(history, os.path.join(self.out, "curves.png"))

    def finish(self, summary):
        """Write summary.json; returns ``summary``."""
        if self.write:
            with open(os.path.join(self.out, "summary.json"), "w") as f:
                json.dump(summary, f, indent=2)
        return summary


def run_summary(framework, device, world, history, best, classes, train_videos, eval_videos, skipped=()):
    """The run's summary (summary.json, and what ``train`` returns); ``skipped``: every
    video the run left out (``SkippedVideos.summary()``)."""
    return {"framework": framework, "device": device, "ranks": world, "epochs_done": len(history),
            "best": best, "last": history[-1] if history else None, "classes": list(classes),
            "train_videos": train_videos, "eval_videos": eval_videos, "skipped_videos": list(skipped)}


def plot_curves(history, path):
    """curves.png: the training losses, and the training and validation accuracies and mAP."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for key in ("loss", "loss_original", "loss_context", "loss_keyframe"):
        if all(h.get(key) is not None for h in history):
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
