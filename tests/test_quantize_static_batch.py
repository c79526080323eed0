"""The statistics pass of a model exported with a fixed batch of 1: the batch axis is made
symbolic so calibration samples run stacked (when stacking the first two samples gives their
single-run outputs), the report says so, and the ranges equal the one-by-one pass's to float
rounding; a model that hard-codes its batch still quantizes, unbatched."""

import importlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import fastq
from models import builders as B

statistics = importlib.import_module("fastq.algorithms.statistics")
quantize_mod = importlib.import_module("fastq.quantize")


def fixed_batch(model):
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for vi in list(m.graph.input) + list(m.graph.output):
        d = vi.type.tensor_type.shape.dim
        if d and d[0].dim_param:
            d[0].Clear()
            d[0].dim_value = 1
    del m.graph.value_info[:]
    return m


def assert_same_ranges(r, r1, at_least, zero_points=False):
    """The batched and the unbatched pass gave the same activation ranges and scales."""
    a, b = r.report.to_dict()["activations"], r1.report.to_dict()["activations"]
    assert a.keys() == b.keys() and len(a) >= at_least
    for k in a:
        for key in ("min", "max", "scale"):
            np.testing.assert_allclose(a[k][key], b[k][key], rtol=1e-5, err_msg=f"{k} {key}")
        if zero_points:
            assert a[k]["zero_point"] == b[k]["zero_point"]


def test_fixed_batch_runs_stacked_and_matches_unbatched(monkeypatch):
    model, make = B.resnet_like()
    m1 = fixed_batch(model)
    assert m1.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
    data = make(24, seed=1)
    calls = []
    real = statistics.collect
    monkeypatch.setattr(quantize_mod, "collect", lambda sess, *a, **k: calls.append(
        [i.shape for i in sess.get_inputs()]) or real(sess, *a, **k))
    r = fastq.quantize(m1, data, progress=False)
    assert any("made symbolic" in d for d in r.report.decisions)
    assert not isinstance(calls[0][0][0], int)           # the session saw a symbolic batch
    # the caller's input shape is kept in the export
    assert r.model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
    monkeypatch.setattr(quantize_mod, "with_dynamic_batch", lambda m, copy=True: None)
    r1 = fastq.quantize(m1, data, progress=False)
    assert not any("made symbolic" in d for d in r1.report.decisions)
    assert_same_ranges(r, r1, at_least=5, zero_points=True)


def _flatten_model(allowzero):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    fc = rng.standard_normal((4 * 6 * 6, 5)).astype(np.float32)
    kw = {} if allowzero is None else {"allowzero": allowzero}
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
         helper.make_node("Relu", ["c"], ["r"], name="relu"),
         helper.make_node("Reshape", ["r", "shape"], ["f"], name="flat", **kw),
         helper.make_node("MatMul", ["f", "fc"], ["y"], name="fc")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(fc, "fc"),
         numpy_helper.from_array(np.array([1, -1], np.int64), "shape")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)])
    data = [rng.standard_normal((1, 3, 8, 8)).astype(np.float32) for _ in range(10)]
    return m, data


def test_hard_coded_batch_still_quantizes(monkeypatch):
    """Flatten through Reshape([1, -1]) with allowzero=1: stacked samples would merge, so the
    probe refuses (or collect falls back); the result is the unbatched one."""
    m, data = _flatten_model(1)
    r = fastq.quantize(m, data, progress=False)
    assert not any("made symbolic" in d for d in r.report.decisions)
    assert {"conv", "fc"} <= set(r.report.layers)


def test_reshape_to_batch_one_is_made_batch_agnostic(monkeypatch):
    """Reshape([1, -1]) (allowzero 0) of a tensor whose inferred dim 0 is 1 becomes [0, -1]
    in the statistics model: the same values for batch-1 feeds, so the probe accepts stacked
    runs; the ranges equal the unbatched pass's."""
    m, data = _flatten_model(None)
    r = fastq.quantize(m, data, progress=False)
    assert any("made symbolic" in d for d in r.report.decisions)
    monkeypatch.setattr(quantize_mod, "with_dynamic_batch", lambda m, copy=True: None)
    r1 = fastq.quantize(m, data, progress=False)
    assert not any("made symbolic" in d for d in r1.report.decisions)
    assert_same_ranges(r, r1, at_least=2)
    # the caller's model keeps its Reshape target
    assert list(numpy_helper.to_array(m.graph.initializer[2])) == [1, -1]


def _concat_model(batch):
    """x[batch, 16] ++ a constant [1, 4] on axis 1 -> MatMul: declared batch-dynamic with
    batch "N", yet only a batch of 1 runs (the constant fixes it)."""
    rng = np.random.default_rng(0)
    g = helper.make_graph(
        [helper.make_node("Concat", ["x", "c"], ["xc"], name="cat", axis=1),
         helper.make_node("MatMul", ["xc", "w"], ["y"], name="mm")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 8])],
        [numpy_helper.from_array(rng.standard_normal((20, 8)).astype(np.float32), "w"),
         numpy_helper.from_array(np.ones((1, 4), np.float32), "c")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m, [rng.standard_normal((1, 16)).astype(np.float32) for _ in range(10)]


def test_declared_dynamic_batch_that_cannot_stack_runs_unbatched():
    """The stacked run fails inside the graph (no sample fails alone): collect runs the
    samples one by one instead of failing with the stacked run's [9, 16] error."""
    m, data = _concat_model("N")
    r = fastq.quantize(m, data, progress=False)
    r1 = fastq.quantize(_concat_model(1)[0], data, progress=False)   # probe: unbatched
    assert not any("made symbolic" in d for d in r1.report.decisions)
    assert_same_ranges(r, r1, at_least=1, zero_points=True)
