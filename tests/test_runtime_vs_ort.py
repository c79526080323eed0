"""Whole models as PyTorch exports shape them, fastq against ONNX Runtime on the same feeds:
a dynamic-shape subgraph (Shape/Gather/Concat/Reshape/Range/Where), a small CNN and a
transformer encoder block. Models needing ops fastq has not registered yet are skipped by name.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

import fastq

from _runtime_models import F, model, vi

ort = pytest.importorskip("onnxruntime")
RNG = np.random.default_rng(7)


def _need(m: onnx.ModelProto) -> None:
    missing = sorted({n.op_type for n in m.graph.node} - set(fastq.supported_ops()))
    if missing:
        pytest.skip(f"needs ops not registered yet: {', '.join(missing)}")


def _compare(m: onnx.ModelProto, feeds: dict, rtol=1e-5, atol=1e-6) -> None:
    _need(m)
    got = fastq.InferenceSession(m).run(None, feeds)
    ref = ort.InferenceSession(m.SerializeToString(),
                               providers=["CPUExecutionProvider"]).run(None, feeds)
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        assert g.dtype == r.dtype and g.shape == r.shape
        if g.dtype.kind in "iub":
            assert np.array_equal(g, r)
        else:
            np.testing.assert_allclose(g, r, rtol=rtol, atol=atol)


def c(name, arr):
    return helper.make_node("Constant", [], [name], value=onnx.numpy_helper.from_array(arr))


def dynamic_shape_model():
    """x[B,S,8] -> flatten heads via Shape/Gather/Concat/Reshape, a position mask from
    Range/Less/Where, CumSum, ReduceMean, Expand; exported-PyTorch style."""
    i64 = lambda v: np.array(v, np.int64)  # noqa: E731
    nodes = [
        helper.make_node("Shape", ["x"], ["shp"]),
        c("i0", i64(0)), c("i1", i64(1)), c("ax0", i64([0])),
        helper.make_node("Gather", ["shp", "i0"], ["b"], axis=0),
        helper.make_node("Gather", ["shp", "i1"], ["s"], axis=0),
        helper.make_node("Unsqueeze", ["b", "ax0"], ["b1"]),
        helper.make_node("Unsqueeze", ["s", "ax0"], ["s1"]),
        c("two", i64([2])), c("four", i64([4])),
        helper.make_node("Concat", ["b1", "s1", "two", "four"], ["newshape"], axis=0),
        helper.make_node("Reshape", ["x", "newshape"], ["xh"]),
        helper.make_node("Transpose", ["xh"], ["xt"], perm=[0, 2, 1, 3]),
        helper.make_node("Range", ["i0", "s", "i1"], ["pos"]),
        c("half", i64(2)),
        helper.make_node("Less", ["pos", "half"], ["keep"]),
        c("zero", np.array(0, np.float32)),
        helper.make_node("Unsqueeze", ["keep", "u"], ["keep4"]),
        helper.make_node("Where", ["keep4", "xt", "zero"], ["masked"]),
        helper.make_node("CumSum", ["masked", "i1"], ["cs"]),
        helper.make_node("ReduceMean", ["cs"], ["y"], axes=[-1], keepdims=1),
        helper.make_node("Expand", ["y", "shp4"], ["ye"]),
        helper.make_node("Erf", ["ye"], ["out"]),
    ]
    inits = {"u": np.array([0, 1, 3], np.int64), "shp4": np.array([1, 1, 1, 3], np.int64)}
    return model(nodes, [vi("x", F, ["B", "S", 8])], [vi("out", F, ["B", 2, "S", 3])], inits,
                 opset=17)


@pytest.mark.parametrize("b,s", [(1, 3), (4, 5)])
def test_dynamic_shape_subgraph_matches_ort(b, s):
    x = RNG.standard_normal((b, s, 8)).astype(np.float32)
    _compare(dynamic_shape_model(), {"x": x})


def cnn_model():
    w1 = (RNG.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32)
    w2 = (RNG.standard_normal((8, 8, 3, 3)) * 0.2).astype(np.float32)
    fc = (RNG.standard_normal((10, 8)) * 0.3).astype(np.float32)
    inits = {"w1": w1, "b1": np.zeros(8, np.float32), "w2": w2,
             "g": np.ones(8, np.float32) * 1.1, "be": np.full(8, 0.1, np.float32),
             "mu": np.full(8, 0.05, np.float32), "var": np.full(8, 0.9, np.float32),
             "fc": fc, "fcb": np.arange(10, dtype=np.float32) / 10}
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "g", "be", "mu", "var"], ["bn"]),
        helper.make_node("Relu", ["bn"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "p1"], ["res"]),
        helper.make_node("Clip", ["res", "lo", "hi"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc", "fcb"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["prob"], axis=-1),
    ]
    inits["lo"], inits["hi"] = np.float32(0), np.float32(6)
    return model(nodes, [vi("x", F, ["N", 3, 16, 16])], [vi("prob", F, ["N", 10])], inits,
                 opset=17)


@pytest.mark.parametrize("n", [1, 3])
def test_small_cnn_matches_ort(n):
    x = RNG.standard_normal((n, 3, 16, 16)).astype(np.float32)
    _compare(cnn_model(), {"x": x})


def encoder_model(d=16, heads=2, ff=32):
    dh = d // heads
    r = lambda *s: (RNG.standard_normal(s) * 0.2).astype(np.float32)  # noqa: E731
    inits = {"wq": r(d, d), "wk": r(d, d), "wv": r(d, d), "wo": r(d, d), "w1": r(d, ff),
             "w2": r(ff, d), "b1": r(ff), "ln_g": 1 + r(d), "ln_b": r(d),
             "hs": np.array([0, 0, heads, dh], np.int64), "ms": np.array([0, 0, d], np.int64),
             "scale": np.array(np.sqrt(dh), np.float32),
             "sqrt2": np.array(np.sqrt(2), np.float32), "one": np.array(1, np.float32),
             "halfc": np.array(0.5, np.float32)}
    nodes = [helper.make_node("LayerNormalization", ["x", "ln_g", "ln_b"], ["ln"], axis=-1)]
    for t in "qkv":
        nodes += [helper.make_node("MatMul", ["ln", f"w{t}"], [f"{t}0"]),
                  helper.make_node("Reshape", [f"{t}0", "hs"], [f"{t}1"]),
                  helper.make_node("Transpose", [f"{t}1"], [f"{t}h"],
                                   perm=[0, 2, 3, 1] if t == "k" else [0, 2, 1, 3])]
    nodes += [
        helper.make_node("MatMul", ["qh", "kh"], ["att0"]),
        helper.make_node("Div", ["att0", "scale"], ["att1"]),
        helper.make_node("Add", ["att1", "mask"], ["att2"]),
        helper.make_node("Softmax", ["att2"], ["att"], axis=-1),
        helper.make_node("MatMul", ["att", "vh"], ["ctx0"]),
        helper.make_node("Transpose", ["ctx0"], ["ctx1"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["ctx1", "ms"], ["ctx"]),
        helper.make_node("MatMul", ["ctx", "wo"], ["o"]),
        helper.make_node("Add", ["o", "x"], ["h"]),
        helper.make_node("MatMul", ["h", "w1"], ["f0"]),
        helper.make_node("Add", ["f0", "b1"], ["f1"]),
        # Gelu as PyTorch exports it: 0.5 * x * (1 + erf(x / sqrt 2))
        helper.make_node("Div", ["f1", "sqrt2"], ["g0"]),
        helper.make_node("Erf", ["g0"], ["g1"]),
        helper.make_node("Add", ["g1", "one"], ["g2"]),
        helper.make_node("Mul", ["f1", "g2"], ["g3"]),
        helper.make_node("Mul", ["g3", "halfc"], ["g4"]),
        helper.make_node("MatMul", ["g4", "w2"], ["f2"]),
        helper.make_node("Add", ["f2", "h"], ["y"]),
    ]
    return model(nodes, [vi("x", F, ["B", "S", d]), vi("mask", F, ["B", 1, 1, "S"])],
                 [vi("y", F, ["B", "S", d])], inits, opset=17)


@pytest.mark.parametrize("b,s", [(1, 4), (2, 7)])
def test_transformer_encoder_block_matches_ort(b, s):
    x = RNG.standard_normal((b, s, 16)).astype(np.float32)
    mask = np.where(RNG.random((b, 1, 1, s)) < 0.2, -1e4, 0).astype(np.float32)
    _compare(encoder_model(), {"x": x, "mask": mask}, rtol=1e-4, atol=1e-5)
