"""The float32 row kernels (nn_eltwise.h): softmax and LayerNormalization over the last axis.
Every impl returns the ref impl's bits, on every thread count; ref matches float64 oracles to
float32 accuracy; NaN, infinities and attention-mask sentinels behave as numpy's path does;
the Softmax and LayerNormalization ops take the kernels exactly where they apply and agree
with ONNX's reference evaluator."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

import fastq
from fastq import _core
from models.util import on_threads
from test_nn_ops_util import impls

RNG = np.random.default_rng(91)
LENGTHS = [1, 2, 3, 7, 15, 16, 17, 31, 32, 33, 128, 1000]


def softmax64(x: np.ndarray) -> np.ndarray:
    """Oracle on the float32 shifted input (x - max rounds in float32 on both sides)."""
    d = (x - x.max(axis=-1, keepdims=True)).astype(np.float64)
    e = np.exp(d)
    return e / e.sum(axis=-1, keepdims=True)


def numpy_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and \
        bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


@pytest.mark.parametrize("L", LENGTHS)
def test_softmax_rows_equal_oracle_and_ref_bits(L):
    x = (RNG.standard_normal((23, L)) * 8).astype(np.float32)
    want = _core.nn_softmax_rows(x, "ref")
    np.testing.assert_allclose(want, softmax64(x), rtol=2e-6, atol=1e-37)
    for impl in impls():
        assert same_bits(_core.nn_softmax_rows(x, impl), want), (impl, L)


def test_exp_accuracy_over_its_whole_range():
    """Rows [0, x]: y[1] = e^x / (1 + e^x), for x from 0 down past the underflow cut."""
    x = np.linspace(-87.0, 0.0, 400001, dtype=np.float32)
    rows = np.stack([np.zeros_like(x), x], axis=1)
    e = np.exp(x.astype(np.float64))
    for impl in ["ref"] + impls():
        y = _core.nn_softmax_rows(rows, impl)
        np.testing.assert_allclose(y[:, 1], e / (1 + e), rtol=1e-6, atol=1e-37)
        np.testing.assert_allclose(y[:, 0], 1 / (1 + e), rtol=1e-6)
    far = np.array([[0.0, -87.5], [0.0, -200.0], [0.0, -3.4e38], [0.0, -np.inf]], np.float32)
    assert np.array_equal(_core.nn_softmax_rows(far, "ref"), [[1, 0]] * 4)


def test_softmax_special_values_behave_as_numpy():
    inf, nan = np.inf, np.nan
    x = np.array([[0.0, -inf, 1.0, -inf],          # masked entries: 0
                  [-inf, -inf, -inf, -inf],        # all masked: NaN (numpy: -inf - -inf)
                  [1.0, nan, 2.0, 3.0],            # a NaN: the row is NaN
                  [1.0, inf, 2.0, 3.0],            # +inf: NaN row (inf - inf)
                  [-3.4e38, -3.4e38, -3.4e38, -3.4e38],   # sentinel-only row: uniform
                  [0.0, -3.4e38, 0.0, -3.4e38],    # sentinel mask
                  [3.4e38, 3.4e38, -3.4e38, 0.0]], np.float32)
    with np.errstate(all="ignore"):
        want = numpy_softmax(x)
    for impl in ["ref"] + impls():
        got = _core.nn_softmax_rows(x, impl)
        assert np.array_equal(np.isnan(got), np.isnan(want)), impl
        np.testing.assert_allclose(got[~np.isnan(want)], want[~np.isnan(want)], rtol=1e-6)
    assert _core.nn_softmax_rows(np.zeros((0, 5), np.float32), "ref").shape == (0, 5)


def layernorm64(x, scale, bias, eps):
    x = x.astype(np.float64)
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    inv = 1 / np.sqrt(var + eps)
    y = (x - mean) * inv * scale + (0 if bias is None else bias)
    return y, mean[..., 0], inv[..., 0]


@pytest.mark.parametrize("L", LENGTHS)
@pytest.mark.parametrize("with_bias", [True, False])
def test_layernorm_rows_equal_oracle_and_ref_bits(L, with_bias):
    x = (RNG.standard_normal((19, L)) * 4 + 3).astype(np.float32)
    scale = RNG.standard_normal(L).astype(np.float32)
    bias = RNG.standard_normal(L).astype(np.float32) if with_bias else None
    want = _core.nn_layernorm_rows(x, scale, bias, 1e-5, "ref")
    y64, m64, i64 = layernorm64(x, scale, bias, 1e-5)
    np.testing.assert_allclose(want[0], y64, rtol=1e-5, atol=2e-6 * max(1.0, np.abs(y64).max()))
    np.testing.assert_allclose(want[1], m64, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(want[2], i64, rtol=2e-6)
    for impl in impls():
        got = _core.nn_layernorm_rows(x, scale, bias, 1e-5, impl)
        assert all(same_bits(g, w) for g, w in zip(got, want)), (impl, L)


def test_row_kernels_ignore_the_thread_count():
    x = (RNG.standard_normal((4096, 96)) * 5).astype(np.float32)
    scale = RNG.standard_normal(96).astype(np.float32)
    bias = RNG.standard_normal(96).astype(np.float32)
    for impl in ["ref"] + impls():
        one, two = on_threads((1, 2), lambda: (
            _core.nn_softmax_rows(x, impl), *_core.nn_layernorm_rows(x, scale, bias, 1e-5, impl)))
        assert all(same_bits(a, b) for a, b in zip(one, two)), impl


def test_row_kernel_argument_errors():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="float32"):
        _core.nn_softmax_rows(x.astype(np.float64), "ref")
    with pytest.raises(ValueError, match="2-D"):
        _core.nn_softmax_rows(np.ones(3, np.float32), "ref")
    with pytest.raises(ValueError, match="scale"):
        _core.nn_layernorm_rows(x, np.ones(2, np.float32), None, 1e-5, "ref")
    with pytest.raises(ValueError, match="bias"):
        _core.nn_layernorm_rows(x, np.ones(3, np.float32), np.ones(4, np.float32), 1e-5, "ref")


# ------------------------------------------------------------------------------ the ops
def _run_both(node, inputs, outputs, feeds, opset):
    g = helper.make_graph([node], "g", inputs, outputs)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    got = fastq.InferenceSession(m).run(None, feeds)
    want = ReferenceEvaluator(m).run(None, feeds)
    return got, want


@pytest.mark.parametrize("opset,axis,shape", [(13, -1, (2, 3, 40)), (13, 2, (2, 3, 17)),
                                              (13, 1, (2, 5, 7)), (11, 1, (2, 3, 4)),
                                              (11, 2, (2, 3, 4)), (11, 0, (3, 5))])
def test_softmax_op_matches_reference(monkeypatch, opset, axis, shape):
    """The kernel runs exactly when the normalized axis is the last one (before opset 13:
    the 2-D coercion's columns); other axes keep numpy's path. Both agree with ONNX's
    reference evaluator."""
    calls = []
    real = _core.nn_softmax_rows
    monkeypatch.setattr(_core, "nn_softmax_rows", lambda *a: calls.append(1) or real(*a))
    x = (RNG.standard_normal(shape) * 4).astype(np.float32)
    node = helper.make_node("Softmax", ["x"], ["y"], axis=axis)
    got, want = _run_both(node, [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
                          {"x": x}, opset)
    if opset < 13:   # the reference evaluator applies opset 13's single-axis rule here;
        a = axis % len(shape)    # Softmax-11 normalizes the 2-D coercion's rows (as ORT)
        want = [softmax64(x.reshape(int(np.prod(shape[:a])), -1)).reshape(shape)]
    np.testing.assert_allclose(got[0], want[0], rtol=2e-6, atol=1e-7)
    last = axis in (-1, len(shape) - 1) if opset >= 13 else True
    assert bool(calls) == last


@pytest.mark.parametrize("axis,outputs,with_bias", [(-1, 3, True), (-1, 1, False),
                                                    (2, 3, True), (1, 3, True)])
def test_layernorm_op_matches_reference(monkeypatch, axis, outputs, with_bias):
    calls = []
    real = _core.nn_layernorm_rows
    monkeypatch.setattr(_core, "nn_layernorm_rows", lambda *a: calls.append(1) or real(*a))
    shape = (2, 5, 24)
    norm = shape[axis:]
    x = (RNG.standard_normal(shape) * 3 + 1).astype(np.float32)
    scale = RNG.standard_normal(norm).astype(np.float32)
    ins = ["x", "scale"] + (["b"] if with_bias else [])
    outs = ["y", "mean", "inv"][:outputs]
    feeds = {"x": x, "scale": scale}
    vis = [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape),
           helper.make_tensor_value_info("scale", TensorProto.FLOAT, norm)]
    if with_bias:
        feeds["b"] = RNG.standard_normal(norm).astype(np.float32)
        vis.append(helper.make_tensor_value_info("b", TensorProto.FLOAT, norm))
    node = helper.make_node("LayerNormalization", ins, outs, axis=axis, epsilon=1e-4)
    stat = shape[:axis % len(shape)] + (1,) * len(norm)
    got, want = _run_both(node, vis, [helper.make_tensor_value_info(o, TensorProto.FLOAT,
                                                                    shape if o == "y" else stat)
                                      for o in outs], feeds, 17)
    assert len(got) == outputs
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    assert bool(calls) == (axis in (-1, 2))
