"""cten-predict's engine over an ONNX runtime (``--engine onnxruntime|openvino``): ``--weights``
an exported ``.onnx``, or a run's checkpoint (or weights with ``--config``) exported on the
fly through the PyTorch twin into a cache (``CACHE``) keyed by the files' contents."""
import hashlib
import os

import numpy as np

from cten_common.predict import Engine
from .export import export
from .onnx_file import FORMAT_VERSION, OnnxFileError
from .runtimes import RUNTIMES, OnnxModel

#: where checkpoints exported on the fly are kept (``CTEN_ONNX_CACHE`` moves it)
CACHE = os.environ.get("CTEN_ONNX_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "cten", "onnx")


def cached_export(weights, config_path=None, say=print):
    """The ONNX file of a checkpoint (or of weights with ``config_path``), exported through the
    PyTorch twin once and kept in ``CACHE`` under a name made of the files' contents."""
    digest = hashlib.sha256(FORMAT_VERSION.encode())
    for path in (weights, config_path):
        if path:
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
        digest.update(b"\0")
    out = os.path.join(CACHE, digest.hexdigest()[:32] + ".onnx")
    if not os.path.exists(out):
        os.makedirs(CACHE, exist_ok=True)
        say(f"exporting {weights} to ONNX once, into {out}")
        try:
            export(weights, out, config_path, say=say)
        except ImportError as exc:           # no PyTorch (or ONNX) where only the runtimes are installed
            raise ImportError(f"exporting {weights} on the fly needs the PyTorch twin and ONNX ({exc}): "
                              "pip install -e .[torch,deploy], or pass a model cten-export wrote") from None
    return out


class OnnxEngine(Engine):
    """cten-predict's engine over an ONNX runtime (one process: no ``mpirun``)."""

    def __init__(self, runtime):
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
        self.name = runtime

    def load(self, weights, config_path=None, precision=None):
        from cten_common.config import RunConfig
        if str(weights).endswith(".onnx"):
            if config_path:
                raise ValueError(f"{weights}: an exported model carries its configuration; drop --config")
            path = weights
        else:
            path = cached_export(weights, config_path)
        model = OnnxModel(path, self.name, precision or "fp32")
        if model.part != "model":
            raise OnnxFileError(f"{path}: holds the {model.part} alone; cten-predict needs the whole model "
                                "(cten-export --part model)")
        return model, RunConfig().updated(model.config), list(model.classes)

    def predict_batch(self, model, batch):
        inputs = {"visual": np.asarray(batch["visual"], np.float32)}     # uint8 frames: the pixels
        if "audio" in model.inputs:
            inputs["audio"] = np.asarray(batch["audio"], np.float32)
        out = model.run(inputs)
        return {"logits": out["logits"], "gamma": out["gamma"]}

    def world(self):
        size = int(os.environ.get("OMPI_COMM_WORLD_SIZE") or os.environ.get("PMI_SIZE") or 1)
        if size > 1:
            raise ValueError(f"--engine {self.name} runs in one process, not under mpirun (of {size}); "
                             "--engine jittor shards a collection across ranks")
        return 0, 1
