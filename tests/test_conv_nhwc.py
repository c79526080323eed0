"""NHWC int8 conv drivers (conv.h: ``conv_u8s8_nhwc``, ``qconv_requant_nhwc``,
``qconv_dequant_nhwc``) -- the layout the
fused int8 layers keep between layers -- equal the scalar spec ``_core.conv_u8s8_reference``
(transposed to [N, OH, OW, OC]) bit for bit: every impl, both ariths and pairings, NHWC and
NCHW inputs, GEMM convs (1x1 direct, 3x3/5x5, groups, odd channels, strides, dilations,
asymmetric pads), depthwise convs (multiplier 1: the NHWC row kernels, 16-channel blocks and
scalar tails; multiplier 2: the NCHW fallback), random and saturating fills (0/255 inputs,
-128/127 weights). Sweeps over depthwise shapes (C around 16/32/64 multiples, strides,
pads, dilations) and short-K GEMM convs check the AVX-512 kernels that requantize in their
store, with edge-value fills. The requantized layer equals ``requantize`` of the spec's sums;
the float-output layer equals ``qconv``'s floats (NCHW) bit for bit, also for s8 inputs, big
zero-point terms and per-tensor scales; the AVX2 requantization rows and quantize_f32 equal the portable loops / a numpy oracle, the session
keeps fused conv outputs as NHWC-ordered views that every consumer reads correctly, and the
fused QdqAdd / QdqConcat / DequantizeAdd nodes give the unfused ops' bits."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fastq import _core, kernels

IMPLS = kernels.available_impls()
RNG = np.random.default_rng(11)

CASES = [  # (C, OC, group, k, strides, pads (t, l, b, r), dilations, hw)
    (64, 32, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), (5, 6)),      # direct 1x1
    (6, 10, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), (5, 5)),       # 1x1, K % 4 != 0
    (8, 16, 1, 1, (2, 2), (0, 0, 0, 0), (1, 1), (7, 7)),       # strided 1x1
    (3, 16, 1, 3, (2, 2), (1, 1, 1, 1), (1, 1), (11, 10)),     # stem
    (20, 24, 1, 3, (1, 1), (1, 1, 1, 1), (1, 1), (9, 7)),
    (7, 9, 1, 5, (2, 1), (0, 2, 1, 0), (2, 1), (12, 11)),      # odd channels, asym pads
    (12, 12, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), (7, 7)),      # grouped
    (9, 6, 3, 2, (1, 2), (1, 0, 0, 1), (1, 1), (6, 8)),        # odd per-group channels
    (32, 32, 32, 3, (1, 1), (1, 1, 1, 1), (1, 1), (9, 9)),     # depthwise
    (48, 48, 48, 3, (2, 2), (0, 0, 1, 1), (1, 1), (10, 10)),   # depthwise stride 2
    (40, 40, 40, 3, (2, 2), (1, 1, 1, 1), (1, 1), (9, 11)),    # 16-blocks + tail
    (17, 17, 17, 5, (1, 1), (2, 2, 2, 2), (2, 2), (8, 8)),     # 5x5 dilated, tail only
    (3, 3, 3, 3, (3, 3), (2, 0, 0, 2), (2, 2), (9, 9)),
    (8, 16, 8, 3, (1, 1), (1, 1, 1, 1), (1, 1), (6, 6)),       # multiplier 2
]
FILLS = ["random", "sat_pos", "sat_mix"]


def _data(fill, c, oc, group, k, hw):
    x_shape, w_shape = (2, c) + hw, (oc, c // group, k, k)
    if fill == "random":
        return (RNG.integers(0, 256, x_shape).astype(np.uint8),
                RNG.integers(-128, 128, w_shape).astype(np.int8), int(RNG.integers(0, 256)))
    x = RNG.integers(250, 256, x_shape).astype(np.uint8)
    x[:, :, 0] = 0
    if fill == "sat_pos":  # 255 x 127 pairs saturate every sat16pair pair
        return x, np.full(w_shape, 127, np.int8), 255
    return x, np.where(RNG.random(w_shape) < 0.5, -128, 127).astype(np.int8), 255


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"C{c[0]}-OC{c[1]}-g{c[2]}-k{c[3]}")
@pytest.mark.parametrize("fill", FILLS)
def test_nhwc_sums_equal_reference(case, fill):
    c, oc, group, k, st, pd, dl, hw = case
    x, w, zp = _data(fill, c, oc, group, k, hw)
    xn = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    for arith, pairing in itertools.product(["exact32", "sat16pair"], ["per_tap", "flat"]):
        want = _core.conv_u8s8_reference(x, w, group, st, pd, dl, zp, arith, pairing)
        want = want.transpose(0, 2, 3, 1)
        pk = _core.pack_conv_weights(w, group, pairing)
        zc = RNG.integers(-50000, 50000, oc).astype(np.int64)
        mult = (RNG.random(oc) * 2e-4).astype(np.float32)
        ywant = _core.requantize(np.ascontiguousarray(want), 3, zc, mult, 7, False)
        for impl, (layout, xx) in itertools.product(IMPLS, [("nhwc", xn), ("nchw", x)]):
            got = _core.conv_u8s8_nhwc(xx, pk, st, pd, dl, zp, layout, arith, impl)
            assert np.array_equal(got, want), (arith, pairing, impl, layout)
            y = _core.qconv_requant_nhwc(xx, pk, st, pd, dl, zp, layout, zc, mult, 7, False,
                                         arith, impl)
            assert y.dtype == np.uint8 and np.array_equal(y, ywant), (arith, pairing, impl)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"C{c[0]}-OC{c[1]}-g{c[2]}-k{c[3]}")
@pytest.mark.parametrize("fill", FILLS)
def test_dequant_nhwc_equals_qconv(case, fill):
    """qconv_dequant_nhwc (float32 [N, OH, OW, OC]) gives qconv's NCHW floats, transposed:
    every impl, arith, pairing and input layout, with and without bias; the s8 input runs
    as u8 ^ 0x80 with zero point + 128, as the executor calls it."""
    c, oc, group, k, st, pd, dl, hw = case
    x, w, zp = _data(fill, c, oc, group, k, hw)
    xs = np.float32(0.02)
    ws = (RNG.random(oc) * 0.01 + 1e-4).astype(np.float32)
    bias = RNG.standard_normal(oc).astype(np.float32)
    x8 = (x ^ np.uint8(0x80)).view(np.int8)            # the same values as s8, zp - 128
    for arith, pairing in itertools.product(["exact32", "sat16pair"], ["per_tap", "flat"]):
        pk = _core.pack_conv_weights(w, group, pairing)
        for impl, b, scales in itertools.product(IMPLS, [None, bias], [ws, ws[:1]]):
            want = _core.qconv(x, pk, st, pd, dl, zp, xs, scales, b, arith, impl)
            want8 = _core.qconv(x8, pk, st, pd, dl, zp - 128, xs, scales, b, arith, impl)
            assert np.array_equal(want, want8)
            want = want.transpose(0, 2, 3, 1)
            for layout, xx in [("nhwc", np.ascontiguousarray(x.transpose(0, 2, 3, 1))),
                               ("nchw", x)]:
                got = _core.qconv_dequant_nhwc(xx, pk, st, pd, dl, zp, layout, xs, scales, b,
                                               arith, impl)
                assert got.dtype == np.float32 and got.shape == want.shape
                assert np.array_equal(got, want), (arith, pairing, impl, layout)


def test_dequant_nhwc_wide_zero_point_terms():
    """Zero-point terms and sums (x - zp) . w beyond int32 (255 x a column sum of
    8192 * 9 * 127, inputs near 0) take the int64 difference, still qconv's floats."""
    w = np.full((4, 8192, 3, 3), 127, np.int8)
    assert 245 * 8192 * 9 * 127 > 2 ** 31
    x = RNG.integers(0, 10, (1, 8192, 3, 3)).astype(np.uint8)
    ws = np.full(4, 1e-3, np.float32)
    args = ((1, 1), (1, 1, 1, 1), (1, 1), 255)
    for arith in ("exact32", "sat16pair"):
        pk = _core.pack_conv_weights(w, 1, "per_tap")
        want = _core.qconv(x, pk, *args, np.float32(0.5), ws, None, arith, "ref")
        for impl in IMPLS:
            got = _core.qconv_dequant_nhwc(x, pk, *args, "nchw", np.float32(0.5), ws, None,
                                           arith, impl)
            assert np.array_equal(got, want.transpose(0, 2, 3, 1)), (arith, impl)


def test_flat_sat16pair_differs_from_exact32():
    """The saturating fill really saturates in the NHWC depthwise and GEMM kernels."""
    for c, group in ((32, 32), (32, 1)):
        x, w, zp = _data("sat_pos", c, c, group, 3, (6, 6))
        xn = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        pk = _core.pack_conv_weights(w, group, "flat")
        args = ((1, 1), (1, 1, 1, 1), (1, 1), zp, "nhwc")
        for impl in IMPLS:
            e = _core.conv_u8s8_nhwc(xn, pk, *args, "exact32", impl)
            s = _core.conv_u8s8_nhwc(xn, pk, *args, "sat16pair", impl)
            assert (s < e).all()


def test_signed_output_and_errors():
    x, w, zp = _data("random", 16, 8, 1, 3, (5, 5))
    xn = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    pk = _core.pack_conv_weights(w, 1, "per_tap")
    args = ((1, 1), (1, 1, 1, 1), (1, 1), zp, "nhwc")
    acc = _core.conv_u8s8_reference(x, w, 1, *args[:4], "exact32", "per_tap")
    zc, mult = np.zeros(8, np.int64), np.full(8, 1e-4, np.float32)
    y = _core.qconv_requant_nhwc(xn, pk, *args, zc, mult, -3, True, "exact32", IMPLS[-1])
    want = _core.requantize(acc, 1, zc, mult, -3, True).transpose(0, 2, 3, 1)
    assert y.dtype == np.int8 and np.array_equal(y, want)
    with pytest.raises(ValueError, match="layout"):
        _core.conv_u8s8_nhwc(xn, pk, *args[:4], "nchw_", "exact32", "ref")
    with pytest.raises(ValueError, match="weights expect"):
        _core.conv_u8s8_nhwc(x, pk, *args[:4], "nhwc", "exact32", "ref")
    with pytest.raises(ValueError, match="one entry per output channel"):
        _core.qconv_requant_nhwc(xn, pk, *args, zc[:3], mult, 0, False, "exact32", "ref")


@pytest.mark.parametrize("signed,yz", [(False, 0), (False, 131), (True, -5), (True, 127)])
def test_requantize_rows_equal_planes(signed, yz):
    """GEMM-row requantization (AVX2 when available) equals the portable per-plane loop."""
    for trial in range(20):
        m, c = int(RNG.integers(1, 70)), int(RNG.integers(1, 50))
        acc = RNG.integers(-2**31, 2**31, (m, c), dtype=np.int64).astype(np.int32) \
            if trial % 2 else RNG.integers(-5000, 5000, (m, c)).astype(np.int32)
        zc = RNG.integers(-2**40, 2**40, c) if trial % 3 == 0 else RNG.integers(-3000, 3000, c)
        mult = (RNG.random(c) * 10.0 ** RNG.integers(-6, 0)).astype(np.float32)
        a = _core.requantize(acc, 1, zc.astype(np.int64), mult, yz, signed)
        b = _core.requantize(np.ascontiguousarray(acc.T), 0, zc.astype(np.int64), mult, yz,
                             signed).T
        assert np.array_equal(a, b)


@pytest.mark.parametrize("scale,zp,signed", [(0.0123, 128, False), (1.0, 0, False),
                                             (0.5, -3, True), (3e-5, 0, True)])
def test_quantize_f32_matches_numpy(scale, zp, signed):
    sc = np.float32(scale)
    lo, hi = (-128, 127) if signed else (0, 255)
    for n in (1, 15, 16, 17, 1000, 70001):
        x = (RNG.standard_normal(n) * 10.0 ** RNG.integers(-3, 4)).astype(np.float32)
        x[:4] = [np.nan, np.inf, -np.inf, -0.0][:n] if n >= 4 else x[:n]
        y = _core.quantize_f32(x, float(sc), zp, signed)
        with np.errstate(all="ignore"):
            v = x / sc
            want = np.clip(np.rint(np.clip(v, lo - zp, hi - zp)) + zp, lo, hi)
        want[np.isnan(v)] = lo
        assert np.array_equal(y.astype(np.int64), want.astype(np.int64))


def test_session_keeps_nhwc_views(tmp_path):
    """Fused convs hand on NHWC-ordered views; Q/DQ, Add and Concat read them correctly and
    the session's outputs are C-contiguous and equal to the same model run from NCHW."""
    import _qdq_models as M
    import fastq
    m = M.cnn_model(hw=10, c=8, blocks=2)
    q = M.quantize(m, M.calibration(m, 2), tmp_path)
    feeds = M.calibration(m, 1, seed=7)[0]
    sess = fastq.InferenceSession(q, arith="exact32")
    seen = {}
    convs = [r.name for r in sess.int8_layers()]
    names = [st.outputs[0] for st in sess._graph.steps if st.node.name in convs]
    sess.run_with_intermediates(feeds, names, lambda n, a: seen.setdefault(n, a))
    assert any(not a.flags.c_contiguous and a.transpose(0, 2, 3, 1).flags.c_contiguous
               for a in seen.values())
    out = sess.run(None, feeds)[0]
    assert out.flags.c_contiguous
    import onnxruntime as ort
    from onnx import numpy_helper
    prod = {o: n for n in q.graph.node for o in n.output}
    dq = prod[q.graph.output[0].name]
    assert dq.op_type == "DequantizeLinear"
    step = float(numpy_helper.to_array(
        next(t for t in q.graph.initializer if t.name == dq.input[1])))
    o = ort.InferenceSession(q.SerializeToString(), providers=["CPUExecutionProvider"])
    want = o.run(None, feeds)[0]
    assert np.abs(out - want).max() <= step * 1.0001


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("dts", [(np.uint8, np.uint8, np.uint8), (np.int8, np.uint8, np.int8),
                                 (np.uint8, np.int8, np.uint8)])
def test_qdq_add_matches_numpy_steps(relu, dts):
    """QuantizeLinear([Relu](DequantizeLinear(a) + DequantizeLinear(b))) in one pass: the
    float32 steps of the three ops, bit for bit, incl. 0/255 and -128/127 inputs."""
    da, db, dy = dts
    for n in (1, 31, 4096, 70001):
        a = RNG.integers(np.iinfo(da).min, np.iinfo(da).max + 1, n).astype(da)
        b = RNG.integers(np.iinfo(db).min, np.iinfo(db).max + 1, n).astype(db)
        a[:2], b[:2] = np.iinfo(da).min, np.iinfo(db).max
        sa, sb, sy = (np.float32(v) for v in RNG.random(3) * 0.1 + 1e-3)
        za, zb, zy = (int(RNG.integers(np.iinfo(d).min, np.iinfo(d).max + 1))
                      for d in (da, db, dy))
        v = (a.astype(np.float32) - np.float32(za)) * sa + (b.astype(np.float32) -
                                                              np.float32(zb)) * sb
        if relu:
            v = np.maximum(v, np.float32(0))
        lo, hi = np.iinfo(dy).min, np.iinfo(dy).max
        want = np.clip(np.rint(np.clip(v / sy, lo - zy, hi - zy)) + zy, lo, hi).astype(dy)
        got = _core.qdq_add(a, float(sa), za, b, float(sb), zb, relu, float(sy), zy,
                            dy == np.int8)
        assert got.dtype == dy and np.array_equal(got, want)


def test_fused_adds_equal_unfused_session(tmp_path, monkeypatch):
    """Sessions with the residual Adds fused (QdqAdd) give the bits of the unfused Q/DQ/Add
    ops, in both ariths."""
    import _qdq_models as M
    import fastq
    from fastq.runtime import qdq_layers
    m = M.cnn_model(hw=12, c=8, blocks=2)
    q = M.quantize(m, M.calibration(m, 2), tmp_path)
    feeds = M.calibration(m, 1, seed=3)[0]
    for arith in ("exact32", "sat16pair"):
        s = fastq.InferenceSession(q, arith=arith)
        assert any(st.node.op_type == "QdqAdd" for st in s._graph.steps)
        fused = s.run(None, feeds)[0]
        with monkeypatch.context() as mp:
            mp.setattr(qdq_layers, "_fuse_adds", lambda nodes, *a: nodes)
            u = fastq.InferenceSession(q, arith=arith)
            assert not any(st.node.op_type == "QdqAdd" for st in u._graph.steps)
            assert np.array_equal(u.run(None, feeds)[0], fused)


@pytest.mark.parametrize("dt", [np.uint8, np.int8])
def test_requantize_same_params_is_identity(dt):
    """QdqConcat passes an input through when its DequantizeLinear parameters equal the
    QuantizeLinear's: QuantizeF32(DequantizeF32(x)) == x for every value, any scale."""
    x = np.arange(np.iinfo(dt).min, np.iinfo(dt).max + 1).astype(dt)
    signed = dt == np.int8
    for scale in np.concatenate([RNG.random(200).astype(np.float32) * 10.0 ** RNG.integers(
            -8, 4, 200), np.float32([1e-30, 3.4e38 / 512, 1.0])]).astype(np.float32):
        for zp in (np.iinfo(dt).min, 0, 3, np.iinfo(dt).max):
            y = _core.quantize_f32(_core.dequantize_f32(x, float(scale), int(zp)),
                                   float(scale), int(zp), signed)
            assert np.array_equal(y, x), (scale, zp)


def test_fused_concat_equals_unfused(tmp_path, monkeypatch):
    """cnn_model's Concat of two int8 layers' outputs becomes QdqConcat with the same bits."""
    import _qdq_models as M
    import fastq
    from fastq.runtime import qdq_layers
    m = M.cnn_model(hw=12, c=8, blocks=1)
    q = M.quantize(m, M.calibration(m, 2), tmp_path)
    feeds = M.calibration(m, 1, seed=4)[0]
    s = fastq.InferenceSession(q, arith="exact32")
    assert any(st.node.op_type == "QdqConcat" for st in s._graph.steps)
    with monkeypatch.context() as mp:
        mp.setattr(qdq_layers, "_fuse_adds", lambda nodes, *a: nodes)
        u = fastq.InferenceSession(q, arith="exact32")
    assert np.array_equal(u.run(None, feeds)[0], s.run(None, feeds)[0])


def test_dequantize_add_matches_numpy_and_fused_session(tmp_path, monkeypatch):
    """DequantizeLinear + Add(bias row) in one pass: the two ops' float32 steps, bit for bit;
    a BERT-style session with it fused gives the bits of the unfused one."""
    for dt in (np.uint8, np.int8):
        x = RNG.integers(np.iinfo(dt).min, np.iinfo(dt).max + 1, (3, 5, 33)).astype(dt)
        b = RNG.standard_normal(33).astype(np.float32)
        s, z = np.float32(0.0371), int(np.iinfo(dt).min + 7)
        want = (x.astype(np.float32) - np.float32(z)) * s + b
        assert np.array_equal(_core.dequantize_add_f32(x, float(s), z, b), want)
    import _qdq_models as M
    import fastq
    from fastq.runtime import qdq_layers
    m = M.bert_model()
    q = M.quantize(m, M.calibration(m, 2), tmp_path, op_types_to_quantize=["MatMul"])
    feeds = M.calibration(m, 1, seed=5)[0]
    s = fastq.InferenceSession(q, arith="exact32")
    assert any(st.node.op_type == "DequantizeAdd" for st in s._graph.steps)
    with monkeypatch.context() as mp:
        mp.setattr(qdq_layers, "_fuse_adds", lambda nodes, *a: nodes)
        u = fastq.InferenceSession(q, arith="exact32")
    assert np.array_equal(u.run(None, feeds)[0], s.run(None, feeds)[0])


def _sweep_data(fill, shape_x, shape_w):
    if fill == "random":
        return (RNG.integers(0, 256, shape_x).astype(np.uint8),
                RNG.integers(-128, 128, shape_w).astype(np.int8))
    if fill == "edges":  # only the extreme values 0/255 and -128/127
        return (np.where(RNG.random(shape_x) < 0.5, 0, 255).astype(np.uint8),
                np.where(RNG.random(shape_w) < 0.5, -128, 127).astype(np.int8))
    return np.full(shape_x, 255, np.uint8), np.full(shape_w, -128, np.int8)  # all extreme


def _requant_params(oc):
    """Offsets (some past int32: the requantization wraps them) and multipliers from tiny to
    ones that clamp most outputs."""
    zc = RNG.integers(-2**33, 2**33, oc) if RNG.random() < 0.3 else RNG.integers(-9e4, 9e4, oc)
    mult = (RNG.random(oc) * 10.0 ** RNG.integers(-6, 1)).astype(np.float32)
    return zc.astype(np.int64), mult


DW_SWEEP = [  # (C, k, strides, pads (t, l, b, r), dilations, hw)
    (c, k, st, pd, dl, hw)
    for c in (1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 96, 144)
    for (k, st, pd, dl, hw) in [(3, (1, 1), (1, 1, 1, 1), (1, 1), (7, 9)),
                                (3, (2, 2), (0, 0, 1, 1), (1, 1), (9, 8)),
                                (3, (2, 1), (1, 2, 0, 1), (2, 2), (8, 10)),
                                (5, (1, 2), (2, 2, 2, 2), (1, 1), (6, 7)),
                                (2, (1, 1), (0, 1, 1, 0), (1, 1), (4, 5)),
                                (3, (1, 2), (2, 0, 1, 2), (2, 1), (9, 10))]
][::2]


@pytest.mark.parametrize("case", DW_SWEEP, ids=lambda c: f"C{c[0]}-k{c[1]}-s{c[2][0]}{c[2][1]}")
@pytest.mark.parametrize("fill", ["random", "edges", "extreme"])
def test_depthwise_nhwc_impls_equal_reference_sweep(case, fill):
    """Depthwise (multiplier 1) NHWC rows of every impl -- the AVX-512 32-channel blocks with
    masked tails and fused requantization (3x3 with dilation 1 across: vertical tap pairs over
    widened input columns), the AVX2 16-channel blocks -- equal the scalar spec bit for bit,
    raw sums and requantized u8/s8, both ariths and pairings."""
    c, k, st, pd, dl, hw = case
    x, w = _sweep_data(fill, (2, c) + hw, (c, 1, k, k))
    zp = int(RNG.integers(0, 256))
    xn = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    zc, mult = _requant_params(c)
    for arith, pairing in itertools.product(["exact32", "sat16pair"], ["per_tap", "flat"]):
        want = _core.conv_u8s8_reference(x, w, c, st, pd, dl, zp, arith, pairing)
        want = np.ascontiguousarray(want.transpose(0, 2, 3, 1))
        pk = _core.pack_conv_weights(w, c, pairing)
        for signed, yz in ((False, 3), (True, -7)):
            ywant = _core.requantize(want, 3, zc, mult, yz, signed)
            for impl in IMPLS:
                got = _core.conv_u8s8_nhwc(xn, pk, st, pd, dl, zp, "nhwc", arith, impl)
                assert np.array_equal(got, want), (arith, pairing, impl)
                y = _core.qconv_requant_nhwc(xn, pk, st, pd, dl, zp, "nhwc", zc, mult, yz,
                                             signed, arith, impl)
                assert np.array_equal(y, ywant), (arith, pairing, impl, signed)


GEMM_SWEEP = [  # (C, OC, k, strides, pads, hw): 1x1 with short K, odd OC, M % 8 != 0; 3x3
    (16, 96, 1, (1, 1), (0, 0, 0, 0), (7, 9)),
    (24, 144, 1, (1, 1), (0, 0, 0, 0), (5, 5)),
    (8, 17, 1, (1, 1), (0, 0, 0, 0), (3, 7)),
    (6, 33, 1, (1, 1), (0, 0, 0, 0), (4, 4)),        # K % 4 != 0: the im2col copy
    (144, 24, 1, (1, 1), (0, 0, 0, 0), (6, 6)),
    (32, 16, 1, (2, 2), (0, 0, 0, 0), (9, 9)),        # strided 1x1
    (3, 32, 3, (2, 2), (1, 1, 1, 1), (13, 11)),       # stem: implicit GEMM, padded channels
    (20, 40, 3, (1, 1), (1, 0, 1, 2), (6, 7)),
]


@pytest.mark.parametrize("case", GEMM_SWEEP, ids=lambda c: f"C{c[0]}-OC{c[1]}-k{c[2]}")
@pytest.mark.parametrize("fill", ["random", "edges", "extreme"])
def test_gemm_conv_requant_store_equals_reference(case, fill):
    """GEMM convs whose AVX-512 kernels requantize in their store (no s32 round trip) give
    requantize() of the spec's sums bit for bit: u8 and s8 outputs, wrapping offsets,
    clamping multipliers, both ariths and pairings, every impl."""
    c, oc, k, st, pd, hw = case
    x, w = _sweep_data(fill, (2, c) + hw, (oc, c, k, k))
    zp = int(RNG.integers(0, 256))
    xn = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    zc, mult = _requant_params(oc)
    for arith, pairing in itertools.product(["exact32", "sat16pair"], ["per_tap", "flat"]):
        want = _core.conv_u8s8_reference(x, w, 1, st, pd, (1, 1), zp, arith, pairing)
        want = np.ascontiguousarray(want.transpose(0, 2, 3, 1))
        pk = _core.pack_conv_weights(w, 1, pairing)
        for signed, yz in ((False, 0), (False, 200), (True, 5)):
            ywant = _core.requantize(want, 3, zc, mult, yz, signed)
            for impl, (layout, xx) in itertools.product(IMPLS, [("nhwc", xn), ("nchw", x)]):
                y = _core.qconv_requant_nhwc(xx, pk, st, pd, (1, 1), zp, layout, zc, mult, yz,
                                             signed, arith, impl)
                assert np.array_equal(y, ywant), (arith, pairing, impl, layout, signed)
