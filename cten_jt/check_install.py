"""cten-check-install: compile Jittor once and report the environment.

Run by scripts/setup.sh (as ``python -m cten_jt.check_install``); fails (exit 1) when the installed set cannot work,
e.g. numpy 2 under Jittor 1.3.11, which silently corrupts ``jt.array``.
"""
import argparse
import sys


def main(argv=None):
    argparse.ArgumentParser(prog="cten-check-install", description=__doc__.split("\n\n")[0]).parse_args(argv)
    import numpy as np

    problems = []
    if int(np.__version__.split(".")[0]) >= 2:
        problems.append(f"numpy {np.__version__} is installed; Jittor 1.3.11 needs numpy<2 "
                        "(jt.array returns garbage with numpy 2)")
    import cten_jt  # noqa: F401  (configures and imports Jittor)
    import jittor as jt
    from jittor import compile_extern

    from cten_jt import _environment

    print(f"jittor {jt.__version__}, numpy {np.__version__}, python {sys.version.split()[0]}")
    for name, (value, why) in _environment.decisions.items():
        print(f"  {name}={value!r}: {why}")
    print(f"  CUDA in use: {bool(jt.flags.use_cuda)}; oneDNN ops: "
          f"{'yes' if compile_extern.mkl_ops is not None else 'no'}")
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    got = (jt.array(x) @ jt.array(x.T)).numpy()
    if not np.allclose(got, x @ x.T):
        problems.append("a 3x4 matmul in Jittor gave a wrong result")
    if not jt.flags.use_cuda:
        from cten_jt.kernels import frozen_resnet
        for precision in ("fp32", "bf16"):
            for train in (False, True):
                info = frozen_resnet.support(precision, train)
                where = f"  frozen backbone program, {precision} {info['mode']}: "
                if info["applies"]:
                    chosen = "forced, CTEN_FROZEN_LAYOUT" if info["forced"] else "oneDNN's choice here"
                    print(where + f"yes, layout {info['layout']} ({chosen}), kernels {', '.join(info['kernels'])}"
                          + (f"; {info['why']}" if info["why"] else ""))
                else:
                    print(where + f"no: {info['why']}")
    try:
        import torch
        print(f"torch {torch.__version__} (reference)")
    except ImportError:
        print("torch not installed: the reference and the parity tests need pip install -e '.[torch]'")
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
