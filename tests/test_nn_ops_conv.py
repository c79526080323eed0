"""Conv and ConvTranspose against independent float64 numpy oracles (direct tap-by-tap
sums) over attribute sweeps: groups and depthwise, dilations, strides, asymmetric pads,
auto_pad, 1-D/2-D/3-D, batch > 1, odd sizes; plus every impl of the depthwise kernel
giving the same bits, and float64 inputs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fastq import _core
from test_nn_ops_util import impls, run_fastq

RNG = np.random.default_rng(1234)


def _taps(k):
    return itertools.product(*[range(e) for e in k])


def conv_oracle(x, w, b, strides, dil, pb, pe, group):
    """y[n, m, o] = b[m] + sum_{c in group(m), tap} w[m, c, tap] * xpad[n, c, o*s + tap*d]."""
    nd = x.ndim - 2
    xp = np.pad(x.astype(np.float64), [(0, 0), (0, 0)] + list(zip(pb, pe)))
    k = w.shape[2:]
    out = [(xp.shape[2 + a] - (k[a] - 1) * dil[a] - 1) // strides[a] + 1 for a in range(nd)]
    n, c = x.shape[:2]
    m = w.shape[0]
    cg, mg = c // group, m // group
    y = np.zeros((n, m, *out))
    for tap in _taps(k):
        sl = tuple(slice(tap[a] * dil[a], tap[a] * dil[a] + (out[a] - 1) * strides[a] + 1,
                         strides[a]) for a in range(nd))
        patch = xp[(slice(None), slice(None)) + sl]
        for g in range(group):
            wt = w[(slice(g * mg, (g + 1) * mg), slice(None)) + tap].astype(np.float64)
            y[:, g * mg:(g + 1) * mg] += np.einsum("nc...,mc->nm...",
                                                   patch[:, g * cg:(g + 1) * cg], wt)
    if b is not None:
        y += b.reshape((1, m) + (1,) * nd)
    return y


def same_pads(in_sp, k, s, d, upper):
    out = [-(-i // st) for i, st in zip(in_sp, s)]
    tot = [max(0, (o - 1) * st + (kk - 1) * dd + 1 - i)
           for o, st, kk, dd, i in zip(out, s, k, d, in_sp)]
    pb = [t // 2 if upper else t - t // 2 for t in tot]
    return pb, [t - p for t, p in zip(tot, pb)], out


CONV_SWEEP = [
    # (x shape, M, kernel, strides, dilations, pads or auto_pad, group)
    ((1, 3, 7, 9), 4, (3, 3), (1, 1), (1, 1), [1, 1, 1, 1], 1),
    ((2, 4, 8, 6), 6, (3, 2), (2, 1), (1, 2), [0, 2, 1, 0], 2),
    ((1, 6, 11, 5), 6, (3, 3), (1, 1), (1, 1), [1, 1, 1, 1], 6),       # depthwise
    ((2, 8, 13, 17), 8, (3, 3), (2, 2), (1, 1), [1, 0, 2, 1], 8),      # depthwise strided
    ((1, 5, 12, 10), 5, (5, 3), (3, 2), (2, 3), [2, 1, 0, 3], 5),      # depthwise odd
    ((1, 4, 9, 33), 4, (3, 3), (1, 1), (1, 1), "SAME_UPPER", 4),       # depthwise long rows
    ((1, 4, 9, 9), 8, (3, 3), (1, 1), (1, 1), "SAME_UPPER", 4),        # multiplier 2
    ((1, 3, 10, 7), 5, (4, 4), (2, 3), (1, 1), "SAME_UPPER", 1),
    ((1, 3, 10, 7), 5, (4, 4), (2, 3), (1, 1), "SAME_LOWER", 1),
    ((1, 3, 10, 7), 5, (2, 3), (2, 2), (2, 1), "VALID", 1),
    ((1, 3, 10, 7), 4, (3, 2), (2, 1), (2, 3), "SAME_UPPER", 1),       # SAME + dilation
    ((2, 4, 9, 8), 4, (3, 3), (1, 2), (2, 2), "SAME_LOWER", 4),        # (ORT rejects these)
    ((3, 8, 5, 5), 16, (1, 1), (1, 1), (1, 1), [0, 0, 0, 0], 1),       # 1x1 -> matmul
    ((2, 8, 5, 5), 16, (1, 1), (1, 1), (1, 1), [0, 0, 0, 0], 4),       # grouped 1x1
    ((1, 8, 7, 7), 4, (1, 1), (2, 2), (1, 1), [1, 0, 0, 1], 1),        # 1x1 strided, padded
    ((2, 8, 7, 8), 4, (1, 1), (2, 3), (1, 1), [0, 0, 0, 0], 2),        # 1x1 strided
    ((2, 3, 8, 7), 6, (3, 3), (2, 1), (1, 2), [1, 2, 0, 1], 3),        # depthwise x2 mult
    ((1, 2, 9), 6, (3,), (1,), (1,), "SAME_UPPER", 2),                 # 1-D multiplier 3
    ((2, 3, 17), 4, (5,), (2,), (2,), [3, 1], 1),                      # 1-D
    ((1, 6, 15), 6, (3,), (1,), (1,), [1, 1], 6),                      # 1-D depthwise
    ((1, 2, 5, 6, 7), 4, (3, 2, 3), (1, 2, 1), (1, 1, 2), [1, 0, 1, 1, 1, 0], 1),  # 3-D
    ((2, 4, 5, 4, 6), 4, (2, 3, 3), (2, 1, 1), (1, 1, 1), "SAME_LOWER", 4),        # 3-D dw
    ((1, 1, 1, 1), 1, (1, 1), (1, 1), (1, 1), [0, 0, 0, 0], 1),        # 1x1 image
    ((1, 2, 3, 3), 3, (3, 3), (5, 5), (1, 1), [2, 2, 2, 2], 1),        # stride > size
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", range(len(CONV_SWEEP)))
def test_conv_matches_oracle(case, dtype):
    xs, m, k, s, d, pads, group = CONV_SWEEP[case]
    nd = len(xs) - 2
    x = RNG.standard_normal(xs).astype(dtype)
    w = RNG.standard_normal((m, xs[1] // group) + k).astype(dtype)
    b = RNG.standard_normal(m).astype(dtype)
    attrs = dict(kernel_shape=list(k), strides=list(s), dilations=list(d), group=group)
    if isinstance(pads, str):
        attrs["auto_pad"] = pads
        if pads == "VALID":
            pb = pe = [0] * nd
        else:
            pb, pe, out = same_pads(xs[2:], k, s, d, pads == "SAME_UPPER")
    else:
        attrs["pads"] = pads
        pb, pe = pads[:nd], pads[nd:]
    (y,) = run_fastq("Conv", [x, w, b], 22, **attrs)
    want = conv_oracle(x, w, b, s, d, pb, pe, group)
    if isinstance(pads, str) and pads != "VALID":
        assert list(y.shape[2:]) == out
    assert y.dtype == dtype and y.shape == want.shape
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, want, rtol=tol, atol=tol * 10)


def test_conv_without_bias_and_batch():
    x = RNG.standard_normal((3, 4, 6, 6)).astype(np.float32)
    w = RNG.standard_normal((2, 4, 3, 3)).astype(np.float32)
    (y,) = run_fastq("Conv", [x, w], 11, pads=[1, 1, 1, 1])
    np.testing.assert_allclose(y, conv_oracle(x, w, None, (1, 1), (1, 1), (1, 1), (1, 1), 1),
                               rtol=1e-5, atol=1e-5)


DW_SHAPES = [  # (x shape, kernel, strides, dilations, pads_begin, out)
    ((1, 3, 9, 9), (3, 3), (1, 1), (1, 1), (1, 1), (9, 9)),
    ((2, 5, 17, 31), (3, 3), (2, 2), (1, 1), (1, 1), (9, 16)),
    ((1, 4, 8, 65), (5, 5), (1, 1), (2, 2), (4, 4), (8, 65)),
    ((1, 2, 6, 7), (3, 2), (3, 1), (1, 3), (0, 2), (2, 7)),
    ((1, 3, 40), (7,), (1,), (1,), (3,), (40,)),
    ((1, 2, 4, 5, 19), (3, 3, 3), (1, 1, 1), (1, 1, 1), (1, 1, 1), (4, 5, 19)),
    # stride 2 with even/odd begin pads and widths (the stride-2 pair split)
    ((1, 3, 10, 12), (3, 3), (2, 2), (1, 1), (0, 0), (4, 5)),
    ((1, 2, 11, 13), (5, 5), (2, 2), (1, 1), (2, 2), (6, 7)),
    ((1, 2, 9, 9), (7, 7), (2, 2), (1, 1), (3, 3), (5, 5)),
    ((1, 4, 56, 56), (3, 3), (2, 2), (1, 1), (1, 1), (28, 28)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", range(len(DW_SHAPES)))
def test_depthwise_impls_match_oracle(case, dtype):
    """Every impl against the float64 oracle at a tight tolerance (the SIMD builds fuse
    multiply-adds, so they differ from ref by rounding only), with and without the fused
    clamp (Relu6's [0, 6] and a one-sided Relu)."""
    xs, k, s, d, pb, out = DW_SHAPES[case]
    x = RNG.standard_normal(xs).astype(dtype)
    w = RNG.standard_normal((xs[1], 1) + k).astype(dtype)
    b = RNG.standard_normal(xs[1]).astype(dtype)
    pe = [(o - 1) * st + (kk - 1) * dd + 1 - i - p
          for o, st, kk, dd, i, p in zip(out, s, k, d, xs[2:], pb)]
    want = conv_oracle(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), s, d,
                       pb, [max(0, e) for e in pe], xs[1])[(...,) + tuple(slice(0, o)
                                                                          for o in out)]
    tol = 1e-5 if dtype == np.float32 else 1e-12
    atol = tol * np.abs(want).max()
    for impl in impls():
        for lo, hi in ((-np.inf, np.inf), (0.0, 6.0), (0.0, np.inf)):
            got = _core.nn_conv_depthwise(x, w, b, list(s), list(d), list(pb), list(out), impl,
                                          lo, hi)
            assert got.dtype == dtype and got.shape == want.shape
            np.testing.assert_allclose(got, np.clip(want, lo, hi), rtol=tol, atol=atol,
                                       err_msg=f"{impl} [{lo}, {hi}]")
    # without lo/hi the output is unclamped
    got = _core.nn_conv_depthwise(x, w, None, list(s), list(d), list(pb), list(out), "ref")
    np.testing.assert_allclose(got, want - b.reshape((1, -1) + (1,) * len(k)), rtol=tol,
                               atol=atol)


def test_depthwise_clamp_keeps_nan():
    x = RNG.standard_normal((1, 2, 5, 9)).astype(np.float32)
    x[0, 1, 2, 4] = np.nan
    w = np.ones((2, 1, 3, 3), np.float32)
    for impl in impls():
        y = _core.nn_conv_depthwise(x, w, None, [1, 1], [1, 1], [1, 1], [5, 9], impl, 0.0, 6.0)
        assert np.isnan(y[0, 1, 1:4, 3:6]).all() and not np.isnan(y[0, 0]).any()
        assert (y[~np.isnan(y)] >= 0).all() and (y[~np.isnan(y)] <= 6).all()


def convt_oracle(x, w, b, strides, dil, pb, out, group):
    """Scatter form: y[n, m, i*s + tap*d - pb] += x[n, c, i] * w[c, m, tap]."""
    nd = x.ndim - 2
    n, c = x.shape[:2]
    mg = w.shape[1]
    cg = c // group
    k = w.shape[2:]
    in_sp = x.shape[2:]
    full = [(in_sp[a] - 1) * strides[a] + (k[a] - 1) * dil[a] + 1 for a in range(nd)]
    big = [max(full[a], pb[a] + out[a]) for a in range(nd)]
    yf = np.zeros((n, mg * group, *big))
    for tap in _taps(k):
        sl = tuple(slice(tap[a] * dil[a], tap[a] * dil[a] + (in_sp[a] - 1) * strides[a] + 1,
                         strides[a]) for a in range(nd))
        for g in range(group):
            wt = w[(slice(g * cg, (g + 1) * cg), slice(None)) + tap].astype(np.float64)
            yf[(slice(None), slice(g * mg, (g + 1) * mg)) + sl] += np.einsum(
                "nc...,cm->nm...", x[:, g * cg:(g + 1) * cg].astype(np.float64), wt)
    y = yf[(slice(None), slice(None)) + tuple(slice(p, p + o) for p, o in zip(pb, out))]
    if b is not None:
        y = y + b.reshape((1, -1) + (1,) * nd)
    return y


CONVT_SWEEP = [
    # (x shape, Mg, kernel, strides, dilations, group, attrs)
    ((1, 3, 4, 5), 2, (3, 3), (1, 1), (1, 1), 1, {}),
    ((2, 4, 3, 3), 3, (3, 3), (2, 2), (1, 1), 2, {"pads": [1, 0, 0, 1]}),
    ((1, 2, 5, 4), 2, (2, 3), (3, 2), (2, 1), 1, {"output_padding": [1, 1]}),
    ((1, 2, 3, 4), 3, (3, 3), (2, 2), (1, 1), 1, {"output_shape": [7, 9]}),
    ((1, 2, 3, 4), 3, (3, 3), (2, 2), (1, 1), 1, {"output_shape": [6, 8],
                                                  "auto_pad": "SAME_UPPER"}),
    ((1, 2, 3, 4), 3, (3, 3), (2, 2), (1, 1), 1, {"auto_pad": "SAME_LOWER"}),
    ((1, 4, 6), 1, (3,), (2,), (1,), 4, {"pads": [1, 2]}),                # 1-D, group=C
    ((1, 2, 2, 3, 2), 2, (2, 2, 3), (2, 1, 2), (1, 2, 1), 1, {}),          # 3-D
]


def _convt_geometry(xs, k, s, d, attrs):
    nd = len(k)
    op = attrs.get("output_padding", [0] * nd)
    full = [s[a] * (xs[2 + a] - 1) + op[a] + (k[a] - 1) * d[a] + 1 for a in range(nd)]
    ap = attrs.get("auto_pad", "NOTSET")
    if "pads" in attrs:
        p = attrs["pads"]
        return [full[a] - p[a] - p[nd + a] for a in range(nd)], p[:nd]
    if "output_shape" in attrs or ap.startswith("SAME"):
        out = attrs.get("output_shape", [xs[2 + a] * s[a] for a in range(nd)])
        tot = [full[a] - out[a] for a in range(nd)]
        pb = [t // 2 if ap == "SAME_UPPER" else t - t // 2 for t in tot]
        return out, pb
    return full, [0] * nd


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", range(len(CONVT_SWEEP)))
def test_conv_transpose_matches_oracle(case, dtype):
    xs, mg, k, s, d, group, attrs = CONVT_SWEEP[case]
    x = RNG.standard_normal(xs).astype(dtype)
    w = RNG.standard_normal((xs[1], mg) + k).astype(dtype)
    b = RNG.standard_normal(mg * group).astype(dtype)
    (y,) = run_fastq("ConvTranspose", [x, w, b], 22, strides=list(s), dilations=list(d),
                     group=group, **attrs)
    out, pb = _convt_geometry(xs, k, s, d, attrs)
    want = convt_oracle(x, w, b, s, d, pb, out, group)
    assert y.shape == want.shape and y.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, want, rtol=tol, atol=tol * 10)


def test_im2col_col2im_adjoint():
    """<im2col(x), c> == <x, col2im(c)>: col2im is exactly im2col's transpose."""
    x = RNG.standard_normal((3, 5, 7)).astype(np.float64)
    args = ([3, 2], [2, 1], [1, 2], [1, 1], [3, 6])
    col = _core.nn_im2col(x, *args)
    c = RNG.standard_normal(col.shape)
    img = _core.nn_col2im(c, 3, [5, 7], *args[:4], args[4])
    assert np.isclose(np.sum(col * c), np.sum(x * img), rtol=1e-12)


def test_kernels_do_not_depend_on_thread_count():
    """Contract of parallel_for users: results are the same bits on 1 and on 2 threads.
    Shapes are large enough that every kernel splits into several tasks."""
    import fastq
    x = RNG.standard_normal((2, 16, 64, 61)).astype(np.float32)
    w = RNG.standard_normal((16, 1, 3, 3)).astype(np.float32)
    idx = np.stack([np.arange(122) // 2, np.minimum(np.arange(122) // 2 + 1, 60)], 1)
    wt = RNG.random((122, 2)).astype(np.float32)

    def run_all():
        return [
            _core.nn_conv_depthwise(x, w, None, [2, 1], [1, 2], [1, 2], [32, 61]),
            _core.nn_im2col(x[0], [3, 3], [1, 2], [1, 1], [1, 1], [64, 31]),
            _core.nn_col2im(_core.nn_im2col(x[0], [3, 3], [1, 1], [1, 1], [1, 1], [64, 61]),
                            16, [64, 61], [3, 3], [1, 1], [1, 1], [1, 1], [64, 61]),
            _core.nn_pool(x, "avg", [3, 2], [2, 2], [1, 1], [1, 0], [1, 1], [32, 31], True),
            _core.nn_pool(x, "max", [3, 3], [2, 2], [1, 1], [1, 1], [1, 1], [32, 31], False, 2,
                          True)[1],
            _core.nn_resize_axis(x.reshape(2 * 16 * 64, 61, 1), idx.astype(np.int64), wt),
            _core.nn_resize_axis(x.reshape(32, 64, 61), idx[:64].astype(np.int64) % 64,
                                 wt[:64]),
        ]

    old = fastq.get_num_threads()
    try:
        fastq.set_num_threads(1)
        one = run_all()
        fastq.set_num_threads(2)
        two = run_all()
    finally:
        fastq.set_num_threads(old)
    for a, b in zip(one, two):
        assert np.array_equal(a, b)


WINOGRAD = [  # 3x3 stride-1 group-1 convs with >= 16 channels take the Winograd path
    ((1, 16, 8, 8), 16, [1, 1, 1, 1]),
    ((2, 17, 9, 7), 19, [0, 0, 0, 0]),          # odd outputs: last tile cropped
    ((1, 32, 5, 11), 16, [2, 0, 1, 3]),         # asymmetric pads
    ((1, 16, 1, 1), 24, [1, 1, 1, 1]),          # one output, one tile
    ((1, 20, 2, 3), 16, [1, 2, 2, 1]),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", range(len(WINOGRAD)))
@pytest.mark.parametrize("bias", [True, False])
def test_winograd_conv_matches_oracle(case, dtype, bias):
    xs, m, pads = WINOGRAD[case]
    x = RNG.standard_normal(xs).astype(dtype)
    w = RNG.standard_normal((m, xs[1], 3, 3)).astype(dtype)
    b = RNG.standard_normal(m).astype(dtype) if bias else None
    (y,) = run_fastq("Conv", [x, w, b], 22, pads=pads)
    want = conv_oracle(x, w, b, (1, 1), (1, 1), pads[:2], pads[2:], 1)
    assert y.shape == want.shape and y.dtype == dtype
    # Winograd's transforms add rounding of the order of the products' magnitude.
    tol = 2e-4 if dtype == np.float32 else 1e-11
    np.testing.assert_allclose(y, want, rtol=tol, atol=tol * np.abs(want).max())


def test_winograd_transforms_match_direct_formulas():
    """The C++ tile transforms against B^T d B / A^T m A written out in numpy."""
    bt = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64)
    at = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)
    x = RNG.standard_normal((3, 5, 6))
    v = _core.nn_winograd_input(x, 1, 0, 3, 3)           # 5+1 rows -> 3 tiles, 6 cols -> 3
    xp = np.pad(x, [(0, 0), (1, 2), (0, 2)])
    for c, i, j in itertools.product(range(3), range(3), range(3)):
        d = xp[c, 2 * i:2 * i + 4, 2 * j:2 * j + 4]
        np.testing.assert_allclose(v[:, c, i * 3 + j].reshape(4, 4), bt @ d @ bt.T, atol=1e-12)
    mm = RNG.standard_normal((16, 2, 6))
    y = _core.nn_winograd_output(mm, 2, 3, 3, 5, np.array([0.5, -1.0]))
    for k, i, j in itertools.product(range(2), range(2), range(3)):
        tile = at @ mm[:, k, i * 3 + j].reshape(4, 4) @ at.T + [0.5, -1.0][k]
        np.testing.assert_allclose(y[k, 2 * i:2 * i + 2, 2 * j:2 * j + 2],
                                   tile[:3 - 2 * i, :5 - 2 * j][:2, :2], atol=1e-12)
