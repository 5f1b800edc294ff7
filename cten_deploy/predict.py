"""cten-predict with a choice of engine (``--engine jittor|onnxruntime|openvino``): the
command of ``cten_common.predict``; Jittor is imported only when it runs the model."""
import sys

from cten_common.predict import main as _main


def _jittor():
    try:
        from cten_jt.predict import ENGINE
    except ImportError as exc:          # a deployment installed without Jittor
        raise ImportError(f"--engine jittor (the default) needs Jittor ({exc}): pip install -e . ; or run an "
                          "exported model with --engine onnxruntime|openvino (docs/deploy.md)") from None
    return ENGINE


def _runtime(name):
    def make():
        from .engine import OnnxEngine
        return OnnxEngine(name)
    return make


ENGINES = {"jittor": _jittor, "onnxruntime": _runtime("onnxruntime"), "openvino": _runtime("openvino")}


def main(argv=None):
    return _main(argv, ENGINES)


if __name__ == "__main__":
    sys.exit(main())
