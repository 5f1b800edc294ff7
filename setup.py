from setuptools import find_packages, setup

# one command per tool; each is also ``python -m <module>`` (see the README)
CONSOLE_SCRIPTS = [
    "cten-train = cten_jt.train:main",
    "cten-train-torch = cten_torch_ref.train:main",       # the same training in PyTorch (the reference)
    "cten-evaluate = cten_jt.evaluate:main",
    "cten-predict = cten_deploy.predict:main",            # --engine jittor (default) | onnxruntime | openvino
    "cten-export = cten_deploy.export:main",              # a trained CTEN as ONNX, through the PyTorch twin
    "cten-extract-features = cten_jt.extract_features:main",
    "cten-main-job = cten_jt.main_job:main",
    "cten-check-install = cten_jt.check_install:main",
    "cten-parity-report = cten_compare.parity_report:main",
    "cten-precision-report = cten_compare.precision_report:main",   # every precision, both frameworks, vs float64
    "cten-convert = weights_convert.cli:main",            # cten-convert torch2jittor|jittor2torch ...
    "cten-check-data = cten_common.data.check:main",
    "cten-prepare-dataset = cten_common.data.prepare:main",
    "cten-make-synthetic = cten_common.data.make_synthetic:main",
    "cten-bench = benchmarks.cli:main",                   # cten-bench frameworks|kernels|training|...|check
]

setup(
    name="cten-jittor",
    version="0.1.0",
    description="CTEN (CVPR 2023) video emotion recognition in Jittor, with a PyTorch reference",
    python_requires=">=3.9",
    packages=find_packages(include=["cten_jt*", "cten_torch_ref*", "cten_common*",
                                    "weights_convert*", "cten_compare*", "cten_deploy*", "benchmarks"]),
    package_data={"cten_jt.kernels": ["csrc/*.h", "csrc/*.cuh"]},
    install_requires=[
        "jittor==1.3.11",
        "numpy>=1.23,<2",          # Jittor 1.3.11 silently corrupts arrays with numpy 2
        "pyyaml>=6",
        "tqdm>=4.60",
        "opencv-python-headless>=4.8,<4.12",   # 4.12+ and 5.x require numpy 2
        "av>=12",                  # PyAV (own FFmpeg): video reads that seek to the frames a step
                                   # uses instead of decoding whole files; tested with 18.1
        "librosa>=0.10",
        "soundfile>=0.12",
        "scikit-learn>=1.2",
        "matplotlib>=3.6",
        "safetensors>=0.4",        # pickle-free weights and checkpoints, numpy API, no torch needed
    ],
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
    extras_require={
        "torch": ["torch==2.13.0"],          # the reference; a CPU build is enough
        "test": ["pytest>=7"],
        # ONNX export and the two CPU runtimes (cten-export, cten-predict --engine): they resolve
        # with numpy<2 (ml_dtypes 0.5.x; 0.6 and later need numpy 2); docs/deploy.md
        "deploy": ["onnx>=1.16", "onnxruntime>=1.18", "openvino>=2024.4", "ml_dtypes>=0.4,<0.6"],
    },
)
