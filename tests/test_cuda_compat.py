"""The CUDA compatibility layer chooses the right settings for CUDA 12 and 13
toolkits, with and without cuDNN 8, on fake toolkits; and its CUB header
works with this machine's real nvcc (no GPU needed)."""
import os
import subprocess

import pytest

from cten_jt import _cuda_compat as cc


def _fake_toolkit(root, version, cudnn8=False):
    bin_dir = root / "cuda" / "bin"
    bin_dir.mkdir(parents=True)
    nvcc = bin_dir / "nvcc"
    nvcc.write_text(f"#!/bin/sh\necho 'Cuda compilation tools, release {version}, V{version}.1'\n")
    nvcc.chmod(0o755)
    (root / "cuda" / "include").mkdir()
    (root / "cuda" / "include" / "cuda_runtime.h").write_text("")
    (root / "cuda" / "lib64").mkdir()
    (root / "cuda" / "lib64" / "libcudart.so.13").write_text("")
    wheel = root / "site" / "nvidia" / "cu13"
    (wheel / "include").mkdir(parents=True)
    (wheel / "include" / "cublas_v2.h").write_text("")
    (wheel / "lib").mkdir()
    (wheel / "lib" / "libcublas.so.13").write_text("")
    (wheel / "lib" / "libcudnn.so.9").write_text("")
    if cudnn8:
        (wheel / "lib" / "libcudnn_ops_infer.so.8").write_text("")
    return str(nvcc), ([str(wheel / "include")], [str(wheel / "lib")])


def _prepare(tmp_path, monkeypatch, version, cudnn8=False, preset=None):
    nvcc, wheels = _fake_toolkit(tmp_path, version, cudnn8)
    monkeypatch.setenv("cc_flags", "")          # restored after the test: prepare() extends it
    chosen = {}

    def setdefault(name, value, why):
        chosen[name] = (preset or {}).get(name, value)
    layout = cc.prepare(setdefault, nvcc=nvcc, root=str(tmp_path / "cache"), wheels=wheels)
    return layout, chosen, os.environ.get("cc_flags", "")


def test_cuda13_home_links_and_settings(tmp_path, monkeypatch):
    layout, chosen, cc_flags = _prepare(tmp_path, monkeypatch, "13.0")
    home = layout["home"]
    assert layout["version"] == (13, 0)
    out = subprocess.run([os.path.join(home, "bin", "nvcc"), "--version"], capture_output=True, text=True)
    assert "release 13.0" in out.stdout                        # the wrapper runs the real nvcc
    for name in ("cuda_runtime.h", "cublas_v2.h"):
        assert os.path.exists(os.path.join(home, "include", name)), name
    for name in ("libcudart.so.13", "libcublas.so.13", "libcublas.so", "libcudnn.so"):
        assert os.path.exists(os.path.join(home, "lib64", name)), name
    assert chosen["nvcc_path"] == os.path.join(home, "bin", "nvcc")
    assert "-DcomputeMode=ECCEnabled" in cc_flags and "-DclockRate=multiProcessorCount" in cc_flags
    assert chosen["NVCC_APPEND_FLAGS"].startswith("-std=c++17 -include ")
    assert os.path.exists(layout["cub_compat"])
    assert chosen["conv_opt"] == "1"                           # cuDNN 9 only: Jittor's loader would abort


def test_cuda12_with_cudnn8_needs_none_of_it(tmp_path, monkeypatch):
    layout, chosen, cc_flags = _prepare(tmp_path, monkeypatch, "12.4", cudnn8=True)
    assert layout["version"] == (12, 4)
    assert "NVCC_APPEND_FLAGS" not in chosen and "conv_opt" not in chosen
    assert "computeMode" not in cc_flags


def test_wrapper_scripts_are_followed_to_the_real_nvcc(tmp_path):
    nvcc, _ = _fake_toolkit(tmp_path, "13.0")
    wrapper = tmp_path / "nvcc_wrapper"
    wrapper.write_text(f'#!/bin/sh\nexec {nvcc} "$@"\n')
    wrapper.chmod(0o755)
    assert cc._unwrap(str(wrapper)) == os.path.realpath(nvcc)


def test_no_nvcc_changes_nothing(monkeypatch):
    monkeypatch.setattr(cc, "find_nvcc", lambda: None)
    assert cc.prepare(lambda *a: pytest.fail("nothing should be set")) is None


REAL_NVCC = cc.find_nvcc()


@pytest.mark.skipif(REAL_NVCC is None or cc.cuda_version(REAL_NVCC) < (13, 0), reason="needs CUDA 13's nvcc")
def test_cub_compat_restores_the_functors_jittor_uses(tmp_path):
    layout = cc.build_home(REAL_NVCC, str(tmp_path / "cache"), ([], []))
    src = tmp_path / "t.cu"
    src.write_text("#include <cub/cub.cuh>\n__global__ void k(float* x) {\n"
                   "  typedef cub::BlockReduce<float, 128> R; __shared__ typename R::TempStorage s;\n"
                   "  x[0] = R(s).Reduce(x[threadIdx.x], cub::Max()) + R(s).Reduce(x[0], cub::Sum());\n}\n")
    env = dict(os.environ, NVCC_APPEND_FLAGS=f"-std=c++17 -include {layout['cub_compat']}")
    cmd = [layout["nvcc"], "-std=c++14", "-c", str(src), "-o", str(tmp_path / "t.o")]
    assert subprocess.run(cmd, env=env, capture_output=True).returncode == 0
    plain = subprocess.run([REAL_NVCC, "-std=c++17", "-c", str(src), "-o", str(tmp_path / "u.o")],
                           capture_output=True, text=True)
    assert plain.returncode != 0 and "Max" in plain.stderr     # CUB 3 without the header


def test_removed_device_properties_compile_with_the_macros(tmp_path):
    if REAL_NVCC is None or cc.cuda_version(REAL_NVCC) < (13, 0):
        pytest.skip("needs CUDA 13's nvcc")
    src = tmp_path / "p.cu"
    src.write_text("#include <cuda_runtime.h>\nint f() { cudaDeviceProp p; "
                   "return p.computeMode == cudaComputeModeProhibited ? 0 : p.clockRate; }\n")
    base = [REAL_NVCC, "-c", str(src), "-o", str(tmp_path / "p.o")]
    assert subprocess.run(base, capture_output=True).returncode != 0
    assert subprocess.run(base + cc.CUDA13_MACROS.split(), capture_output=True).returncode == 0


def test_no_gpu_here_means_cpu_only():
    from cten_jt import _environment
    if _environment.has_nvidia_gpu():
        pytest.skip("this machine has a GPU")
    assert _environment.decisions["nvcc_path"][0] == "" or "user" in _environment.decisions["nvcc_path"][1]




def test_tests_leave_cc_flags_as_they_found_them():
    # prepare() extends os.environ["cc_flags"]; a leftover changes Jittor's compile
    # cache key for every later process (seen: a probe that only recompiled)
    assert "computeMode" not in os.environ.get("cc_flags", "")


def test_the_gpu_convolution_finds_cudnn_in_the_cuda_home(tmp_path, monkeypatch):
    # the CUDA home of links (build_home) holds the cuDNN wheel's headers and an
    # unversioned libcudnn.so; cten_jt.kernels.conv uses cuDNN on the GPU only then
    from cten_jt.kernels import conv
    home = tmp_path / "home-13.0"
    (home / "bin").mkdir(parents=True)
    (home / "include").mkdir()
    (home / "lib64").mkdir()
    monkeypatch.setenv("nvcc_path", str(home / "bin" / "nvcc"))
    conv.cudnn_home.cache_clear()
    try:
        assert conv.cudnn_home() is None                      # no cuDNN: Jittor's own conv
        (home / "include" / "cudnn.h").write_text("")
        (home / "lib64" / "libcudnn.so").write_text("")
        conv.cudnn_home.cache_clear()
        assert conv.cudnn_home() == str(home)
        monkeypatch.setenv("nvcc_path", "")                   # CPU only
        conv.cudnn_home.cache_clear()
        assert conv.cudnn_home() is None
    finally:
        conv.cudnn_home.cache_clear()
