"""Make Jittor 1.3.11's CUDA build work with today's CUDA stacks, without
editing anything under site-packages.

Jittor derives everything from ``nvcc_path``: the toolkit's ``include`` and
``lib64`` beside its ``bin``, where it expects cuBLAS, cuRAND and cuDNN too.
Current machines have the toolkit in one place and the libraries in pip wheels
(``site-packages/nvidia/...``), and CUDA 13 removed what Jittor still uses.
``prepare()`` therefore lays out a CUDA home of links under our cache:

* ``bin/nvcc``: a wrapper that runs the real nvcc;
* ``include/`` and ``lib64/``: links to the toolkit's files plus the headers and
  libraries of the ``nvidia-*`` wheels (with the unversioned ``libX.so`` names
  Jittor looks for);
* for CUDA >= 13, which removed ``cudaDeviceProp::computeMode`` and
  ``::clockRate`` that Jittor's ``helper_cuda.h`` reads (to refuse a
  compute-prohibited device and to rank devices by speed), ``cc_flags`` gets
  ``-DcomputeMode=ECCEnabled -DclockRate=multiProcessorCount``: two fields that
  still exist, one never equal to "prohibited" (2), one that still ranks
  devices.  A macro reaches every file that includes the header, whatever
  order Jittor gives its include paths (an include overlay does not: Jittor puts
  its own folder first for its cuBLAS/CUB ops).  No CUDA 13 header uses either
  word but ``cuda.h``'s legacy ``CUdevprop``, where the rename is harmless;

* ``cub_compat.h``: CUDA 13's CUB (CCCL 3) removed ``cub::Max``, ``cub::Min``
  and ``cub::Sum``, which Jittor's GPU softmax and reductions use; the header
  brings them back as aliases of ``cuda::maximum<>``, ``cuda::minimum<>`` and
  ``cuda::std::plus<>`` (only where CUB >= 3.0 and only in nvcc compiles);

and chooses: ``NVCC_APPEND_FLAGS=-std=c++17 -include cub_compat.h`` for
CUDA >= 13 (CUB/Thrust need C++17; Jittor passes -std=c++14 and nvcc keeps the
last value), ``conv_opt=1``
when no cuDNN 8 component libraries are found (Jittor's cuDNN loader wants
them and aborts otherwise).  ``decisions`` records each choice and why.
"""
import glob
import os
import re
import shutil
import site
import subprocess
import sys

CACHE = os.path.join(os.path.expanduser("~"), ".cache", "cten_jt", "cuda")
CUDA13_MACROS = "-DcomputeMode=ECCEnabled -DclockRate=multiProcessorCount"
CUB_COMPAT = """// written by cten_jt._cuda_compat: CUB 3 (CUDA 13) removed these functors
#pragma once
#if defined(__CUDACC__) && defined(__has_include)
#if __has_include(<cub/version.cuh>)
#include <cub/version.cuh>
#if CUB_VERSION >= 300000
#include <cuda/functional>
#include <cuda/std/functional>
namespace cub {
using Max = ::cuda::maximum<>;
using Min = ::cuda::minimum<>;
using Sum = ::cuda::std::plus<>;
}
#endif
#endif
#endif
"""


def find_nvcc():
    """The real nvcc (symlinks and one-line wrapper scripts followed), or None."""
    for cand in (os.environ.get("nvcc_path"), shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if cand and os.path.isfile(cand):
            return _unwrap(os.path.realpath(cand))
    return None


def _unwrap(path):
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return path
    if head.startswith(b"#!"):
        m = re.search(rb"exec\s+(\S+/nvcc)\b", head)
        if m and os.path.isfile(m.group(1).decode()):
            return os.path.realpath(m.group(1).decode())
    return path


def cuda_version(nvcc):
    """(major, minor) of an nvcc, from ``nvcc --version``."""
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60).stdout
    m = re.search(r"release (\d+)\.(\d+)", out)
    if not m:
        raise RuntimeError(f"cannot read the CUDA version from {nvcc} --version:\n{out}")
    return int(m.group(1)), int(m.group(2))


def wheel_dirs():
    """(include dirs, lib dirs) of the ``nvidia-*`` pip wheels importable here."""
    roots = []
    for p in list(sys.path) + site.getsitepackages() + [site.getusersitepackages()]:
        d = os.path.join(p, "nvidia")
        if os.path.isdir(d) and d not in roots:
            roots.append(d)
    includes, libs = [], []
    for root in roots:
        for dirpath, dirnames, _ in os.walk(root):
            for name in dirnames:
                full = os.path.join(dirpath, name)
                if name == "include":
                    includes.append(full)
                elif name in ("lib", "lib64"):
                    libs.append(full)
    return includes, libs


def _link_all(src_dir, dst_dir):
    """Link every entry of src_dir into dst_dir; names already there are kept (first wins)."""
    for name in os.listdir(src_dir):
        dst = os.path.join(dst_dir, name)
        if not os.path.lexists(dst):
            os.symlink(os.path.join(src_dir, name), dst)


def _unversioned_links(lib_dir):
    """``libX.so`` -> ``libX.so.N...`` where only versioned names exist."""
    for path in sorted(glob.glob(os.path.join(lib_dir, "lib*.so.*"))):
        base = os.path.join(lib_dir, os.path.basename(path).split(".so")[0] + ".so")
        if not os.path.lexists(base):
            os.symlink(os.path.realpath(path), base)


def build_home(nvcc, root=CACHE, wheels=None):
    """Lay out the CUDA home of links (see the module docstring); returns its paths."""
    toolkit = os.path.dirname(os.path.dirname(nvcc))
    version = cuda_version(nvcc)
    home = os.path.join(root, f"home-{version[0]}.{version[1]}")
    if os.path.isdir(home):
        shutil.rmtree(home)
    for sub in ("bin", "include", "lib64"):
        os.makedirs(os.path.join(home, sub))
    wrapper = os.path.join(home, "bin", "nvcc")
    with open(wrapper, "w") as f:
        f.write(f'#!/bin/sh\nexec "{nvcc}" "$@"\n')
    os.chmod(wrapper, 0o755)
    for sub in ("include", "lib64"):
        real = os.path.join(toolkit, sub)
        if os.path.isdir(real):
            _link_all(real, os.path.join(home, sub))
    for name in ("nvvm", "targets", "lib"):
        if os.path.isdir(os.path.join(toolkit, name)):
            os.symlink(os.path.join(toolkit, name), os.path.join(home, name))
    includes, libs = wheels if wheels is not None else wheel_dirs()
    for d in includes:
        _link_all(d, os.path.join(home, "include"))
    for d in libs:
        _link_all(d, os.path.join(home, "lib64"))
    _unversioned_links(os.path.join(home, "lib64"))
    cub_compat = os.path.join(home, "cub_compat.h")
    with open(cub_compat, "w") as f:
        f.write(CUB_COMPAT)
    return {"home": home, "nvcc": wrapper, "version": version, "cub_compat": cub_compat}


def has_cudnn8_components(lib_dir):
    return os.path.exists(os.path.join(lib_dir, "libcudnn_ops_infer.so")) or bool(
        glob.glob(os.path.join(lib_dir, "libcudnn_ops_infer.so.8*")))


def prepare(setdefault, nvcc=None, root=CACHE, wheels=None):
    """Apply the compatibility settings through ``setdefault(name, value, why)``
    (a variable the user set wins there); ``cc_flags`` is extended in place.

    Returns the layout, or None when there is nothing to do (no nvcc).
    """
    nvcc = nvcc or find_nvcc()
    if nvcc is None:
        return None
    layout = build_home(nvcc, root, wheels)
    setdefault("nvcc_path", layout["nvcc"], f"CUDA {layout['version'][0]}.{layout['version'][1]} "
               f"toolkit and nvidia wheels linked into {layout['home']}")
    if layout["version"] >= (13, 0):
        flags = os.environ.get("cc_flags", "")
        if CUDA13_MACROS not in flags:
            os.environ["cc_flags"] = f"{flags} {CUDA13_MACROS}".strip()
        setdefault("NVCC_APPEND_FLAGS", f"-std=c++17 -include {layout['cub_compat']}",
                   "CUDA 13's CUB and Thrust need C++17; cub::Max/Min/Sum restored")
    if not has_cudnn8_components(os.path.join(layout["home"], "lib64")):
        setdefault("conv_opt", "1", "no cuDNN 8 component libraries: Jittor's cuDNN loader would abort")
    return layout
