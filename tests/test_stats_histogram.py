"""fastq.stats.histogram and HistogramCollector against numpy.histogram: identical float32
edges and int64 counts on random data, on values exactly at (and one ulp around) every edge,
outside the range, constant and empty data; every impl; exact re-binning."""

import numpy as np
import pytest

import fastq
from fastq import kernels, stats

IMPLS = kernels.available_impls()
RNG = np.random.default_rng(99)


def edge_probe(edges):
    """Every edge, and its float32 neighbours on both sides."""
    e = edges.astype(np.float32)
    return np.concatenate([e, np.nextafter(e, np.float32(-np.inf)),
                           np.nextafter(e, np.float32(np.inf))]).astype(np.float32)


RANGES = [None, (-1.0, 1.0), (0.1, 0.9), (-3.0, 7.5), (1000.0, 1001.0), (-1e-3, 2e-3),
          (0.0, 255.0), (-50.0, 0.25)]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("rng_", RANGES, ids=[str(r) for r in RANGES])
@pytest.mark.parametrize("bins", [1, 7, 256, 2048])
def test_histogram_equals_numpy_random_and_edges(impl, rng_, bins):
    lo, hi = (-4.0, 4.0) if rng_ is None else rng_
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    x = (mid + half * 1.2 * RNG.uniform(-1, 1, 50_001)).astype(np.float32)
    x = np.concatenate([x, RNG.standard_normal(20_000).astype(np.float32) * half + mid])
    want, want_e = np.histogram(x, bins=bins, range=rng_)
    got, got_e = stats.histogram(x, bins=bins, range=rng_, impl=impl)
    assert got_e.dtype == want_e.dtype == np.float32
    assert np.array_equal(got_e, want_e)
    assert got.dtype == np.int64 and np.array_equal(got, want), (impl, rng_, bins)
    probe = edge_probe(want_e)
    probe = np.concatenate([probe, probe[::-1], x[:100]])  # also exercise the vector body
    w2, _ = np.histogram(probe, bins=bins, range=(float(want_e[0]), float(want_e[-1]))
                         if rng_ is None else rng_)
    g2, _ = stats.histogram(probe, bins=bins, range=(float(want_e[0]), float(want_e[-1]))
                            if rng_ is None else rng_, impl=impl)
    assert np.array_equal(g2, w2), (impl, rng_, bins, np.nonzero(g2 != w2))


@pytest.mark.parametrize("impl", IMPLS)
def test_histogram_edge_values_exactly_at_top_and_bottom(impl):
    x = np.array([0.0, 0.0, 1.0, 1.0, 0.5, 1.0000001, -1e-9], np.float32)
    got, edges = stats.histogram(x, bins=4, range=(0.0, 1.0), impl=impl)
    want, _ = np.histogram(x, bins=4, range=(0.0, 1.0))
    assert np.array_equal(got, want) and list(got) == [2, 0, 1, 2]


@pytest.mark.parametrize("impl", IMPLS)
def test_histogram_constant_empty_and_layouts(impl):
    c = np.full((3, 5), 2.0, np.float32)
    for bins in (1, 10):
        g, e = stats.histogram(c, bins, impl=impl)
        w, we = np.histogram(c, bins)
        assert np.array_equal(g, w) and np.array_equal(e, we)
    g, e = stats.histogram(np.zeros(0, np.float32), 8, impl=impl)
    w, we = np.histogram(np.zeros(0, np.float32), 8)
    assert np.array_equal(g, w) and np.array_equal(e, we)
    x = RNG.standard_normal((6, 7, 8, 9)).astype(np.float32)
    for view in (x.transpose(3, 1, 0, 2), x[::2, :, ::3], x[::-1]):
        g, e = stats.histogram(view, 64, impl=impl)
        w, we = np.histogram(view, 64)
        assert np.array_equal(g, w) and np.array_equal(e, we)


@pytest.mark.parametrize("impl", IMPLS)
def test_histogram_wide_offset_range_takes_exact_path(impl):
    """A range far from zero relative to its width: the float index is untrustworthy, every
    bin is decided by edge comparisons, and numpy's counts still match."""
    x = (1e4 + RNG.uniform(-0.1, 2.1, 30_000)).astype(np.float32)
    x = np.concatenate([x, edge_probe(np.histogram(x, 256, range=(1e4, 1e4 + 2))[1])])
    g, e = stats.histogram(x, 256, range=(1e4, 1e4 + 2), impl=impl)
    w, we = np.histogram(x, 256, range=(1e4, 1e4 + 2))
    assert np.array_equal(e, we) and np.array_equal(g, w)
    with pytest.raises(fastq.ConfigError, match="Too many bins"):
        stats.histogram(x, 2048, range=(1e6, 1e6 + 2))


def test_histogram_impls_agree_on_large_input():
    x = RNG.standard_normal(1_000_003).astype(np.float32)
    ref = stats.histogram(x, 2048, impl="ref")[0]
    for impl in IMPLS:
        assert np.array_equal(stats.histogram(x, 2048, impl=impl)[0], ref), impl
    assert np.array_equal(ref, np.histogram(x, 2048)[0])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_histogram_nonfinite_raises(bad):
    x = RNG.standard_normal(1000).astype(np.float32)
    x[500] = bad
    with pytest.raises(fastq.DataError, match="'act'"):
        stats.histogram(x, name="act")
    with pytest.raises(fastq.DataError, match="'act'"):
        stats.histogram(x, range=(-1.0, 1.0), name="act")


def test_histogram_bad_arguments():
    x = np.zeros(4, np.float32)
    for bins in (0, -3, 2.5, True):
        with pytest.raises(fastq.ConfigError, match="bins"):
            stats.histogram(x, bins)
    for r in ((1.0, 0.0), (0.0, np.inf), (0.0,), "ab"):
        with pytest.raises(fastq.ConfigError, match="range"):
            stats.histogram(x, 8, r)


def test_rebin_is_exact_against_numpy_with_explicit_edges():
    x = RNG.standard_normal(100_000).astype(np.float32)
    counts, edges = stats.histogram(x, 2048)
    for f in (2, 8, 256, 2048):
        c2, e2 = stats.rebin(counts, edges, f)
        want, _ = np.histogram(x, bins=e2)
        assert np.array_equal(e2, edges[::f]) and np.array_equal(c2, want), f
    with pytest.raises(fastq.ConfigError, match="divide"):
        stats.rebin(counts, edges, 3)


@pytest.mark.parametrize("impl", IMPLS)
def test_histogram_random_ranges_at_edges(impl):
    """Many random ranges and bin counts; data concentrated at the edges (±1 ulp), where a
    float bin index can be wrong: counts must still equal numpy's."""
    g = np.random.default_rng(2024)
    for trial in range(60):
        scale = 10.0 ** g.uniform(-6, 6)
        lo = float(g.uniform(-2, 2) * scale)
        hi = lo + float(g.uniform(0.01, 3) * scale)
        bins = int(g.choice([1, 2, 3, 100, 255, 1000, 2048, 4095]))
        try:
            _, edges = np.histogram(np.zeros(0, np.float32), bins, range=(lo, hi))
        except ValueError:
            continue  # numpy refuses: too many bins for this float32 range
        x = np.concatenate([edge_probe(edges),
                            g.uniform(lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo), 5000)
                            .astype(np.float32)])
        x = x[g.permutation(x.size)]
        want, _ = np.histogram(x, bins, range=(lo, hi))
        got, _ = stats.histogram(x, bins, range=(lo, hi), impl=impl)
        assert np.array_equal(got, want), (trial, lo, hi, bins, np.nonzero(got != want))
        # data-derived range (float32 min/max, float32 linspace) too
        want, we = np.histogram(x, bins)
        got, ge = stats.histogram(x, bins, impl=impl)
        assert np.array_equal(ge, we) and np.array_equal(got, want), (trial, bins)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("n", [1023, 1024, 1025, 2047, 2048, 3072, 4097, 10_240])
def test_histogram_block_boundaries_with_nonfinite(impl, n):
    """Kernels work in 1024-element blocks (software-pipelined): every length around block
    multiples, with NaN/Inf in the first, a middle and the last block, counts like numpy's
    (NaN and +Inf above the range, -Inf below) and the non-finite flag raised."""
    from fastq import _core
    x = RNG.standard_normal(n).astype(np.float32)
    edges = np.histogram(np.zeros(0, np.float32), 100, range=(-2.0, 2.0))[1].astype(np.float32)
    full, nf = _core.stats_histogram(x, edges, impl)
    want = np.histogram(x, bins=edges)[0]
    assert not nf and np.array_equal(full[:100], want)
    assert full[100] == np.count_nonzero(x < edges[0])
    assert full[101] == np.count_nonzero(x > edges[-1])
    for pos in sorted({0, n // 2, n - 1}):
        y = x.copy()
        y[pos] = [np.nan, np.inf, -np.inf][pos % 3]
        full, nf = _core.stats_histogram(y, edges, impl)
        fin = y[np.isfinite(y)]
        assert nf and np.array_equal(full[:100], np.histogram(fin, bins=edges)[0])
        assert full[100] == np.count_nonzero(y < edges[0])
        assert full[101] == np.count_nonzero(~(y <= edges[-1]))


@pytest.mark.parametrize("impl", IMPLS)
def test_histogram_more_bins_than_16_bit_slots(impl):
    """70000 bins: slot indices no longer fit 16 bits, the kernels' 32-bit path runs."""
    x = RNG.uniform(-1.1, 1.1, 300_000).astype(np.float32)
    x = np.concatenate([x, edge_probe(np.histogram(x[:0], 70_000, range=(-1.0, 1.0))[1])])
    want, we = np.histogram(x, 70_000, range=(-1.0, 1.0))
    got, ge = stats.histogram(x, 70_000, range=(-1.0, 1.0), impl=impl)
    assert np.array_equal(ge, we) and np.array_equal(got, want)


@pytest.mark.parametrize("impl", IMPLS)
def test_histogram_core_uneven_edges_are_exact(impl):
    """The core takes any non-decreasing edges: uneven ones (not linspace) must not be
    trusted to the linear bin guess; counts still equal numpy's for those edges."""
    from fastq import _core
    g = np.random.default_rng(5)
    edges = np.sort(g.uniform(-3, 3, 257)).astype(np.float32)
    x = np.concatenate([g.standard_normal(20_000).astype(np.float32), edge_probe(edges)])
    full, nf = _core.stats_histogram(x, edges, impl)
    assert not nf and np.array_equal(full[:256], np.histogram(x, bins=edges)[0])
    # nearly linspace: each inner edge nudged by a tenth of a bin
    lin = np.linspace(-1, 1, 2049).astype(np.float32)
    lin[1:-1] += (g.uniform(-0.1, 0.1, 2047) * (2 / 2048)).astype(np.float32)
    x = np.concatenate([g.uniform(-1, 1, 50_000).astype(np.float32), edge_probe(lin)])
    full, _ = _core.stats_histogram(x, lin, impl)
    assert np.array_equal(full[:2048], np.histogram(x, bins=lin)[0])


@pytest.mark.parametrize("impl", IMPLS)
def test_histogram_dense_near_every_edge(impl):
    """The fast kernels trust their float bin guess only a derived error bound away from a
    bin edge: values 1..24 ulps either side of every edge, on ranges whose offset from zero
    is large against the bin width (the bound's largest term), count exactly as numpy."""
    g = np.random.default_rng(77)
    for lo, hi, bins in [(-5.3, 5.3, 2048), (1000.0, 1001.0, 256), (-3e-3, 7e-3, 4095),
                         (0.0, 255.0, 2048), (-1e4, -9.99e3, 128), (12.5, 13.75, 1000)]:
        edges = np.histogram(np.zeros(0, np.float32), bins, range=(lo, hi))[1]
        e = edges.astype(np.float32)
        probes = [e]
        up, down = e.copy(), e.copy()
        for _ in range(24):
            up = np.nextafter(up, np.float32(np.inf))
            down = np.nextafter(down, np.float32(-np.inf))
            probes += [up, down]
        x = np.concatenate(probes + [g.uniform(lo, hi, 100_000).astype(np.float32)])
        x = x[g.permutation(x.size)]
        want, _ = np.histogram(x, bins, range=(lo, hi))
        got, _ = stats.histogram(x, bins, range=(lo, hi), impl=impl)
        assert np.array_equal(got, want), (lo, hi, bins, np.nonzero(got != want))
        want, we = np.histogram(x, bins)
        got, ge = stats.histogram(x, bins, impl=impl)
        assert np.array_equal(ge, we) and np.array_equal(got, want), (lo, hi, bins)
