"""CTEN's training with temporal erasing: one loop for both frameworks, and its command.

    fit(config, out, backend)         the loop; cten_jt.train and cten_torch_ref.train call it
    main(backend, argv)               cten-train / cten-train-torch: --config, --set, --out, --resume

``backend`` is the framework's half (``cten_common.backend.Backend``: the model, the
optimiser, the step, the device); everything else is here or in
``cten_common.training`` (generators, meters, run folder).  ``out`` gets config.yaml
(resolved), metrics.jsonl (one line per epoch), last.safetensors and
best.safetensors (model, optimiser, epoch, seeds; ``cten_common.checkpoint_io``),
summary.json and curves.png.  Every epoch draws its shuffle, augmentation, dropout
and erasing from (seed, epoch) alone, so a run resumed after epoch k ends with the
same weights as an uninterrupted one.
"""
import argparse
import json
import sys
import time

from .backend import check_capabilities
from .checkpoint_io.errors import CheckpointError
from .checkpoint_io.run_paths import find_run_checkpoint, run_checkpoint_path
from .config import load_run_config
from .data.bank import FeatureBank, expected_meta
from .data.datasets import build_data
from .data.errors import DataError
from .data.prefetch import batches
from .erasing import RankRows, kept_rows_rng
from .precision import DynamicLossScaler
from .step import ErasingOptions
from .training import (EpochMeter, NonFiniteLoss, RunFolder, SkippedVideos, add_validation, dropout_seed,
                       erasing_rng, improved_best, progress_line, resume_config, run_summary)


def fit(config, out, backend, resume=False, progress=True, stop_after=None):
    """Train ``config`` (a ``RunConfig``) with ``backend`` into the run folder ``out``;
    returns the summary dict.  ``resume``: continue from ``out``'s last checkpoint.
    ``stop_after``: end after that many epochs of this call (to test resuming)."""
    from tqdm import tqdm

    check_capabilities(config, backend)      # before anything: no data read, no folder written
    tc = config.train
    backend.set_kernels(tc.kernels)
    device = backend.set_device(tc.device)
    rank, world = backend.world()
    progress = progress and rank == 0
    check_batch(tc.batch_size, world)
    run = RunFolder(out, write=rank == 0)      # rank 0 alone writes (MPI: mpirun -np N)
    backend.seed(tc.seed)
    bank = FeatureBank(tc.features) if tc.features else None
    train_data = build_data(config, config.data.train_subset, train=True, bank=bank)
    eval_data = build_data(config, config.data.eval_subset, train=False, bank=bank)
    classes = train_data.class_names
    check_classes(config, classes)
    model = build_model(backend, config, device)
    if bank is not None:        # a bank serves this configuration and these backbone weights only
        bank.check(expected_meta(config, model), [it.video_id for it in train_data.items + eval_data.items])
    erasing = ErasingOptions.from_train_config(tc, classes)
    scaler = DynamicLossScaler() if tc.precision == "fp16" else None      # fp16's loss scaling
    backbone_eval = tc.backbone_eval or bank is not None
    optimizer = backend.make_optimizer(model, tc.lr, tc.weight_decay)
    loader = backend.loader(train_data, tc.batch_size, config.data.num_workers, tc.seed)
    if len(loader) == 0:
        raise ValueError(f"{len(train_data)} training videos make no batch of {tc.batch_size} "
                         "(drop_last): lower train.batch_size")
    start, best = 0, {"val_accuracy": -1.0, "epoch": None}
    if resume:
        start, best = load_last_checkpoint(run, backend, model, optimizer, scaler)
    history = run.start(config, start)
    # data.on_bad_sample: skip; the videos annotated but not on disk count too (their data's ``missing``)
    skipped = SkippedVideos(config, train_data.n_annotated + eval_data.n_annotated, history)
    for data in (train_data, eval_data):           # skip: every video checked once, the bad ones left out
        data.check_before_run(progress)

    last_epoch = tc.epochs if stop_after is None else min(tc.epochs, start + stop_after)
    for epoch in tqdm(range(start, last_epoch), desc=f"epochs ({backend.name})", disable=not progress,
                      initial=start, total=tc.epochs):
        began = time.time()
        skipped.add_missing(epoch, train_data, eval_data)     # not on disk: skipped every epoch, from the start
        backend.seed(dropout_seed(tc.seed, epoch, rank))
        rng = erasing_rng(tc.seed, epoch)
        if world > 1:
            rng = RankRows(rng, rank, world)        # this rank's rows of the batch's draws
        loader.set_epoch(epoch)
        backend.train_mode(model, backbone_eval)
        meter = EpochMeter(epoch, out, erasing.views, backend.all_sum, world)
        feed = batches(iter(loader), config.data.num_workers)   # the next batch is made during the step
        bar = tqdm(feed, desc=f"epoch {epoch + 1}", leave=False, disable=not progress, total=len(loader))
        for batch in bar:
            batch = skipped.take(batch, epoch)         # None: every video of the batch was skipped
            if batch is None:
                continue
            step = backend.erasing_step(model, optimizer, batch, kept_rows_rng(rng, batch), options=erasing,
                                        scaler=scaler, bank=bank, reader=train_data.read_views)
            for bad in step.get("skipped") or []:      # its erased views failed to read
                skipped.add(bad, epoch)
            if step["loss"] is None:
                continue
            loss = meter.add(step, batch["label"])
            bar.set_postfix(loss=f"{loss:.3f}")
        record = meter.record(feed.waited_s, banked=bank is not None)
        backend.eval_mode(model)
        report = backend.evaluate(model, eval_data, tc, bank=bank, progress=False)
        add_validation(record, report, began)
        skipped.end_epoch(record, epoch, report)
        history.append(record)
        best, improved = improved_best(best, record)
        run.end_epoch(record, history)
        if improved:
            save_checkpoint(run, backend, "best", model, optimizer, epoch, config, best, classes, scaler)
        save_checkpoint(run, backend, "last", model, optimizer, epoch, config, best, classes, scaler)
        if progress:
            tqdm.write(progress_line(record))
    return run.finish(run_summary(backend.name, device, world, history, best, classes, len(train_data),
                                  len(eval_data), skipped.summary()))


def check_batch(batch_size, world):
    """The global batch must split evenly across the ranks."""
    if batch_size % world:
        raise ValueError(f"train.batch_size {batch_size} does not split across {world} MPI ranks: "
                         f"use a multiple of {world} (it is the global batch; each rank takes "
                         f"batch_size / {world})")


def check_classes(config, classes):
    """The model's classes are the data set's."""
    if len(classes) != config.model.n_classes:
        raise ValueError(f"model.n_classes is {config.model.n_classes} but the data set "
                         f"has {len(classes)} classes {classes}: add --set model.n_classes={len(classes)}")


def build_model(backend, config, device):
    """The run's model: initialised from ``train.seed``, its backbones from the pretrained
    files, on ``device``, with ``train.sync_bn`` and ``train.precision`` (docs/precision.md;
    the master weights stay float32)."""
    tc = config.train
    model = backend.build_model(config.model, init_seed=tc.seed)
    for which, path in (("visual", tc.pretrained_visual), ("audio", tc.pretrained_audio)):
        if path:
            backend.load_pretrained_backbone(model, path, which)
    model = backend.to_device(model, device)
    backend.set_sync_bn(model, tc.sync_bn)
    backend.set_precision(model, tc.precision)
    return model


def load_last_checkpoint(run, backend, model, optimizer, scaler=None):
    """Resume: the model and Adam state of the run's last checkpoint (never running code
    from the file, either format), and fp16's loss scale where ``scaler`` is given and the
    checkpoint has one (one from before loss scales were saved starts again from 2**16);
    returns (the epoch to start from, the best so far)."""
    path, ckpt = run.last_checkpoint()
    backend.load_state_arrays(model, ckpt["model"], path)
    backend.load_optimizer_state(optimizer, model, ckpt["optimizer"])
    if scaler is not None and ckpt.get("loss_scaler") is not None:
        try:
            scaler.load_state_dict(ckpt["loss_scaler"])
        except ValueError as e:
            raise CheckpointError(f"{path}: {e}") from None
    return ckpt["epoch"] + 1, ckpt["best"]


def save_checkpoint(run, backend, which, model, optimizer, epoch, config, best, classes, scaler=None):
    """The ``which`` checkpoint (``RunFolder.save_checkpoint``) of the model, its Adam state
    and fp16's loss scaler (``scaler``, None in other precisions)."""
    run.save_checkpoint(which, backend.state_arrays(model), backend.optimizer_state(optimizer, model), epoch,
                        config, best, classes, None if scaler is None else scaler.state_dict())


def main(backend, argv=None):
    """The training command of ``backend`` (``cten-train``, ``cten-train-torch``): 0 when the
    run finished, 2 for a bad configuration, bad data or a failed write, 3 for a
    non-finite loss; the error is one line on stderr."""
    usage = (f"python -m {backend.trainer} --config CONFIG.yaml [--set key=value ...] --out RUN_DIR\n"
             f"   python -m {backend.trainer} --resume RUN_DIR")
    p = argparse.ArgumentParser(prog=backend.command, description=usage)
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
        summary = fit(config, out, backend, resume=bool(a.resume))
    except NonFiniteLoss as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except (DataError, ValueError, OSError) as exc:    # bad data (TooMuchBadData too); a failed write
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if backend.world()[0] == 0:
        print(json.dumps(summary["best"]))
    return 0
