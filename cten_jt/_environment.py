"""Jittor settings, chosen once before Jittor is imported.

Everything here is a default: a variable that the user already set in the
environment is left as it is.  The choices:

* ``nvcc_path``: Jittor looks for CUDA whenever ``nvcc`` is on the PATH and
  fails to import when the CUDA runtime or the GPU is missing.  Without a
  visible NVIDIA device we set it to the empty string, which means "CPU only".
  With a GPU, ``cten_jt._cuda_compat`` lays out a CUDA home that works with
  Jittor 1.3.11 on CUDA 12/13 toolkits and cuBLAS/cuDNN from pip wheels.
* ``use_cutt``, ``use_cutlass``, ``use_nccl``: Jittor downloads these at first
  CUDA use.  We never touch the network, so they default to off.
* ``use_mkl`` (oneDNN): Jittor downloads oneDNN 2.2 into
  ``~/.cache/jittor/mkl`` at first use.  Where Debian's ``libdnnl-dev`` is
  installed we lay out a folder of links to it where Jittor's installer looks,
  so that Jittor finds it and downloads nothing; where no oneDNN is available
  we turn it off (Jittor then uses its own, slower, CPU kernels).
* ``log_silent``: Jittor prints info lines (``[i ... Load cc_path ...]``, ``Found
  mpicc``, compile progress) before a command's own output.  They are hidden
  unless ``CTEN_VERBOSE=1``; errors still raise with their messages.  Instead, a
  first import that has to compile Jittor's core says so in one line
  (``announce_core_compile``).
"""
import glob
import json
import os
import platform
import subprocess
from pathlib import Path

from . import switches

# the folder name Jittor's installer checks (compile_extern.install_mkl)
_JITTOR_DNNL_DIRNAME = "dnnl_lnx_2.2.0_cpu_gomp"
_SYSTEM_DNNL_HEADERS = ("dnnl.h", "dnnl.hpp", "dnnl_config.h", "dnnl_debug.h",
                        "dnnl_types.h", "dnnl_version.h", "oneapi")

# what configure() decided, for reports and tests
decisions = {}


def _default(name, value, why):
    if name in os.environ:
        decisions[name] = (os.environ[name], "set by the user")
    else:
        os.environ[name] = value
        decisions[name] = (value, why)


def has_nvidia_gpu():
    """True when the kernel driver exposes at least one NVIDIA device."""
    gpus = "/proc/driver/nvidia/gpus"
    if os.path.isdir(gpus) and os.listdir(gpus):
        return True
    return bool(glob.glob("/dev/nvidia[0-9]*"))


def jittor_home():
    """The folder under which Jittor keeps ``.cache/jittor`` (as jittor_utils.home)."""
    if "JITTOR_HOME" in os.environ:
        return os.environ["JITTOR_HOME"]
    cfg = Path.home() / ".cache" / "jittor" / "config.json"
    try:
        return json.loads(cfg.read_text()).get("JITTOR_HOME", str(Path.home()))
    except (OSError, ValueError):
        return str(Path.home())


def find_system_dnnl():
    """(include_dir, library_path) of an installed oneDNN 2.x, or None."""
    arch = platform.machine()
    lib_dirs = [f"/usr/lib/{arch}-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib"]
    for inc in ("/usr/include", "/usr/local/include"):
        if not os.path.isfile(os.path.join(inc, "dnnl.hpp")):
            continue
        for d in lib_dirs:
            libs = sorted(glob.glob(os.path.join(d, "libdnnl.so*")))
            if libs:
                return inc, libs[0]
    return None


def _jittor_dnnl_dir():
    return os.path.join(jittor_home(), ".cache", "jittor", "mkl", _JITTOR_DNNL_DIRNAME)


def _link(src, dst):
    try:
        os.symlink(src, dst)
    except FileExistsError:
        pass


def install_dnnl_links(include_dir, library):
    """Lay out links to a system oneDNN in the folder Jittor's installer checks."""
    root = _jittor_dnnl_dir()
    os.makedirs(os.path.join(root, "include"), exist_ok=True)
    os.makedirs(os.path.join(root, "lib"), exist_ok=True)
    for name in _SYSTEM_DNNL_HEADERS:
        src = os.path.join(include_dir, name)
        if os.path.exists(src):
            _link(src, os.path.join(root, "include", name))
    _link(library, os.path.join(root, "lib", "libmkldnn.so"))
    return root


def _choose_dnnl():
    if "use_mkl" in os.environ:
        decisions["use_mkl"] = (os.environ["use_mkl"], "set by the user")
        return
    if platform.system() != "Linux":
        decisions["use_mkl"] = ("(Jittor's default)", "not Linux")
        return
    if os.path.isfile(os.path.join(_jittor_dnnl_dir(), "lib", "libmkldnn.so")):
        _default("use_mkl", "1", "oneDNN found in Jittor's cache")
        return
    found = find_system_dnnl()
    if found is None:
        _default("use_mkl", "0", "no oneDNN installed (apt-get install libdnnl-dev); "
                 "Jittor would try to download it")
        return
    try:
        install_dnnl_links(*found)
    except OSError as exc:
        _default("use_mkl", "0", f"could not link the system oneDNN: {exc}")
        return
    _default("use_mkl", "1", f"system oneDNN {found[1]} linked into Jittor's cache")


def configure():
    """Set Jittor's environment variables; must run before ``import jittor``."""
    if decisions:
        return decisions
    if has_nvidia_gpu():
        if "nvcc_path" in os.environ or not switches.cuda_compat_enabled():
            decisions["nvcc_path"] = (os.environ.get("nvcc_path", "(auto)"), "NVIDIA GPU present; "
                                      "CUDA compatibility layer not applied (nvcc_path or CTEN_CUDA_COMPAT=0 set)")
        else:
            from . import _cuda_compat
            try:
                layout = _cuda_compat.prepare(_default)
            except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                layout = None
                decisions["cuda_compat"] = (None, f"failed: {exc}")
            if layout is None:
                decisions.setdefault("nvcc_path", (os.environ.get("nvcc_path", "(auto)"), "NVIDIA GPU present"))
    else:
        _default("nvcc_path", "", "no NVIDIA GPU visible: CPU only")
    for name in ("use_cutt", "use_cutlass", "use_nccl"):
        _default(name, "0", "would be downloaded at first CUDA use")
    _choose_dnnl()
    _heap_policy()
    if switches.verbose():
        decisions["log_silent"] = (os.environ.get("log_silent", "0"), "CTEN_VERBOSE: Jittor's log lines shown")
    else:
        _default("log_silent", "1", "Jittor's info lines hidden (CTEN_VERBOSE=1 shows them)")
    return decisions


#: glibc's mallopt parameters (malloc.h) and the value both get: blocks up to 1 GiB come from
#: the heap, and up to 1 GiB of free memory may stay at its top
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, HEAP_THRESHOLD = -1, -3, 1 << 30


def _heap_policy():
    """``CTEN_HEAP=reuse``: large blocks from glibc's heap, and freed ones kept there for the
    next; the default, ``system``, leaves glibc as it is.

    glibc serves a block above 32 MB (above 128 kB until one is freed) with its own mmap and
    unmaps it when freed, so the next block of that size starts as fresh pages, each faulted
    in and zeroed by the kernel.  At the paper's shape that is the stem's and layer 1's
    activations, ~150 thousand pages (600 MB) a call of the frozen backbone.  With ``reuse``
    the forward in train mode took 0.54 of PyTorch's time instead of 0.64, the training step
    0.62 instead of 0.64, but the peak resident set grew by ~360 MB (1.03 of PyTorch's instead
    of 0.87; docs/speed.md), so it is not the default.  The step's end still gives the free
    heap back (``device.release_free_memory``, ``malloc_trim``).  Without glibc (musl,
    macOS) nothing is changed."""
    if switches.heap_mode() == "system":
        decisions["malloc"] = ("system", "glibc's defaults (CTEN_HEAP=reuse: large blocks reused from the heap)")
        return
    import ctypes
    import ctypes.util
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        decisions["malloc"] = ("system", "CTEN_HEAP=reuse, but not glibc: no mallopt")
        return
    done = [mallopt(M_MMAP_THRESHOLD, HEAP_THRESHOLD), mallopt(M_TRIM_THRESHOLD, HEAP_THRESHOLD)]
    decisions["malloc"] = ("heap", "CTEN_HEAP=reuse: large blocks from the heap, reused once freed") \
        if all(done) else ("system", f"CTEN_HEAP=reuse, but glibc refused mallopt ({done})")


def core_is_compiled():
    """Whether Jittor's cache holds a compiled core for this Jittor and Python (any build
    folder: one per compiler settings, e.g. one per virtualenv path)."""
    try:
        from importlib.metadata import version
        jittor_version = ".".join(version("jittor").split(".")[:3])
    except Exception:  # noqa: BLE001 - an unknown version: look for any
        jittor_version = "*"
    py = "py{}.{}.{}".format(*platform.python_version_tuple())
    pattern = os.path.join(jittor_home(), ".cache", "jittor", f"jt{jittor_version}", "*", py,
                           "**", "jittor_core*.so")
    return bool(glob.glob(pattern, recursive=True))


def announce_core_compile(stream):
    """One line before a first import that compiles Jittor's core (silent otherwise)."""
    if os.environ.get("log_silent", "0") != "0" and not core_is_compiled():
        print("cten_jt: compiling Jittor's core once (about 2-3 minutes on 2 cores; cached in "
              "~/.cache/jittor) ...", file=stream, flush=True)
        return True
    return False
