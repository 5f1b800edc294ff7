"""Print the CPU model, its vector instruction sets, the thread settings, and the
instruction set oneDNN dispatches to in PyTorch and in Jittor's oneDNN (each
read from ONEDNN_VERBOSE in a child process), so that a test failure on another
machine can be read against the rounding of that machine's kernels.

    python scripts/machine_info.py
"""
import os
import platform
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FEATURES = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16")
# one oneDNN convolution in each framework; oneDNN prints "isa:..." on its first use
PROBES = {
    "PyTorch": "import torch; torch.nn.functional.conv2d(torch.ones(8, 64, 28, 28), torch.ones(64, 64, 3, 3))",
    "Jittor": ("import numpy as np, cten_jt, jittor as jt; from cten_jt.kernels.conv import fast_conv; "
               "fast_conv(jt.array(np.ones((1, 8, 8, 8), np.float32)), jt.array(np.ones((8, 8, 3, 3), np.float32)),"
               " (1, 1), (1, 1)).sync()"),
}


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return platform.processor() or "unknown", set()
    model = re.search(r"^model name\s*:\s*(.*)$", text, re.M)
    flags = re.search(r"^flags\s*:\s*(.*)$", text, re.M)
    return (model.group(1).strip() if model else "unknown"), set(flags.group(1).split() if flags else ())


def onednn_isa(code):
    env = dict(os.environ, ONEDNN_VERBOSE="1", DNNL_VERBOSE="1", PYTHONPATH=ROOT)
    try:
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                              timeout=600, cwd=ROOT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"not measured ({type(exc).__name__})"
    found = re.search(r"isa:([^\n]*)", proc.stdout + proc.stderr)
    if found:
        return found.group(1).strip()
    return "no oneDNN call seen" if proc.returncode == 0 else f"probe failed (exit {proc.returncode})"


def main():
    model, flags = cpu_model()
    print(f"cpu: {model}, {os.cpu_count()} logical cores")
    print("cpu features: " + " ".join(f for f in FEATURES if f in flags))
    limits = {k: os.environ[k] for k in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "OMP_NUM_THREADS")
              if k in os.environ}
    print("limits: " + (", ".join(f"{k}={v}" for k, v in limits.items()) or "none"))
    for name, code in PROBES.items():
        print(f"oneDNN in {name}: {onednn_isa(code)}")


if __name__ == "__main__":
    main()
