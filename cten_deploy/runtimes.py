"""ONNX Runtime and OpenVINO running a model cten-export wrote: numpy in, numpy out, no
Jittor or PyTorch.

``OnnxModel(path, runtime, precision, threads)``: ``runtime`` "onnxruntime" (float32) or
"openvino" (float32, or bf16 through its ``INFERENCE_PRECISION_HINT`` where the CPU has
bf16 units); ``run({input: array}) -> {output: array}``.  cten-predict's engine over them is
``cten_deploy.engine``.
"""
import numpy as np

from .onnx_file import cten_metadata

RUNTIMES = ("onnxruntime", "openvino")


class OnnxModel:
    """An exported CTEN (or its backbone) in one runtime; ``part``, ``config`` (the run
    configuration dict) and ``classes`` from the file's metadata."""

    def __init__(self, path, runtime, precision="fp32", threads=None):
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
        self.path, self.runtime, self.precision = str(path), runtime, precision
        self.part, self.config, self.classes = cten_metadata(self.path)
        if runtime == "onnxruntime":
            self._open_onnxruntime(threads)
        else:
            self._open_openvino(threads)

    def _open_onnxruntime(self, threads):
        if self.precision != "fp32":
            raise ValueError(f"onnxruntime runs this model in fp32 only, not {self.precision} "
                             "(--engine openvino runs bf16)")
        try:
            import onnxruntime as ort
        except ImportError:
            raise ImportError("--engine onnxruntime needs ONNX Runtime: pip install -e .[deploy] "
                              "(or pip install onnxruntime)") from None
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        options.log_severity_level = 3
        self._session = ort.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self._session.get_inputs()]
        self.outputs = [o.name for o in self._session.get_outputs()]

    def _open_openvino(self, threads):
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"openvino runs this model in fp32 or bf16, not {self.precision}")
        try:
            import openvino as ov
        except ImportError:
            raise ImportError("--engine openvino needs OpenVINO: pip install -e .[deploy] "
                              "(or pip install openvino)") from None
        core = ov.Core()
        if self.precision == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            raise ValueError("openvino: this CPU has no bf16 units (OPTIMIZATION_CAPABILITIES lacks BF16); "
                             "run --precision fp32")
        settings = {"INFERENCE_PRECISION_HINT": "bf16" if self.precision == "bf16" else "f32"}
        if threads:
            settings["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            self._compiled = core.compile_model(self.path, "CPU", settings)
        except RuntimeError as exc:
            if self.precision != "bf16":
                raise
            # the CPU reports bf16 units but OpenVINO's oneDNN may not use them (seen with
            # ONEDNN_MAX_CPU_ISA=AVX2: no bf16 pooling kernel), a refusal like the one above
            reason = next((x for x in str(exc).splitlines() if "Supported" in x or "not supported" in x),
                          str(exc).splitlines()[-1] if str(exc) else type(exc).__name__)
            raise ValueError(f"openvino cannot compile {self.path} in bf16 on this CPU ({reason.strip()}); "
                             "run --precision fp32") from None
        self._request = self._compiled.create_infer_request()
        self.inputs = [i.get_any_name() for i in self._compiled.inputs]
        self.outputs = [o.get_any_name() for o in self._compiled.outputs]

    def run(self, inputs):
        """``{output name: float32 array}`` for ``{input name: array}`` (every input the file has)."""
        missing = [n for n in self.inputs if n not in inputs]
        if missing:
            raise ValueError(f"{self.path}: needs inputs {self.inputs}, missing {missing}")
        feed = {n: np.ascontiguousarray(inputs[n], np.float32) for n in self.inputs}
        if self.runtime == "onnxruntime":
            return dict(zip(self.outputs, self._session.run(self.outputs, feed)))
        result = self._request.infer(feed)
        return {name: np.array(result[self._compiled.output(name)]) for name in self.outputs}
