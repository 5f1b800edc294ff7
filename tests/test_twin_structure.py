"""The twins kept by a check: every file that ``cten_jt`` and ``cten_torch_ref`` both have
declares the same classes, functions and methods, with the same arguments in the same order,
apart from the differences listed here with their reasons.  A drift fails with its name.

Read with ``ast`` (nothing imported).  Jittor's ``execute`` is PyTorch's ``forward``; each
framework's backend class has its own name."""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RENAMED = {"execute": "forward", "JittorBackend": "Backend", "TorchBackend": "Backend"}

# file -> {(kind, name, arguments): why only one twin has it}; "jittor:" / "torch:" says which
ALLOWED = {
    "models/cten.py": {
        ("jittor", "method", "CTEN.train", ("self", "mode")): "Jittor's train()/eval() also stop gradients; ours only set the mode, as PyTorch's",
        ("jittor", "method", "CTEN.eval", ("self",)): "the same",
    },
    "models/attention.py": {
        ("jittor", "function", "low_precision_attention", ("query", "key", "value", "scale", "precision")):
            "bf16/fp16 attention by hand; PyTorch gets it from autocast",
        ("jittor", "function", "scaled_dot_product_attention", ("query", "key", "value", "scale", "precision")):
            "the precision argument: the twin's precision comes from autocast",
        ("torch", "function", "scaled_dot_product_attention", ("query", "key", "value", "scale")): "the same",
    },
    "models/norm.py": {
        ("jittor", "class", "_BatchNorm", ()): "Jittor's BatchNorm is ours (PyTorch's variance and momentum), shared by the three",
        ("jittor", "method", "_BatchNorm.__init__", ("self", "num_features", "eps", "momentum")): "the same",
        ("jittor", "method", "_BatchNorm._check", ("self", "x")): "the same",
        ("jittor", "method", "_BatchNorm.forward", ("self", "x")): "the same",
        ("torch", "method", "BatchNorm1d.forward", ("self", "x")): "PyTorch's own, its input checked per class",
        ("torch", "method", "BatchNorm2d.forward", ("self", "x")): "the same",
        ("torch", "method", "BatchNorm3d.forward", ("self", "x")): "the same",
        ("jittor", "function", "set_sync_batchnorm", ("module", "sync")): "PyTorch has SyncBatchNorm.convert_sync_batchnorm",
        ("jittor", "function", "sync_running_stats", ("module",)): "Jittor's lazy running-average updates, run after the step",
        ("jittor", "function", "set_train_mode", ("module", "mode")): "see CTEN.train",
    },
    "engine.py": {
        ("jittor", "function", "_to_var", ("x",)): "numpy to a framework array",
        ("torch", "function", "_to_tensor", ("x", "device")): "the same, onto the model's device",
        ("torch", "function", "_device", ("model",)): "Jittor has one global device",
        ("jittor", "function", "erased_inputs",
         ("gamma", "batch", "snippet_len", "rng", "theta", "reader", "bank", "counts", "timing")):
            "Jittor's alone reads views from a feature bank and counts skipped videos",
        ("torch", "function", "erased_inputs",
         ("gamma", "batch", "snippet_len", "rng", "theta", "reader", "device", "timing")): "the device",
        ("torch", "function", "scaled_step", ("optimizer", "total", "scaler")):
            "fp16 loss scaling around torch.optim; Jittor's Adam takes the scaler itself (cten_jt.optim)",
    },
    "backend.py": {
        ("torch", "class", "EpochLoader", ()): "torch's DataLoader, made again each epoch with Jittor's order; "
                                               "Jittor's Dataset is its own loader",
        ("torch", "method", "EpochLoader.__init__", ("self", "data", "batch_size", "num_workers", "seed")): "the same",
        ("torch", "method", "EpochLoader.set_epoch", ("self", "epoch")): "the same",
        ("torch", "method", "EpochLoader.__len__", ("self",)): "the same",
        ("torch", "method", "EpochLoader.__iter__", ("self",)): "the same",
    },
    "optim.py": {
        ("jittor", "class", "Adam", ()): "PyTorch's Adam in Jittor (epsilon, no state for frozen parameters, "
                                         "the loss scaler); the twin uses torch.optim.Adam",
        ("jittor", "method", "Adam.__init__", ("self", "params", "lr", "betas", "eps", "weight_decay")): "the same",
        ("jittor", "method", "Adam.step", ("self", "loss", "retain_graph", "scaler")): "the same",
        ("jittor", "method", "Adam._scaled_backward", ("self", "loss", "retain_graph", "scaler")): "the same",
        ("torch", "function", "_named_trainable", ("optimizer", "model")): "torch.optim's state by parameter name",
    },
    "precision.py": {
        ("jittor", "function", "low", ("x", "precision")): "Jittor rounds where the policy says, by hand",
        ("torch", "function", "autocast", ("precision", "device_type")): "PyTorch's autocast carries the policy",
        ("torch", "function", "under_policy", ("method",)): "the same",
        ("torch", "function", "widened", ("x",)): "the same",
    },
    "data/dataset.py": {
        ("jittor", "function", "model_visual", ("visual", "brightness")): "Jittor has one global device",
        ("torch", "function", "model_visual", ("visual", "brightness", "device")): "the same",
        ("jittor", "method", "CTENDataset.__init__",
         ("self", "data", "batch_size", "shuffle", "num_workers", "drop_last", "seed")):
            "jittor.dataset.Dataset batches itself; torch's DataLoader does it (CTENDataset.loader)",
        ("jittor", "method", "CTENDataset.collate_batch", ("self", "batch")): "the same",
        ("torch", "method", "CTENDataset.__init__", ("self", "data", "seed")): "the same",
        ("torch", "method", "CTENDataset.__len__", ("self",)): "the same",
        ("torch", "method", "CTENDataset.collate_batch", ("batch",)): "the same (a static method)",
        ("torch", "method", "CTENDataset.loader", ("self", "batch_size", "shuffle", "num_workers", "drop_last")):
            "the same",
        ("torch", "class", "EpochOrder", ()): "the sampler that gives torch's loader Jittor's shuffle",
        ("torch", "method", "EpochOrder.__init__", ("self", "dataset", "shuffle")): "the same",
        ("torch", "method", "EpochOrder.__iter__", ("self",)): "the same",
        ("torch", "method", "EpochOrder.__len__", ("self",)): "the same",
    },
    "device.py": {
        ("jittor", "function", "release_free_memory", ()): "Jittor's caching allocator and glibc's heap, given back",
        ("jittor", "function", "_malloc_trim", ()): "the same",
    },
}


def structure(path):
    """``[(kind, name, arguments)]`` of a file's top-level classes and functions and the
    classes' methods, in their order (names through RENAMED)."""
    tree = ast.parse(open(path).read(), path)

    def arguments(fn):
        a = fn.args
        names = [x.arg for x in a.posonlyargs + a.args] + (["*" + a.vararg.arg] if a.vararg else [])
        return tuple(names + [x.arg for x in a.kwonlyargs] + (["**" + a.kwarg.arg] if a.kwarg else []))

    out = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            cls = RENAMED.get(node.name, node.name)
            out.append(("class", cls, ()))
            for sub in node.body:
                if isinstance(sub, ast.FunctionDef):
                    out.append(("method", f"{cls}.{RENAMED.get(sub.name, sub.name)}", arguments(sub)))
                elif isinstance(sub, ast.Assign) and isinstance(sub.value, ast.Call) and \
                        getattr(sub.value.func, "id", None) in ("staticmethod", "classmethod"):
                    # name = staticmethod(function): a method too (a backend's, from its module)
                    out += [("assigned", f"{cls}.{t.id}", ()) for t in sub.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.FunctionDef):
            out.append(("function", node.name, arguments(node)))
    return out


def twin_files():
    found = []
    for folder, _, files in os.walk(os.path.join(ROOT, "cten_jt")):
        for name in files:
            rel = os.path.relpath(os.path.join(folder, name), os.path.join(ROOT, "cten_jt"))
            if name.endswith(".py") and os.path.exists(os.path.join(ROOT, "cten_torch_ref", rel)):
                found.append(rel.replace(os.sep, "/"))
    return sorted(found)


def drift(rel):
    """What one twin declares and the other does not, less what ALLOWED lists: ``[message]``;
    and the common entries out of order."""
    mine = structure(os.path.join(ROOT, "cten_jt", rel))
    theirs = structure(os.path.join(ROOT, "cten_torch_ref", rel))
    allowed = ALLOWED.get(rel, {})

    def has(entries, e):          # a method may be a function assigned in the class on the other side
        named = {x[1] for x in entries if x[0] in ("method", "assigned")}
        return e in entries or (e[0] in ("method", "assigned") and e[1] in named
                                and (e[0] == "assigned" or ("assigned", e[1], ()) in entries))

    out = [f"{rel}: only in cten_jt: {e[0]} {e[1]}{e[2]}" for e in mine
           if not has(theirs, e) and ("jittor",) + e not in allowed]
    out += [f"{rel}: only in cten_torch_ref: {e[0]} {e[1]}{e[2]}" for e in theirs
            if not has(mine, e) and ("torch",) + e not in allowed]
    shared = [e[1] for e in mine if e in theirs]
    if shared != [e[1] for e in theirs if e in mine]:
        out.append(f"{rel}: the shared declarations are in another order: {shared} against "
                   f"{[e[1] for e in theirs if e in mine]}")
    stale = [k for k in allowed if (k[1:] not in mine if k[0] == "jittor" else k[1:] not in theirs)]
    out += [f"{rel}: ALLOWED lists {k[0]} {k[1]} {k[2]}{k[3]}, which is no longer there" for k in stale]
    return out


def test_the_twin_files_are_the_ones_expected():
    assert {"models/cten.py", "models/resnet.py", "models/attention.py", "models/norm.py", "models/state.py",
            "engine.py", "backend.py", "checkpoint.py", "precision.py", "data/dataset.py", "train.py",
            "device.py"} <= set(twin_files())
    assert set(ALLOWED) <= set(twin_files())


@pytest.mark.parametrize("rel", twin_files())
def test_the_twins_declare_the_same_things(rel):
    problems = drift(rel)
    assert not problems, "\n".join(problems)


def test_a_drift_is_named(tmp_path, monkeypatch):
    """A method added to one twin alone, and a renamed argument: both named."""
    for twin in ("cten_jt", "cten_torch_ref"):
        (tmp_path / twin / "models").mkdir(parents=True)
    (tmp_path / "cten_jt" / "models" / "x.py").write_text(
        "class A:\n    def execute(self, x, y):\n        pass\n    def extra(self):\n        pass\n")
    (tmp_path / "cten_torch_ref" / "models" / "x.py").write_text(
        "class A:\n    def forward(self, x, z):\n        pass\n")
    monkeypatch.setitem(globals(), "ROOT", str(tmp_path))
    problems = drift("models/x.py")
    assert "models/x.py: only in cten_jt: method A.extra('self',)" in problems
    assert "models/x.py: only in cten_jt: method A.forward('self', 'x', 'y')" in problems
    assert "models/x.py: only in cten_torch_ref: method A.forward('self', 'x', 'z')" in problems
