"""The statistics pass: batched runs (dynamic batch axis) give the same per-sample statistics
as one-sample runs; a model whose batch is fixed inside (Reshape to [1, -1]) falls back to
one-sample runs; the collected ranges equal numpy's POT estimators."""

import numpy as np
from onnx import TensorProto, helper, numpy_helper

import fastq
from fastq.algorithms.placement import build_plan
from fastq.algorithms.statistics import RangeRequest, collect
from fastq.graph import Graph, prepare
from models import builders as B


def _plan_stats(m, data, batch=None, params=None, workers=None, means=False):
    params = params or fastq.config.load(None).main.params
    g = Graph(m)
    prepare(g)
    plan = build_plan(g, params)
    sess = fastq.InferenceSession(g.to_model())
    reqs = [RangeRequest(t, q.layer.range_estimator, q.channel_axis)
            for t, q in plan.activations.items()]
    mean_req = {t: 1 for t in plan.activations} if means else {}
    return collect(sess, data, reqs, mean_req, batch=batch, workers=workers), plan


def test_worker_threads_give_the_serial_bits():
    """Groups run on several threads (runtime/parallel.py) and merge in sample order: every
    per-sample reduction, range and mean is bit-identical to the one-thread pass, batched
    and one sample at a time, and the BLAS thread count is restored afterwards."""
    from fastq.runtime import parallel
    m, make = B.resnet_like()
    data = make(23, seed=5)
    libs = parallel._blas_libraries()
    before = [g() for _, g in libs]
    for batch in (None, 1, 3):
        one, plan = _plan_stats(m, data, batch=batch, workers=1, means=True)
        for w in (2, 3):
            par, _ = _plan_stats(m, data, batch=batch, workers=w, means=True)
            assert par.batched == one.batched and par.shapes == one.shapes
            assert one.per_sample.keys() == par.per_sample.keys()
            for k, v in one.per_sample.items():
                assert np.array_equal(v, par.per_sample[k]), (batch, w, k)
            for t in plan.activations:
                assert np.array_equal(one.means[t], par.means[t])
    assert [g() for _, g in libs] == before
    if libs:                                      # numpy's wheels bundle OpenBLAS
        assert parallel.set_blas_threads(1) and [g() for _, g in libs] == [1] * len(libs)
        parallel.set_blas_threads(before[0])


def test_ordered_map_keeps_order_and_raises_in_turn():
    import time
    from fastq.runtime.parallel import ordered_map

    def slow_first(i):
        time.sleep(0.02 if i == 0 else 0.0)
        if i == 5:
            raise ValueError("item 5")
        return i * i
    got = []
    try:
        for r in ordered_map(slow_first, range(9), workers=3):
            got.append(r)
    except ValueError as e:
        assert str(e) == "item 5"
    assert got == [0, 1, 4, 9, 16]
    assert list(ordered_map(lambda i: -i, range(4), workers=1)) == [0, -1, -2, -3]


def test_batched_equals_one_by_one():
    m, make = B.resnet_like()
    data = make(37, seed=4)
    a, plan = _plan_stats(m, data)
    b, _ = _plan_stats(m, data, batch=1)
    assert a.batched and not b.batched
    for t in plan.activations:
        for x, y in zip(a.ranges[t], b.ranges[t]):
            if x is not None:
                np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    # POT's symmetric estimator on the input: min of per-sample min, mean of per-sample absmax
    lo, hi = a.ranges["input"]
    xs = [d["input"] for d in data]
    assert lo == min(x.min() for x in xs)
    np.testing.assert_allclose(hi, np.mean([np.abs(x).max() for x in xs]), rtol=1e-12)


def test_fixed_batch_reshape_falls_back():
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((12, 3)).astype(np.float32), "w")
    shp = numpy_helper.from_array(np.array([1, -1], np.int64), "shp")
    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"], name="relu"),
         helper.make_node("Reshape", ["r", "shp"], ["f"], name="reshape"),
         helper.make_node("MatMul", ["f", "w"], ["y"], name="mm")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [w, shp])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    data = [{"x": rng.standard_normal((1, 3, 4)).astype(np.float32)} for _ in range(9)]
    s, _ = _plan_stats(m, data)
    assert not s.batched
    lo, hi = s.ranges["f"]
    np.testing.assert_allclose(hi, np.mean([np.maximum(d["x"], 0).max() for d in data]))
    res = fastq.quantize(m, data, progress=False)
    assert "mm" in res.report.layers


def test_dynamic_sequence_lengths():
    # samples of different sequence lengths: batched runs group equal shapes; the export keeps
    # the symbolic axes and runs at a length never seen in calibration
    m, make = B.bert_like()
    data = make(10, seed=1, seq=8) + make(7, seed=2, seq=12) + make(5, seed=3, seq=8)
    res = fastq.quantize(m, data, {"name": "DefaultQuantization",
                                   "params": {"model_type": "transformer"}}, progress=False)
    assert res.report.samples == 22
    dims = [d.dim_param for d in res.model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[:2] == ["B", "S"]
    from models.util import ort_session, run_all, sqnr_db
    ev = make(4, seed=5, seq=16)
    assert sqnr_db(run_all(ort_session(m), ev), run_all(ort_session(res.model), ev)) > 20


def test_pytorch_style_shape_chain():
    # Shape -> Gather -> Unsqueeze -> Concat -> Reshape (a traced flatten), Constant nodes,
    # a Transpose/Reshape chain: int64 shape tensors are never quantized, the model runs
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    fc = numpy_helper.from_array(rng.standard_normal((64, 5)).astype(np.float32), "fc")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Transpose", ["r"], ["t"], name="tr", perm=[0, 2, 3, 1]),
        helper.make_node("Shape", ["t"], ["s"], name="shape"),
        helper.make_node("Constant", [], ["zero"], name="k0",
                         value=numpy_helper.from_array(np.array(0, np.int64))),
        helper.make_node("Gather", ["s", "zero"], ["n"], name="gather", axis=0),
        helper.make_node("Unsqueeze", ["n", "ax"], ["n1"], name="unsq"),
        helper.make_node("Concat", ["n1", "minus1"], ["shp"], name="cat", axis=0),
        helper.make_node("Reshape", ["t", "shp"], ["f"], name="reshape"),
        helper.make_node("MatMul", ["f", "fc"], ["y"], name="mm")]
    inits = [w, fc, numpy_helper.from_array(np.array([0], np.int64), "ax"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus1")]
    g = helper.make_graph(nodes, "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])],
                          inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    data = [rng.standard_normal((1, 3, 4, 4)).astype(np.float32) for _ in range(20)]
    res = fastq.quantize(m, data, progress=False)
    assert set(res.report.layers) == {"conv", "mm"}
    assert "shp" not in res.report.activations and "n1" not in res.report.activations
    from models.util import ort_session, sqnr_db
    x = np.concatenate(data[:5])
    assert sqnr_db(ort_session(m).run(None, {"x": x})[0],
                   ort_session(res.model).run(None, {"x": x})[0]) > 15


def test_shared_minmax_pass_equals_each_reduction():
    """min, max and abs_max of one tensor share one C++ min-max pass: each equals its own
    reduction exactly, per tensor and per channel, batched and for one sample."""
    from fastq.algorithms.statistics import _reduce_sides, _Side
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((4, 6, 5, 3)) * 10).astype(np.float32)
    x[2, 1, 0, 0] = -1e30
    for axis in (None, 1, -1):
        per = {(r, None, axis): _Side((r, None, axis)) for r in ("min", "max", "abs_max")}
        per[("quantile", 0.9, axis)] = _Side(("quantile", 0.9, axis))
        for batched, xx in ((True, x), (False, x[:1])):
            got = _reduce_sides(per, xx, "t", batched)
            assert got.keys() == per.keys()
            for key, side in per.items():
                want = side.reduce(xx, "t", batched)
                assert got[key].shape == want.shape and np.array_equal(got[key], want), key
