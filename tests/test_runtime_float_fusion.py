"""Float fusions (runtime/float_fusion.py) and the prepared Conv kernel: Conv+BatchNorm+
Relu/Clip and Add/Sum+Relu run fused and match ONNX Runtime with its optimizations off (an
independent unfused execution) to float rounding; tensors a caller keeps or the graph outputs
are never fused away; non-constant weights/BN parameters and changing batch sizes take the
same fused ops."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import fastq
from test_nn_ops_util import run_ort

F = TensorProto.FLOAT
RNG = np.random.default_rng(5)


def _model(nodes, inputs, outputs, inits, opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs,
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _vi(name, shape):
    """shape None: any rank-4 shape (the checker wants outputs' ranks)."""
    return helper.make_tensor_value_info(name, F, shape if shape is not None else
                                         ["d0", "d1", "d2", "d3"])


def _bn_params(m):
    return {"s": RNG.uniform(0.5, 2, m).astype(np.float32),
            "beta": RNG.standard_normal(m).astype(np.float32),
            "mean": RNG.standard_normal(m).astype(np.float32),
            "var": RNG.uniform(0.1, 3, m).astype(np.float32)}


def conv_bn_act(act="Relu", group=1, bias=True, c=8, m=8, const_bn=True):
    w = RNG.standard_normal((m, c // group, 3, 3)).astype(np.float32)
    inits = {"W": w}
    if bias:
        inits["B"] = RNG.standard_normal(m).astype(np.float32)
    bn = _bn_params(m)
    feeds_extra = {}
    if const_bn:
        inits.update(bn)
    else:
        feeds_extra = bn
    nodes = [helper.make_node("Conv", ["X", "W"] + (["B"] if bias else []), ["c"],
                              pads=[1, 1, 1, 1], group=group, name="conv"),
             helper.make_node("BatchNormalization", ["c", "s", "beta", "mean", "var"], ["bn"],
                              epsilon=1e-3, name="bn")]
    last = "bn"
    if act == "Relu":
        nodes.append(helper.make_node("Relu", ["bn"], ["Y"], name="act"))
        last = "Y"
    elif act == "Clip":
        inits["lo"], inits["hi"] = np.float32(0.0), np.float32(1.5)
        nodes.append(helper.make_node("Clip", ["bn", "lo", "hi"], ["Y"], name="act"))
        last = "Y"
    ins = [_vi("X", ["N", c, 9, 7])] + [_vi(k, [m]) for k in feeds_extra]
    return _model(nodes, ins, [_vi(last, None)], inits), feeds_extra, last


def _ops(sess):
    return [st.node.op_type for st in sess._graph.steps]


@pytest.mark.parametrize("act", ["Relu", "Clip", None])
@pytest.mark.parametrize("group,bias", [(1, True), (1, False), (8, True), (2, False)])
def test_conv_bn_act_fused_matches_unfused(act, group, bias):
    m, extra, out = conv_bn_act(act, group, bias)
    sess = fastq.InferenceSession(m)
    assert _ops(sess) == ["FusedConv"]
    for n in (1, 3, 1):   # plans are cached per input shape
        x = RNG.standard_normal((n, 8, 9, 7)).astype(np.float32)
        got = sess.run(None, {"X": x})[0]
        want = run_ort(m, {"X": x})[0]
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        if act is not None:
            assert got.min() >= 0
        if act == "Clip":
            assert got.max() <= 1.5


def test_bn_parameters_fed_at_run_time_fold_per_run():
    m, extra, _ = conv_bn_act("Relu", const_bn=False)
    sess = fastq.InferenceSession(m)
    assert _ops(sess) == ["FusedConv"]
    feeds = dict(extra, X=RNG.standard_normal((2, 8, 9, 7)).astype(np.float32))
    np.testing.assert_allclose(sess.run(None, feeds)[0], run_ort(m, feeds)[0], rtol=1e-5,
                               atol=1e-5)


def test_non_constant_weight_still_fuses_relu():
    nodes = [helper.make_node("Conv", ["X", "W"], ["c"], name="conv", strides=[2, 2]),
             helper.make_node("Relu", ["c"], ["Y"])]
    m = _model(nodes, [_vi("X", [1, 4, 8, 8]), _vi("W", [6, 4, 1, 1])], [_vi("Y", None)], {})
    sess = fastq.InferenceSession(m)
    assert _ops(sess) == ["FusedConv"]
    feeds = {"X": RNG.standard_normal((1, 4, 8, 8)).astype(np.float32),
             "W": RNG.standard_normal((6, 4, 1, 1)).astype(np.float32)}
    np.testing.assert_allclose(sess.run(None, feeds)[0], run_ort(m, feeds)[0], rtol=1e-5,
                               atol=1e-6)


def test_kept_and_output_tensors_are_not_fused_away():
    m, _, _ = conv_bn_act("Relu")
    x = RNG.standard_normal((1, 8, 9, 7)).astype(np.float32)
    sess = fastq.InferenceSession(m, keep=["c"])
    assert _ops(sess) == ["Conv", "BatchNormalization", "Relu"]  # bn -> Relu: no Conv before
    got = sess.run_with_intermediates({"X": x}, ["c", "bn"])
    assert set(got) == {"c", "bn"}
    # ORT with the intermediates as extra outputs
    m2 = type(m)()
    m2.CopyFrom(m)
    m2.graph.output.extend([_vi("c", None), _vi("bn", None)])
    want = dict(zip(["Y", "c", "bn"], run_ort(m2, {"X": x})))
    np.testing.assert_allclose(got["c"], want["c"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["bn"], want["bn"], rtol=1e-5, atol=1e-5)
    # a graph output in the middle of the pattern stops the fusion at it
    sess2 = fastq.InferenceSession(m2)
    y, c, bn = sess2.run(None, {"X": x})
    np.testing.assert_allclose(c, want["c"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y, want["Y"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op", ["Add", "Sum"])
def test_add_relu_fused(op):
    nodes = [helper.make_node(op, ["A", "B"], ["s"]), helper.make_node("Relu", ["s"], ["Y"])]
    m = _model(nodes, [_vi("A", [2, 3, 4]), _vi("B", [3, 1])], [_vi("Y", ["a", "b", "c"])], {})
    sess = fastq.InferenceSession(m)
    assert _ops(sess) == ["FusedAdd"]
    feeds = {"A": RNG.standard_normal((2, 3, 4)).astype(np.float32),
             "B": RNG.standard_normal((3, 1)).astype(np.float32)}
    np.testing.assert_array_equal(sess.run(None, feeds)[0],
                                  np.maximum(feeds["A"] + feeds["B"], 0))


def test_add_relu_not_fused_when_sum_is_consumed_twice():
    nodes = [helper.make_node("Add", ["A", "B"], ["s"]), helper.make_node("Relu", ["s"], ["r"]),
             helper.make_node("Mul", ["s", "r"], ["Y"])]
    m = _model(nodes, [_vi("A", [4]), _vi("B", [4])], [_vi("Y", [4])], {})
    sess = fastq.InferenceSession(m)
    assert _ops(sess) == ["Add", "Relu", "Mul"]
    a, b = np.array([1, -2, 3, -4], np.float32), np.array([-2, 1, 1, 1], np.float32)
    np.testing.assert_array_equal(sess.run(None, {"A": a, "B": b})[0],
                                  (a + b) * np.maximum(a + b, 0))


def test_requesting_a_fused_away_tensor_says_to_keep_it():
    m, _, _ = conv_bn_act("Relu")
    sess = fastq.InferenceSession(m)
    x = RNG.standard_normal((1, 8, 9, 7)).astype(np.float32)
    with pytest.raises(fastq.ModelError, match=r"'c' was fused away.*keep="):
        sess.run_with_intermediates({"X": x}, ["c"])
    with pytest.raises(fastq.ModelError, match="no tensor named 'nope'"):
        sess.run_with_intermediates({"X": x}, ["nope"])


@pytest.mark.parametrize("bias_first", [False, True])
def test_matmul_bias_add_fused_bit_identical(bias_first):
    w = RNG.standard_normal((8, 5)).astype(np.float32)
    c = RNG.standard_normal(5).astype(np.float32)
    add_in = ["c", "p"] if bias_first else ["p", "c"]
    nodes = [helper.make_node("MatMul", ["A", "W"], ["p"]), helper.make_node("Add", add_in, ["Y"])]
    m = _model(nodes, [_vi("A", [2, 3, 8])], [_vi("Y", [2, 3, 5])], {"W": w, "c": c})
    sess = fastq.InferenceSession(m)
    assert _ops(sess) == ["FusedMatMul"]
    a = RNG.standard_normal((2, 3, 8)).astype(np.float32)
    np.testing.assert_array_equal(sess.run(None, {"A": a})[0], np.matmul(a, w) + c)
    # a 2-D bias (not a plain per-column vector) and a kept product are left unfused
    m2 = _model(nodes, [_vi("A", [2, 3, 8])], [_vi("Y", [2, 3, 5])],
                {"W": w, "c": np.tile(c, (3, 1))})
    assert _ops(fastq.InferenceSession(m2)) == ["MatMul", "Add"]
    assert _ops(fastq.InferenceSession(m, keep=["p"])) == ["MatMul", "Add"]


# ------------------------------------------------------------------------------ erf GELU
SQRT2 = np.float32(np.sqrt(2.0))


def gelu_model(form, div=True, swap=False, c2_vec=False, extra_output=None, dtype=np.float32):
    """x -> Div(x, sqrt2) | Mul(x, 1/sqrt2) -> Erf -> Add(1) -> the two Muls of ``form``
    (0: (x * a) * 0.5, 1: (x * 0.5) * a, 2: (a * 0.5) * x); ``swap`` puts constants first
    where the op commutes; ``c2_vec``: the Add's constant is a vector (no fusion)."""
    t = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    c = {"c1": np.asarray(SQRT2 if div else 1 / SQRT2, dtype),
         "c2": np.ones(6, dtype) if c2_vec else np.asarray(1.0, dtype),
         "c3": np.asarray(0.5, dtype)}

    def mul(a, b, out):
        return helper.make_node("Mul", [b, a] if swap else [a, b], [out])
    nodes = [helper.make_node("Div", ["x", "c1"], ["t"]) if div else mul("x", "c1", "t"),
             helper.make_node("Erf", ["t"], ["e"]),
             helper.make_node("Add", ["c2", "e"] if swap else ["e", "c2"], ["a"])]
    if form == 0:
        nodes += [mul("x", "a", "m"), mul("m", "c3", "y")]
    elif form == 1:
        nodes += [mul("x", "c3", "h"), mul("h", "a", "y")]
    else:
        nodes += [mul("a", "c3", "m"), mul("m", "x", "y")]
    outs = [helper.make_tensor_value_info("y", t, [3, 6])]
    if extra_output:
        outs.append(helper.make_tensor_value_info(extra_output, t, [3, 6]))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", t, [3, 6])], outs,
                          [numpy_helper.from_array(v, k) for k, v in c.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


GELU_X = np.array([[0.0, -0.0, 1.0, -1.0, 3.9, -4.5],
                   [1e-30, -7.0, 0.5, 2.8, np.inf, -np.inf],
                   [np.nan, 1e30, -1e-3, 10.0, -2.2, 0.1]], np.float32)


@pytest.mark.parametrize("form", [0, 1, 2])
@pytest.mark.parametrize("div", [True, False])
@pytest.mark.parametrize("swap", [False, True])
def test_erf_gelu_fused_equals_its_ops_bit_for_bit(form, div, swap):
    """Every exported association fuses into ErfGelu and returns the unfused ops' bits (the
    run keeping an intermediate is the unfused graph), NaN and infinities included; both
    agree with ONNX Runtime to erf's float accuracy."""
    m = gelu_model(form, div, swap)
    fused = fastq.InferenceSession(m)
    assert _ops(fused).count("ErfGelu") == 1 and "Erf" not in _ops(fused)
    plain = fastq.InferenceSession(m, keep=["e"])
    assert "ErfGelu" not in _ops(plain)
    x = np.concatenate([GELU_X, (RNG.standard_normal((3, 6)) * 3).astype(np.float32)])
    for xs in (x[:3], x[3:]):
        got, want = fused.run(None, {"x": xs})[0], plain.run(None, {"x": xs})[0]
        assert got.dtype == np.float32 and np.array_equal(got, want, equal_nan=True)
    xs = x[3:]
    np.testing.assert_allclose(fused.run(None, {"x": xs})[0], run_ort(m, {"x": xs})[0],
                               rtol=2e-6, atol=1e-6)


def test_erf_gelu_not_fused_where_it_would_change_results_or_lose_a_tensor():
    import math
    x = (RNG.standard_normal((3, 6)) * 2).astype(np.float32)
    for m, feed in ((gelu_model(0, extra_output="a"), x),    # an intermediate is an output
                    (gelu_model(0, c2_vec=True), x),         # a non-scalar constant
                    (gelu_model(1, dtype=np.float64), x.astype(np.float64))):  # float64
        sess = fastq.InferenceSession(m)
        assert "ErfGelu" not in _ops(sess) and "Erf" in _ops(sess)
        want = np.vectorize(lambda v: 0.5 * v * (1 + math.erf(v / math.sqrt(2))))(
            feed.astype(np.float64))
        np.testing.assert_allclose(sess.run(None, {"x": feed})[0], want, rtol=2e-6, atol=1e-6)
    # Div with the constant as numerator is not a GELU
    m = gelu_model(0)
    m.graph.node[0].input[:] = ["c1", "x"]
    assert "ErfGelu" not in _ops(fastq.InferenceSession(m))


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 33, 1000, (1 << 14) + 5])
def test_gelu_kernel_impls_equal_ref(n):
    from fastq import _core
    from test_nn_ops_util import impls
    x = (RNG.standard_normal(n) * 4).astype(np.float32)
    x[:min(n, 6)] = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e30][:min(n, 6)]
    # constants whose products round (not 0.5): each association gives its own bits
    c1, c2, c3 = np.float32(1.4142135), np.float32(1.3), np.float32(0.7)
    for div in (True, False):
        a = _core.nn_erf(x / c1 if div else x * c1, "ref") + c2    # the ops, in numpy float32
        for form, oracle in enumerate(((x * a) * c3, (x * c3) * a, (a * c3) * x)):
            want = _core.nn_gelu_erf(x, c1, div, c2, c3, form, "ref")
            assert np.array_equal(want, oracle, equal_nan=True), (n, div, form)
            for impl in impls():
                got = _core.nn_gelu_erf(x, c1, div, c2, c3, form, impl)
                assert np.array_equal(got, want, equal_nan=True), (impl, n, div, form)
