"""Aggregators against a loop-per-channel oracle written after POT's aggregation.py."""

import numpy as np
import pytest

import fastq
from fastq import stats

RNG = np.random.default_rng(11)


def pot_like(x, name):
    """Independent statement of POT's aggregators on (N,) or (N, C) float32 values."""
    x = np.asarray(x)
    cols = [x] if x.ndim == 1 else [x[:, c] for c in range(x.shape[1])]
    out = []
    for v in cols:
        if name == "min":
            r = v.min()
        elif name == "max":
            r = v.max()
        elif name == "mean":
            r = np.mean(v.astype(np.float64))
        elif name == "median":
            r = np.median(v)
        elif name in ("mean_no_outliers", "median_no_outliers"):
            lo, hi = np.quantile(v, 0.01), np.quantile(v, 0.99)
            kept = v[(v >= lo) & (v <= hi)]
            if name == "mean_no_outliers":
                r = np.mean(kept.astype(np.float64))
            else:
                r = np.median(kept)
        else:  # hl_estimator: pairs strictly below the diagonal, as np.tril_indices(n, -1)
            m = np.add.outer(v, v)
            r = 0.5 * np.median(m[np.tril_indices(len(v), -1)])
        out.append(np.float32(r))
    return out[0] if x.ndim == 1 else np.array(out, np.float32)


@pytest.mark.parametrize("name", stats.AGGREGATORS)
@pytest.mark.parametrize("shape", [(1,), (3,), (7,), (50,), (301,), (40, 5), (3, 8), (1, 4)])
def test_aggregators_match_pot(name, shape):
    v = RNG.standard_normal(shape).astype(np.float32)
    v[RNG.random(shape) < 0.05] *= 50  # outliers
    got = stats.aggregate(v, name)
    assert np.asarray(got).dtype == np.float32
    if shape[0] == 1 and name == "hl_estimator":
        assert np.array_equal(got, v[0])  # documented: POT gives NaN (no pairs) here
        return
    want = pot_like(v, name)
    assert np.shape(got) == np.shape(want)
    if name in ("min", "max", "median", "hl_estimator", "median_no_outliers"):
        assert np.array_equal(got, want), (name, shape)
    else:
        np.testing.assert_allclose(got, want, rtol=2e-7)


def test_no_outliers_drops_extremes_per_channel():
    v = np.tile(np.arange(1, 101, dtype=np.float32)[:, None], (1, 2))
    v[0, 1], v[-1, 1] = -1e6, 1e6
    r = stats.aggregate(v, "mean_no_outliers")
    # q01 of 1..100 is 1.99 and q99 is 99.01: 1 and 100 (and the channel-1 outliers) go
    np.testing.assert_allclose(r, [np.arange(2, 100).mean()] * 2, rtol=1e-7)
    assert stats.aggregate(v, "median_no_outliers").tolist() == [50.5, 50.5]


def test_no_outliers_two_samples_falls_back_to_all_values():
    v = np.array([[0.0, 1.0], [1.0, 1.0]], np.float32)
    assert stats.aggregate(v, "mean_no_outliers").tolist() == [0.5, 1.0]
    assert stats.aggregate(v, "median_no_outliers").tolist() == [0.5, 1.0]


def test_hl_estimator_large_many_channels_bounded_chunks():
    v = RNG.standard_normal((120, 300)).astype(np.float32)
    got = stats.aggregate(v, "hl_estimator")
    assert np.array_equal(got, pot_like(v, "hl_estimator"))


def test_aggregate_errors():
    with pytest.raises(fastq.ConfigError, match="valid: min, max, mean, median, "
                                                "mean_no_outliers, median_no_outliers, "
                                                "hl_estimator"):
        stats.aggregate(np.ones(3, np.float32), "hodges")
    with pytest.raises(fastq.DataError, match="zero samples"):
        stats.aggregate(np.zeros((0, 3), np.float32), "mean")
    with pytest.raises(fastq.DataError, match="shape"):
        stats.aggregate(np.zeros((2, 3, 4), np.float32), "mean")
    with pytest.raises(fastq.DataError, match="NaN"):
        stats.aggregate(np.array([1.0, np.nan], np.float32), "max")
