"""Compare two folders of run outputs figure for figure, leaving out wall-clock timings (issue 27).

    python reports/issue27_compare_runs.py BEFORE_DIR AFTER_DIR

JSON and JSONL files: equal after dropping the timing keys; config.yaml: equal text;
safetensors: every array equal (dtype, shape, values) and the metadata equal as parsed
(safetensors writes its header's keys in no fixed order, so the files' bytes may differ).
"""
import json
import os
import sys

import numpy as np
from safetensors.numpy import load_file

TIMING = {"time_s", "train_time_s", "data_wait_s", "view_read_s", "data_wait_fraction", "minutes"}

def strip(x):
    if isinstance(x, dict):
        return {k: strip(v) for k, v in x.items() if k not in TIMING}
    if isinstance(x, list):
        return [strip(v) for v in x]
    return x

def load(path):
    if path.endswith(".jsonl"):
        return [strip(json.loads(l)) for l in open(path) if l.strip()]
    if path.endswith(".json"):
        return strip(json.load(open(path)))
    if path.endswith(".yaml"):
        return open(path).read()
    if path.endswith(".safetensors"):
        from safetensors import safe_open
        with safe_open(path, "np") as f:
            meta = f.metadata()
        return {"arrays": load_file(path), "metadata": meta}

def same(a, b):
    if isinstance(a, dict) and "arrays" in a:
        x, y = a["arrays"], b["arrays"]
        return (a["metadata"] == b["metadata"] and set(x) == set(y)
                and all(x[k].dtype == y[k].dtype and np.array_equal(x[k], y[k]) for k in x))
    return a == b

before, after = sys.argv[1], sys.argv[2]
bad = 0
for root, _, files in sorted(os.walk(before)):
    for name in sorted(files):
        if not name.endswith((".json", ".jsonl", ".yaml", ".safetensors")):
            continue
        rel = os.path.relpath(os.path.join(root, name), before)
        b = os.path.join(after, rel)
        if not os.path.exists(b):
            print(f"MISSING  {rel}"); bad += 1; continue
        ok = same(load(os.path.join(root, name)), load(b))
        bad += not ok
        print(f"{'identical' if ok else 'DIFFERENT'}  {rel}")
print(f"{bad} file(s) differ")
sys.exit(1 if bad else 0)
