"""python -m cten_jt.predict VIDEO [--weights W] [--config CONFIG] [--plot OUT.png] [--json OUT.json]
   python -m cten_jt.predict INPUT [INPUT ...] --out RESULTS.jsonl [--plots DIR] [--batch B] [--workers N]

cten-predict with Jittor running the model (``cten_common.predict`` is the command, written
once over an engine; this module is Jittor's engine).  ``cten-predict --engine`` also offers
the ONNX runtimes (``cten_deploy``).
"""
import sys

import cten_jt  # noqa: F401  (Jittor settings first)
from cten_common.predict import (DEFAULT_WEIGHTS, Engine, annotation_entry, main as _main,  # noqa: F401
                                 plot_prediction, thumbnails)
from cten_common.predict import predict_video as _predict_video


class JittorEngine(Engine):
    """The model in Jittor (``cten_common.inference``: the file read once), on the device of
    its configuration; under ``mpirun`` the ranks of ``cten_jt.distributed``."""

    name = "jittor"

    def load(self, weights, config_path=None, precision=None):
        return load_for_prediction(weights, config_path, precision=precision)

    def predict_batch(self, model, batch):
        from cten_jt.engine import predict_batch
        model.eval()
        return predict_batch(model, batch)

    def on_cpu(self, model):
        import jittor as jt
        return not jt.flags.use_cuda

    def world(self):
        from cten_jt.distributed import world
        return world()

    def all_sum(self, values):
        from cten_jt.distributed import all_sum
        return all_sum(values)


ENGINE = JittorEngine()


def load_for_prediction(weights, config_path=None, overrides=(), precision=None):
    """(model, config, class names) from a run checkpoint or weights + config, in eval mode
    (``cten_common.inference``: the file read once); ``precision``: what the model computes
    in (default the config's ``train.precision``)."""
    from cten_common.inference import inference_model, run_config
    from cten_jt.backend import BACKEND

    config, classes, checkpoint = run_config(weights, config_path, overrides, precision)
    model, _ = inference_model(BACKEND, config, checkpoint)
    return model, config, classes


def predict_video(model, config, classes, video, audio=None, allow_silence=False, threshold=0.5,
                  top_k=3, annotation=None):
    """``cten_common.predict.predict_video`` with Jittor's model."""
    return _predict_video(ENGINE, model, config, classes, video, audio, allow_silence, threshold, top_k,
                          annotation)


def main(argv=None):
    return _main(argv, {"jittor": lambda: ENGINE})


if __name__ == "__main__":
    sys.exit(main())
