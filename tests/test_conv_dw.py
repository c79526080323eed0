"""Direct depthwise int8 conv (cpp/include/fastq/conv_dw.h) equals the general scalar spec
``_core.conv_u8s8_reference`` bit for bit, every impl, both ariths and pairings, over a sweep
of strides, dilations, pads, 3x3/5x5 kernels, channel counts 1..33, channel multipliers, and
random and saturating fills; ``kernels.conv_u8s8`` / ``qconv`` route Cg == 1 to it and agree."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fastq import _core, kernels

IMPLS = kernels.available_impls()
RNG = np.random.default_rng(5)

GEOMS = [  # (k, strides, pads (t, l, b, r), dilations)
    (3, (1, 1), (1, 1, 1, 1), (1, 1)),
    (3, (2, 2), (1, 1, 1, 1), (1, 1)),
    (3, (2, 1), (0, 2, 1, 0), (2, 1)),
    (5, (1, 1), (2, 2, 2, 2), (1, 1)),
    (5, (2, 2), (0, 0, 0, 0), (1, 2)),
    (3, (3, 3), (2, 0, 0, 2), (2, 2)),
]
CHANNELS = [1, 2, 3, 8, 15, 16, 17, 33]
FILLS = ["random", "sat_pos", "sat_mix", "zero"]


def _data(fill, c, mult, k, hw=(9, 11)):
    x_shape, w_shape = (2, c) + hw, (c * mult, 1, k, k)
    if fill == "random":
        return (RNG.integers(0, 256, x_shape).astype(np.uint8),
                RNG.integers(-128, 128, w_shape).astype(np.int8), int(RNG.integers(0, 256)))
    if fill == "zero":
        return np.zeros(x_shape, np.uint8), np.zeros(w_shape, np.int8), 0
    x = RNG.integers(250, 256, x_shape).astype(np.uint8)
    if fill == "sat_pos":  # 255 x 127 pairs: 64770 > 32767 in every flat pair
        return x, np.full(w_shape, 127, np.int8), 255
    return x, np.where(RNG.random(w_shape) < 0.5, -128, 127).astype(np.int8), 255


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("geom", range(len(GEOMS)))
@pytest.mark.parametrize("fill", FILLS)
def test_direct_depthwise_equals_reference(impl, geom, fill):
    k, st, pads, dil = GEOMS[geom]
    for c, mult in itertools.chain(((c, 1) for c in CHANNELS), [(3, 2), (1, 4)]):
        x, w, zp = _data(fill, c, mult, k)
        for arith, pairing in [("exact32", "per_tap"), ("sat16pair", "per_tap"),
                               ("sat16pair", "flat"), ("exact32", "flat")]:
            want = _core.conv_u8s8_reference(x, w, c, st, pads, dil, zp, arith, pairing)
            got = _core.conv_dw_u8s8(x, w, st, pads, dil, zp, pairing, arith, impl)
            assert np.array_equal(got, want), (impl, arith, pairing, fill, c, mult, GEOMS[geom])
            packed = kernels.pack_conv_weights(w, group=c, pairing=pairing)
            routed = kernels.conv_u8s8(x, packed, strides=st, pads=pads[:2] + pads[2:],
                                       dilations=dil, x_zero_point=zp, arith=arith, impl=impl)
            assert np.array_equal(routed, want), ("routed", impl, arith, pairing, c)


def test_flat_sat16pair_saturates_and_per_tap_does_not():
    x, w, zp = _data("sat_pos", 4, 1, 3)
    x[:] = 255
    args = ((1, 1), (1, 1, 1, 1), (1, 1), zp)
    exact = _core.conv_dw_u8s8(x, w, *args, "per_tap", "exact32", IMPLS[-1])
    per_tap = _core.conv_dw_u8s8(x, w, *args, "per_tap", "sat16pair", IMPLS[-1])
    flat = _core.conv_dw_u8s8(x, w, *args, "flat", "sat16pair", IMPLS[-1])
    assert np.array_equal(per_tap, exact)          # lone products never saturate
    assert flat.max() == 4 * 32767 + 255 * 127     # 4 saturated pairs + the odd ninth tap
    assert exact.max() == 9 * 255 * 127


@pytest.mark.parametrize("x_dt", [np.uint8, np.int8])
def test_qconv_depthwise_matches_gemm_path_floats(x_dt):
    # the direct path's epilogue reproduces qlinear_epilogue's float operation order: compare
    # with the same conv as a 2-channel-per-group conv whose second channel weights are zero
    c = 6
    x = RNG.integers(np.iinfo(x_dt).min, np.iinfo(x_dt).max + 1, (1, c, 8, 8)).astype(x_dt)
    w = RNG.integers(-127, 128, (c, 1, 3, 3)).astype(np.int8)
    ws = (RNG.random(c) * 0.01 + 0.001).astype(np.float32)
    b = RNG.standard_normal(c).astype(np.float32)
    kw = dict(x_zero_point=5, x_scale=0.03, w_scales=ws, bias=b, strides=(1, 1),
              pads=(1, 1, 1, 1))
    got = kernels.qconv(x, kernels.pack_conv_weights(w, group=c), **kw)
    # group = c/2 with 2 input channels per group: one real weight slice, one zero slice
    w2 = np.zeros((c, 2, 3, 3), np.int8)
    xs = np.stack([x, np.full_like(x, 5)], axis=2).reshape(1, 2 * c, 8, 8)
    w2[:, 0] = w[:, 0]
    want = kernels.qconv(xs, kernels.pack_conv_weights(w2, group=c), **kw)
    assert np.array_equal(got, want)


def test_direct_depthwise_rejects_bad_shapes():
    x = np.zeros((1, 4, 5, 5), np.uint8)
    with pytest.raises(ValueError, match="OC a multiple"):
        _core.conv_dw_u8s8(x, np.zeros((6, 1, 3, 3), np.int8), (1, 1), (0, 0, 0, 0), (1, 1), 0,
                           "per_tap", "exact32", "ref")
    with pytest.raises(ValueError, match="empty"):
        _core.conv_dw_u8s8(x, np.zeros((4, 1, 7, 7), np.int8), (1, 1), (0, 0, 0, 0), (1, 1), 0,
                           "per_tap", "exact32", "ref")
