"""The CUDA sources of the kernels compile with nvcc (no GPU needed): as Jittor
compiles them (C++14 on CUDA 12, C++17 on CUDA 13) and for the GPUs we target.
Running them is tests/kernels/test_cuda_kernels.py, on a machine with a GPU."""
import os
import shutil
import subprocess

import pytest

from cten_jt.kernels import _CSRC

NVCC = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if os.path.exists("/usr/local/cuda/bin/nvcc")
                                else None)
pytestmark = pytest.mark.skipif(NVCC is None, reason="no nvcc on this machine")

DRIVER = r'''
#include "sdpa_cuda.cuh"
#include "erasing_cuda.cuh"
// instantiate every host launcher the jt.code ops call
void launch_all(float* f, int* i, double* d, unsigned char* u8) {
    cten_sdpa_forward_cuda(f, f, f, 1, 2, 3, 4, 5, 0.5f, f, f);
    cten_sdpa_backward_dq_cuda(f, f, f, f, f, 1, 2, 3, 4, 5, 0.5f, f);
    cten_sdpa_backward_dk_cuda(f, f, f, f, f, 1, 2, 3, 4, 5, 0.5f, f);
    cten_sdpa_backward_dv_cuda(f, f, 1, 2, 3, 5, f);
    cten_sdpa_forward_cuda(f, f, f, 1, 2, 3, 4, 5, 0.5f, f, f, 1);          // the bf16 variants
    cten_sdpa_backward_dq_cuda(f, f, f, f, f, 1, 2, 3, 4, 5, 0.5f, f, 1);
    cten_sdpa_backward_dk_cuda(f, f, f, f, f, 1, 2, 3, 4, 5, 0.5f, f, 1);
    cten_sdpa_backward_dv_cuda(f, f, 1, 2, 3, 5, f, 1);
    cten_erase_view_cuda(d, i, d, 1, 2, 3, 0.7, 0, i);
    cten_erase_view_cuda(d, i, d, 1, 2, 3, 0.7, 1, i);
}
'''


def _supported_archs():
    out = subprocess.run([NVCC, "--list-gpu-arch"], capture_output=True, text=True).stdout.split()
    return [a for a in ("compute_80", "compute_90") if a in out]


@pytest.mark.parametrize("std", ["c++14", "c++17"])
def test_kernels_compile_with_nvcc(tmp_path, std):
    archs = _supported_archs()
    assert archs, "nvcc supports neither sm_80 nor sm_90"
    src = tmp_path / "driver.cu"
    src.write_text(DRIVER)
    cmd = [NVCC, f"-std={std}", "-I", _CSRC, "--use_fast_math", "-Werror", "all-warnings",
           "-c", str(src), "-o", str(tmp_path / "driver.o")]
    for arch in archs:
        cmd += ["-gencode", f"arch={arch},code=sm_{arch.split('_')[1]}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f"nvcc failed ({' '.join(cmd)}):\n{proc.stderr[-4000:]}"
    assert (tmp_path / "driver.o").stat().st_size > 0


def _nvrtc():
    """NVRTC's library (ctypes): NVRTC_LIB, or what scripts/setup.sh takes from the
    nvidia-cuda-nvrtc wheel into ~/.cache/cten_jt/nvrtc-cuN where nvcc exists; else None."""
    import ctypes
    import glob
    paths = ([os.environ["NVRTC_LIB"]] if os.environ.get("NVRTC_LIB") else []) + sorted(
        glob.glob(os.path.expanduser("~/.cache/cten_jt/nvrtc-cu*/libnvrtc.so.*[0-9]")))
    for path in paths:
        # NVRTC opens its builtins library by name at the first compile: loaded first, it is found
        for builtins in glob.glob(os.path.join(os.path.dirname(path), "libnvrtc-builtins.so.*")):
            ctypes.CDLL(builtins, mode=ctypes.RTLD_GLOBAL)
        return ctypes.CDLL(path)
    return None


def nvrtc_compile(lib, code, options):
    """(ok, log) of NVRTC compiling ``code`` with ``options``, as CuPy's RawModule does."""
    import ctypes
    prog = ctypes.c_void_p()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), code.encode(), b"kernel.cu", 0, None, None) == 0
    opts = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
    rc = lib.nvrtcCompileProgram(prog, len(options), opts)
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value + 1)
    lib.nvrtcGetProgramLog(prog, log)
    lib.nvrtcDestroyProgram(ctypes.byref(prog))
    return rc == 0, log.value.decode(errors="replace")


@pytest.mark.parametrize("name", ["sdpa_cuda.cuh", "erasing_cuda.cuh"])
def test_cupy_kernels_compile_with_nvrtc(name):
    """NVRTC, which CuPy compiles these with on a GPU machine (tests/kernels/test_cuda_kernels.py),
    has no C++ standard headers: rounding.h's <cstdint> stopped every CuPy kernel test on
    the H200.  Compiled here as CuPy does, without a GPU."""
    lib = _nvrtc()
    if lib is None:
        pytest.skip("no NVRTC library (bash scripts/setup.sh takes it from the nvidia-cuda-nvrtc wheel)")
    options = ["-std=c++17", f"-I{_CSRC}", "--gpu-architecture=compute_90"]
    ok, log = nvrtc_compile(lib, "this is not CUDA;\n", options)
    assert not ok and "error" in log, "NVRTC accepted nonsense: the check would prove nothing"
    with open(os.path.join(_CSRC, name)) as f:
        ok, log = nvrtc_compile(lib, f.read(), options)
    assert ok, f"NVRTC cannot compile {name}:\n{log[-4000:]}"


def test_cpu_sources_compile_standalone(tmp_path):
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("no g++")
    src = tmp_path / "driver.cc"
    src.write_text('#include "sdpa_cpu.h"\n#include "erasing_cpu.h"\n'
                   'void erase(const double* d, const int32_t* n, int32_t* i) {\n'
                   '    cten_erase_view_cpu(d, n, d, 1, 2, 3, 0.7, 0, i);\n}\n')
    proc = subprocess.run([gxx, "-std=c++14", "-Wall", "-Wextra", "-Werror", "-I", _CSRC, "-c", str(src),
                           "-o", str(tmp_path / "driver.o")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]


def test_no_include_inside_a_conditional():
    # Jittor's jt.code inserts its own #defines (in0_type, ...) after the last #include
    # of the header; one inside a branch that nvcc skips hid them (seen on the GPU)
    from cten_jt.kernels import kernel_source
    for name in sorted(os.listdir(_CSRC)):
        depth = 0
        for lineno, line in enumerate(kernel_source(name).splitlines(), 1):
            s = line.strip()
            if s.startswith("#if"):
                depth += 1
            elif s.startswith("#endif"):
                depth -= 1
            elif s.startswith("#include"):
                assert depth == 0, f"{name} (inlined) line {lineno}: #include inside #if"


def _cudnn_dirs():
    """(include, lib) of cuDNN: CUDNN_HOME, the nvidia-cudnn pip wheel where installed, or
    what scripts/setup.sh takes from that wheel into ~/.cache/cten_jt/cudnn-cuN where nvcc exists."""
    import glob
    roots = [os.environ["CUDNN_HOME"]] if os.environ.get("CUDNN_HOME") else []
    try:
        import nvidia.cudnn
        roots += list(nvidia.cudnn.__path__)
    except ImportError:
        pass
    roots += sorted(glob.glob(os.path.expanduser("~/.cache/cten_jt/cudnn-cu*")))
    for root in roots:
        inc, lib = os.path.join(root, "include"), os.path.join(root, "lib")
        if os.path.exists(os.path.join(inc, "cudnn.h")) and os.path.isdir(lib):
            return inc, lib
    return None


CUDNN_DRIVER = r'''
#include "conv_cudnn.cuh"
int main() {   // not run: linking proves every cuDNN call exists in the library
    int s[19] = {3, 1, 2, 3, 4, 4, 5, 3, 3, 3, 1, 1, 1, 1, 1, 1, 3, 4, 4};
    float *x = 0, *w = 0, *y = 0;
    for (int prec = 0; prec < 3; prec++) {     // float32, bfloat16, float16 (tensor cores)
        cten_conv_forward_cudnn(x, w, y, s, prec, false);
        cten_conv_backward_data_cudnn(y, w, x, s, prec, false);
        cten_conv_backward_weights_cudnn(x, y, w, s, prec, true);
    }
    return 0;
}
'''


@pytest.mark.parametrize("std", ["c++14", "c++17"])
def test_cudnn_conv_compiles_and_links_against_the_cudnn_wheel(tmp_path, std):
    dirs = _cudnn_dirs()
    if dirs is None:
        pytest.skip("no cuDNN headers (bash scripts/setup.sh takes them from the nvidia-cudnn wheel)")
    inc, lib = dirs
    libs = sorted(n for n in os.listdir(lib) if n.startswith("libcudnn.so"))
    assert libs, f"no libcudnn.so* in {lib}"
    src = tmp_path / "conv.cu"
    src.write_text(CUDNN_DRIVER)
    cmd = [NVCC, f"-std={std}", "-I", _CSRC, "-I", inc, "-Werror", "all-warnings", str(src),
           "-o", str(tmp_path / "conv"), "-L", lib, f"-l:{libs[0]}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f"nvcc failed ({' '.join(cmd)}):\n{proc.stderr[-4000:]}"
