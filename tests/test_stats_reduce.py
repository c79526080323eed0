"""fastq.stats per-sample reductions against numpy oracles, for every impl this host runs:
whole-tensor and per-channel (every axis of 4-D tensors, negative axes), non-contiguous
layouts, empty tensors, single elements, NaN/Inf, and exact quantiles on hard data."""

import numpy as np
import pytest

import fastq
from fastq import kernels, stats

IMPLS = kernels.available_impls()
RNG = np.random.default_rng(1234)


def other_axes(ndim, axis):
    return tuple(a for a in range(ndim) if a != axis % ndim)


def np_reduce(x, fn, axis):
    return fn(x) if axis is None else fn(x, axis=other_axes(x.ndim, axis))


def layouts():
    """(label, array) pairs: contiguous, transposed, Fortran, stepped, negative strides."""
    base = RNG.standard_normal((5, 6, 7, 9)).astype(np.float32)
    big = RNG.standard_normal((6, 8, 10, 12)).astype(np.float32)
    return [
        ("contiguous", base),
        ("nhwc-view", np.ascontiguousarray(base.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)),
        ("fortran", np.asfortranarray(base)),
        ("stepped", big[::2, 1::3, :, ::2]),
        ("reversed", base[::-1, :, ::-1]),
        ("long-runs", RNG.standard_normal((2, 3, 40, 50)).astype(np.float32)),
    ]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("label,x", layouts(), ids=[lbl for lbl, _ in layouts()])
@pytest.mark.parametrize("axis", [None, 0, 1, 2, 3, -1, -3])
def test_minmax_absmax_mean(impl, label, x, axis):
    mn, mx = stats.minmax(x, axis, impl=impl)
    assert np.array_equal(mn, np_reduce(x, np.min, axis)), (impl, label, axis)
    assert np.array_equal(mx, np_reduce(x, np.max, axis)), (impl, label, axis)
    assert np.array_equal(stats.abs_max(x, axis, impl=impl), np_reduce(np.abs(x), np.max, axis))
    want = np_reduce(x.astype(np.float64), np.mean, axis)
    got = stats.mean(x, axis, impl=impl)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    if axis is None:
        assert np.ndim(mn) == 0
    else:
        assert mn.shape == (x.shape[axis],)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("label,x", layouts(), ids=[lbl for lbl, _ in layouts()])
@pytest.mark.parametrize("axis", [None, 1, -1, 0])
@pytest.mark.parametrize("q", [0.0, 1e-4, 0.3, 0.5, 0.9999, 1.0])
def test_quantile_matches_numpy_bitwise(impl, label, x, axis, q):
    want = np_reduce(x, lambda a, **k: np.quantile(a, q, **k), axis)
    got = stats.quantile(x, q, axis, impl=impl)
    assert np.asarray(got).dtype == np.float32
    assert np.array_equal(got, want), (impl, label, axis, q, got, want)
    want_abs = np_reduce(np.abs(x), lambda a, **k: np.quantile(a, q, **k), axis)
    assert np.array_equal(stats.abs_quantile(x, q, axis, impl=impl), want_abs)


def hard_arrays(n):
    """Large inputs (the sampled-window path) whose rank structure is awkward."""
    g = np.random.default_rng(7)
    normal = g.standard_normal(n).astype(np.float32)
    relu = np.maximum(normal, 0)
    few = g.integers(-3, 4, n).astype(np.float32)
    ramp = np.arange(n, dtype=np.float32)
    blocks = np.repeat(g.standard_normal(n // 4096 + 1).astype(np.float32) * 100, 4096)[:n]
    heavy = (g.standard_cauchy(n) * 1e3).astype(np.float32)
    neg_zero = np.where(g.random(n) < 0.5, -0.0, 0.0).astype(np.float32)
    return {"normal": normal, "relu": relu, "few-values": few, "ramp": ramp,
            "ramp-reversed": ramp[::-1].copy(), "constant": np.full(n, 2.5, np.float32),
            "block-correlated": blocks, "cauchy": heavy, "signed-zeros": neg_zero}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind", list(hard_arrays(8)))
@pytest.mark.parametrize("q", [0.0, 1e-4, 0.01, 0.5, 0.75, 0.9999, 1.0])
def test_quantile_large_inputs_exact(impl, kind, q):
    x = hard_arrays(300_001)[kind]
    assert np.array_equal(stats.quantile(x[:20_000], q, impl=impl), np.quantile(x[:20_000], q))
    got = stats.quantile(x, q, impl=impl)
    want = np.quantile(x, q)
    # == on floats: which of several equal zeros (-0.0 / 0.0) a selection lands on is
    # unspecified in numpy too; every other value is compared bit for bit by ==.
    assert np.array_equal(got, want), (impl, kind, q, got, want)
    assert np.array_equal(stats.abs_quantile(x, q, impl=impl), np.quantile(np.abs(x), q))


@pytest.mark.parametrize("impl", IMPLS)
def test_quantile_per_channel_large_nchw(impl):
    x = RNG.standard_normal((4, 3, 200, 300)).astype(np.float32)
    for q in (1e-4, 0.5, 1 - 1e-4):
        assert np.array_equal(stats.quantile(x, q, 1, impl=impl),
                              np.quantile(x, q, axis=(0, 2, 3)))


@pytest.mark.parametrize("impl", IMPLS)
def test_single_element_and_scalar(impl):
    for x in (np.array([-2.5], np.float32), np.float32(-2.5) * np.ones((1, 1, 1), np.float32),
              np.array(-2.5, np.float32)):
        assert stats.minmax(x, impl=impl) == (-2.5, -2.5)
        assert stats.abs_max(x, impl=impl) == 2.5
        assert stats.mean(x, impl=impl) == -2.5
        assert stats.quantile(x, 0.7, impl=impl) == -2.5
    one = np.array([[3.0]], np.float32)
    assert np.array_equal(stats.minmax(one, 1)[0], [3.0])


@pytest.mark.parametrize("fn", [stats.minmax, stats.abs_max, stats.mean,
                                lambda x, a=None: stats.quantile(x, 0.5, a)])
def test_empty_tensor_raises_data_error(fn):
    with pytest.raises(fastq.DataError, match="empty"):
        fn(np.zeros((0, 4), np.float32))
    with pytest.raises(fastq.DataError, match="empty"):
        fn(np.zeros((3, 0, 2), np.float32), 0)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("axis", [None, 1, -1])
def test_nonfinite_raises_data_error_naming_tensor(impl, bad, axis):
    x = RNG.standard_normal((2, 5, 6, 40)).astype(np.float32)
    x[1, 2, 3, 17] = bad
    for fn in (stats.minmax, stats.abs_max, stats.mean, stats.min, stats.max,
               lambda a, ax, **k: stats.quantile(a, 0.5, ax, **k),
               lambda a, ax, **k: stats.abs_quantile(a, 0.99, ax, **k)):
        with pytest.raises(fastq.DataError, match=r"'conv1/out'.*1 NaN/Inf.*\(1, 2, 3, 17\)"):
            fn(x, axis, name="conv1/out", impl=impl)


def test_nonfinite_in_large_quantile_and_every_position():
    x = RNG.standard_normal(200_000).astype(np.float32)
    for pos in (0, 63, 64, 100_000, 199_999):  # sampled block, window pass, tail
        y = x.copy()
        y[pos] = np.nan
        with pytest.raises(fastq.DataError):
            stats.quantile(y, 0.5)
        with pytest.raises(fastq.DataError):
            stats.minmax(y)


def test_bad_arguments():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(fastq.DataError, match="float32"):
        stats.minmax(x.astype(np.float64))
    with pytest.raises(fastq.DataError, match="channel_axis 2"):
        stats.abs_max(x, 2)
    with pytest.raises(fastq.ConfigError, match="channel_axis"):
        stats.abs_max(x, 1.0)
    with pytest.raises(fastq.ConfigError, match=r"\[0, 1\]"):
        stats.quantile(x, 1.5)
    with pytest.raises(fastq.ConfigError, match="abs_max, quantile"):
        stats.reduce(x, "absmax")


@pytest.mark.parametrize("reducer,oracle", [
    ("min", lambda a, ax: np.min(a, axis=ax)),
    ("max", lambda a, ax: np.max(a, axis=ax)),
    ("abs_max", lambda a, ax: np.max(np.abs(a), axis=ax)),
    ("quantile", lambda a, ax: np.quantile(a, 0.25, axis=ax)),
    ("abs_quantile", lambda a, ax: np.quantile(np.abs(a), 0.25, axis=ax)),
])
def test_reduce_by_name(reducer, oracle):
    x = RNG.standard_normal((3, 4, 5)).astype(np.float32)
    q = 0.25 if "quantile" in reducer else None
    assert np.array_equal(stats.reduce(x, reducer, 1, q), oracle(x, (0, 2)))
    assert np.array_equal(stats.reduce(x, reducer, None, q), oracle(x, None))


def test_impls_agree_bitwise_on_sums():
    """The float64 sum order is fixed by stats.h, so every impl returns the same bits."""
    x = (RNG.standard_normal((3, 5, 37, 41)) * 1e3).astype(np.float32)
    for axis in (None, 1, -1, 0):
        ref = stats.mean(x, axis, impl="ref")
        for impl in IMPLS:
            assert np.array_equal(stats.mean(x, axis, impl=impl), ref), (impl, axis)


@pytest.mark.parametrize("impl", IMPLS)
def test_quantile_exact_when_the_sample_misleads(impl):
    """Values at the sampled blocks differ from the rest, so the window misses the rank and
    the full selection fallback must run; the result is still numpy's."""
    n = 1 << 18
    x = np.ones(n, np.float32)
    blocks = min(512, max(32, n // 1024))  # stats_quantile.cpp's sample: blocks of 64 values
    starts = (n - 64) * np.arange(blocks) // (blocks - 1)
    for s in starts:
        x[s:s + 64] = 0.0
    x[::7] += np.float32(0.5)
    for q in (0.05, 0.5, 0.95):
        assert np.array_equal(stats.quantile(x, q, impl=impl), np.quantile(x, q))


# Channel-last tensors (inner runs shorter than 16) go through the row kernels, which keep
# blocks of accumulators in registers (128 columns on AVX-512, 48 on AVX2, with masked or
# scalar tails): widths on both sides of every block and vector edge.
ROW_WIDTHS = [1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 47, 48, 49, 52, 63, 64, 65, 127, 128, 129,
              143, 200, 256, 257, 385]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("rows", [1, 2, 37])
def test_channel_last_row_kernels_every_block_width(impl, rows):
    for c in ROW_WIDTHS:
        x = (RNG.standard_normal((rows, c)) * 100).astype(np.float32)
        x[0, 0], x[-1, -1] = 0.0, -0.0
        mn, mx = stats.minmax(x, -1, impl=impl)
        assert np.array_equal(mn, x.min(axis=0)) and np.array_equal(mx, x.max(axis=0)), c
        assert np.array_equal(stats.abs_max(x, -1, impl=impl), np.abs(x).max(axis=0)), c
        # sums in row order per channel: the same bits as the reference build, and numpy's
        # sequential float64 sum over the rows
        got = stats.mean(x, -1, impl=impl)
        assert np.array_equal(got, stats.mean(x, -1, impl="ref")), c
        seq = np.zeros(c)
        for r in range(rows):
            seq = seq + x[r].astype(np.float64)
        assert np.array_equal(got, seq / rows), c


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_channel_last_row_kernels_find_nonfinite_anywhere(impl, bad):
    for c in (5, 48, 129, 200):
        for r, k in ((0, 0), (6, c - 1), (3, c // 2), (6, 0)):
            x = RNG.standard_normal((7, c)).astype(np.float32)
            x[r, k] = bad
            for fn in (stats.minmax, stats.abs_max, stats.mean):
                with pytest.raises(fastq.DataError, match=r"'t'.*1 NaN/Inf"):
                    fn(x, -1, name="t", impl=impl)
