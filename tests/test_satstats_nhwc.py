"""The saturation analysis' NHWC layer pass and its row-block error reduction.

``row_error_stats`` (satstats.h): every build (ref, avx2, avx512vnni) gives the same bits --
integer figures, the 16 signal lanes, signal and noise -- and equals a numpy oracle that sums
each lane sequentially in the contract's order (rows, then channels c = l, l + 16, ...).
``qconv_requant_satstats_nhwc``: its output equals ``qconv_requant_nhwc`` in the base
arithmetic, its counts ``conv_u8s8_satcount``'s, its figures ``acc_error_stats`` over the NCHW
sums (integers exactly; float sums, which add in another order, to 1e-12), over conv shapes,
layouts, pairings, both base arithmetics, thread counts and saturating fills.
"""

import numpy as np
import pytest

import fastq
from fastq import _core, kernels

from _satcount_oracle import conv_fills

STAT_IMPLS = [i for i in ("ref", "avx2", "avx512vnni") if i in kernels.available_impls()]
IMPLS = [i for i in kernels.available_impls() if i in kernels.SATCOUNT_IMPLS]


def lanes_oracle(target, base, zc, scale, bias):
    """The contract's figures with numpy: lane l sums y^2 of channels l, l + 16, ... row by
    row, sequentially (np.add.accumulate does not reorder)."""
    d = target.astype(np.int64) - base
    y = (base.astype(np.float64) - zc) * scale + bias
    y2 = y * y
    C = base.shape[1]
    lanes = np.zeros(16)
    for lane in range(min(16, C)):
        seq = y2[:, lane::16].reshape(-1)
        lanes[lane] = np.add.accumulate(np.concatenate([[0.0], seq]))[-1]
    d2 = (d.astype(np.float64) ** 2).sum(axis=0)
    return {"changed": int(np.count_nonzero(d)), "max_abs": int(np.abs(d).max(initial=0)),
            "sum_abs": int(np.abs(d).sum()), "lanes": lanes,
            "noise": float(np.sum(d2 * scale * scale))}


def row_cases():
    rng = np.random.default_rng(3)
    for M in (1, 2, 5, 16, 17, 33):
        for C in (1, 3, 8, 15, 16, 17, 31, 32, 33, 96):
            yield M, C, rng


def fill_rows(kind, M, C, rng):
    if kind == "random":
        base = rng.integers(-2**24, 2**24, (M, C), dtype=np.int32)
        target = base.copy()
        hit = rng.random((M, C)) < 0.05
        target[hit] += rng.integers(-40000, 40000, (M, C), dtype=np.int32)[hit]
    elif kind == "equal":
        base = rng.integers(-2**20, 2**20, (M, C), dtype=np.int32)
        target = base.copy()
    else:  # int32 extremes: |target - base| up to 2^32 - 1
        base = np.full((M, C), np.iinfo(np.int32).min, np.int32)
        target = np.full((M, C), np.iinfo(np.int32).max, np.int32)
        target[::2] = base[::2]
    return target, base


@pytest.mark.parametrize("kind", ["random", "equal", "extremes"])
def test_row_error_stats_builds_equal_oracle(kind):
    for M, C, rng in row_cases():
        target, base = fill_rows(kind, M, C, rng)
        zc = rng.integers(-2**33, 2**33, C).astype(np.int64)
        scale = rng.random(C) * 1e-3 + 1e-6
        bias = rng.standard_normal(C)
        want = lanes_oracle(target, base, zc, scale, bias)
        got = {i: _core.row_error_stats(target, base, zc, scale, bias, i) for i in STAT_IMPLS}
        ref = got["ref"]
        where = f"kind={kind} M={M} C={C}"
        for k in ("changed", "max_abs", "sum_abs"):
            assert ref[k] == want[k], (where, k, ref[k], want[k])
        assert np.array_equal(np.asarray(ref["lanes"]), want["lanes"]), where
        assert ref["noise"] == pytest.approx(want["noise"], rel=1e-12), where
        for impl, r in got.items():
            for k in ("changed", "max_abs", "sum_abs", "signal", "noise"):
                assert r[k] == ref[k], (where, impl, k, r[k], ref[k])
            assert np.array_equal(np.asarray(r["lanes"]), np.asarray(ref["lanes"])), (where, impl)


def test_row_error_stats_strided_rows_and_no_bias():
    rng = np.random.default_rng(8)
    wide_t = rng.integers(-1000, 1000, (9, 40), dtype=np.int32)
    wide_b = wide_t.copy()
    wide_b[3, 5] += 7
    t, b = wide_t[:, 2:21], wide_b[:, 2:21]          # row stride 40, 19 channels
    zc, scale = np.arange(19, dtype=np.int64), np.full(19, 0.5)
    want = lanes_oracle(np.ascontiguousarray(t), np.ascontiguousarray(b), zc, scale,
                        np.zeros(19))
    for impl in STAT_IMPLS:
        r = _core.row_error_stats(t, b, zc, scale, None, impl)
        assert (r["changed"], r["max_abs"], r["sum_abs"]) == (1, 7, 7), impl
        assert np.array_equal(np.asarray(r["lanes"]), want["lanes"]), impl
        assert r["noise"] == 49 * 0.25, impl


def test_row_error_stats_errors():
    a = np.zeros((2, 3), np.int32)
    z, s = np.zeros(3, np.int64), np.ones(3)
    with pytest.raises(ValueError, match="differ in shape"):
        _core.row_error_stats(a, np.zeros((2, 4), np.int32), z, s, None, "ref")
    with pytest.raises(ValueError, match="2\\^53"):
        _core.row_error_stats(a, a, np.full(3, 2**60, np.int64), s, None, "ref")
    with pytest.raises(ValueError, match="unknown impl|impl"):
        _core.row_error_stats(a, a, z, s, None, "sse9")


# -------------------------------------------------------------------------- NHWC layer pass
# (N, C, H, W, OC, KH, KW, group, strides, pads(t, l, b, r), dilations)
CASES = [
    (1, 3, 9, 9, 4, 3, 3, 1, (1, 1), (1, 1, 1, 1), (1, 1)),      # stem-like C=3
    (1, 3, 12, 11, 16, 3, 3, 1, (2, 2), (1, 1, 1, 1), (1, 1)),   # stem, stride 2
    (2, 8, 7, 6, 5, 3, 3, 1, (2, 2), (0, 1, 1, 0), (1, 1)),      # asymmetric pads
    (1, 16, 9, 9, 16, 3, 3, 16, (1, 1), (1, 1, 1, 1), (1, 1)),   # depthwise, 16 channels
    (2, 21, 7, 7, 21, 3, 3, 21, (2, 2), (1, 1, 1, 1), (1, 1)),   # depthwise, odd C, stride 2
    (1, 4, 7, 7, 8, 3, 3, 4, (2, 1), (1, 1, 1, 1), (1, 1)),      # depthwise, multiplier 2
    (1, 12, 8, 8, 9, 3, 3, 3, (1, 1), (2, 2, 2, 2), (2, 2)),     # groups + dilation
    (1, 5, 6, 7, 7, 1, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1)),      # 1x1, odd C (im2col)
    (2, 16, 5, 5, 18, 1, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1)),    # 1x1 direct
    (1, 24, 24, 24, 40, 1, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1)),  # 1x1 direct, 2 row blocks
    (1, 64, 12, 12, 20, 3, 3, 1, (1, 1), (1, 1, 1, 1), (1, 1)),  # deep K, 2 row blocks
    (1, 17, 5, 5, 17, 5, 5, 1, (3, 3), (2, 2, 2, 2), (1, 1)),    # big kernel, odd C
    (1, 40, 6, 5, 40, 3, 3, 40, (1, 1), (1, 1, 1, 1), (1, 1)),   # depthwise, 16-lane tail
    (2, 70, 5, 6, 70, 2, 3, 70, (1, 2), (0, 1, 1, 0), (2, 1)),   # depthwise, 6 taps, dilated
    (1, 33, 5, 5, 33, 1, 5, 33, (1, 1), (0, 2, 0, 2), (1, 1)),   # depthwise, 5 taps (odd)
]


def layer_pass(x, pw, case, zp, impl, base_is_exact, layout, rng, y_signed):
    N, C, H, W, OC, KH, KW, group, strides, pads, dil = case
    zcomp = rng.integers(-2**20, 2**20, OC).astype(np.int64)
    mult = (rng.random(OC) * 1e-4 + 1e-6).astype(np.float32)
    scale = rng.random(OC) * 1e-3 + 1e-6
    yz = -3 if y_signed else 9
    totals, ftotals = np.zeros(4 + OC, np.int64), np.zeros(2)
    xin = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if layout == "nhwc" else x
    y = _core.qconv_requant_satstats_nhwc(xin, pw, strides, pads, dil, zp, layout, impl,
                                          base_is_exact, scale, zcomp, mult, yz, y_signed,
                                          totals, ftotals)
    base_arith = "exact32" if base_is_exact else "sat16pair"
    want_y = _core.qconv_requant_nhwc(xin, pw, strides, pads, dil, zp, layout, zcomp, mult, yz,
                                      y_signed, base_arith, impl)
    sat, exact, counts = _core.conv_u8s8_satcount(x, pw, strides, pads, dil, zp, impl)
    t, b = (sat, exact) if base_is_exact else (exact, sat)
    want = _core.acc_error_stats(t, b, 1, zcomp, scale, None)
    return y, want_y, totals, ftotals, counts, want, sat.size


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[:8])))
@pytest.mark.parametrize("pairing", ["per_tap", "flat"])
@pytest.mark.parametrize("impl", IMPLS)
def test_layer_pass_equals_plain_layer_and_figures(case, pairing, impl):
    group = case[7]
    rng = np.random.default_rng(sum(map(hash, case[:8])) % 2**32)
    for k, (name, x, w, zp) in enumerate(conv_fills(case, rng)):
        pw = kernels.pack_conv_weights(w, group=group, pairing=pairing)
        base_is_exact, layout, y_signed = k % 2 == 0, ("nhwc", "nchw")[k % 2], k == 3
        y, want_y, tot, ftot, counts, want, size = layer_pass(
            x, pw, case, zp, impl, base_is_exact, layout, rng, y_signed)
        where = f"impl={impl} case={case} pairing={pairing} fill={name} exact={base_is_exact}"
        assert y.dtype == want_y.dtype and np.array_equal(y, want_y), where
        assert np.array_equal(tot[4:], counts), where
        assert tot[0] == size, where
        assert (tot[1], tot[2], tot[3]) == (want["changed"], want["max_abs"],
                                            want["sum_abs"]), where
        assert ftot[0] == pytest.approx(want["signal"], rel=1e-12), where
        assert ftot[1] == pytest.approx(want["noise"], rel=1e-12, abs=0), where


def test_layer_pass_accumulates_and_ignores_thread_count():
    case = CASES[10]
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, case[:4], dtype=np.uint8)
    pw = kernels.pack_conv_weights(rng.integers(-128, 128, (20, 64, 3, 3), dtype=np.int8))
    args = (case[8], case[9], case[10], 5, "nchw", IMPLS[-1], True, np.full(20, 1e-3),
            np.zeros(20, np.int64), np.full(20, 1e-3, np.float32), 0, False)
    old = fastq.get_num_threads()
    got = []
    try:
        for n in (1, 2):
            fastq.set_num_threads(n)
            tot, ftot = np.zeros(24, np.int64), np.zeros(2)
            y = _core.qconv_requant_satstats_nhwc(x, pw, *args, tot, ftot)
            y2 = _core.qconv_requant_satstats_nhwc(x, pw, *args, tot, ftot)
            assert np.array_equal(y, y2)
            got.append((y, tot, ftot))
    finally:
        fastq.set_num_threads(old)
    (y1, t1, f1), (y2, t2, f2) = got
    assert np.array_equal(y1, y2) and np.array_equal(t1, t2)
    assert f1[0] == f2[0] and f1[1] == f2[1]          # bit for bit
    once = _core.qconv_requant_satstats_nhwc(x, pw, *args, np.zeros(24, np.int64), np.zeros(2))
    assert np.array_equal(once, y1)


def test_layer_pass_errors():
    pw = kernels.pack_conv_weights(np.ones((4, 3, 1, 1), np.int8))
    x = np.zeros((1, 3, 4, 4), np.uint8)
    ok = (np.ones(4), np.zeros(4, np.int64), np.ones(4, np.float32), 0, False)
    geo = ((1, 1), (0, 0, 0, 0), (1, 1), 0)
    with pytest.raises(ValueError, match="totals"):
        _core.qconv_requant_satstats_nhwc(x, pw, *geo, "nchw", "ref", True, *ok,
                                          np.zeros(3, np.int64), np.zeros(2))
    with pytest.raises(ValueError, match="layout"):
        _core.qconv_requant_satstats_nhwc(x, pw, *geo, "nwhc", "ref", True, *ok,
                                          np.zeros(8, np.int64), np.zeros(2))
    with pytest.raises(ValueError, match="C=2"):
        _core.qconv_requant_satstats_nhwc(np.ascontiguousarray(x[:, :2]), pw, *geo, "nchw", "ref", True, *ok,
                                          np.zeros(8, np.int64), np.zeros(2))


@pytest.mark.parametrize("impl", IMPLS)
def test_flat_depthwise_pairs_at_and_beside_the_limits(impl):
    """Flat-pairing depthwise taps whose exact pair sums land on 32767 and -32768 (counted),
    one beside them (32766, -32767: not counted) and beyond (counted, clipped): the layer
    pass's counts and changed outputs equal the numpy oracle's, channel by channel."""
    pairs = [((127, 2), (255, 191)),      # 32385 + 382 = 32767: at the limit
             ((127, 2), (255, 190)),      # 32766
             ((-128, -1), (255, 128)),    # -32640 - 128 = -32768: at the limit
             ((-128, -1), (255, 127)),    # -32767
             ((127, 127), (255, 255)),    # 64770: clipped
             ((-128, -128), (255, 255)),  # -65280: clipped
             ((100, -100), (255, 255)),   # 0
             ((0, 0), (0, 0))]
    C = 2 * len(pairs)                    # and the same pairs again, swapped taps
    w = np.zeros((C, 1, 1, 2), np.int8)
    x = np.zeros((1, C, 1, 2), np.uint8)
    for c, ((wa, wb), (xa, xb)) in enumerate(pairs + [(p[0][::-1], p[1][::-1]) for p in pairs]):
        w[c, 0, 0] = (wa, wb)
        x[0, c, 0] = (xa, xb)
    v = (x[0, :, 0, 0].astype(np.int64) * w[:, 0, 0, 0] +
         x[0, :, 0, 1].astype(np.int64) * w[:, 0, 0, 1])
    want_counts = ((v >= 32767) | (v <= -32768)).astype(np.int64)
    pw = kernels.pack_conv_weights(w, group=C, pairing="flat")
    assert pw.can_saturate
    tot, ftot = np.zeros(4 + C, np.int64), np.zeros(2)
    xin = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    _core.qconv_requant_satstats_nhwc(xin, pw, (1, 1), (0, 0, 0, 0), (1, 1), 0, "nhwc", impl,
                                      True, np.ones(C), np.zeros(C, np.int64),
                                      np.full(C, 1e-4, np.float32), 0, False, tot, ftot)
    assert np.array_equal(tot[4:], want_counts), (tot[4:], v)
    clipped = np.clip(v, -32768, 32767)
    assert tot[0] == C and tot[1] == np.count_nonzero(clipped != v)
    assert tot[2] == np.max(np.abs(clipped - v)) and tot[3] == np.sum(np.abs(clipped - v))
