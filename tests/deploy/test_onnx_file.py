"""cten_deploy/onnx_file.py: our metadata appended to an ONNX file and read back without
parsing the model."""
import numpy as np
import pytest

from cten_deploy.onnx_file import (FORMAT, FORMAT_VERSION, OnnxFileError, append_metadata, cten_metadata,
                                   read_metadata)


def _small_onnx(path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    w = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, {"theirs": "kept"})
    onnx.save(model, str(path))


def test_appended_entries_are_what_onnx_reads_and_the_model_still_runs(tmp_path):
    import onnx
    import onnxruntime as ort
    path = tmp_path / "m.onnx"
    _small_onnx(path)
    entries = {"format": FORMAT, "format_version": FORMAT_VERSION, "part": "model",
               "config": '{"model": {"n_classes": 2}}', "classes": '["a", "b\\u00e9"]'}
    append_metadata(path, entries)
    ours = read_metadata(path)
    theirs = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert ours == theirs == {"theirs": "kept", **entries}
    assert cten_metadata(path) == ("model", {"model": {"n_classes": 2}}, ["a", "b\u00e9"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    y, = session.run(None, {"x": np.ones((1, 2), np.float32)})
    assert np.array_equal(y, [[3.0, 5.0, 7.0]])


def test_files_that_are_not_ours_are_refused_by_name(tmp_path):
    plain = tmp_path / "plain.onnx"
    _small_onnx(plain)
    with pytest.raises(OnnxFileError, match="plain.onnx: not a model cten-export wrote"):
        cten_metadata(plain)
    old = tmp_path / "old.onnx"
    _small_onnx(old)
    append_metadata(old, {"format": FORMAT, "format_version": "0"})
    with pytest.raises(OnnxFileError, match="old.onnx: cten-onnx format '0'"):
        cten_metadata(old)
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(plain.read_bytes()[:40])
    with pytest.raises(OnnxFileError, match="cut.onnx"):
        cten_metadata(cut)
    noise = tmp_path / "noise.onnx"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(OnnxFileError, match="noise.onnx"):
        cten_metadata(noise)
    with pytest.raises(OnnxFileError, match="missing.onnx: no such file"):
        cten_metadata(tmp_path / "missing.onnx")
