"""Channels-last float32 conv kernels (``_core.nn_depthwise_nhwc`` / ``nn_conv1x1_nhwc`` /
``nn_conv_nhwc`` over ``nn_nhwc_pack``) against a float64 numpy oracle for every impl, over
remainder shapes (channels and columns not multiples of the vector/panel widths, one pixel,
odd extents), every depthwise pad/stride/dilation mix and clamp bounds; and the layout
plumbing: convs hand on NHWC-backed NCHW views only to consumers that take them, and models
mixing them with Add/GlobalAveragePool/Concat/Reshape/Flatten/graph outputs match ONNX
Runtime and the all-NCHW execution."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import fastq
from fastq import _core
from fastq.runtime import float_fusion
from fastq.runtime.ops.nn_common import nhwc_view
from fastq.runtime.registry import Node
from test_nn_ops_util import impls, run_ort

RNG = np.random.default_rng(11)
F = TensorProto.FLOAT


def oracle(x, w, b, strides, dil, pads, out):
    """Direct float64 conv: x (N, C, H, W), w (M, C, KH, KW), begin pads; zeros outside."""
    x, w = x.astype(np.float64), w.astype(np.float64)
    n, c, h, wd = x.shape
    m, _, kh, kw = w.shape
    big = np.zeros((n, c, h + pads[0] + kh * dil[0] + out[0] * strides[0],
                    wd + pads[1] + kw * dil[1] + out[1] * strides[1]))
    big[:, :, pads[0]:pads[0] + h, pads[1]:pads[1] + wd] = x
    y = np.zeros((n, m) + tuple(out))
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dil[0], j * dil[1]
            sl = big[:, :, r0:r0 + (out[0] - 1) * strides[0] + 1:strides[0],
                     c0:c0 + (out[1] - 1) * strides[1] + 1:strides[1]]
            y += np.einsum("nchw,mc->nmhw", sl, w[:, :, i, j])
    if b is not None:
        y += np.asarray(b, np.float64)[None, :, None, None]
    return y


def out_extent(size, k, s, d, pb, pe):
    return (size + pb + pe - d * (k - 1) - 1) // s + 1


def nhwc(a):
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


def check(got_nhwc, want, lo, hi, what):
    want = np.clip(want, lo, hi)
    got = got_nhwc.transpose(0, 3, 1, 2)
    assert got.shape == want.shape, what
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * max(np.abs(want).max(), 1),
                               err_msg=what)


CLAMPS = [(-np.inf, np.inf), (0.0, 6.0), (0.0, np.inf), (-0.25, 0.5)]

# depthwise: (C, H, W, kernel, strides, dilations, begin pads, end pads)
DW_CASES = [
    (c, h, w, k, s, d, pb, pe)
    for c, (h, w) in zip([1, 3, 7, 8, 9, 15, 16, 17, 24, 31, 33, 40, 48, 72],
                         itertools.cycle([(7, 9), (12, 5), (1, 1), (5, 17), (16, 16)]))
    for k, s, d, pb, pe in [
        ((3, 3), (1, 1), (1, 1), (1, 1), (1, 1)),
        ((3, 3), (2, 2), (1, 1), (1, 1), (1, 1)),
        ((3, 3), (2, 2), (1, 1), (0, 1), (1, 0)),
        ((3, 3), (1, 1), (2, 2), (2, 2), (2, 2)),
        ((5, 5), (1, 2), (1, 1), (2, 3), (2, 0)),
        ((2, 3), (3, 1), (2, 1), (0, 2), (1, 1)),
        ((1, 1), (1, 1), (1, 1), (0, 0), (0, 0)),
        ((3, 1), (1, 1), (1, 1), (3, 0), (3, 0)),
        ((7, 7), (2, 2), (1, 1), (3, 3), (3, 3)),
    ]
    if out_extent(h, k[0], s[0], d[0], pb[0], pe[0]) >= 1
    and out_extent(w, k[1], s[1], d[1], pb[1], pe[1]) >= 1
]


@pytest.mark.parametrize("case", DW_CASES, ids=str)
def test_depthwise_nhwc_matches_oracle(case):
    c, h, wd, k, s, d, pb, pe = case
    out = [out_extent(h, k[0], s[0], d[0], pb[0], pe[0]),
           out_extent(wd, k[1], s[1], d[1], pb[1], pe[1])]
    x = RNG.standard_normal((2, c, h, wd)).astype(np.float32)
    w = RNG.standard_normal((c, 1) + k).astype(np.float32)
    b = RNG.standard_normal(c).astype(np.float32)
    wfull = np.zeros((c, c) + k, np.float32)
    wfull[np.arange(c), np.arange(c)] = w[:, 0]
    want = oracle(x, wfull, b, s, d, pb, out)
    wp = np.ascontiguousarray(w[:, 0].transpose(1, 2, 0))
    for impl in impls():
        for lo, hi in CLAMPS:
            y = _core.nn_depthwise_nhwc(nhwc(x), wp, b, list(s), list(d), list(pb), out, lo, hi,
                                        impl)
            check(y, want, lo, hi, f"{impl} [{lo}, {hi}]")
        y = _core.nn_depthwise_nhwc(nhwc(x), wp, None, list(s), list(d), list(pb), out,
                                    -np.inf, np.inf, impl)
        check(y, want - b[None, :, None, None], -np.inf, np.inf, f"{impl} no bias")


# 3x3 stride-1 rows with whole 16-channel vectors: the AVX-512 build computes pairs of
# output rows together (interior groups of 8 and 4 pixels); odd row counts, top/bottom pads
# of 0..2 and row chunks split across threads must all line up
DW_PAIR_CASES = [(32, 13, 21, (1, 1), (1, 1)), (16, 10, 12, (0, 1), (2, 1)),
                 (48, 9, 30, (1, 0), (1, 2)), (64, 7, 7, (1, 1), (1, 1)),
                 (16, 6, 40, (2, 2), (0, 0)), (32, 4, 4, (0, 0), (0, 0))]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", DW_PAIR_CASES, ids=str)
def test_depthwise_nhwc_row_pairs(case, threads):
    c, h, wd, pb, pe = case
    out = [h + pb[0] + pe[0] - 2, wd + pb[1] + pe[1] - 2]
    x = RNG.standard_normal((2, c, h, wd)).astype(np.float32)
    w = RNG.standard_normal((c, 1, 3, 3)).astype(np.float32)
    b = RNG.standard_normal(c).astype(np.float32)
    wfull = np.zeros((c, c, 3, 3), np.float32)
    wfull[np.arange(c), np.arange(c)] = w[:, 0]
    want = oracle(x, wfull, b, (1, 1), (1, 1), pb, out)
    wp = np.ascontiguousarray(w[:, 0].transpose(1, 2, 0))
    old = fastq.get_num_threads()
    fastq.set_num_threads(threads)
    try:
        for impl in impls():
            for lo, hi in CLAMPS[:2]:
                y = _core.nn_depthwise_nhwc(nhwc(x), wp, b, [1, 1], [1, 1], list(pb), out, lo,
                                            hi, impl)
                check(y, want, lo, hi, f"{impl} [{lo}, {hi}]")
    finally:
        fastq.set_num_threads(old)


# GEMM (1x1): (N, C, M, H, W, strides)
GEMM_CASES = [
    (1, 16, 24, 7, 9, (1, 1)), (1, 1, 1, 1, 1, (1, 1)), (2, 3, 5, 3, 3, (1, 1)),
    (1, 17, 33, 5, 5, (1, 1)), (1, 8, 16, 1, 13, (1, 1)), (1, 15, 31, 13, 1, (1, 1)),
    (1, 32, 47, 11, 11, (2, 2)), (2, 24, 40, 9, 14, (2, 1)), (1, 40, 64, 8, 8, (3, 2)),
    (1, 96, 17, 6, 6, (1, 1)), (1, 33, 100, 4, 7, (1, 1)), (3, 9, 12, 5, 3, (2, 2)),
    (1, 128, 65, 2, 2, (1, 1)), (1, 64, 130, 25, 1, (1, 1)),
]


@pytest.mark.parametrize("case", GEMM_CASES, ids=str)
def test_conv1x1_nhwc_matches_oracle(case):
    n, c, m, h, wd, s = case
    out = [(h - 1) // s[0] + 1, (wd - 1) // s[1] + 1]
    x = RNG.standard_normal((n, c, h, wd)).astype(np.float32)
    w = RNG.standard_normal((m, c, 1, 1)).astype(np.float32)
    b = RNG.standard_normal(m).astype(np.float32)
    want = oracle(x, w, b, s, (1, 1), (0, 0), out)
    wmat = np.ascontiguousarray(w[:, :, 0, 0].T)
    for impl in impls():
        packed = _core.nn_nhwc_pack(wmat, b, impl)
        nr = _core.nn_nhwc_panel_width(impl)
        assert packed.shape == (-(-m // nr), c + 1, nr)
        for lo, hi in CLAMPS:
            y = _core.nn_conv1x1_nhwc(nhwc(x), packed, m, list(s), out, lo, hi, impl)
            check(y, want, lo, hi, f"{impl} [{lo}, {hi}]")
        nob = _core.nn_nhwc_pack(wmat, None, impl)
        y = _core.nn_conv1x1_nhwc(nhwc(x), nob, m, list(s), out, -np.inf, np.inf, impl)
        check(y, want - b[None, :, None, None], -np.inf, np.inf, f"{impl} no bias")


# general group-1 conv: (N, C, M, H, W, kernel, strides, dilations, begin pads, end pads)
CONV_CASES = [
    (1, 3, 32, 17, 19, (3, 3), (2, 2), (1, 1), (1, 1), (1, 1)),   # a stem
    (2, 3, 20, 15, 15, (7, 7), (2, 2), (1, 1), (3, 3), (3, 3)),
    (1, 5, 17, 8, 9, (3, 3), (1, 1), (2, 2), (2, 2), (2, 2)),
    (1, 16, 33, 9, 9, (3, 3), (2, 2), (1, 1), (0, 0), (1, 1)),
    (1, 4, 7, 6, 11, (2, 3), (1, 2), (1, 2), (0, 3), (1, 0)),
    (1, 1, 9, 10, 10, (3, 3), (1, 1), (1, 1), (1, 1), (1, 1)),
    (1, 8, 12, 5, 5, (1, 1), (1, 1), (1, 1), (1, 1), (1, 1)),     # padded 1x1
    (1, 2, 3, 1, 1, (3, 3), (1, 1), (1, 1), (1, 1), (1, 1)),
    # wide rows: most tiles read their kernel rows in place (no column buffer)
    (1, 3, 16, 40, 41, (3, 3), (1, 1), (1, 1), (1, 1), (1, 1)),
    (2, 8, 24, 30, 37, (3, 3), (2, 2), (2, 1), (2, 1), (2, 1)),
    (1, 5, 40, 9, 64, (3, 5), (1, 3), (3, 1), (0, 2), (0, 2)),
    (1, 4, 9, 8, 8, (3, 3), (1, 1), (1, 1), (0, 0), (2, 2)),      # end pads > begin pads
]


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_conv_nhwc_matches_oracle(case):
    n, c, m, h, wd, k, s, d, pb, pe = case
    out = [out_extent(h, k[0], s[0], d[0], pb[0], pe[0]),
           out_extent(wd, k[1], s[1], d[1], pb[1], pe[1])]
    x = RNG.standard_normal((n, c, h, wd)).astype(np.float32)
    w = RNG.standard_normal((m, c) + k).astype(np.float32)
    b = RNG.standard_normal(m).astype(np.float32)
    want = oracle(x, w, b, s, d, pb, out)
    wmat = np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(-1, m))   # (kh, kw, c) rows
    for impl in impls():
        packed = _core.nn_nhwc_pack(wmat, b, impl)
        for lo, hi in CLAMPS[:2]:
            for layout, xx in (("nchw", x), ("nhwc", nhwc(x))):
                y = _core.nn_conv_nhwc(xx, layout, packed, m, list(k), list(s), list(d),
                                       list(pb), out, lo, hi, impl)
                check(y, want, lo, hi, f"{impl} {layout} [{lo}, {hi}]")


def test_impls_agree_and_fills():
    """All-zero and constant fills give exact results (no stray lanes from padding), and the
    impls agree with each other to rounding on a larger random problem."""
    x = np.zeros((1, 10, 10, 19), np.float32)
    wmat = RNG.standard_normal((19, 37)).astype(np.float32)
    b = RNG.standard_normal(37).astype(np.float32)
    for impl in impls():
        y = _core.nn_conv1x1_nhwc(x, _core.nn_nhwc_pack(wmat, b, impl), 37, [1, 1], [10, 10],
                                  -np.inf, np.inf, impl)
        assert np.array_equal(y, np.broadcast_to(b, y.shape))
        ones = np.ones((1, 6, 6, 19), np.float32)
        y = _core.nn_depthwise_nhwc(ones, np.ones((3, 3, 19), np.float32), None, [1, 1],
                                    [1, 1], [1, 1], [6, 6], -np.inf, np.inf, impl)
        taps = np.array([2, 3, 3, 3, 3, 2], np.float32)   # in-bounds taps per axis
        assert np.array_equal(y[0, :, :, 5], np.outer(taps, taps))
    xl = RNG.standard_normal((1, 28, 28, 144)).astype(np.float32)
    w2 = RNG.standard_normal((144, 72)).astype(np.float32)
    ys = [_core.nn_conv1x1_nhwc(xl, _core.nn_nhwc_pack(w2, None, i), 72, [1, 1], [28, 28],
                                -np.inf, np.inf, i) for i in impls()]
    for y in ys[1:]:
        np.testing.assert_allclose(y, ys[0], rtol=1e-4, atol=1e-4)


def test_nhwc_kernels_reject_bad_arguments():
    x = np.zeros((1, 4, 4, 8), np.float32)
    packed = _core.nn_nhwc_pack(np.zeros((8, 5), np.float32), None, "ref")
    with pytest.raises(ValueError, match="channels"):
        _core.nn_conv1x1_nhwc(np.zeros((1, 4, 4, 7), np.float32), packed, 5, [1, 1], [4, 4],
                              0.0, 1.0, "ref")
    with pytest.raises(ValueError, match="packed"):
        _core.nn_conv1x1_nhwc(x, packed, 40, [1, 1], [4, 4], 0.0, 1.0, "ref")
    with pytest.raises(ValueError, match="float32"):
        _core.nn_conv1x1_nhwc(x.astype(np.float64), packed, 5, [1, 1], [4, 4], 0.0, 1.0, "ref")
    with pytest.raises(ValueError, match="contiguous"):
        _core.nn_depthwise_nhwc(x.transpose(0, 2, 1, 3), np.zeros((3, 3, 8), np.float32),
                                None, [1, 1], [1, 1], [1, 1], [4, 4], 0.0, 1.0, "ref")
    with pytest.raises(ValueError, match="64 taps"):
        _core.nn_depthwise_nhwc(np.zeros((1, 70, 4, 8), np.float32),
                                np.zeros((65, 1, 8), np.float32), None, [1, 1], [1, 1],
                                [0, 0], [6, 4], 0.0, 1.0, "ref")


# -- layout plumbing ----------------------------------------------------------------------

def test_numpy_keeps_nhwc_views_through_elementwise_ops():
    """What the plumbing relies on: ufuncs on same-strided NHWC views give NHWC views (order
    'K'), also with a per-channel constant broadcast, and the view detector finds them."""
    a = nhwc(RNG.standard_normal((2, 5, 4, 3)).astype(np.float32)).transpose(0, 3, 1, 2)
    b = nhwc(RNG.standard_normal((2, 5, 4, 3)).astype(np.float32)).transpose(0, 3, 1, 2)
    for y in (np.add(a, b), np.maximum(np.add(a, b), 0), np.multiply(a, np.ones((1, 5, 1, 1),
                                                                                np.float32))):
        assert nhwc_view(y) is not None and not y.flags.c_contiguous
    assert nhwc_view(np.ascontiguousarray(a)) is None
    assert nhwc_view(a[:, :, ::2]) is None


def _conv(name, x, y, cin, cout, k=3, stride=1, group=1, pads=None, inits=None):
    w = (RNG.standard_normal((cout, cin // group, k, k)) / np.sqrt(cin // group * k * k))
    inits[name + "_w"] = w.astype(np.float32)
    inits[name + "_b"] = (0.1 * RNG.standard_normal(cout)).astype(np.float32)
    return helper.make_node("Conv", [x, name + "_w", name + "_b"], [y], name=name,
                            kernel_shape=[k, k], strides=[stride, stride], group=group,
                            pads=pads if pads is not None else [k // 2] * 4)


def mixed_model():
    """Stem (NCHW input) -> dw -> 1x1 expand/project with a residual Add, a Clip, a
    GlobalAveragePool + Flatten head, a Concat + Reshape branch, a MaxPool consumer and a
    conv output that is also a graph output."""
    inits, nodes = {}, []
    nodes.append(_conv("stem", "X", "s", 3, 16, stride=2, inits=inits))
    nodes.append(helper.make_node("Relu", ["s"], ["sr"]))
    nodes.append(_conv("dw", "sr", "d", 16, 16, group=16, inits=inits))
    nodes.append(helper.make_node("Clip", ["d", "lo", "hi"], ["dc"]))
    nodes.append(_conv("pw", "dc", "p", 16, 16, k=1, pads=[0] * 4, inits=inits))
    nodes.append(helper.make_node("Add", ["p", "sr"], ["a"]))
    nodes.append(_conv("ex", "a", "e", 16, 40, k=1, pads=[0] * 4, inits=inits))
    nodes.append(helper.make_node("Relu", ["e"], ["er"]))
    nodes.append(_conv("dw2", "er", "d2", 40, 40, stride=2, group=40, inits=inits))
    nodes.append(_conv("pj", "d2", "pj_out", 40, 24, k=1, pads=[0] * 4, inits=inits))
    nodes.append(helper.make_node("GlobalAveragePool", ["pj_out"], ["g"]))
    nodes.append(helper.make_node("Flatten", ["g"], ["head"]))
    nodes.append(_conv("br", "a", "bro", 16, 8, k=1, pads=[0] * 4, inits=inits))
    nodes.append(helper.make_node("Concat", ["bro", "a"], ["cat"], axis=1))
    nodes.append(helper.make_node("Reshape", ["cat", "shape"], ["flat"]))
    nodes.append(_conv("mp_in", "a", "m", 16, 8, k=1, pads=[0] * 4, inits=inits))
    nodes.append(helper.make_node("MaxPool", ["m"], ["mp"], kernel_shape=[2, 2],
                                  strides=[2, 2]))
    inits["lo"] = np.array(0.0, np.float32)
    inits["hi"] = np.array(6.0, np.float32)
    inits["shape"] = np.array([0, -1], np.int64)
    vi = helper.make_tensor_value_info
    outs = [vi("head", F, ["N", 24]), vi("flat", F, ["N", "K"]),
            vi("mp", F, ["N", 8, 6, 5]), vi("pj_out", F, ["N", 24, 6, 6]),
            vi("a", F, ["N", 16, 12, 11])]
    g = helper.make_graph(nodes, "mixed", [vi("X", F, ["N", 3, 23, 21])], outs,
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _marked(sess):
    return {st.node.name for st in sess._graph.steps if st.node.attr("nhwc_out", 0)}


def test_mixed_model_matches_ort_and_nchw_execution(monkeypatch):
    m = mixed_model()
    x = RNG.standard_normal((2, 3, 23, 21)).astype(np.float32)
    sess = fastq.InferenceSession(m)
    # dw, ex, dw2 feed NHWC-capable convs only; the stem and pw feed the Add whose output is a
    # graph output, pj is one, br feeds Concat, mp_in feeds MaxPool
    assert _marked(sess) == {"dw", "ex", "dw2"}
    got = sess.run(None, {"X": x})
    want = run_ort(m, {"X": x})
    monkeypatch.setattr(float_fusion, "mark_nhwc_outputs", lambda nodes, consts, pinned: nodes)
    plain = fastq.InferenceSession(m)
    assert not _marked(plain)
    ref = plain.run(None, {"X": x})
    for g, w, r in zip(got, want, ref):
        assert g.flags.c_contiguous and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4 * np.abs(w).max())
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5 * np.abs(r).max())


def test_views_reach_unlisted_consumers_correctly(monkeypatch):
    """Forcing nhwc_out on every NHWC conv (so Concat, Reshape, MaxPool, Flatten and the
    graph outputs get views) still gives ONNX Runtime's results: views are correct input
    everywhere; the marking only keeps them where they are cheap."""
    def mark_all(nodes, consts, pinned):
        return [Node(n.name, n.op_type, n.domain, n.version, n.opset, dict(n.attrs, nhwc_out=1),
                     n.inputs, n.outputs, n.proto)
                if float_fusion._nhwc_conv(n, consts) else n for n in nodes]

    monkeypatch.setattr(float_fusion, "mark_nhwc_outputs", mark_all)
    m = mixed_model()
    x = RNG.standard_normal((1, 3, 23, 21)).astype(np.float32)
    sess = fastq.InferenceSession(m)
    assert {"br", "mp_in", "pj", "pw"} <= _marked(sess)
    got = sess.run(None, {"X": x})
    for g, w in zip(got, run_ort(m, {"X": x})):
        assert g.flags.c_contiguous
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4 * np.abs(w).max())


def test_global_average_pool_of_nhwc_view():
    from fastq.runtime.ops.nn_pool import global_average_pool
    node = Node("gap", "GlobalAveragePool", "", 1, 17)
    for shape in [(2, 7, 5, 3), (1, 16, 40, 40), (1, 1, 1, 1)]:
        x = RNG.standard_normal(shape).astype(np.float32)
        v = nhwc(x).transpose(0, 3, 1, 2)
        y = global_average_pool(node, v)
        assert y.shape == shape[:2] + (1, 1) and y.dtype == np.float32
        np.testing.assert_allclose(y, x.astype(np.float64).mean(axis=(2, 3), keepdims=True),
                                   rtol=1e-5, atol=1e-6)


def test_batch_size_changes():
    """The prepared convs re-plan per input shape; NHWC views stay right for N = 1 and 3."""
    m = mixed_model()
    sess = fastq.InferenceSession(m)
    for n in (1, 3):
        x = RNG.standard_normal((n, 3, 23, 21)).astype(np.float32)
        for g, w in zip(sess.run(None, {"X": x}), run_ort(m, {"X": x})):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4 * np.abs(w).max())


def test_residual_add_passes_views_on():
    """An internal Add (and Relu) between NHWC convs keeps the views: the convs before it are
    marked, and the result matches ONNX Runtime."""
    inits, nodes = {}, []
    nodes.append(_conv("c1", "X", "a", 8, 24, k=1, pads=[0] * 4, inits=inits))
    nodes.append(helper.make_node("Relu", ["a"], ["ar"]))
    nodes.append(_conv("dw", "ar", "d", 24, 24, group=24, inits=inits))
    nodes.append(_conv("pw", "d", "p", 24, 24, k=1, pads=[0] * 4, inits=inits))
    nodes.append(helper.make_node("Add", ["p", "ar"], ["s"]))
    nodes.append(helper.make_node("Relu", ["s"], ["sr"]))
    nodes.append(_conv("c2", "sr", "e", 24, 40, k=1, pads=[0] * 4, inits=inits))
    nodes.append(helper.make_node("GlobalAveragePool", ["e"], ["g"]))
    nodes.append(helper.make_node("Flatten", ["g"], ["Y"]))
    vi = helper.make_tensor_value_info
    g = helper.make_graph(nodes, "res", [vi("X", F, [1, 8, 13, 11])], [vi("Y", F, [1, 40])],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    sess = fastq.InferenceSession(m)
    assert _marked(sess) == {"c1", "dw", "pw", "c2"}
    x = RNG.standard_normal((1, 8, 13, 11)).astype(np.float32)
    got, = sess.run(None, {"X": x})
    want, = run_ort(m, {"X": x})
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_nhwc_impls_follow_the_impl_cap():
    """The depthwise conv may take the widest built impl, the GEMM float_impl(); a use_impl
    cap applies to both."""
    from fastq import kernels
    from fastq.runtime.ops.nn_common import float_impl, nhwc_impls
    assert nhwc_impls() == (float_impl(), kernels.default_impl())
    with kernels.use_impl("ref"):
        assert nhwc_impls() == ("ref", "ref")
        m = mixed_model()
        x = RNG.standard_normal((1, 3, 23, 21)).astype(np.float32)
        for g, w in zip(fastq.InferenceSession(m).run(None, {"X": x}), run_ort(m, {"X": x})):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4 * np.abs(w).max())


def test_stacked_images_take_the_nhwc_gemm(monkeypatch):
    """A float im2col conv (group 1, 2-D) on a stack of NCHW images runs the channels-last
    GEMM once for the stack (no per-image im2col + BLAS) and matches running the images one
    by one and ONNX Runtime; one image still takes im2col + BLAS."""
    F = TensorProto.FLOAT
    w = (RNG.standard_normal((12, 5, 3, 3)) * 0.3).astype(np.float32)
    b = RNG.standard_normal(12).astype(np.float32)
    node = helper.make_node("Conv", ["X", "W", "B"], ["Y"], name="c", pads=[1, 0, 1, 2],
                            strides=[2, 1])
    vi = helper.make_tensor_value_info
    g = helper.make_graph([node], "stack", [vi("X", F, ["N", 5, 9, 10])],
                          [vi("Y", F, ["N", 12, 5, 10])],
                          [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    x = RNG.standard_normal((5, 5, 9, 10)).astype(np.float32)
    sess = fastq.InferenceSession(m)
    singles = [sess.run(None, {"X": x[i:i + 1]})[0] for i in range(5)]
    calls = []
    real = _core.nn_im2col
    monkeypatch.setattr(_core, "nn_im2col", lambda *a: calls.append(1) or real(*a))
    (got,) = sess.run(None, {"X": x})
    assert not calls and got.flags.c_contiguous
    (want,) = run_ort(m, {"X": x})
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    np.testing.assert_allclose(got, np.concatenate(singles), rtol=1e-5,
                               atol=1e-6 * np.abs(want).max())
    sess.run(None, {"X": x[:1]})
    assert calls
