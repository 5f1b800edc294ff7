"""Where Jittor runs: ``train.device`` = auto (the GPU when Jittor found CUDA), cpu or cuda."""
import jittor as jt

from cten_common.config import DEVICES


def set_device(name="auto"):
    """Switch Jittor to ``name`` and return the device in use, "cpu" or "cuda"."""
    if name not in DEVICES:
        raise ValueError(f"train.device must be one of {DEVICES}, got {name!r}")
    if name == "cuda" and not jt.has_cuda:
        raise RuntimeError("train.device is 'cuda' but Jittor found no CUDA (no GPU, or no toolkit: "
                           "cten-check-install says which)")
    use = name == "cuda" or (name == "auto" and bool(jt.has_cuda))
    jt.flags.use_cuda = int(use)
    return "cuda" if use else "cpu"


def release_free_memory():
    """Give back to the system what the allocators hold unused: Jittor's cached free blocks
    (``jt.gc()``) and, with glibc, its free heap pages (``malloc_trim``).

    The training step calls it at its end.  Between steps Jittor's caching allocator and
    glibc's heap keep what the step freed in pieces that the next step's blocks only partly
    reuse; at the paper's shape the resident set climbed ~150 MB a step (the peak of the
    third step 2.4 GB against 2.1 GB with this).  The next step faults those pages in again
    (with ``CTEN_HEAP=reuse``, 130-175 thousand a step at that shape; glibc unmaps its
    large blocks anyway by default, ``cten_jt._environment._heap_policy``)."""
    jt.gc()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _malloc_trim():
    global _TRIM
    if _TRIM is False:
        import ctypes
        import ctypes.util
        try:
            _TRIM = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):          # not glibc (musl, macOS): nothing to trim
            _TRIM = None
    return _TRIM


_TRIM = False
