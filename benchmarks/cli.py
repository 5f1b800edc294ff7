"""cten-bench frameworks|scaling|memory|kernels|training|parity|bank|data|epoch|predict|precision|flops|check|layers [...]: every benchmark under one command.

Each is also ``python -m benchmarks.<module>``; results go to ``benchmarks/results/``.
"""
import sys

from cten_common.cli import dispatch

TOOLS = {
    "frameworks": ("benchmarks.compare_frameworks:main", "Jittor against PyTorch: steps, epochs, memory"),
    "scaling": ("benchmarks.scaling:main", "time and peak memory as the segments and the batch grow, both frameworks"),
    "memory": ("benchmarks.memory_levers:main", "Jittor's memory levers against PyTorch's peak RSS"),
    "kernels": ("benchmarks.bench_kernels:main", "fused kernels against composed operators"),
    "training": ("benchmarks.compare_training:main", "the same training run in both frameworks"),
    "parity": ("benchmarks.training_parity:main", "the training-parity study: both frameworks over seeds"),
    "bank": ("benchmarks.compare_bank:main", "training from a feature bank against end to end"),
    "data": ("benchmarks.bench_data:main", "data readers: frame folder, store, mp4, filterbank"),
    "epoch": ("benchmarks.bench_epoch:main", "one real-length epoch: train and predict"),
    "predict": ("benchmarks.bench_predict:main", "cten-predict over a collection of real-length videos"),
    "precision": ("benchmarks.bench_precision:main", "bf16 against fp32 in each framework"),
    "flops": ("benchmarks.flops:main", "multiply-adds of CTEN from its config; --peak: the machine's GFLOP/s"),
    "check": ("benchmarks.bench_check:main", "cten-check-data on a long data set: how long it takes"),
    "layers": ("benchmarks.layer_profile:main", "the 3D ResNet by stage and layer kind: Jittor against OpenVINO"),
}


def main(argv=None):
    return dispatch("cten-bench", "Run one of CTEN's benchmarks.", TOOLS, argv)


if __name__ == "__main__":
    sys.exit(main())
