"""Pooling against a float64 numpy oracle that stacks every window tap (NaN outside the
input): MaxPool (+ Indices in both storage orders), AveragePool (count_include_pad),
LpPool, with ceil_mode, dilations, strides, asymmetric pads, auto_pad, 1-D/2-D/3-D, batch > 1;
int8/uint8 max pooling exactly; every impl bit-identical; global pools; old opsets vs ORT."""

from __future__ import annotations

import itertools

import numpy as np
import onnx
import pytest

from fastq import _core
from test_nn_ops_util import impls, one_node_model, run_fastq, run_ort

RNG = np.random.default_rng(99)


def out_extent(in_sp, k, s, d, pb, pe, ceil_mode):
    out = []
    for a in range(len(k)):
        span = in_sp[a] + pb[a] + pe[a] - (k[a] - 1) * d[a] - 1
        o = (-(-span // s[a]) if ceil_mode else span // s[a]) + 1
        if ceil_mode and (o - 1) * s[a] >= in_sp[a] + pb[a]:
            o -= 1
        out.append(o)
    return out


def pool_oracle(x, kind, k, s, d, pb, pe, out, cip=False, p=2, storage_order=0):
    nd = len(k)
    in_sp = x.shape[2:]
    need = [(out[a] - 1) * s[a] + (k[a] - 1) * d[a] + 1 for a in range(nd)]
    tail = [max(pe[a], need[a] - in_sp[a] - pb[a]) for a in range(nd)]
    val = np.pad(x.astype(np.float64), [(0, 0), (0, 0)] + list(zip(pb, tail)),
                 constant_values=np.nan)
    inpad = np.pad(np.ones(in_sp), list(zip(pb, pe)), constant_values=1.0)
    inpad = np.pad(inpad, [(0, t - e) for t, e in zip(tail, pe)])
    taps, cnt, coords = [], [], []
    for tap in itertools.product(*[range(e) for e in k]):
        sl = tuple(slice(tap[a] * d[a], tap[a] * d[a] + (out[a] - 1) * s[a] + 1, s[a])
                   for a in range(nd))
        taps.append(val[(slice(None), slice(None)) + sl])
        cnt.append(inpad[sl])
        coords.append(tap)
    t = np.stack(taps)
    valid = ~np.isnan(t)
    if kind == "max":
        y = np.max(np.where(valid, t, -np.inf), axis=0)
        first = np.argmax(np.where(valid, t, -np.inf), axis=0)   # first maximum
        grids = np.meshgrid(*[np.arange(o) for o in out], indexing="ij")
        pos = [grids[a][None, None] * s[a] - pb[a] +
               np.asarray(coords)[:, a][first] * d[a] for a in range(nd)]
        if storage_order == 0:
            flat = np.ravel_multi_index(pos, in_sp, order="C")
        else:
            flat = np.ravel_multi_index(pos, in_sp, order="F")
        vol = int(np.prod(in_sp))
        plane = np.arange(x.shape[0] * x.shape[1]).reshape(x.shape[:2] + (1,) * nd)
        return y, flat + plane * vol
    if kind == "avg":
        total = np.sum(np.where(valid, t, 0.0), axis=0)
        n = np.sum(np.stack(cnt), axis=0) if cip else np.sum(valid, axis=0)
        return total / n
    return np.sum(np.where(valid, np.abs(t) ** p, 0.0), axis=0) ** (1.0 / p)


POOL_SWEEP = [
    # (x shape, kernel, strides, dilations, pads, ceil_mode)
    ((1, 2, 7, 7), (3, 3), (2, 2), (1, 1), [1, 1, 1, 1], 0),
    ((2, 3, 8, 9), (2, 3), (2, 1), (1, 1), [0, 1, 1, 0], 1),
    ((1, 2, 11, 10), (3, 3), (3, 2), (2, 2), [1, 2, 0, 1], 1),
    ((1, 1, 6, 6), (3, 3), (2, 2), (1, 1), [0, 0, 0, 0], 1),
    ((1, 2, 5, 13), (2, 2), (1, 3), (3, 1), [1, 0, 1, 2], 0),
    ((2, 2, 17), (4,), (3,), (2,), [2, 1], 1),                          # 1-D
    ((1, 2, 5, 6, 7), (2, 3, 2), (2, 1, 3), (1, 2, 1), [1, 0, 1, 0, 1, 1], 1),   # 3-D
    ((1, 3, 9, 33), (3, 3), (1, 1), (1, 1), [1, 1, 1, 1], 0),
    ((1, 1, 1, 1), (1, 1), (1, 1), (1, 1), [0, 0, 0, 0], 0),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", range(len(POOL_SWEEP)))
def test_max_pool_with_indices(case, dtype):
    xs, k, s, d, pads, ceil = POOL_SWEEP[case]
    nd = len(k)
    x = RNG.standard_normal(xs).astype(dtype)
    out = out_extent(xs[2:], k, s, d, pads[:nd], pads[nd:], ceil)
    for order in (0, 1):
        y, idx = run_fastq("MaxPool", [x], 12, outputs=("Y", "I"), kernel_shape=list(k),
                           strides=list(s), dilations=list(d), pads=pads, ceil_mode=ceil,
                           storage_order=order)
        wy, wi = pool_oracle(x, "max", k, s, d, pads[:nd], pads[nd:], out, storage_order=order)
        assert list(y.shape[2:]) == out and y.dtype == dtype and idx.dtype == np.int64
        assert np.array_equal(y, wy.astype(dtype))
        assert np.array_equal(idx, wi)
    (y2,) = run_fastq("MaxPool", [x], 12, kernel_shape=list(k), strides=list(s),
                      dilations=list(d), pads=pads, ceil_mode=ceil)
    assert np.array_equal(y2, y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", range(len(POOL_SWEEP)))
@pytest.mark.parametrize("cip", [0, 1])
def test_average_pool(case, dtype, cip):
    xs, k, s, d, pads, ceil = POOL_SWEEP[case]
    nd = len(k)
    x = RNG.standard_normal(xs).astype(dtype)
    out = out_extent(xs[2:], k, s, d, pads[:nd], pads[nd:], ceil)
    (y,) = run_fastq("AveragePool", [x], 22, kernel_shape=list(k), strides=list(s),
                     dilations=list(d), pads=pads, ceil_mode=ceil, count_include_pad=cip)
    want = pool_oracle(x, "avg", k, s, d, pads[:nd], pads[nd:], out, cip=bool(cip))
    tol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(y, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("p", [1, 2, 3])
@pytest.mark.parametrize("case", range(len(POOL_SWEEP)))
def test_lp_pool(case, p):
    xs, k, s, d, pads, ceil = POOL_SWEEP[case]
    nd = len(k)
    x = RNG.standard_normal(xs).astype(np.float32)
    out = out_extent(xs[2:], k, s, d, pads[:nd], pads[nd:], ceil)
    (y,) = run_fastq("LpPool", [x], 22, kernel_shape=list(k), strides=list(s),
                     dilations=list(d), pads=pads, ceil_mode=ceil, p=p)
    want = pool_oracle(x, "lp", k, s, d, pads[:nd], pads[nd:], out, p=p)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
@pytest.mark.parametrize("op", ["MaxPool", "AveragePool", "LpPool"])
def test_pool_auto_pad(op, auto_pad):
    x = RNG.standard_normal((2, 3, 9, 8)).astype(np.float32)
    k, s = (3, 2), (2, 3)
    (y,) = run_fastq(op, [x], 22, kernel_shape=list(k), strides=list(s), auto_pad=auto_pad)
    if auto_pad == "VALID":
        pb = pe = [0, 0]
    else:
        out = [-(-i // st) for i, st in zip(x.shape[2:], s)]
        tot = [max(0, (o - 1) * st + kk - i) for o, st, kk, i in zip(out, s, k, x.shape[2:])]
        pb = [t // 2 if auto_pad == "SAME_UPPER" else t - t // 2 for t in tot]
        pe = [t - b for t, b in zip(tot, pb)]
    out = out_extent(x.shape[2:], k, s, (1, 1), pb, pe, False)
    kind = {"MaxPool": "max", "AveragePool": "avg", "LpPool": "lp"}[op]
    want = pool_oracle(x, kind, k, s, (1, 1), pb, pe, out)
    want = want[0] if kind == "max" else want
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_max_pool_int8_exact(dtype):
    info = np.iinfo(dtype)
    x = RNG.integers(info.min, info.max + 1, size=(2, 3, 9, 10)).astype(dtype)
    x[0, 0] = info.min     # a whole plane at the minimum
    y, idx = run_fastq("MaxPool", [x], 12, outputs=("Y", "I"), kernel_shape=[3, 3],
                       strides=[2, 2], pads=[1, 1, 1, 1])
    wy, wi = pool_oracle(x, "max", (3, 3), (2, 2), (1, 1), (1, 1), (1, 1), [5, 5])
    assert y.dtype == dtype and np.array_equal(y, wy.astype(dtype)) and np.array_equal(idx, wi)
    (y2,) = run_fastq("MaxPool", [x], 12, kernel_shape=[3, 3], strides=[2, 2],
                      pads=[1, 1, 1, 1])
    assert np.array_equal(y2, y)


KIND_DTYPES = [("max", np.float32), ("max", np.float64), ("max", np.int8), ("max", np.uint8),
               ("avg", np.float32), ("avg", np.float64), ("lp", np.float32), ("lp", np.float64)]


@pytest.mark.parametrize("kind,dtype", KIND_DTYPES)
@pytest.mark.parametrize("case", range(len(POOL_SWEEP)))
def test_pool_impls_bit_identical(case, kind, dtype):
    xs, k, s, d, pads, ceil = POOL_SWEEP[case]
    nd = len(k)
    x = (RNG.standard_normal(xs) * 50).astype(dtype)
    out = out_extent(xs[2:], k, s, d, pads[:nd], pads[nd:], ceil)
    args = (list(k), list(s), list(d), pads[:nd], pads[nd:], out, True, 3)
    ref = _core.nn_pool(x, kind, *args, impl="ref")
    for impl in impls():
        assert np.array_equal(_core.nn_pool(x, kind, *args, impl=impl), ref, equal_nan=True), \
            impl


@pytest.mark.parametrize("shape", [(2, 3, 5), (1, 4, 3, 7), (2, 2, 3, 4, 5)])
def test_global_pools(shape):
    x = RNG.standard_normal(shape).astype(np.float32)
    axes = tuple(range(2, len(shape)))
    (ya,) = run_fastq("GlobalAveragePool", [x], 22)
    (ym,) = run_fastq("GlobalMaxPool", [x], 22)
    (yl,) = run_fastq("GlobalLpPool", [x], 22, p=3)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(ya, x64.mean(axis=axes, keepdims=True), rtol=1e-5, atol=1e-6)
    assert np.array_equal(ym, x.max(axis=axes, keepdims=True))
    np.testing.assert_allclose(yl, (np.abs(x64) ** 3).sum(axis=axes, keepdims=True) ** (1 / 3),
                               rtol=1e-5)
    assert ya.dtype == ym.dtype == yl.dtype == np.float32


OLD_OPSETS = [
    ("MaxPool", 8, dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                        storage_order=1), 2),
    ("MaxPool", 10, dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1, dilations=[2, 1]),
     2),
    ("AveragePool", 7, dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1), 1),
    ("AveragePool", 10, dict(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1), 1),
    ("AveragePool", 19, dict(kernel_shape=[2, 3], dilations=[2, 2], pads=[1, 1, 1, 1],
                             count_include_pad=1), 1),
    ("LpPool", 2, dict(kernel_shape=[2, 2], p=3), 1),
    ("LpPool", 18, dict(kernel_shape=[3, 2], strides=[2, 1], ceil_mode=1, dilations=[1, 2]), 1),
]


@pytest.mark.parametrize("op,opset,attrs,nout", OLD_OPSETS)
def test_pool_opsets_match_onnxruntime(op, opset, attrs, nout):
    x = RNG.standard_normal((2, 3, 9, 8)).astype(np.float32)
    outs = ("Y", "I")[:nout]
    got = run_fastq(op, [x], opset, outputs=outs, **attrs)
    types = [onnx.TensorProto.FLOAT, onnx.TensorProto.INT64][:nout]
    want = run_ort(one_node_model(op, [("X", x)], opset, outputs=outs, out_types=types,
                                  **attrs), {"X": x})
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
