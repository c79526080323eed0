"""Collectors: streaming results equal the one-shot numpy oracle; merge(split halves) equals
the whole (exactly for min/max/abs_max/histogram counts/per-sample values, to rounding for
means); state() survives an np.savez round trip; mismatches raise; NaN leaves state alone."""

import numpy as np
import pytest

import fastq
from fastq import stats

RNG = np.random.default_rng(5)
SAMPLES = [RNG.standard_normal((2, 6, 5, 7)).astype(np.float32) * (i + 1) for i in range(6)]


def roundtrip(c, tmp_path):
    path = tmp_path / "state.npz"
    np.savez(path, **c.state())
    with np.load(path) as f:
        return stats.from_state(dict(f))


def feed(c, xs):
    for x in xs:
        c.update(x)
    return c


def split_merge(make, xs, tmp_path):
    a, b = feed(make(), xs[:2]), feed(make(), xs[2:])
    return roundtrip(a, tmp_path).merge(roundtrip(b, tmp_path))


@pytest.mark.parametrize("axis", [None, 1, -1])
def test_minmax_absmax_collectors(axis, tmp_path):
    allx = np.stack(SAMPLES)  # sample axis first
    ax_all = None if axis is None else tuple(a for a in range(5) if a != (axis % 4) + 1)
    whole = feed(stats.MinMaxCollector(axis), SAMPLES)
    mn, mx = whole.result()
    assert np.array_equal(mn, allx.min(axis=ax_all)) and np.array_equal(mx, allx.max(axis=ax_all))
    merged = split_merge(lambda: stats.MinMaxCollector(axis), SAMPLES, tmp_path)
    assert all(np.array_equal(u, v) for u, v in zip(merged.result(), whole.result()))
    assert merged.samples == 6
    am = feed(stats.AbsMaxCollector(axis), SAMPLES)
    assert np.array_equal(am.result(), np.abs(allx).max(axis=ax_all))
    merged = split_merge(lambda: stats.AbsMaxCollector(axis), SAMPLES, tmp_path)
    assert np.array_equal(merged.result(), am.result())


@pytest.mark.parametrize("axis", [None, 1, 3])
def test_mean_collector(axis, tmp_path):
    allx = np.stack(SAMPLES).astype(np.float64)
    ax_all = None if axis is None else tuple(a for a in range(5) if a != axis + 1)
    whole = feed(stats.MeanCollector(axis), SAMPLES)
    np.testing.assert_allclose(whole.result(), allx.mean(axis=ax_all), rtol=1e-12, atol=1e-13)
    merged = split_merge(lambda: stats.MeanCollector(axis), SAMPLES, tmp_path)
    np.testing.assert_allclose(merged.result(), whole.result(), rtol=1e-13, atol=1e-14)
    assert merged.count == whole.count == allx.size // (1 if axis is None else allx.shape[axis + 1])


def test_histogram_collector_fixed_range_and_clamp(tmp_path):
    rng_ = (-3.0, 3.0)
    whole = feed(stats.HistogramCollector(512, rng_), SAMPLES)
    allx = np.concatenate([s.ravel() for s in SAMPLES])
    want, edges = np.histogram(np.clip(allx, -3, 3), 512, range=rng_)
    counts, e = whole.result()
    assert np.array_equal(e, edges) and np.array_equal(counts, want)
    assert whole.clamped_low == np.count_nonzero(allx < edges[0])
    assert whole.clamped_high == np.count_nonzero(allx > edges[-1])
    assert counts.sum() == allx.size
    merged = split_merge(lambda: stats.HistogramCollector(512, rng_), SAMPLES, tmp_path)
    assert np.array_equal(merged.result()[0], counts)
    assert (merged.clamped_low, merged.clamped_high) == (whole.clamped_low, whole.clamped_high)
    coarse = whole.rebin(4)
    assert np.array_equal(coarse.result()[0], counts.reshape(-1, 4).sum(1))
    assert np.array_equal(coarse.result()[1], edges[::4])


def test_histogram_collector_range_from_first_sample():
    c = feed(stats.HistogramCollector(64), [np.zeros(0, np.float32)] + SAMPLES[:1])
    want, edges = np.histogram(SAMPLES[0], 64)
    assert np.array_equal(c.result()[0], want) and np.array_equal(c.result()[1], edges)
    c.update(SAMPLES[5])  # wider: clamped into the edge bins, and counted
    assert c.clamped_low + c.clamped_high == np.count_nonzero(
        (SAMPLES[5] < edges[0]) | (SAMPLES[5] > edges[-1]))


def test_histogram_merge_needs_same_range():
    a = stats.HistogramCollector(16, (0.0, 1.0)).update(np.array([0.5], np.float32))
    b = stats.HistogramCollector(16, (0.0, 2.0)).update(np.array([0.5], np.float32))
    with pytest.raises(fastq.DataError, match="same range"):
        a.merge(b)
    empty = stats.HistogramCollector(16)
    assert np.array_equal(empty.merge(a).result()[0], a.result()[0])


@pytest.mark.parametrize("reducer,q", [("min", None), ("max", None), ("abs_max", None),
                                       ("quantile", 1e-4), ("abs_quantile", 0.9999),
                                       ("mean", None)])
@pytest.mark.parametrize("aggregator", stats.AGGREGATORS)
@pytest.mark.parametrize("axis", [None, 1])
def test_per_sample_collector(reducer, q, aggregator, axis, tmp_path):
    whole = feed(stats.PerSampleCollector(reducer, aggregator, axis, q=q), SAMPLES)
    vals = np.stack([stats.reduce(s, reducer, axis, q) for s in SAMPLES])
    assert np.array_equal(whole.values(), vals)
    assert np.array_equal(whole.result(), stats.aggregate(vals, aggregator))
    merged = split_merge(lambda: stats.PerSampleCollector(reducer, aggregator, axis, q=q),
                         SAMPLES, tmp_path)
    assert np.array_equal(merged.values(), vals)
    assert np.array_equal(merged.result(), whole.result())


def test_per_sample_collector_pot_outlier_prob_and_batches():
    hi = stats.PerSampleCollector("quantile", "mean", outlier_prob=1e-4, side="max")
    lo = stats.PerSampleCollector("quantile", "mean", outlier_prob=1e-4, side="min")
    assert hi.q == 1 - 1e-4 and lo.q == 1e-4
    batch = np.stack(SAMPLES[:3])
    b = stats.PerSampleCollector("abs_max", "max", 1).update_batch(batch)
    assert b.samples == 3
    assert np.array_equal(b.values(), np.abs(batch).max(axis=(1, 3, 4)))


def test_collector_errors():
    with pytest.raises(fastq.ConfigError, match="valid: min, max, abs_max"):
        stats.PerSampleCollector("absmax", "mean")
    with pytest.raises(fastq.ConfigError, match="valid: min, max, mean, median"):
        stats.PerSampleCollector("max", "avg")
    with pytest.raises(fastq.ConfigError, match="needs q"):
        stats.PerSampleCollector("quantile", "mean")
    with pytest.raises(fastq.ConfigError):
        stats.MinMaxCollector(1).merge(stats.MinMaxCollector(None))
    with pytest.raises(fastq.ConfigError):
        stats.MinMaxCollector().merge(stats.AbsMaxCollector())
    with pytest.raises(fastq.ConfigError, match="unknown collector kind"):
        stats.from_state({"kind": np.array("nope")})
    c = stats.MinMaxCollector(1).update(SAMPLES[0])
    with pytest.raises(fastq.DataError, match="channel"):
        c.update(np.zeros((2, 3, 4), np.float32))
    for cls in (stats.MinMaxCollector, stats.AbsMaxCollector, stats.MeanCollector,
                stats.HistogramCollector):
        with pytest.raises(fastq.DataError, match="no data"):
            cls().result()


def test_failed_update_leaves_state_unchanged():
    c = stats.MinMaxCollector().update(SAMPLES[0])
    before = c.result()
    bad = SAMPLES[1].copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(fastq.DataError, match="'x1'"):
        c.update(bad, name="x1")
    assert c.result() == before and c.samples == 1
    h = stats.HistogramCollector(32, (-1.0, 1.0))
    with pytest.raises(fastq.DataError):
        h.update(bad)
    assert h.samples == 0 and not h.counts.any()


def test_mean_update_sums_folds_what_update_computes():
    rng = np.random.default_rng(5)
    xs = [rng.standard_normal((2, 3, 4, 5)).astype(np.float32) for _ in range(3)]
    a, b = stats.MeanCollector(channel_axis=1), stats.MeanCollector(channel_axis=1)
    for x in xs:
        a.update(x)
        b.update_sums(x.astype(np.float64).transpose(1, 0, 2, 3).reshape(3, -1).sum(axis=1),
                      x.size // 3)
    b.update_sums(np.zeros(3), 0)                      # an empty sample adds nothing
    assert a.count == b.count and a.samples == b.samples == 3
    np.testing.assert_allclose(b.result(), a.result(), rtol=1e-12)
