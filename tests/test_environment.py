"""cten_jt chooses Jittor's settings by itself; a user's own variables win."""
import os
import subprocess
import sys

import numpy as np

from cten_jt import _environment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = ("import cten_jt, jittor as jt; from jittor import compile_extern; "
         "from cten_jt import _environment as e; "
         "print(repr(e.decisions['use_mkl'][1]), compile_extern.mkl_ops is not None, "
         "int(jt.flags.use_cuda), repr(__import__('os').environ['nvcc_path']))")


def _probe(**env):
    clean = {k: v for k, v in os.environ.items()
             if k not in ("nvcc_path", "use_mkl", "use_cutt", "use_cutlass", "use_nccl", "cc_flags",
                          "NVCC_APPEND_FLAGS", "conv_opt")}
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env={**clean, **env},
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1]


def test_cpu_only_without_gpu_and_onednn_when_installed():
    line = _probe()
    why, has_mkl, use_cuda, nvcc = line.rsplit(" ", 3)[0], *line.rsplit(" ", 3)[1:]
    if not _environment.has_nvidia_gpu():
        assert nvcc == "''" and use_cuda == "0"
    if _environment.find_system_dnnl() is not None:
        assert has_mkl == "True", line       # Debian's libdnnl used, nothing downloaded
    else:
        assert has_mkl == "False" and "no oneDNN" in why, line


def test_users_own_setting_wins():
    line = _probe(use_mkl="0")
    assert "set by the user" in line and " False " in line, line


def test_installed_set_is_consistent():
    assert int(np.__version__.split(".")[0]) < 2, "Jittor 1.3.11 needs numpy<2"
    out = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def _command(args, **env):
    clean = {k: v for k, v in os.environ.items() if k not in ("log_silent", "CTEN_VERBOSE")}
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env={**clean, "PYTHONPATH": ROOT, **env},
                          capture_output=True, text=True, timeout=600)


def test_a_commands_first_line_is_its_own():
    for args in (["cten_jt.train", "--help"], ["cten_jt.predict", "--help"], ["cten_jt.evaluate", "--help"],
                 ["cten_jt.extract_features", "--help"], ["weights_convert.cli", "torch2jittor", "--help"]):
        out = _command(args)
        assert out.returncode == 0, (args, out.stderr[-2000:])
        first = (out.stderr + out.stdout).splitlines()[0]
        assert first.startswith("usage:"), (args, first)


def test_jittor_lines_on_request():
    out = _command(["cten_jt.predict", "--help"], CTEN_VERBOSE="1")
    assert out.returncode == 0 and "Jittor(1.3.11" in out.stdout + out.stderr


def test_a_first_compile_is_announced_once(tmp_path, monkeypatch, capsys):
    import io
    monkeypatch.setenv("log_silent", "1")
    assert _environment.core_is_compiled()                   # this machine's import compiled it
    monkeypatch.setenv("JITTOR_HOME", str(tmp_path))         # an empty cache: a first compile
    stream = io.StringIO()
    assert _environment.announce_core_compile(stream) and "compiling Jittor's core once" in stream.getvalue()
    monkeypatch.setenv("log_silent", "0")                    # Jittor's own progress is shown instead
    assert not _environment.announce_core_compile(io.StringIO())


_HEAP_CHECK = """
import resource, sys
import numpy as np
import cten_jt
from cten_jt import _environment as e
print(e.decisions["malloc"][0])
if e.decisions["malloc"][0] != "heap":
    raise SystemExit(0)
block = np.full(200 * 2**20 // 8, 1.0)        # 200 MB, touched, then freed
del block
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
again = np.full(200 * 2**20 // 8, 2.0)         # the same size again: the freed pages, reused
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _heap(**env):
    out = subprocess.run([sys.executable, "-c", _HEAP_CHECK], cwd=ROOT, capture_output=True, text=True,
                         env={**{k: v for k, v in os.environ.items() if k != "CTEN_HEAP"}, **env}, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.split()


def test_large_blocks_are_reused_not_faulted_in_again_with_the_heap_switch():
    """glibc by default unmaps a freed block above its mmap threshold, and the next one of
    that size is 51200 fresh 4 kB pages (200 MB) faulted in and zeroed.  With
    ``CTEN_HEAP=reuse`` the second block reuses the first's pages: fewer than a quarter of
    them fault (transparent huge pages only lower the count).  The default leaves glibc as
    it is."""
    assert _heap() == ["system"]
    words = _heap(CTEN_HEAP="reuse")
    if words[0] != "heap":
        import pytest
        pytest.skip(f"no glibc mallopt here ({words[0]})")
    assert int(words[1]) < 51200 // 4, f"{words[1]} page faults for a 200 MB block allocated again"
