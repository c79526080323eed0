"""Property tests (hypothesis): random shapes, layouts, axes, quantiles and ranges; every
result equals the numpy oracle exactly and every impl agrees."""

import numpy as np
import pytest

hyp = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fastq  # noqa: E402
from fastq import kernels, stats  # noqa: E402

IMPLS = kernels.available_impls()


@st.composite
def tensors(draw):
    ndim = draw(st.integers(1, 4))
    shape = tuple(draw(st.lists(st.integers(1, 9), min_size=ndim, max_size=ndim)))
    seed = draw(st.integers(0, 2**31 - 1))
    g = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["normal", "ints", "relu", "const"]))
    if kind == "normal":
        x = g.standard_normal(shape)
    elif kind == "ints":
        x = g.integers(-3, 4, shape)
    elif kind == "relu":
        x = np.maximum(g.standard_normal(shape), 0)
    else:
        x = np.full(shape, 1.5)
    x = x.astype(np.float32)
    perm = draw(st.permutations(range(ndim)))
    x = np.ascontiguousarray(x.transpose(perm)).transpose(np.argsort(perm))  # odd layout
    if draw(st.booleans()):
        x = x[tuple(slice(None, None, draw(st.sampled_from([1, 2, -1]))) for _ in range(ndim))]
    axis = draw(st.one_of(st.none(), st.integers(-ndim, ndim - 1)))
    return x, axis


def oracle_axes(x, axis):
    return None if axis is None else tuple(a for a in range(x.ndim) if a != axis % x.ndim)


@settings(max_examples=150, deadline=None)
@given(tensors(), st.floats(0, 1), st.sampled_from(IMPLS))
def test_reductions_match_numpy(xa, q, impl):
    x, axis = xa
    ax = oracle_axes(x, axis)
    mn, mx = stats.minmax(x, axis, impl=impl)
    assert np.array_equal(mn, x.min(axis=ax)) and np.array_equal(mx, x.max(axis=ax))
    assert np.array_equal(stats.abs_max(x, axis, impl=impl), np.abs(x).max(axis=ax))
    assert np.array_equal(stats.quantile(x, q, axis, impl=impl), np.quantile(x, q, axis=ax))
    assert np.array_equal(stats.abs_quantile(x, q, axis, impl=impl),
                          np.quantile(np.abs(x), q, axis=ax))
    np.testing.assert_allclose(stats.mean(x, axis, impl=impl),
                               x.astype(np.float64).mean(axis=ax), rtol=1e-12, atol=1e-12)


@settings(max_examples=150, deadline=None)
@given(tensors(), st.integers(1, 300), st.sampled_from(IMPLS),
       st.one_of(st.none(), st.tuples(st.floats(-5, 5), st.floats(0.001, 10))))
def test_histogram_matches_numpy(xa, bins, impl, r):
    x, _ = xa
    rng_ = None if r is None else (r[0], r[0] + r[1])
    try:
        want, we = np.histogram(x, bins, range=rng_)
    except ValueError:  # numpy refuses (too many bins for a tiny float32 range): so do we
        with pytest.raises(fastq.ConfigError, match="Too many bins"):
            stats.histogram(x, bins, range=rng_, impl=impl)
        return
    got, ge = stats.histogram(x, bins, range=rng_, impl=impl)
    assert np.array_equal(ge, we) and np.array_equal(got, want)
