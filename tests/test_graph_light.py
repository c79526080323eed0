"""graph/light.py: the checker and shape inference on a copy without the large initializers give
what the plain calls give (same inferred value_info, inputs, outputs, all initializers back),
and a large initializer whose data does not match its dims is still rejected (the checker no
longer sees it, so light.py checks it) -- by InferenceSession and fastq.quantize, by name."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import fastq
from fastq.graph.light import DIRECT_BYTES, LARGE, check_and_infer, light_copy


def big_mlp(k=1200, n=1000):
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((n, 8)).astype(np.float32), "w2")
    shp = numpy_helper.from_array(np.array([-1, 4, 2], np.int64), "shp")   # small: stays
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
         helper.make_node("Relu", ["h"], ["r"], name="relu"),
         helper.make_node("MatMul", ["r", "w2"], ["y0"], name="mm2"),
         helper.make_node("Reshape", ["y0", "shp"], ["y"], name="reshape")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["a", "b", "c"])], [w1, w2, shp])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    assert w1.ByteSize() > DIRECT_BYTES
    return m


def test_light_inference_equals_plain():
    m = big_mlp()
    light, big, n = light_copy(m)
    assert [t.name for t in big] == ["w1", "w2"] and n == 1
    assert [t.name for t in light.graph.initializer] == ["shp"]
    assert len(m.graph.initializer) == 3                      # the caller's model untouched
    plain = onnx.shape_inference.infer_shapes(m, data_prop=True)
    got = check_and_infer(m)
    assert {v.name: v for v in got.graph.value_info} == \
        {v.name: v for v in plain.graph.value_info}
    assert list(got.graph.input) == list(m.graph.input)
    assert list(got.graph.output) == list(plain.graph.output)
    assert sorted(t.name for t in got.graph.initializer) == ["shp", "w1", "w2"]
    w1 = next(t for t in got.graph.initializer if t.name == "w1")
    assert w1 == m.graph.initializer[0]
    # data propagation still saw the small shape tensor: the Reshape's inner dims are known
    y0 = {v.name: v for v in got.graph.value_info}["y0"]
    assert [d.dim_value or d.dim_param for d in y0.type.tensor_type.shape.dim] == ["N", 8]
    x = np.random.default_rng(1).standard_normal((3, 1200)).astype(np.float32)
    y = fastq.InferenceSession(m).run(None, {"x": x})[0]
    w = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    want = (np.maximum(x @ w["w1"], 0) @ w["w2"]).reshape(-1, 4, 2)
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-3)


def test_bad_large_initializer_is_still_rejected(tmp_path):
    m = big_mlp()
    t = m.graph.initializer[0]
    t.raw_data = t.raw_data[:-4]                  # one float short
    with pytest.raises(fastq.ModelError, match="w1.*raw_data holds"):
        fastq.InferenceSession(m)
    with pytest.raises(fastq.ModelError, match="w1"):
        fastq.quantize(m, [{"x": np.ones((1, 1200), np.float32)}], progress=False)
    assert LARGE < 1200 * 1000


@pytest.mark.parametrize("domain", ["", "ai.onnx"])
def test_opset_newer_than_onnx_defines_is_rejected(domain):
    """The ONNX checker accepts it, and the executor would run each op as the newest version
    it knows; both entry points refuse instead, naming the opset."""
    w = numpy_helper.from_array(np.ones((16, 8), np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    newest = onnx.defs.onnx_opset_version()
    m.opset_import[0].domain = domain
    m.opset_import[0].version = newest + 1
    onnx.checker.check_model(m)                    # what the checker alone lets through
    x = {"x": np.ones((1, 16), np.float32)}
    with pytest.raises(fastq.ModelError, match=rf"opset {newest + 1} .*up to {newest}"):
        fastq.InferenceSession(m)
    with pytest.raises(fastq.ModelError, match=rf"opset {newest + 1} "):
        fastq.quantize(m, [x], progress=False)
    m.opset_import[0].version = newest
    assert fastq.InferenceSession(m).run(None, x)[0].tolist() == [[16.0] * 8]
