"""int8 convolution: a numpy oracle of DESIGN.md section 3's conv contract checks the C++
scalar reference; every impl (NHWC im2col + GEMM kernels) equals that reference bit for bit
over an attribute sweep (groups, depthwise, strides, dilations, asymmetric pads, 1-D, odd
channel counts, both pairings, saturating fills); qconv equals the float convolution of the
dequantized tensors."""

import numpy as np
import pytest

import fastq
from fastq import _core, kernels

from _satcount_oracle import conv_oracle

IMPLS = kernels.available_impls()
ARITHS = ["exact32", "sat16pair"]


def oracle(x, w, *, group, strides, pads, dil, zp, arith, pairing):
    """Products in (kh, kw, c) order per output, reduced as the arith and pairing say (the
    numpy statement in _satcount_oracle, which also gives the sat16pair sums)."""
    sat, exact, _ = conv_oracle(x, w, group=group, strides=strides, pads=pads, dil=dil, zp=zp,
                                pairing=pairing)
    return sat if arith == "sat16pair" else exact


# (N, C, H, W, OC, KH, KW, group, strides, pads(t, l, b, r), dilations)
CASES = [
    (1, 3, 9, 9, 4, 3, 3, 1, (1, 1), (1, 1, 1, 1), (1, 1)),      # RGB-like odd C
    (2, 8, 7, 6, 5, 3, 3, 1, (2, 2), (0, 1, 1, 0), (1, 1)),      # asymmetric pads, stride 2
    (1, 6, 10, 10, 6, 3, 3, 6, (1, 1), (1, 1, 1, 1), (1, 1)),    # depthwise
    (1, 12, 8, 8, 9, 3, 3, 3, (1, 1), (2, 2, 2, 2), (2, 2)),     # groups + dilation
    (1, 5, 6, 7, 7, 1, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1)),      # 1x1, odd C
    (3, 4, 5, 5, 3, 2, 3, 1, (1, 2), (0, 0, 1, 2), (1, 1)),      # rectangular kernel
    (1, 17, 5, 5, 17, 5, 5, 1, (3, 3), (2, 2, 2, 2), (1, 1)),    # big kernel, odd C
    (1, 2, 3, 3, 1, 3, 3, 1, (1, 1), (0, 0, 0, 0), (1, 1)),      # single output
    (2, 33, 6, 6, 20, 3, 3, 1, (1, 1), (1, 1, 1, 1), (1, 1)),    # C, OC past vector widths
]


def fill_cases(case, rng):
    N, C, H, W, OC, KH, KW, group = case[:8]
    xs, ws = (N, C, H, W), (OC, C // group, KH, KW)
    yield "random", rng.integers(0, 256, xs, dtype=np.uint8), rng.integers(-128, 128, ws, dtype=np.int8), 11
    yield "255x127", np.full(xs, 255, np.uint8), np.full(ws, 127, np.int8), 0
    yield "255x-128", np.full(xs, 255, np.uint8), np.full(ws, -128, np.int8), 255
    yield "0x-128zp255", np.zeros(xs, np.uint8), np.full(ws, -128, np.int8), 255


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[:8])))
@pytest.mark.parametrize("arith", ARITHS)
@pytest.mark.parametrize("pairing", ["per_tap", "flat"])
def test_reference_equals_oracle_and_impls_equal_reference(case, arith, pairing):
    N, C, H, W, OC, KH, KW, group, strides, pads, dil = case
    rng = np.random.default_rng(hash(case) % 2**32)
    for fill, x, w, zp in fill_cases(case, rng):
        want = oracle(x, w, group=group, strides=strides, pads=pads, dil=dil, zp=zp,
                      arith=arith, pairing=pairing)
        ref = _core.conv_u8s8_reference(x, w, group, strides, pads, dil, zp, arith, pairing)
        assert np.array_equal(ref, want), f"reference vs oracle: {case} {arith} {pairing} {fill}"
        packed = kernels.pack_conv_weights(w, group=group, pairing=pairing)
        for impl in IMPLS:
            got = kernels.conv_u8s8(x, packed, strides=strides, pads=pads, dilations=dil,
                                    x_zero_point=zp, arith=arith, impl=impl)
            if not np.array_equal(got, ref):
                idx = tuple(int(i) for i in np.argwhere(got != ref)[0])
                pytest.fail(f"impl={impl} arith={arith} pairing={pairing} case={case} "
                            f"fill={fill}: at {idx} got {got[idx]}, want {ref[idx]}")


def test_pairing_matters_only_for_sat16pair_with_odd_channels():
    # C=3: flat pairs (c2 of tap 0, c0 of tap 1); per-tap pairs c2 with a zero.
    x = np.full((1, 3, 3, 3), 255, np.uint8)
    w = np.full((1, 3, 3, 3), 127, np.int8)
    e_tap = kernels.conv_u8s8(x, w, pairing="per_tap", arith="exact32")
    e_flat = kernels.conv_u8s8(x, w, pairing="flat", arith="exact32")
    assert np.array_equal(e_tap, e_flat) and e_tap[0, 0, 0, 0] == 27 * 255 * 127
    s_tap = kernels.conv_u8s8(x, w, pairing="per_tap", arith="sat16pair")[0, 0, 0, 0]
    s_flat = kernels.conv_u8s8(x, w, pairing="flat", arith="sat16pair")[0, 0, 0, 0]
    assert s_tap == 9 * (32767 + 255 * 127)   # per tap: one saturated pair + a lone product
    assert s_flat == 13 * 32767 + 255 * 127    # 27 products: 13 saturated pairs + 1 lone
    # even C: both pairings agree
    x2 = np.full((1, 4, 3, 3), 255, np.uint8)
    w2 = np.full((2, 4, 3, 3), 127, np.int8)
    assert np.array_equal(kernels.conv_u8s8(x2, w2, pairing="flat", arith="sat16pair"),
                          kernels.conv_u8s8(x2, w2, pairing="per_tap", arith="sat16pair"))


def test_one_d_conv_equals_two_d_with_unit_height():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (2, 5, 20), dtype=np.uint8)
    w = rng.integers(-128, 128, (4, 5, 3), dtype=np.int8)
    got = kernels.conv_u8s8(x, w, strides=(2,), pads=(1, 2), dilations=(2,), arith="sat16pair")
    want = oracle(x[:, :, None], w[:, :, None], group=1, strides=(1, 2), pads=(0, 1, 0, 2),
                  dil=(1, 2), zp=0, arith="sat16pair", pairing="per_tap")[:, :, 0]
    assert np.array_equal(got, want)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("signed", [False, True])
def test_qconv_equals_float_conv_of_dequantized_tensors(impl, signed):
    rng = np.random.default_rng(2)
    if signed:
        x = rng.integers(-128, 128, (2, 6, 8, 8), dtype=np.int8)
        zp = -5
    else:
        x = rng.integers(0, 256, (2, 6, 8, 8), dtype=np.uint8)
        zp = 120
    w = rng.integers(-127, 128, (4, 3, 3, 3), dtype=np.int8)
    ws = rng.uniform(0.001, 0.01, 4).astype(np.float32)
    bias = rng.normal(size=4).astype(np.float32)
    got = kernels.qconv(x, w, x_zero_point=zp, x_scale=0.02, w_scales=ws, bias=bias,
                        pads=(1, 1, 1, 1), strides=(2, 1), group=2, impl=impl)
    xf = (x.astype(np.float64) - zp) * 0.02
    wf = w.astype(np.float64) * ws[:, None, None, None]
    # float conv of the dequantized tensors (padding with real zero)
    xpad = np.pad(xf, ((0, 0), (0, 0), (1, 1), (1, 1)))
    OH, OW = (8 + 2 - 3) // 2 + 1, 8
    want = np.zeros((2, 4, OH, OW))
    for oc in range(4):
        g = oc // 2
        for kh in range(3):
            for kw in range(3):
                patch = xpad[:, g * 3:(g + 1) * 3, kh:kh + 2 * (OH - 1) + 1:2, kw:kw + OW]
                want[:, oc] += np.einsum("nchw,c->nhw", patch, wf[oc, :, kh, kw])
        want[:, oc] += bias[oc]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_qconv_epilogue_is_qlinear_epilogue():
    """qconv's float result equals qlinear over the same im2col rows, bit for bit."""
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (1, 4, 5, 5), dtype=np.uint8)
    w = rng.integers(-127, 128, (3, 4, 1, 1), dtype=np.int8)
    ws = rng.uniform(0.001, 0.01, 3).astype(np.float32)
    got = kernels.qconv(x, w, x_zero_point=9, x_scale=0.1, w_scales=ws)
    rows = np.ascontiguousarray(x[0].reshape(4, 25).T)
    want = kernels.qlinear(rows, np.ascontiguousarray(w[:, :, 0, 0].T), a_zero_point=9,
                           a_scale=0.1, w_scales=ws)
    assert np.array_equal(got[0].reshape(3, 25).T, want)


@pytest.mark.parametrize("arith", ARITHS)
def test_conv_thread_invariance(arith):
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (2, 16, 20, 20), dtype=np.uint8)
    w = rng.integers(-128, 128, (32, 16, 3, 3), dtype=np.int8)
    old = fastq.get_num_threads()
    try:
        outs = []
        for n in (1, 2, 5):
            fastq.set_num_threads(n)
            outs.append(kernels.conv_u8s8(x, w, pads=(1, 1, 1, 1), arith=arith))
    finally:
        fastq.set_num_threads(old)
    assert all(np.array_equal(o, outs[0]) for o in outs[1:])


class TestConvErrors:
    def test_channel_mismatch(self):
        with pytest.raises(fastq.KernelError, match=r"C=4 but the weights expect C=3"):
            kernels.conv_u8s8(np.zeros((1, 4, 5, 5), np.uint8), np.zeros((2, 3, 3, 3), np.int8))

    def test_bad_group(self):
        with pytest.raises(fastq.KernelError, match="group=3"):
            kernels.pack_conv_weights(np.zeros((4, 1, 3, 3), np.int8), group=3)

    def test_bad_geometry(self):
        x, w = np.zeros((1, 3, 5, 5), np.uint8), np.zeros((2, 3, 3, 3), np.int8)
        with pytest.raises(fastq.KernelError, match="4 pads"):
            kernels.conv_u8s8(x, w, pads=(1, 1))
        with pytest.raises(ValueError, match="empty"):
            kernels.conv_u8s8(np.zeros((1, 3, 2, 2), np.uint8), w)
        with pytest.raises(ValueError, match="strides"):
            kernels.conv_u8s8(x, w, strides=(0, 1))

    def test_bad_pairing_and_dtype(self):
        with pytest.raises(fastq.KernelError, match="per_tap, flat"):
            kernels.pack_conv_weights(np.zeros((2, 3, 3, 3), np.int8), pairing="tap")
        with pytest.raises(fastq.KernelError, match="uint8"):
            kernels.conv_u8s8(np.zeros((1, 3, 5, 5), np.float32), np.zeros((2, 3, 3, 3), np.int8))

    def test_packed_pairing_conflict(self):
        pw = kernels.pack_conv_weights(np.zeros((2, 3, 3, 3), np.int8), pairing="flat")
        with pytest.raises(fastq.KernelError, match="packed with 'flat'"):
            kernels.conv_u8s8(np.zeros((1, 3, 5, 5), np.uint8), pw, pairing="per_tap")
