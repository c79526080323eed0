"""The saturation-counting GEMM against the plain sat16pair GEMM on the same impl (target:
counting costs <= 2x), and against what it replaces: a sat16pair run plus an exact32 run.
Single thread, prepacked weights, results asserted before timing."""

import numpy as np
import pytest

from fastq import kernels
from fastq.runtime.qdq_layers import _steady_heap

SHAPES = [(128, 768, 768), (3136, 64, 576), (1024, 1024, 1024)]  # (M, N, K)
IMPL = "avx512vnni" if "avx512vnni" in kernels.available_impls() else "ref"
_steady_heap()  # freed outputs stay in the heap: the two-output call pays no extra page faults


def operands(shape, weights="uniform"):
    """Uniform random int8 weights are the worst case for the counting kernel (about half of
    all weight pairs can reach an int16 limit); "laplace" is what per-channel symmetric
    quantization of trained-like (heavy-tailed) weights gives: most pairs cannot, and the
    kernel skips counting in the k groups where none can."""
    M, N, K = shape
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (M, K), dtype=np.uint8)
    if weights == "uniform":
        b = rng.integers(-128, 128, (K, N), dtype=np.int8)
    else:
        w = rng.laplace(size=(K, N))
        b = np.round(w / np.abs(w).max(axis=0) * 127).astype(np.int8)
    return a, kernels.pack_weights(b)


@pytest.mark.parametrize("weights", ["uniform", "laplace"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("what", ["satcount", "sat16pair", "sat16pair+exact32"])
def test_satcount(benchmark, shape, what, weights):
    if IMPL == "ref" and np.prod(shape) > 1e8:
        pytest.skip("reference kernels only: too slow at this size")
    a, pb = operands(shape, weights)
    sat, exact, _ = kernels.gemm_u8s8_satcount(a, pb, impl=IMPL)
    assert np.array_equal(sat, kernels.gemm_u8s8(a, pb, arith="sat16pair", impl=IMPL))
    assert np.array_equal(exact, kernels.gemm_u8s8(a, pb, arith="exact32", impl=IMPL))
    benchmark.group = f"satcount {weights} " + "x".join(map(str, shape))
    if what == "satcount":
        benchmark(kernels.gemm_u8s8_satcount, a, pb, impl=IMPL)
    elif what == "sat16pair":
        benchmark(kernels.gemm_u8s8, a, pb, arith="sat16pair", impl=IMPL)
    else:
        benchmark(lambda: (kernels.gemm_u8s8(a, pb, arith="sat16pair", impl=IMPL),
                           kernels.gemm_u8s8(a, pb, arith="exact32", impl=IMPL)))
