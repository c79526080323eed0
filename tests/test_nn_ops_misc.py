"""Normalizations, Gemm/MatMul and the softmax family against numpy oracles, with the
opset differences that matter (softmax-family 2-D coercion before 13, BatchNormalization
spatial=0 before 9 and training_mode from 14, GroupNormalization 18 vs 21) and old opsets
cross-checked with ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest

from test_nn_ops_util import one_node_model, run_fastq, run_ort

RNG = np.random.default_rng(5)


def _softmax_rows(v):
    e = np.exp(v - v.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -3])
@pytest.mark.parametrize("opset", [1, 11, 13])
def test_softmax_family_axis_semantics(opset, axis):
    x = RNG.standard_normal((2, 3, 4)).astype(np.float32) * 4
    if opset < 13:   # flatten to (prod(shape[:axis]), prod(shape[axis:])), row-normalize
        a = axis % 3
        m = x.reshape(int(np.prod(x.shape[:a])), -1).astype(np.float64)
        sm = _softmax_rows(m).reshape(x.shape)
        hard = np.eye(m.shape[1])[np.argmax(m, axis=1)].reshape(x.shape)
    else:
        sm = np.moveaxis(_softmax_rows(np.moveaxis(x.astype(np.float64), axis, -1)), -1, axis)
        am = np.argmax(x, axis=axis)
        hard = np.moveaxis(np.eye(x.shape[axis])[am], -1, axis % 3)
    (y,) = run_fastq("Softmax", [x], opset, axis=axis)
    (ly,) = run_fastq("LogSoftmax", [x], opset, axis=axis)
    (hy,) = run_fastq("Hardmax", [x], opset, axis=axis)
    np.testing.assert_allclose(y, sm, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ly, np.log(sm), rtol=1e-5, atol=1e-6)
    assert np.array_equal(hy, hard.astype(np.float32))
    if opset == 11:
        for op, got in (("Softmax", y), ("LogSoftmax", ly), ("Hardmax", hy)):
            (want,) = run_ort(one_node_model(op, [("X", x)], opset, axis=axis), {"X": x})
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_softmax_default_axes_and_ties():
    x = np.array([[[1, 3, 3], [2, 2, 0]]], np.float32)
    (h13,) = run_fastq("Hardmax", [x], 13)              # axis -1, first max wins
    assert np.array_equal(h13, [[[0, 1, 0], [1, 0, 0]]])
    (h11,) = run_fastq("Hardmax", [x], 11)              # axis 1: rows of 6
    assert np.array_equal(h11, [[[0, 1, 0], [0, 0, 0]]])
    big = np.array([1000, 1001, 1002], np.float64)
    (s,) = run_fastq("Softmax", [big], 13)
    assert np.all(np.isfinite(s)) and s.dtype == np.float64


@pytest.mark.parametrize("ta,tb", [(0, 0), (1, 0), (0, 1), (1, 1)])
@pytest.mark.parametrize("cshape", [None, (), (1,), (5,), (3, 1), (3, 5)])
def test_gemm(ta, tb, cshape):
    a = RNG.standard_normal((4, 3) if ta else (3, 4)).astype(np.float32)
    b = RNG.standard_normal((5, 4) if tb else (4, 5)).astype(np.float32)
    c = None if cshape is None else RNG.standard_normal(cshape).astype(np.float32)
    (y,) = run_fastq("Gemm", [a, b, c], 13, transA=ta, transB=tb, alpha=0.5, beta=2.0)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    want = 0.5 * (a64.T if ta else a64) @ (b64.T if tb else b64)
    if c is not None:
        want = want + 2.0 * c
    assert y.shape == (3, 5) and y.dtype == np.float32
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sa,sb", [((3,), (3,)), ((3,), (2, 3, 4)), ((2, 1, 4, 3), (3,)),
                                   ((2, 1, 4, 3), (5, 3, 2)), ((7, 9), (9, 1)),
                                   ((1, 2, 3), (4, 3, 2))])
def test_matmul_broadcasting(sa, sb):
    a = RNG.standard_normal(sa)
    b = RNG.standard_normal(sb)
    (y,) = run_fastq("MatMul", [a, b], 13)
    np.testing.assert_allclose(y, np.matmul(a, b), rtol=1e-12)   # numpy's own semantics
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    (y32,) = run_fastq("MatMul", [a32, b32], 13)
    (want,) = run_ort(one_node_model("MatMul", [("A", a32), ("B", b32)], 13),
                      {"A": a32, "B": b32})
    np.testing.assert_allclose(y32, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 3), (2, 3, 5), (1, 4, 3, 3)])
def test_batch_normalization_inference(shape):
    x = RNG.standard_normal(shape).astype(np.float32)
    c = shape[1]
    s, b, m = (RNG.standard_normal(c).astype(np.float32) for _ in range(3))
    v = RNG.random(c).astype(np.float32) + 0.5
    shp = (1, c) + (1,) * (len(shape) - 2)
    want = ((x - m.reshape(shp)) / np.sqrt(v.reshape(shp) + 1e-3) * s.reshape(shp) +
            b.reshape(shp))
    for opset in (7, 9, 15):
        (y,) = run_fastq("BatchNormalization", [x, s, b, m, v], opset, epsilon=1e-3)
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def test_batch_normalization_spatial0_opset7():
    x = RNG.standard_normal((3, 2, 4)).astype(np.float32)
    s, b, m = (RNG.standard_normal((2, 4)).astype(np.float32) for _ in range(3))
    v = RNG.random((2, 4)).astype(np.float32) + 0.5
    (y,) = run_fastq("BatchNormalization", [x, s, b, m, v], 7, spatial=0)
    np.testing.assert_allclose(y, (x - m) / np.sqrt(v + 1e-5) * s + b, rtol=1e-5, atol=1e-6)


def test_batch_normalization_training_mode():
    x = RNG.standard_normal((4, 3, 5)).astype(np.float32)
    s, b, m = (RNG.standard_normal(3).astype(np.float32) for _ in range(3))
    v = RNG.random(3).astype(np.float32) + 0.5
    y, rm, rv = run_fastq("BatchNormalization", [x, s, b, m, v], 15,
                          outputs=("Y", "rm", "rv"), training_mode=1, momentum=0.8)
    bm, bv = x.mean(axis=(0, 2)), x.var(axis=(0, 2))
    want = (x - bm[:, None]) / np.sqrt(bv[:, None] + 1e-5) * s[:, None] + b[:, None]
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(rm, 0.8 * m + 0.2 * bm, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rv, 0.8 * v + 0.2 * bv, rtol=1e-5, atol=1e-6)


def test_instance_normalization():
    x = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)
    s, b = RNG.standard_normal(3).astype(np.float32), RNG.standard_normal(3).astype(np.float32)
    (y,) = run_fastq("InstanceNormalization", [x, s, b], 6, epsilon=1e-4)
    mu = x.mean(axis=(2, 3), keepdims=True)
    var = x.var(axis=(2, 3), keepdims=True)
    want = (x - mu) / np.sqrt(var + 1e-4) * s[:, None, None] + b[:, None, None]
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("axis", [0, 1, -1, 2])
def test_layer_normalization_outputs(axis):
    x = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    a = axis % 3
    norm = x.shape[a:]
    s = RNG.standard_normal(norm).astype(np.float32)
    b = RNG.standard_normal(norm[-1:]).astype(np.float32)       # broadcasts
    y, mean, inv = run_fastq("LayerNormalization", [x, s, b], 17, outputs=("Y", "M", "I"),
                             axis=axis, epsilon=1e-3)
    axes = tuple(range(a, 3))
    mu = x.astype(np.float64).mean(axis=axes, keepdims=True)
    var = x.astype(np.float64).var(axis=axes, keepdims=True)
    np.testing.assert_allclose(y, (x - mu) / np.sqrt(var + 1e-3) * s + b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(mean, mu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(inv, 1 / np.sqrt(var + 1e-3), rtol=1e-5)
    assert mean.shape == x.shape[:a] + (1,) * (3 - a)


@pytest.mark.parametrize("opset", [18, 21])
def test_group_normalization_versions(opset):
    x = RNG.standard_normal((2, 6, 3, 2)).astype(np.float32)
    g = 3
    n = g if opset == 18 else 6          # 18: per-group scale/bias; 21: per-channel
    s, b = RNG.standard_normal(n).astype(np.float32), RNG.standard_normal(n).astype(np.float32)
    (y,) = run_fastq("GroupNormalization", [x, s, b], opset, num_groups=g, epsilon=1e-4)
    xg = x.reshape(2, g, -1).astype(np.float64)
    z = ((xg - xg.mean(axis=2, keepdims=True)) /
         np.sqrt(xg.var(axis=2, keepdims=True) + 1e-4)).reshape(x.shape)
    sc = np.repeat(s, 6 // n).reshape(1, 6, 1, 1)
    bc = np.repeat(b, 6 // n).reshape(1, 6, 1, 1)
    np.testing.assert_allclose(y, z * sc + bc, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_lrn(size):
    x = RNG.standard_normal((2, 7, 3, 2)).astype(np.float32)
    (y,) = run_fastq("LRN", [x], 13, size=size, alpha=0.01, beta=0.6, bias=1.5)
    c = x.shape[1]
    sq = np.zeros_like(x, dtype=np.float64)
    for ch in range(c):   # direct statement of the spec's channel window
        lo = max(0, ch - (size - 1) // 2)
        hi = min(c - 1, ch + int(np.ceil((size - 1) / 2)))
        sq[:, ch] = (x[:, lo:hi + 1].astype(np.float64) ** 2).sum(axis=1)
    want = x / (1.5 + 0.01 / size * sq) ** 0.6
    np.testing.assert_allclose(y, want, rtol=1e-5)
    if size % 2 == 0:
        return   # ONNX Runtime only takes odd sizes; the numpy oracle covered this one
    (w_ort,) = run_ort(one_node_model("LRN", [("X", x)], 13, size=size, alpha=0.01, beta=0.6,
                                      bias=1.5), {"X": x})
    np.testing.assert_allclose(y, w_ort, rtol=1e-5, atol=1e-6)


def test_float16_conv_computes_in_float32():
    x = RNG.standard_normal((1, 2, 5, 5)).astype(np.float16)
    w = RNG.standard_normal((3, 2, 3, 3)).astype(np.float16)
    (y,) = run_fastq("Conv", [x, w], 13, pads=[1, 1, 1, 1])
    (y32,) = run_fastq("Conv", [x.astype(np.float32), w.astype(np.float32)], 13,
                       pads=[1, 1, 1, 1])
    assert y.dtype == np.float16
    assert np.array_equal(y, y32.astype(np.float16))
