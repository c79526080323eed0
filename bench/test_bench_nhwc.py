"""The channels-last float conv kernels against the NCHW paths they replace, on the
MobileNet-v2-like benchmark model's shapes (112x112 input), single thread: 1x1 convs
(``nn_conv1x1_nhwc``, bias + Relu in the store) vs numpy's BLAS matmul W @ X plus the
``nn_bias_act`` pass; 3x3 depthwise convs (``nn_depthwise_nhwc``) vs the NCHW
``nn_conv_depthwise``. Each case asserts both give the same values, then times both in one
run; extra_info["ratio_vs_nchw"] is NHWC/NCHW (min over rounds).

Run: python -m pytest -q bench/test_bench_nhwc.py -s
"""

from __future__ import annotations

import numpy as np
import pytest

from fastq import _core
from fastq.runtime.ops.nn_common import float_impl, nhwc_impls

from _timing import best_time

pytest.importorskip("pytest_benchmark")

RNG = np.random.default_rng(0)
ROUNDS = 30
# (C, M, spatial) of every 1x1 conv in bench/_models.py mobilenet_v2_like at 112x112
POINTWISE = [(32, 16, 56), (16, 96, 56), (96, 24, 28), (24, 144, 28), (144, 24, 28),
             (144, 32, 14), (32, 192, 14), (192, 32, 14), (192, 64, 7), (64, 384, 7),
             (384, 64, 7), (384, 96, 7), (96, 320, 7)]
# (C, spatial, stride) of its depthwise convs
DEPTHWISE = [(32, 56, 1), (96, 56, 2), (144, 28, 1), (144, 28, 2), (192, 14, 1),
             (192, 14, 2), (384, 7, 1)]


def _report(benchmark, name, t_nchw):
    benchmark.extra_info["nchw_us"] = t_nchw * 1e6
    if benchmark.stats is not None:
        t = benchmark.stats.stats.min
        benchmark.extra_info["ratio_vs_nchw"] = t / t_nchw
        print(f"\n{name}: NHWC {t * 1e6:.1f} us, NCHW {t_nchw * 1e6:.1f} us, "
              f"ratio {t / t_nchw:.2f}")


@pytest.mark.parametrize("case", POINTWISE, ids=lambda c: f"{c[0]}to{c[1]}x{c[2]}")
def test_pointwise_nhwc_vs_blas(benchmark, case):
    c, m, s = case
    x = RNG.standard_normal((1, c, s, s)).astype(np.float32)
    w = (RNG.standard_normal((m, c)) / np.sqrt(c)).astype(np.float32)
    b = RNG.standard_normal(m).astype(np.float32)
    xh = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    impl = nhwc_impls()[0]
    packed = _core.nn_nhwc_pack(np.ascontiguousarray(w.T), b, impl)

    def nchw():
        y = np.matmul(w, x.reshape(c, s * s)).reshape(1, m, s, s)
        _core.nn_bias_act(y, b, 0.0, np.inf, float_impl())
        return y

    def nhwc():
        return _core.nn_conv1x1_nhwc(xh, packed, m, [1, 1], [s, s], 0.0, np.inf, impl)

    np.testing.assert_allclose(nhwc().transpose(0, 3, 1, 2), nchw(), rtol=1e-4, atol=1e-4)
    t_nchw = best_time(nchw, ROUNDS, warmup=2)
    benchmark.group = f"1x1 {c}->{m} @{s}x{s}"
    benchmark.pedantic(nhwc, rounds=ROUNDS, iterations=1, warmup_rounds=2)
    _report(benchmark, benchmark.group, t_nchw)


@pytest.mark.parametrize("case", DEPTHWISE, ids=lambda c: f"{c[0]}x{c[1]}s{c[2]}")
def test_depthwise_nhwc_vs_nchw(benchmark, case):
    c, s, st = case
    o = (s - 1) // st + 1
    x = RNG.standard_normal((1, c, s, s)).astype(np.float32)
    w = RNG.standard_normal((c, 1, 3, 3)).astype(np.float32)
    b = RNG.standard_normal(c).astype(np.float32)
    xh = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    wh = np.ascontiguousarray(w[:, 0].transpose(1, 2, 0))
    impls = nhwc_impls()
    impl = impls[1] if c % 16 == 0 else impls[0]   # nn_conv.py's choice

    def nchw():
        return _core.nn_conv_depthwise(x, w, b, [st, st], [1, 1], [1, 1], [o, o], float_impl(),
                                       0.0, 6.0)

    def nhwc():
        return _core.nn_depthwise_nhwc(xh, wh, b, [st, st], [1, 1], [1, 1], [o, o], 0.0, 6.0,
                                       impl)

    np.testing.assert_allclose(nhwc().transpose(0, 3, 1, 2), nchw(), rtol=1e-5, atol=1e-5)
    t_nchw = best_time(nchw, ROUNDS, warmup=2)
    benchmark.group = f"depthwise 3x3 {c}x{s}x{s} stride {st}"
    benchmark.pedantic(nhwc, rounds=ROUNDS, iterations=1, warmup_rounds=2)
    _report(benchmark, benchmark.group, t_nchw)
