"""The element-wise float kernels (nn_eltwise.h): every impl returns the ref impl's bits on
edge values and seeded random data of every length around the vector width; ref matches
independent oracles (math.erf in float64; numpy's float32 add and clamps for bias_act)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fastq import _core
from test_nn_ops_util import impls

RNG = np.random.default_rng(77)
EDGE = np.array([0.0, -0.0, 1e-45, -1e-45, 1e-38, 1e-30, -1e-8, 1e-3, 0.5, -0.5, 1.0, 2.0,
                 -3.0, 3.9, 3.99, 4.0, -4.0, 4.01, 10.0, -1e30, 3.4e38, np.inf, -np.inf,
                 np.nan], np.float32)


def erf_oracle(x: np.ndarray) -> np.ndarray:
    return np.array([math.erf(v) for v in x.astype(np.float64)])


@pytest.mark.parametrize("n", list(range(0, 18)) + [31, 33, 1000, (1 << 14) + 3])
def test_erf_impls_equal_ref(n):
    x = (RNG.standard_normal(n) * 3).astype(np.float32)
    x[: min(n, EDGE.size)] = EDGE[: min(n, EDGE.size)]
    want = _core.nn_erf(x, "ref")
    for impl in impls():
        got = _core.nn_erf(x, impl)
        assert got.shape == x.shape and got.dtype == np.float32
        bad = ~((got == want) | (np.isnan(got) & np.isnan(want)))
        assert not bad.any(), (f"impl {impl}, n={n}: first mismatch at {np.argmax(bad)}: "
                               f"x={x[bad][0]!r} got {got[bad][0]!r} want {want[bad][0]!r}")


def test_erf_accuracy_against_math_erf():
    # every magnitude from denormals to beyond the clamp, both signs
    mags = np.logspace(-44, 1.5, 200001).astype(np.float32)
    x = np.concatenate([mags, -mags, np.linspace(-6, 6, 100001, dtype=np.float32)])
    got = _core.nn_erf(x, "ref").astype(np.float64)
    want = erf_oracle(x)
    # relative 5e-7 (the fit's 4.5e-7), plus one denormal step where the result is denormal
    excess = np.abs(got - want) - (5e-7 * np.abs(want) + 1.5e-45)
    i = np.argmax(excess)
    assert excess[i] <= 0, f"x={x[i]!r}: got {got[i]!r}, want {want[i]!r}"
    assert np.all(np.abs(got) <= 1.0)


def test_erf_special_values():
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan], np.float32)
    for impl in impls():
        y = _core.nn_erf(x, impl)
        assert y[0] == 0 and not np.signbit(y[0]) and y[1] == 0 and np.signbit(y[1]), impl
        assert y[2] == 1.0 and y[3] == -1.0 and np.isnan(y[4]), impl


def test_erf_rejects_non_float32():
    with pytest.raises(ValueError, match="float32"):
        _core.nn_erf(np.zeros(4), "ref")
    with pytest.raises(ValueError, match="contiguous"):
        _core.nn_erf(np.zeros((4, 4), np.float32)[:, ::2], "ref")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 3, 17), (1, 16, 7, 9), (3, 5, 33), (2, 4, 0)])
@pytest.mark.parametrize("bounds", [(0.0, np.inf), (0.0, 6.0), (-np.inf, np.inf), (-1.5, 0.25)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_bias_act_oracle_and_impls(dtype, shape, bounds, with_bias):
    y0 = RNG.standard_normal(shape).astype(dtype) * 3
    if y0.size:
        y0.reshape(-1)[:4] = [np.nan, np.inf, -np.inf, -0.0][: min(4, y0.size)]
    b = RNG.standard_normal(shape[1]).astype(dtype) if with_bias else None
    lo, hi = bounds
    want = y0 + (b.reshape((1, -1) + (1,) * (len(shape) - 2)) if with_bias else dtype(0))
    want = np.minimum(np.maximum(want, dtype(lo)), dtype(hi))  # NaN propagates, as required
    for impl in impls():
        y = y0.copy()
        assert _core.nn_bias_act(y, b, lo, hi, impl) is None
        np.testing.assert_array_equal(y, want, err_msg=f"impl {impl}, {dtype.__name__} "
                                                       f"{shape}, bounds {bounds}")


def test_bias_act_checks():
    y = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match="bias"):
        _core.nn_bias_act(y, np.zeros(4, np.float32), 0.0, 1.0, "ref")
    with pytest.raises(ValueError, match="bias"):
        _core.nn_bias_act(y, np.zeros(3, np.float64), 0.0, 1.0, "ref")
    with pytest.raises(ValueError, match="writeable"):
        ro = y.copy()
        ro.flags.writeable = False
        _core.nn_bias_act(ro, None, 0.0, 1.0, "ref")
    with pytest.raises(ValueError, match="contiguous"):
        _core.nn_bias_act(np.zeros((2, 3, 8), np.float32)[..., ::2], None, 0.0, 1.0, "ref")
