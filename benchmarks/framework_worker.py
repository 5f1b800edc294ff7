"""One framework's measurements for benchmarks.compare_frameworks, in its own
process (so that its memory and threads are its own).

    python -m benchmarks.framework_worker --framework jittor|torch --config CONFIG
        [--device cpu|cuda] [--batch N] [--iters K] [--warmup W] [--set k=v] --out FILE.json

Builds CTEN from the config with the shared initialisation (same weights in
both frameworks), or with ``--weights FILE`` builds and loads it as the commands that
run a trained model do (``cten_common.inference.inference_model``: an inference
process, as ``cten-predict`` is); makes the same inputs from a fixed seed, and times,
each after warm-up and closed by a device synchronisation:

* ``forward_train``: the original view's forward in train mode, graph recorded;
* ``train_step``: the full erasing step (three views, backward, Adam; the optimiser is
  made at the first step, so that a process that measures no step holds no Adam state:
  Jittor's allocates its m, v and gradient buffers when made, PyTorch's at the first step);
* ``inference``: eval-mode forward without a graph; in Jittor followed by what
  ``cten_jt.engine.predict_batch`` does after each call (``release_free_memory``);
* ``backbone_inference``: the frozen 3D ResNet alone on the batch's B*T
  snippets (``model.encode_visual``), eval mode, no graph;
* ``conv3d_probe``: the machine's attainable rate, timed alongside the rest: the
  unpadded 3x3x3 convolution of ``benchmarks.flops.PROBE_CONV`` (every tap
  inside the input), Jittor's ``fast_conv`` or PyTorch's ``conv3d``, in bf16
  for a bf16 run and float32 otherwise.

``--serve FD`` (what ``compare_frameworks`` runs by default): the same setup, then one
iteration at a time on request, so that the two frameworks' processes, both kept alive,
can be timed in turn, iteration by iteration (``interleaved``).  Requests are lines on
standard input, answers lines on file descriptor FD (standard output stays free for the
frameworks' own messages):

* ``up``, once setup is done (answer, unrequested);
* ``warmup NAME W`` -> ``ready``: the measure's peak-RSS mark is reset, then W untimed calls;
* ``time NAME`` -> ``time SECONDS``: one timed call, closed by a device synchronisation;
* ``done``: the worker writes its result file (the same as without ``--serve``, its times
  in the order they were taken, ``time_started``: each timed call's start on the wall clock,
  and ``served: true``) and exits.

Peak memory: on CPU the process's peak resident set (``ru_maxrss``), read at
the end, and beside it each measure's own peak (``peak_rss_by_measure_mb``: the
kernel's high-water mark ``VmHWM`` reset through ``/proc/self/clear_refs``
before the measure and read after it; where the reset is not allowed, the
running peak); on CUDA the device memory this process holds, sampled every 5 ms
through NVML (``nvidia-ml-py``) for both frameworks alike (what each
allocator reserved), and PyTorch's own allocator peak beside it.
"""
import argparse
import json
import os
import resource
import sys
import time

import numpy as np

from benchmarks.common import timed
from cten_common.step import ErasingOptions

MEASURES = ("forward_train", "train_step", "inference", "backbone_inference", "conv3d_probe")
RUNTIMES = ("onnxruntime", "openvino")          # cten_deploy's ONNX runtimes: inference only
JT_ENV = ("use_sfrl_allocator", "use_stat_allocator", "use_temp_allocator", "lazy_execution", "trace_py_var")


def rss_mb():
    """(current, peak) resident set of this process in MB from /proc/self/status (None off Linux)."""
    cur = hwm = None
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    cur = int(line.split()[1]) / 1024
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) / 1024
    except OSError:
        pass
    return cur, hwm


def reset_peak_rss():
    """Reset the kernel's peak-RSS mark (VmHWM) of this process; False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def probe_arrays():
    """numpy input and weights of the conv3d probe (``benchmarks.flops.PROBE_CONV``, unpadded)."""
    from benchmarks.flops import PROBE_CONV, probe_conv_input
    rng = np.random.default_rng(1)
    c = PROBE_CONV[1]
    return (rng.standard_normal(probe_conv_input(), dtype=np.float32),
            rng.standard_normal((c, c, 3, 3, 3), dtype=np.float32) * 0.05)


def make_batch(config, batch, seed=0):
    """numpy inputs: visual, audio, labels, and the uint8 clips the erased views are read
    from (``clip``: not moved to the device; ``cten_common.erasing.ClipViews`` reads it)."""
    m = config["model"]
    T, L, S = m["seq_len"], m["snippet_duration"], m["sample_size"]
    rng = np.random.default_rng(seed)
    n_frames = 2 * T * L
    clips = rng.integers(0, 256, (batch, n_frames, 3, S, S)).astype(np.uint8)
    idx = np.sort(rng.integers(0, n_frames, (batch, T * L)), axis=1).reshape(batch, T, L)
    visual = clips[np.arange(batch)[:, None, None], idx].transpose(0, 1, 3, 2, 4, 5).astype(np.float32)
    return {"visual": visual,
            "audio": rng.normal(0, 1, (batch, 100 * m["audio_n_segments"], 128)).astype(np.float32),
            "label": (np.arange(batch) % m["n_classes"]).astype(np.int64),
            "n_frames": np.full(batch, n_frames, dtype=np.int64), "clip": clips}


def _inference_model(framework, config, device, weights):
    """The model as ``cten-predict`` makes it: ``inference_model`` over the framework's backend."""
    from cten_common.config import RunConfig
    from cten_common.inference import inference_model
    if framework == "jittor":
        from cten_jt.backend import BACKEND
    else:
        from cten_torch_ref.backend import BACKEND
    run = RunConfig().updated({**config, "train": {**config["train"], "device": device}})
    return inference_model(BACKEND, run, weights)[0]


class _Runtime:
    """An ONNX runtime (``cten_deploy.runtimes``) on the model cten-export wrote (``--onnx``)
    and its 3D ResNet alone (``--backbone-onnx``): ``inference`` and ``backbone_inference``
    only.  OpenVINO computes in bf16 (its precision hint) in a bf16 run; ONNX Runtime in fp32
    always (its CPU kernels have no bf16), which its result's ``precision`` says."""

    def __init__(self, config, runtime, onnx, backbone_onnx=None):
        from cten_deploy.runtimes import OnnxModel
        wanted = config["train"].get("precision", "fp32")
        self.precision = "bf16" if runtime == "openvino" and wanted == "bf16" else "fp32"
        try:
            self.model = OnnxModel(onnx, runtime, self.precision)
        except ValueError:            # OpenVINO runs no bf16 on this CPU: fp32, which the result says
            if self.precision == "fp32":
                raise
            self.precision = "fp32"
            self.model = OnnxModel(onnx, runtime, self.precision)
        self.backbone = OnnxModel(backbone_onnx, runtime, self.precision) if backbone_onnx else None
        self.offers = ("inference",) + (("backbone_inference",) if self.backbone else ())

    def prepare(self, batch):
        self.inputs = {k: np.ascontiguousarray(batch[k], np.float32) for k in self.model.inputs}
        v = self.inputs["visual"]
        self.snippets = np.ascontiguousarray(v.reshape((-1,) + v.shape[2:]))

    def sync(self):
        pass

    def inference(self):
        self.model.run(self.inputs)

    def backbone_inference(self):
        self.backbone.run({"snippets": self.snippets})


class _Jittor:
    def __init__(self, config, device, weights=None):
        import cten_jt  # noqa: F401  (settings first)
        import jittor as jt
        from cten_jt import engine
        from cten_jt.device import release_free_memory
        from cten_jt.switches import set_kernels
        from cten_jt.models import build_model
        self.jt, self.engine, self.release = jt, engine, release_free_memory
        if device == "cuda":
            jt.flags.use_cuda = 1
        from cten_jt.precision import set_precision
        tc = config["train"]
        if weights:
            self.model = _inference_model("jittor", config, device, weights)
        else:
            set_kernels(tc.get("kernels", "fused"))
            self.model = build_model(config["model"], init_seed=0)
            set_precision(self.model, tc.get("precision", "fp32"))      # ours: the layers' own ops
        self.optimizer, self.lr, self.weight_decay = None, tc["lr"], tc["weight_decay"]    # made at the first step
        self.audio_once = bool(tc["audio_once"])     # the same algorithm in both frameworks
        self.probe_precision = "bf16" if tc.get("precision") == "bf16" else "fp32"
        self.probe = None

    def conv3d_probe(self):
        from cten_jt.kernels.conv import available, fast_conv
        jt = self.jt
        if self.probe is None:
            x, w = probe_arrays()
            self.probe = (jt.array(x), jt.array(w).stop_grad())
        x, w = self.probe
        if available():
            fast_conv(x, w, (1, 1, 1), (0, 0, 0), precision=self.probe_precision).sync()
        else:                   # no system oneDNN / cuDNN: Jittor's own convolution, float32
            jt.nn.conv3d(x, w).sync()

    def prepare(self, batch):
        from cten_common.erasing import ClipViews
        jt = self.jt
        self.batch = {k: jt.array(v) for k, v in batch.items() if k != "clip"}
        self.batch["n_frames"] = batch["n_frames"]
        self.reader = ClipViews(batch["clip"])
        self.visual, self.audio = self.batch["visual"], self.batch["audio"]

    def sync(self):
        self.jt.sync_all(True)

    def forward_train(self):
        self.model.train()
        logits, gamma = self.model(self.visual, self.audio)
        self.jt.sync([logits, gamma])

    def train_step(self, rng):
        if self.optimizer is None:
            from cten_jt.optim import Adam
            self.optimizer = Adam(self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        self.model.train()
        self.engine.erasing_step(self.model, self.optimizer, self.batch, rng, reader=self.reader,
                                options=ErasingOptions(audio_once=self.audio_once))

    def inference(self):
        self.model.eval()
        with self.jt.no_grad():
            logits, gamma = self.model(self.visual, self.audio)
            self.jt.sync([logits, gamma])
        del logits, gamma
        self.release()          # as engine.predict_batch does after each call

    def backbone_inference(self):
        self.model.eval()
        with self.jt.no_grad():
            self.model.encode_visual(self.visual).sync()

    def gpu_peak_mb(self):
        return None           # Jittor keeps no allocator peak; NVML's sample is the figure


class _Torch:
    def __init__(self, config, device, weights=None):
        import torch
        from cten_torch_ref import engine
        from cten_torch_ref.models import build_model
        self.torch, self.engine, self.device = torch, engine, torch.device(device)
        from cten_torch_ref.precision import set_precision
        tc = config["train"]
        if weights:
            self.model = _inference_model("torch", config, device, weights)
        else:
            self.model = build_model(config["model"], init_seed=0).to(self.device)
            set_precision(self.model, tc.get("precision", "fp32"))      # autocast plus the policy
        self.optimizer, self.lr, self.weight_decay = None, tc["lr"], tc["weight_decay"]    # made at the first step
        self.audio_once = bool(tc["audio_once"])     # the same algorithm in both frameworks
        self.probe_dtype = torch.bfloat16 if tc.get("precision") == "bf16" else torch.float32
        self.probe = None

    def conv3d_probe(self):
        torch = self.torch
        if self.probe is None:
            self.probe = tuple(torch.from_numpy(a).to(self.device, self.probe_dtype) for a in probe_arrays())
        with torch.no_grad():
            torch.nn.functional.conv3d(*self.probe)
        self.sync()

    def prepare(self, batch):
        from cten_common.erasing import ClipViews
        torch = self.torch
        self.batch = {k: torch.from_numpy(v).to(self.device) for k, v in batch.items() if k != "clip"}
        self.batch["n_frames"] = batch["n_frames"]
        self.reader = ClipViews(batch["clip"])
        self.visual, self.audio = self.batch["visual"], self.batch["audio"]

    def sync(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def forward_train(self):
        self.model.train()
        logits, gamma = self.model(self.visual, self.audio)
        self.sync()

    def train_step(self, rng):
        if self.optimizer is None:
            self.optimizer = self.torch.optim.Adam(self.model.parameters(), lr=self.lr,
                                                   weight_decay=self.weight_decay)
        self.model.train()
        self.engine.erasing_step(self.model, self.optimizer, self.batch, rng, reader=self.reader,
                                options=ErasingOptions(audio_once=self.audio_once))
        self.sync()

    def inference(self):
        self.model.eval()
        with self.torch.no_grad():
            self.model(self.visual, self.audio)
        self.sync()

    def backbone_inference(self):
        self.model.eval()
        with self.torch.no_grad():
            self.model.encode_visual(self.visual)
        self.sync()

    def gpu_peak_mb(self):
        return self.torch.cuda.max_memory_allocated() / 2**20


class _Recorder:
    """Each measure's peak RSS: the kernel's mark reset when the measure starts, read when the
    next starts or the run ends; ``overall``: the peak before any reset (setup, earlier measures)."""

    def __init__(self, result):
        self.result, self.name, self.overall = result, None, 0.0
        result["peak_rss_by_measure_mb"], result["rss_before_measure_mb"] = {}, {}

    def start(self, name):
        self.stop()
        cur, hwm = rss_mb()
        self.result["rss_before_measure_mb"][name] = cur
        self.overall = max(self.overall, hwm or 0.0)
        reset_peak_rss()
        self.name = name

    def stop(self):
        if self.name is not None:
            peak = rss_mb()[1]
            old = self.result["peak_rss_by_measure_mb"].get(self.name)
            self.result["peak_rss_by_measure_mb"][self.name] = max(v for v in (peak, old, 0.0) if v is not None)
            self.name = None


def serve(calls, sync, recorder, requests, answers):
    """``--serve``'s loop: answer ``up``, then each request line (module docstring) until ``done``."""
    times = recorder.result["times"]
    started = recorder.result.setdefault("time_started", {})        # wall clock: the turns can be checked
    answers.write("up\n")
    for line in requests:
        words = line.split()
        if not words:
            continue
        if words[0] == "warmup" and len(words) == 3 and words[1] in calls:
            recorder.start(words[1])
            for _ in range(int(words[2])):
                calls[words[1]]()
            sync()
            answers.write("ready\n")
        elif words[0] == "time" and len(words) == 2 and words[1] in calls:
            started.setdefault(words[1], []).append(time.time())
            t0 = time.perf_counter()
            calls[words[1]]()
            sync()
            seconds = time.perf_counter() - t0
            times.setdefault(words[1], []).append(seconds)
            answers.write(f"time {seconds!r}\n")
        elif words[0] == "done":
            return
        else:
            raise ValueError(f"framework_worker --serve: unknown request {line.strip()!r}")
    raise EOFError("framework_worker --serve: requests ended without 'done'")


class _DeviceMemorySampler:
    """Peak device memory used by this process, sampled through NVML in a thread."""

    def __init__(self, interval=0.005):
        import threading
        import pynvml
        pynvml.nvmlInit()
        self.nvml, self.handle = pynvml, pynvml.nvmlDeviceGetHandleByIndex(0)
        self.pid, self.peak, self.interval = os.getpid(), 0, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _used(self):
        procs = self.nvml.nvmlDeviceGetComputeRunningProcesses(self.handle)
        return sum(p.usedGpuMemory or 0 for p in procs if p.pid == self.pid)

    def _run(self):
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, self._used())
            except self.nvml.NVMLError:
                pass
            time.sleep(self.interval)

    def close(self):
        self.stop.set()
        self.thread.join()
        return self.peak / 2**20


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--framework", choices=("jittor", "torch") + RUNTIMES, required=True,
                   help="a framework, or an ONNX runtime on --onnx (inference and backbone_inference only)")
    p.add_argument("--onnx", help="a runtime's model, as cten-export wrote it")
    p.add_argument("--backbone-onnx", help="a runtime's 3D ResNet alone (cten-export --part backbone)")
    p.add_argument("--config", required=True)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--measures", default=",".join(MEASURES))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--jittor-flag", action="append", default=[], metavar="NAME=VALUE",
                   help="set jt.flags.NAME = VALUE (an int) after the model is built (memory levers)")
    p.add_argument("--jittor-gc", action="store_true",
                   help="call jt.gc() after every iteration (a memory lever; counted in the time)")
    p.add_argument("--weights", help="build and load the model from this weights file as cten-predict does "
                                     "(an inference process), not from the shared initialisation")
    p.add_argument("--out", required=True)
    p.add_argument("--serve", type=int, default=None, metavar="FD",
                   help="time one iteration at a time on request (standard input), answering on FD")
    a = p.parse_args(argv)
    if a.framework == "torch":
        import torch  # noqa: F401  (before Jittor would be imported: never in this process)
    from cten_common.config import load_run_config
    config = load_run_config(a.config, a.set).to_dict()
    batch = a.batch or config["train"]["batch_size"]
    t0 = time.perf_counter()
    sampler = _DeviceMemorySampler() if a.device == "cuda" else None
    if a.framework in RUNTIMES:
        if not a.onnx or a.device != "cpu":
            p.error(f"--framework {a.framework} runs an --onnx file on the cpu")
        runner = _Runtime(config, a.framework, a.onnx, a.backbone_onnx)
    else:
        runner = (_Jittor if a.framework == "jittor" else _Torch)(config, a.device, a.weights)
        runner.offers = MEASURES
    runner.prepare(make_batch(config, batch))
    levers = {}
    if a.framework == "jittor":
        for item in a.jittor_flag:
            name, value = item.split("=", 1)
            setattr(runner.jt.flags, name, int(value))
            levers[f"jt.flags.{name}"] = getattr(runner.jt.flags, name)
        if a.jittor_gc:
            levers["jt.gc() after every iteration"] = True
            for name in MEASURES:
                method = getattr(runner, name)
                setattr(runner, name, (lambda m: lambda *args: (m(*args), runner.jt.gc()))(method))
    result = {"framework": a.framework, "device": a.device, "batch": batch, "model": config["model"],
              "precision": runner.precision if isinstance(runner, _Runtime) else config["train"].get("precision", "fp32"),
              "levers": levers, "weights": a.weights, "onnx": a.onnx, "audio_once": bool(config["train"]["audio_once"]),
              "setup_s": None, "times": {}, "env": {k: v for k, v in os.environ.items()
                                                     if k.startswith(("CTEN_", "JT_", "OMP_", "MALLOC_")) or k in JT_ENV},
              "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "loadavg_start": os.getloadavg()}
    rng = np.random.default_rng(0)
    recorder = _Recorder(result)
    calls = {name: ((lambda: runner.train_step(rng)) if name == "train_step" else getattr(runner, name))
             for name in runner.offers}
    if a.serve is None:
        for name in [m for m in a.measures.split(",") if m in calls]:
            recorder.start(name)
            result["times"][name] = timed(calls[name], a.iters, a.warmup, runner.sync)
    else:
        serve(calls, runner.sync, recorder, sys.stdin, os.fdopen(a.serve, "w", buffering=1))
        result["served"] = True
    recorder.stop()
    result["setup_s"] = time.perf_counter() - t0
    result["loadavg_end"] = os.getloadavg()
    # the whole process's peak: ru_maxrss, and the marks read before each reset (Linux's
    # ru_maxrss follows the reset high-water mark, so it alone could miss an earlier peak)
    result["peak_rss_mb"] = max([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, recorder.overall]
                                + [v for v in result["peak_rss_by_measure_mb"].values() if v])
    if sampler is not None:
        result["gpu_peak_mb"] = sampler.close()
        result["allocator_peak_mb"] = runner.gpu_peak_mb()
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
