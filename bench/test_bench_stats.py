"""Statistics hot loop: fastq.stats vs numpy's best form, single thread, one run.

Each group holds one case (fastq and numpy side by side) so ratios come from the same run;
every benchmark asserts its result equals numpy's before timing. Ratios (numpy / fastq
median) are printed at the end of the module. Inputs: 10 M float32 and (32, 64, 56, 56).
"""

import numpy as np
import pytest

import fastq
from fastq import stats

pytest.importorskip("pytest_benchmark")

N = 10_000_000
_RNG = np.random.default_rng(0)
FLAT = _RNG.standard_normal(N).astype(np.float32)
NCHW = _RNG.standard_normal((32, 64, 56, 56)).astype(np.float32)
Q = 1 - 1e-4  # POT's default outlier_prob, max side
_MEDIANS = {}


@pytest.fixture(scope="module", autouse=True)
def _single_thread_and_report(request):
    prev = fastq.get_num_threads()
    fastq.set_num_threads(1)  # stats kernels are single-threaded; make it explicit
    yield
    fastq.set_num_threads(prev)
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    capman = request.config.pluginmanager.get_plugin("capturemanager")
    if tr is None or capman is None:
        return
    with capman.global_and_fixture_disabled():  # teardown output is captured otherwise
        tr.write_line("")
        for g in sorted({g for g, _ in _MEDIANS}):
            f, n = _MEDIANS.get((g, "fastq")), _MEDIANS.get((g, "numpy"))
            if f and n:
                tr.write_line(f"[stats bench] {g}: numpy/fastq = {n / f:.1f}x "
                              f"(medians: fastq {f * 1e3:.2f} ms, numpy {n * 1e3:.2f} ms)")


def run(benchmark, group, who, fn):
    benchmark.group = group
    benchmark.extra_info["who"] = who
    r = benchmark(fn)
    if benchmark.stats is not None:
        _MEDIANS[(group, who)] = benchmark.stats.stats.median
    return r


def np_minmax():
    return FLAT.min(), FLAT.max()


def np_absmax_c():
    return np.maximum(NCHW.max(axis=(0, 2, 3)), -NCHW.min(axis=(0, 2, 3)))


CASES = {
    "minmax-10M": (lambda: stats.minmax(FLAT), np_minmax),
    "absmax-perchannel-NCHW-axis1": (lambda: stats.abs_max(NCHW, 1), np_absmax_c),
    "histogram-2048-10M": (lambda: stats.histogram(FLAT, 2048),
                           lambda: np.histogram(FLAT, 2048)),
    "quantile-0.9999-10M": (lambda: stats.quantile(FLAT, Q), lambda: np.quantile(FLAT, Q)),
    "abs_quantile-0.9999-NCHW": (lambda: stats.abs_quantile(NCHW, Q),
                                 lambda: np.quantile(np.abs(NCHW), Q)),
    "quantile-0.5-10M": (lambda: stats.quantile(FLAT, 0.5), lambda: np.quantile(FLAT, 0.5)),
}


def _equal(a, b):
    if isinstance(a, tuple):
        return all(np.array_equal(u, v) for u, v in zip(a, b))
    return np.array_equal(a, b)


@pytest.mark.parametrize("who", ["fastq", "numpy"])
@pytest.mark.parametrize("case", list(CASES))
def test_bench(benchmark, case, who):
    fq, ref = CASES[case]
    assert _equal(fq(), ref()), case  # correctness before timing
    run(benchmark, case, who, fq if who == "fastq" else ref)
