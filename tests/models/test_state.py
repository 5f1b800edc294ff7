"""cten_jt/models/state.py: loading a weights file into a model made to be loaded."""
import os
import subprocess
import json
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = {"n_classes": 2, "seq_len": 2, "snippet_duration": 2, "sample_size": 32, "audio_n_segments": 2,
         "visual_depth": 18, "audio_embed_size": 512}

LOAD_PROBE = """
import json, sys
import cten_jt
from benchmarks.framework_worker import reset_peak_rss, rss_mb
from cten_common.config import RunConfig
from cten_common.inference import inference_model
from cten_jt.backend import BACKEND
run = RunConfig().updated({"model": json.loads(sys.argv[2]), "train": {"device": "cpu"}})
reset_peak_rss()
before = rss_mb()[0]
model, _ = inference_model(BACKEND, run, sys.argv[1])
print(rss_mb()[1] - before)
"""


def test_loading_weights_holds_them_about_once(tmp_path):
    """``inference_model`` with a weights file: the file's arrays become the model's (Jittor
    takes a numpy array over), about 1.0x the weights' bytes P at the peak.  Each way it went
    wrong before adds a whole P: Jittor's own initial values computed by the first sync
    (2x), the initial state computed only to be overwritten (+1x), the file mapped beside
    its copies (+1x); before all three, 3x.  Bound 1.6x, a model of P = 182 MB."""
    from cten_torch_ref.checkpoint import save_weights
    from cten_torch_ref.models import build_model
    model = build_model(MODEL, init_seed=0)
    weights_mb = sum(v.numel() * v.element_size() for v in model.state_dict().values()) / 2 ** 20
    save_weights(model, tmp_path / "w.safetensors")
    del model
    out = subprocess.run([sys.executable, "-c", LOAD_PROBE, str(tmp_path / "w.safetensors"), json.dumps(MODEL)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600, env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.returncode == 0, out.stderr[-3000:]
    grew = float(out.stdout.split()[-1])
    assert weights_mb > 150 and grew < 1.6 * weights_mb, \
        f"loading {weights_mb:.0f} MB of weights raised the peak RSS by {grew:.0f} MB"
