"""Saturation-counting conv: its sat16pair and exact32 sums equal conv_u8s8 in that arith
(same pairing; depthwise too, where conv_u8s8 runs the direct kernel), and its per-channel
count of pair sums at an int16 limit equals a numpy oracle that lists each output's products
in (kh, kw, c) order and pairs them per tap or flat. Plus the error reduction
acc_error_stats against numpy."""

import numpy as np
import pytest

import fastq
from fastq import _core, kernels

from _satcount_oracle import conv_fills, conv_oracle as oracle

IMPLS = [i for i in kernels.available_impls() if i in kernels.SATCOUNT_IMPLS]


# (N, C, H, W, OC, KH, KW, group, strides, pads(t, l, b, r), dilations)
CASES = [
    (1, 3, 9, 9, 4, 3, 3, 1, (1, 1), (1, 1, 1, 1), (1, 1)),      # RGB-like odd C
    (2, 8, 7, 6, 5, 3, 3, 1, (2, 2), (0, 1, 1, 0), (1, 1)),      # asymmetric pads, stride 2
    (1, 6, 10, 10, 6, 3, 3, 6, (1, 1), (1, 1, 1, 1), (1, 1)),    # depthwise
    (1, 4, 7, 7, 8, 3, 3, 4, (2, 1), (1, 1, 1, 1), (1, 1)),      # depthwise, multiplier 2
    (1, 3, 6, 6, 3, 1, 3, 3, (1, 1), (0, 1, 0, 1), (1, 1)),      # depthwise, odd taps
    (1, 12, 8, 8, 9, 3, 3, 3, (1, 1), (2, 2, 2, 2), (2, 2)),     # groups + dilation
    (1, 15, 8, 8, 6, 3, 3, 3, (1, 2), (1, 0, 1, 2), (1, 2)),     # odd C per group
    (1, 5, 6, 7, 7, 1, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1)),      # 1x1, odd C
    (2, 6, 5, 5, 18, 1, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1)),     # 1x1 direct (no im2col)
    (1, 17, 5, 5, 17, 5, 5, 1, (3, 3), (2, 2, 2, 2), (1, 1)),    # big kernel, odd C
    (2, 33, 6, 6, 20, 3, 3, 1, (1, 1), (1, 1, 1, 1), (1, 1)),    # C, OC past vector widths
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[:8])))
@pytest.mark.parametrize("pairing", ["per_tap", "flat"])
@pytest.mark.parametrize("impl", IMPLS)
def test_satcount_equals_conv_and_oracle(case, pairing, impl):
    N, C, H, W, OC, KH, KW, group, strides, pads, dil = case
    rng = np.random.default_rng(sum(map(hash, case[:8])) % 2**32)
    for name, x, w, zp in conv_fills(case, rng):
        pw = kernels.pack_conv_weights(w, group=group, pairing=pairing)
        geo = dict(strides=strides, pads=(pads[0], pads[1], pads[2], pads[3]),
                   dilations=dil, x_zero_point=zp)
        sat, exact, counts = kernels.conv_u8s8_satcount(x, pw, impl=impl, **geo)
        want_sat, want_exact, want_counts = oracle(x, w, group=group, strides=strides,
                                                   pads=pads, dil=dil, zp=zp, pairing=pairing)
        where = f"impl={impl} case={case} pairing={pairing} fill={name}"
        assert counts.dtype == np.int64 and counts.shape == (OC,), where
        assert np.array_equal(sat, want_sat), where
        assert np.array_equal(exact, want_exact), where
        assert np.array_equal(counts, want_counts), where
        for arith, got in (("sat16pair", sat), ("exact32", exact)):
            assert np.array_equal(got, kernels.conv_u8s8(x, pw, arith=arith, **geo)), \
                f"{where} arith={arith}"


def test_depthwise_per_tap_never_counts_flat_does():
    x = np.full((1, 4, 5, 5), 255, np.uint8)
    w = np.full((4, 1, 3, 3), 127, np.int8)
    geo = dict(strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1))
    sat, exact, counts = kernels.conv_u8s8_satcount(x, kernels.pack_conv_weights(
        w, group=4, pairing="per_tap"), **geo)
    assert counts.tolist() == [0] * 4 and np.array_equal(sat, exact)
    sat, exact, counts = kernels.conv_u8s8_satcount(x, kernels.pack_conv_weights(
        w, group=4, pairing="flat"), **geo)
    # 9 taps -> 4 saturating tap pairs + 1 lone tap, at each of 3 x 3 outputs
    assert counts.tolist() == [36] * 4
    assert np.all(exact - sat == 4 * (2 * 255 * 127 - 32767))
    assert kernels.conv_pairs_per_output(kernels.pack_conv_weights(w, group=4,
                                                                  pairing="flat")) == 5


def test_one_d_and_errors():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (2, 5, 11), dtype=np.uint8)
    w = rng.integers(-128, 128, (4, 5, 3), dtype=np.int8)
    sat, exact, counts = kernels.conv_u8s8_satcount(x, w, pads=(1, 1))
    assert sat.shape == (2, 4, 11)
    assert np.array_equal(sat, kernels.conv_u8s8(x, w, pads=(1, 1), arith="sat16pair"))
    with pytest.raises(fastq.KernelError, match="no 'avx2' kernel"):
        kernels.conv_u8s8_satcount(x, w, impl="avx2")
    with pytest.raises(fastq.KernelError, match="uint8"):
        kernels.conv_u8s8_satcount(x.astype(np.int8), w)
    with pytest.raises(fastq.KernelError, match="C=5"):
        kernels.conv_u8s8_satcount(x[:, :4], w)


@pytest.mark.parametrize("shape,axis", [((2, 5, 3, 4), 1), ((7, 9), 1), ((6, 3, 1), 1)])
def test_acc_error_stats_equals_numpy(shape, axis):
    rng = np.random.default_rng(5)
    base = rng.integers(-2**20, 2**20, shape, dtype=np.int32)
    target = base.copy()
    hit = rng.random(shape) < 0.3
    target[hit] -= rng.integers(0, 40000, shape, dtype=np.int32)[hit]
    C = shape[axis]
    zc = rng.integers(-5000, 5000, C).astype(np.int64)
    scale = rng.random(C) * 1e-3 + 1e-5
    bias = rng.standard_normal(C)
    r = _core.acc_error_stats(target, base, axis, zc, scale, bias)
    bshape = [1] * len(shape)
    bshape[axis] = C
    d = target.astype(np.int64) - base
    y = (base - zc.reshape(bshape)) * scale.reshape(bshape) + bias.reshape(bshape)
    assert r["changed"] == np.count_nonzero(d)
    assert r["max_abs"] == np.abs(d).max()
    assert r["sum_abs"] == np.abs(d).sum()
    np.testing.assert_allclose(r["signal"], np.sum(y * y), rtol=1e-12)
    np.testing.assert_allclose(r["noise"], np.sum((d * scale.reshape(bshape)) ** 2), rtol=1e-12)


@pytest.mark.parametrize("case", [CASES[1], CASES[3], CASES[6]],
                         ids=lambda c: "x".join(map(str, c[:8])))
@pytest.mark.parametrize("pairing", ["per_tap", "flat"])
@pytest.mark.parametrize("base_is_exact", [True, False])
def test_satstats_equal_satcount_then_error_stats(case, pairing, base_is_exact):
    """The fused per-layer pass (outputs never leave C++) equals counting, then reducing."""
    N, C, H, W, OC, KH, KW, group, strides, pads, dil = case
    rng = np.random.default_rng(17)
    x = rng.integers(150, 256, (N, C, H, W), dtype=np.uint8)
    pw = kernels.pack_conv_weights(rng.integers(-128, 128, (OC, C // group, KH, KW),
                                                dtype=np.int8), group=group, pairing=pairing)
    zc = rng.integers(-9000, 9000, OC).astype(np.int64)
    scale = rng.random(OC) * 1e-3 + 1e-6
    bias = rng.standard_normal(OC)
    for impl in IMPLS:
        sat, exact, counts = _core.conv_u8s8_satcount(x, pw, strides, pads, dil, 7, impl)
        t, b = (sat, exact) if base_is_exact else (exact, sat)
        want = _core.acc_error_stats(t, b, 1, zc, scale, bias)
        got_counts, got, _ = _core.conv_u8s8_satstats(x, pw, strides, pads, dil, 7, impl,
                                                   base_is_exact, zc, scale, bias)
        assert np.array_equal(got_counts, counts)
        for k in ("changed", "max_abs", "sum_abs"):
            assert got[k] == want[k], (impl, k)
        for k in ("signal", "noise"):
            assert got[k] == pytest.approx(want[k], rel=1e-12), (impl, k)
    a = rng.integers(0, 256, (9, 37), dtype=np.uint8)
    pb = kernels.pack_weights(rng.integers(-128, 128, (37, 5), dtype=np.int8))
    sat, exact, counts = kernels.gemm_u8s8_satcount(a, pb)
    t, b = (sat, exact) if base_is_exact else (exact, sat)
    want = _core.acc_error_stats(t, b, 1, zc[:5].copy(), scale[:5].copy(), None)
    got_counts, got, _ = _core.gemm_u8s8_satstats(a, pb, "ref", base_is_exact, zc[:5].copy(),
                                               scale[:5].copy(), None)
    assert np.array_equal(got_counts, counts) and got["changed"] == want["changed"]
    assert got["noise"] == pytest.approx(want["noise"], rel=1e-12)
