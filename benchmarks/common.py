"""What the benchmarks share: the machine's description stored with each result
(``describe``), timing (``timed``), the two frameworks' workers taking turns
(``interleaved``) and the synthetic data set (``ensure_synthetic``).

Benchmarks import their helpers from here, never from each other's modules.
"""
import json
import os
import platform
import subprocess
import sys
import time

# the checkout's root: benchmarks run their commands from it
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def gpu_model():
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_bf16_units():
    """What the CPU offers for bf16 matrix work: "amx_bf16" (AMX tiles), "avx512_bf16"
    (vdpbf16ps), or "none" (bf16 then runs emulated, at fp32 speed: docs/precision.md)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return "unknown"
    return next((unit for unit in ("amx_bf16", "avx512_bf16") if unit in flags), "none")


def describe():
    import numpy
    info = {"platform": platform.platform(), "cpu": cpu_model(), "cpus": os.cpu_count(),
            "bf16_units": cpu_bf16_units(),
            "python": platform.python_version(), "numpy": numpy.__version__, "gpu": gpu_model()}
    try:
        with open("/proc/meminfo") as f:
            info["memory_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    return info


def timed(fn, iters, warmup, sync):
    """Seconds of ``iters`` calls of ``fn`` after ``warmup`` untimed ones, each closed by ``sync()``."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return times


def ensure_synthetic(config):
    """Make the synthetic data set that run config ``config`` reads, unless it exists."""
    from cten_common.config import load_run_config
    ann = load_run_config(config).data.annotation
    if ann and not os.path.exists(ann):
        root = os.path.dirname(ann)
        print(f"making the synthetic set in {root}")
        subprocess.run([sys.executable, "-m", "cten_common.data.make_synthetic", "--out", root],
                       cwd=ROOT, check=True)


def worker_folder(keep):
    """A context manager giving the folder for worker result files: ``keep`` (created; the files
    there are kept, and a benchmark reuses a file already there instead of running that worker
    again, so that a run cut short resumes) or a temporary folder."""
    import contextlib
    import tempfile
    if keep:
        os.makedirs(keep, exist_ok=True)
        return contextlib.nullcontext(keep)
    return tempfile.TemporaryDirectory()


def reuse_or_run(out, run):
    """The JSON in ``out`` if a kept folder already holds it, else ``run()`` (which writes it)."""
    if not os.path.exists(out):
        run()
    with open(out) as f:
        return json.load(f)


class ServedWorker:
    """One framework's worker kept alive (``framework_worker`` ``command`` with ``--serve``,
    writing ``out``): it is set up once and then runs one iteration per request, so that the
    two frameworks can take turns."""

    def __init__(self, framework, command, out):
        read, write = os.pipe()
        self.framework, self.out = framework, out
        self.proc = subprocess.Popen(command + ["--serve", str(write)], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, pass_fds=(write,), text=True)
        os.close(write)
        self.answers = os.fdopen(read)
        self._expect("up")

    def _expect(self, word):
        line = self.answers.readline()
        if not line.startswith(word):
            code = self.proc.wait()
            raise RuntimeError(f"the {self.framework} worker ({self.out}) answered {line.strip()!r} instead of "
                               f"{word!r} and exited with {code}; its error is above")
        return line.split()[1:]

    def ask(self, request, answer):
        self.proc.stdin.write(request + "\n")
        self.proc.stdin.flush()
        return self._expect(answer)

    def close(self):
        """Ends the worker; its result."""
        self.proc.stdin.write("done\n")
        self.proc.stdin.close()
        if self.proc.wait() != 0:
            raise RuntimeError(f"the {self.framework} worker ({self.out}) exited with {self.proc.returncode}")
        self.answers.close()
        with open(self.out) as f:
            return json.load(f)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.answers.close()


def interleaved(commands, outs, measures, iters, warmup, offers=None):
    """Both frameworks' workers (``commands``: ``{framework: framework_worker command}``, each
    writing ``outs[framework]``) alive side by side.  For each measure each warms up in turn,
    then the two are timed in turn, one iteration each, the order swapped every round (the
    first framework of ``commands`` first, then the other first, ...), so that a slow spell
    of the machine hits both alike and iteration i of one is paired with iteration i of the
    other.  ``offers``: ``{worker: its measures}`` for workers that run only some (an ONNX
    runtime: inference); the others run every measure.  ``{framework: result}``; where every
    ``outs`` file exists already (a kept folder), those are read instead."""
    order = list(commands)
    if all(os.path.exists(outs[fw]) for fw in order):
        return {fw: reuse_or_run(outs[fw], None) for fw in order}
    workers = {}
    try:
        for fw in order:                  # set up one after the other: no contention
            workers[fw] = ServedWorker(fw, commands[fw], outs[fw])
        for measure in measures:
            taking = [fw for fw in order if measure in (offers or {}).get(fw, measures)]
            for fw in taking:
                workers[fw].ask(f"warmup {measure} {warmup}", "ready")
            for i in range(iters):
                for fw in (taking if i % 2 == 0 else taking[::-1]):
                    workers[fw].ask(f"time {measure}", "time")
        return {fw: workers.pop(fw).close() for fw in order}
    finally:
        for w in workers.values():
            w.kill()


WRITE_WEIGHTS = """
import sys
from cten_common.config import load_run_config
from cten_torch_ref.checkpoint import save_weights
from cten_torch_ref.models import build_model
save_weights(build_model(load_run_config(sys.argv[1], sys.argv[3:]).model, init_seed=0), sys.argv[2])
"""


def shared_weights(config, overrides, folder):
    """The configuration's model from the shared initialisation (the frameworks' workers' own
    weights), as a weights file in ``folder``: written once (by the PyTorch twin, in a process
    of its own), a kept folder's reused."""
    path = os.path.join(folder, "weights.safetensors")
    if not os.path.exists(path):
        subprocess.run([sys.executable, "-c", WRITE_WEIGHTS, config, path] + list(overrides), cwd=ROOT, check=True)
    return path


def exported_onnx(config, overrides, folder, parts=("model", "backbone")):
    """``{"weights": path, part: path}``: the configuration's model with the shared initial
    weights (``shared_weights``), exported by cten-export (the whole model, its 3D ResNet
    alone) into ``folder``, each once (a kept folder's reused), each in a process of its own."""
    import yaml
    from cten_common.config import load_run_config
    resolved = os.path.join(folder, "config.yaml")
    with open(resolved, "w") as f:             # the configuration with the overrides applied
        yaml.safe_dump(load_run_config(config, overrides).to_dict(), f)
    out = {"weights": shared_weights(config, overrides, folder)}
    for part in parts:
        out[part] = os.path.join(folder, f"{part}.onnx")
        if not os.path.exists(out[part]):
            print(f"exporting the {part} to ONNX (cten-export) ...", flush=True)
            subprocess.run([sys.executable, "-m", "cten_deploy.export", out["weights"], out[part], "--config",
                            resolved, "--part", part], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return out

