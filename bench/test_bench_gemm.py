"""int8 GEMM throughput, single thread, prepacked weights. One group per shape holds
exact32 on the best impl, sat16pair on avx2 and avx512vnni, exact32 on avx2, ref, numpy
float32 matmul and ONNX Runtime's MatMulInteger, so ratios come from one run.
Every benchmark checks its result against ref (or the float product) before timing.

    python -m pytest bench/test_bench_gemm.py --benchmark-only --benchmark-group-by=group

Each benchmark stores GOPS (2*M*N*K / mean time) in extra_info.
"""

import numpy as np
import pytest

from fastq import kernels

SHAPES = [(1, 768, 768), (128, 768, 768), (128, 3072, 768), (256, 256, 256), (1024, 1024, 1024)]
AVAIL = kernels.available_impls()
BEST = kernels.default_impl("exact32")

CASES = [("exact32", BEST), ("sat16pair", "avx2"), ("sat16pair", "avx512vnni"),
         ("exact32", "avx2"), ("exact32", "ref")]

_cache = {}


def operands(shape):
    if shape not in _cache:
        M, N, K = shape
        rng = np.random.default_rng(0)
        a = rng.integers(0, 256, (M, K), dtype=np.uint8)
        b = rng.integers(-128, 128, (K, N), dtype=np.int8)
        ref = {ar: kernels.gemm_u8s8(a, b, arith=ar, impl=BEST) for ar in kernels.ARITHS}
        _cache[shape] = (a, b, kernels.pack_weights(b), ref)
    return _cache[shape]


def gops(benchmark, shape):
    M, N, K = shape
    if benchmark.stats is not None:      # None under --benchmark-disable (asserts only)
        benchmark.extra_info["gops"] = round(2 * M * N * K / benchmark.stats.stats.mean / 1e9,
                                             1)


def label(shape):
    return "x".join(map(str, shape))


@pytest.mark.parametrize("shape", SHAPES, ids=label)
@pytest.mark.parametrize("arith,impl", CASES, ids=lambda v: v)
def test_gemm(benchmark, shape, arith, impl):
    if impl not in AVAIL:
        pytest.skip(f"{impl} not available on this CPU")
    M, N, K = shape
    if impl == "ref" and M * N * K > 2e8:
        pytest.skip("ref at this size takes minutes; it is measured on the smaller shapes")
    a, _, pb, ref = operands(shape)
    assert np.array_equal(kernels.gemm_u8s8(a, pb, arith=arith, impl=impl), ref[arith])
    benchmark.group = f"gemm {label(shape)}"
    rounds = 3 if impl == "ref" else None
    if rounds:
        benchmark.pedantic(kernels.gemm_u8s8, args=(a, pb), kwargs={"arith": arith, "impl": impl},
                           rounds=rounds, iterations=1)
    else:
        benchmark(kernels.gemm_u8s8, a, pb, arith=arith, impl=impl)
    gops(benchmark, shape)


@pytest.mark.parametrize("shape", SHAPES, ids=label)
def test_numpy_float32(benchmark, shape):
    a, b, _, ref = operands(shape)
    af, bf = a.astype(np.float32), b.astype(np.float32)
    assert np.allclose(af @ bf, ref["exact32"], rtol=1e-4)
    benchmark.group = f"gemm {label(shape)}"
    benchmark(np.matmul, af, bf)
    gops(benchmark, shape)


@pytest.mark.parametrize("shape", SHAPES, ids=label)
def test_onnxruntime_matmulinteger(benchmark, shape):
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    a, b, _, ref = operands(shape)
    M, N, K = shape
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "mmi",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [M, K])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [M, N])],
        [numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    assert np.array_equal(sess.run(None, {"a": a})[0], ref["exact32"])
    benchmark.group = f"gemm {label(shape)}"
    benchmark(sess.run, None, {"a": a})
    gops(benchmark, shape)
