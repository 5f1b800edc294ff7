"""python -m cten_torch_ref.train --config CONFIG.yaml [--set key=value ...] --out RUN_DIR
   python -m cten_torch_ref.train --resume RUN_DIR

The same training as ``cten_jt.train`` in PyTorch, line for line (same config
files, data, batch order, sampling, erasing, seeds per epoch and initial
weights; what is not the framework's is ``cten_common.training``), so that the
two frameworks can be trained side by side (benchmarks/training_parity.py).
RUN_DIR gets what cten_jt.train writes there: config.yaml, metrics.jsonl (the
same keys), last.safetensors and best.safetensors (model and Adam state in the
same layout), summary.json and curves.png; ``--resume RUN_DIR`` continues a
run, and a run resumed after epoch k ends with the same weights as a straight one.

Every key of ``cten_common.config.DEFAULTS`` is honoured, except those in
REFUSED (a value other than the default is a ValueError before anything runs)
and NO_OP (Jittor-side ways of computing the same step; accepted, nothing to do).
"""
import argparse
import json
import sys
import time

import torch

from cten_common.checkpoint_io.run_paths import find_run_checkpoint, run_checkpoint_path
from cten_common.data.datasets import build_data
from cten_common.data.errors import DataError
from cten_common.data.prefetch import batches
from cten_common.evaluation import evaluate_model
from cten_common.precision import DynamicLossScaler
from cten_common.config import DEFAULTS, load_run_config
from cten_common.erasing import kept_rows_rng
from cten_common.step import ErasingOptions
from cten_common.training import (EpochMeter, NonFiniteLoss, RunFolder, SkippedVideos, add_validation,
                                  dropout_seed, erasing_rng, improved_best, progress_line,
                                  resume_config, run_summary)
from cten_torch_ref.checkpoint import load_pretrained_backbone
from cten_torch_ref.models.state import load_state_arrays, state_arrays
from cten_torch_ref.data import CTENDataset
from cten_torch_ref.device import set_device
from cten_torch_ref.engine import erasing_step, predict_batch
from cten_torch_ref.models import build_model
from cten_torch_ref.optim import Adam, adam_state, load_adam_state
from cten_torch_ref.precision import set_precision

FRAMEWORK = "torch"

REFUSED = {
    "train.features": "feature-bank training is cten_jt's (cten_jt.extract_features, cten_jt.train); "
                      "the PyTorch twin trains from the videos",
    "train.sync_bn": "the PyTorch twin runs one process (no MPI), where BatchNorm over the global batch "
                     "is BatchNorm over the batch: leave it false",
}
NO_OP = {
    "train.kernels": "Jittor's compiled attention and erasing kernels; the twin computes the composed "
                     "operations, which give the same erasing indices and logits (tests/kernels)",
}


def check_config(config):
    """Refuse, with a ValueError naming the key, every REFUSED key set to other than its default."""
    for dotted, why in REFUSED.items():
        section, key = dotted.split(".")
        value = getattr(getattr(config, section), key)
        if value != DEFAULTS[section][key]:
            raise ValueError(f"{dotted} = {value!r} is refused by cten_torch_ref.train: {why}")
    return config


def save_checkpoint(run, which, model, optimizer, epoch, config, best, classes):
    """The ``which`` checkpoint (``RunFolder.save_checkpoint``) of the model and its Adam state."""
    run.save_checkpoint(which, state_arrays(model), adam_state(optimizer, model), epoch, config, best, classes)


def train(config, out, resume=False, progress=True, stop_after=None):
    """Train; returns the summary dict.  ``stop_after``: end after that many epochs
    of this call (to test resuming)."""
    from tqdm import tqdm

    check_config(config)
    tc = config.train
    device = set_device(tc.device)
    rank, world = 0, 1                      # one process
    run = RunFolder(out)
    torch.manual_seed(tc.seed)
    train_data = build_data(config, config.data.train_subset, train=True)
    eval_data = build_data(config, config.data.eval_subset, train=False)
    classes = train_data.class_names
    if len(classes) != config.model.n_classes:
        raise ValueError(f"model.n_classes is {config.model.n_classes} but the data set "
                         f"has {len(classes)} classes {classes}: add --set model.n_classes={len(classes)}")
    model = build_model(config.model, init_seed=tc.seed)
    for which in ("visual", "audio"):
        if getattr(tc, f"pretrained_{which}"):
            load_pretrained_backbone(model, getattr(tc, f"pretrained_{which}"), which)
    model.to(device)
    set_precision(model, tc.precision)            # docs/precision.md; master weights stay float32
    scaler = DynamicLossScaler() if tc.precision == "fp16" else None      # fp16's loss scaling
    backbone_eval = bool(tc.backbone_eval)
    optimizer = Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    dataset = CTENDataset(train_data, seed=tc.seed)
    loader = dataset.loader(batch_size=tc.batch_size, shuffle=True,
                            num_workers=config.data.num_workers, drop_last=True)
    if len(loader) == 0:
        raise ValueError(f"{len(train_data)} training videos make no batch of {tc.batch_size} "
                         "(drop_last): lower train.batch_size")
    start, best = 0, {"val_accuracy": -1.0, "epoch": None}
    if resume:
        path, ckpt = run.last_checkpoint()       # never runs code from the file, either format
        load_state_arrays(model, ckpt["model"], path)
        load_adam_state(optimizer, model, ckpt["optimizer"])
        start, best = ckpt["epoch"] + 1, ckpt["best"]
    history = run.start(config, start)
    erasing = ErasingOptions.from_train_config(tc, classes)
    skipped = SkippedVideos(config, len(train_data) + len(eval_data), history)   # data.on_bad_sample: skip
    for data in (train_data, eval_data):           # skip: every video checked once, the bad ones left out
        data.check_before_run(progress)

    last_epoch = tc.epochs if stop_after is None else min(tc.epochs, start + stop_after)
    for epoch in tqdm(range(start, last_epoch), desc="epochs (torch)", disable=not progress,
                      initial=start, total=tc.epochs):
        began = time.time()
        torch.manual_seed(dropout_seed(tc.seed, epoch, rank))
        rng = erasing_rng(tc.seed, epoch)
        dataset.set_epoch(epoch)
        model.train()
        if backbone_eval:
            model.resnet.eval()            # the frozen backbone's BatchNorm on running statistics
        meter = EpochMeter(epoch, out, erasing.views)
        feed = batches(iter(loader), config.data.num_workers)   # the next batch is made during the step
        bar = tqdm(feed, desc=f"epoch {epoch + 1}", leave=False, disable=not progress, total=len(loader))
        for batch in bar:
            batch = skipped.take(batch, epoch)         # None: every video of the batch was skipped
            if batch is None:
                continue
            step = erasing_step(model, optimizer, batch, kept_rows_rng(rng, batch), options=erasing, scaler=scaler,
                                reader=train_data.read_views)
            for bad in step.get("skipped") or []:      # its erased views failed to read
                skipped.add(bad, epoch)
            if step["loss"] is None:
                continue
            loss = meter.add(step, batch["label"])
            bar.set_postfix(loss=f"{loss:.3f}")
        record = meter.record(feed.waited_s)
        model.eval()
        report = evaluate_model(model, eval_data, tc, predict_batch, progress=False)
        add_validation(record, report, began)
        skipped.end_epoch(record, epoch, report)
        history.append(record)
        best, improved = improved_best(best, record)
        run.end_epoch(record, history)
        if improved:
            save_checkpoint(run, "best", model, optimizer, epoch, config, best, classes)
        save_checkpoint(run, "last", model, optimizer, epoch, config, best, classes)
        if progress:
            tqdm.write(progress_line(record))
    return run.finish(run_summary(FRAMEWORK, device, world, history, best, classes, len(train_data),
                                  len(eval_data), skipped.summary()))


def main(argv=None):
    p = argparse.ArgumentParser(prog="cten-train-torch", description=__doc__.split("\n\n")[0])
    p.add_argument("--config")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. --set train.epochs=5")
    p.add_argument("--out", help="run folder")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR")
    a = p.parse_args(argv)
    try:
        if a.resume:
            if find_run_checkpoint(a.resume, "last") is None:
                p.error(f"{run_checkpoint_path(a.resume)} not found: nothing to resume (no epoch finished)")
            config, out = resume_config(a.resume), a.resume
        else:
            if not (a.config and a.out):
                p.error("give --config and --out (or --resume RUN_DIR)")
            config, out = load_run_config(a.config, a.set), a.out
        summary = train(config, out, resume=bool(a.resume))
    except NonFiniteLoss as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except (DataError, ValueError, OSError) as exc:    # bad data (TooMuchBadData too); a failed write
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary["best"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
