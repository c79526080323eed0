"""int8 GEMM: every available impl equals an independent numpy oracle bit for bit, for both
arithmetics, over the shape and fill sweep of STYLE.md section 6; plus packing, threads,
the quantized-linear epilogue and the error cases."""

import numpy as np
import pytest

import fastq
from fastq import kernels

IMPLS = kernels.available_impls()
ARITHS = ["exact32", "sat16pair"]


def oracle(a, b, arith):
    """Independent statement of DESIGN.md section 3 in int64 numpy."""
    p = a.astype(np.int64)[:, :, None] * b.astype(np.int64)[None, :, :]  # [M, K, N]
    if arith == "sat16pair":  # pairs (0,1),(2,3)...; odd K padded with one zero
        p = np.pad(p, ((0, 0), (0, p.shape[1] % 2), (0, 0)))
        p = np.clip(p[:, 0::2] + p[:, 1::2], -32768, 32767)
    return p.sum(axis=1).astype(np.int32)


def oracle_big(a, b, arith):
    """Same contract via matmuls, for shapes where the [M, K, N] tensor would be too big."""
    a64, b64 = a.astype(np.int64), b.astype(np.int64)
    if arith == "exact32":
        return (a64 @ b64).astype(np.int32)
    K = a.shape[1]
    if K % 2:
        a64 = np.pad(a64, ((0, 0), (0, 1)))
        b64 = np.pad(b64, ((0, 1), (0, 0)))
    out = np.zeros((a.shape[0], b.shape[1]), np.int64)
    for j in range(0, a64.shape[1], 2):
        pair = np.outer(a64[:, j], b64[j]) + np.outer(a64[:, j + 1], b64[j + 1])
        out += np.clip(pair, -32768, 32767)
    return out.astype(np.int32)


def fills(M, K, N, rng):
    yield "random", rng.integers(0, 256, (M, K), dtype=np.uint8), rng.integers(-128, 128, (K, N), dtype=np.int8)
    yield "255x127", np.full((M, K), 255, np.uint8), np.full((K, N), 127, np.int8)
    yield "255x-128", np.full((M, K), 255, np.uint8), np.full((K, N), -128, np.int8)
    yield "0x-128", np.zeros((M, K), np.uint8), np.full((K, N), -128, np.int8)
    mixed_b = np.where(rng.random((K, N)) < 0.5, 127, -128).astype(np.int8)
    yield "255xmixed", np.full((M, K), 255, np.uint8), mixed_b


def check(got, want, impl, arith, shape, fill):
    if np.array_equal(got, want):
        return
    idx = tuple(int(i) for i in np.argwhere(got != want)[0])
    pytest.fail(f"impl={impl} arith={arith} shape(M,N,K)={shape} fill={fill}: first mismatch at "
                f"{idx}: got {got[idx]}, want {want[idx]}")


SMALL = sorted({*range(1, 18), 31, 32, 33, 63, 64, 65})
SHAPES = (
    [(m, 16, 16) for m in SMALL] + [(5, n, 16) for n in SMALL] + [(3, 5, k) for k in SMALL]
    + [(1, 768, 768), (1, 7, 8192), (2, 33, 8193), (17, 31, 511), (129, 17, 63),
       (200, 3, 9), (1, 1, 1), (96, 48, 1024), (97, 49, 1027)]
)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("arith", ARITHS)
def test_gemm_equals_oracle_sweep(impl, arith):
    rng = np.random.default_rng(1234)
    for (M, N, K) in SHAPES:
        for name, a, b in fills(M, K, N, rng):
            want = oracle(a, b, arith) if M * N * K <= 4_000_000 else oracle_big(a, b, arith)
            got = kernels.gemm_u8s8(a, b, arith=arith, impl=impl)
            assert got.dtype == np.int32 and got.shape == (M, N)
            check(got, want, impl, arith, (M, N, K), name)


@pytest.mark.parametrize("arith", ARITHS)
def test_impls_agree_on_benchmark_shapes(arith):
    rng = np.random.default_rng(7)
    for (M, N, K) in [(128, 768, 768), (128, 3072, 768), (256, 256, 256)]:
        a = rng.integers(0, 256, (M, K), dtype=np.uint8)
        b = rng.integers(-128, 128, (K, N), dtype=np.int8)
        pb = kernels.pack_weights(b)
        want = oracle_big(a, b, "exact32") if arith == "exact32" else None
        results = {impl: kernels.gemm_u8s8(a, pb, arith=arith, impl=impl) for impl in IMPLS}
        ref = results["ref"]
        if want is not None:
            check(ref, want, "ref", arith, (M, N, K), "random")
        for impl, got in results.items():
            check(got, ref, impl, arith, (M, N, K), "random")


def test_sat16pair_differs_from_exact32_where_it_must():
    a = np.full((1, 2), 255, np.uint8)
    b = np.full((2, 1), 127, np.int8)
    for impl in IMPLS:
        assert kernels.gemm_u8s8(a, b, arith="exact32", impl=impl)[0, 0] == 64770
        assert kernels.gemm_u8s8(a, b, arith="sat16pair", impl=impl)[0, 0] == 32767
    # -128 side: 255*-128*2 = -65280 saturates to -32768
    b = np.full((2, 1), -128, np.int8)
    for impl in IMPLS:
        assert kernels.gemm_u8s8(a, b, arith="sat16pair", impl=impl)[0, 0] == -32768


def test_odd_k_pads_with_one_zero_not_pairs_across():
    # K=3: pairs (0,1) and (2, pad). 255*127*2 saturates; the lone third product does not.
    a = np.full((1, 3), 255, np.uint8)
    b = np.full((3, 1), 127, np.int8)
    for impl in IMPLS:
        assert kernels.gemm_u8s8(a, b, arith="sat16pair", impl=impl)[0, 0] == 32767 + 255 * 127


@pytest.mark.parametrize("impl", IMPLS)
def test_packed_equals_unpacked_and_is_reusable(impl):
    rng = np.random.default_rng(3)
    b = rng.integers(-128, 128, (77, 45), dtype=np.int8)
    pb = kernels.pack_weights(b)
    assert pb.shape == (77, 45) and pb.k == 77 and pb.n == 45
    assert np.array_equal(pb.colsum, b.astype(np.int64).sum(axis=0))
    for M in (1, 8, 33):
        a = rng.integers(0, 256, (M, 77), dtype=np.uint8)
        for arith in ARITHS:
            assert np.array_equal(kernels.gemm_u8s8(a, pb, arith=arith, impl=impl),
                                  kernels.gemm_u8s8(a, b, arith=arith, impl=impl))


def test_pack_accepts_any_layout():
    rng = np.random.default_rng(4)
    base = rng.integers(-128, 128, (40, 60), dtype=np.int8)
    a = rng.integers(0, 256, (5, 30), dtype=np.uint8)
    for b in (base.T[:30, :33], base[:, 1::2][:30, :20], np.asfortranarray(base[:30, :25])):
        want = oracle(a, np.ascontiguousarray(b), "exact32")
        assert np.array_equal(kernels.gemm_u8s8(a, kernels.pack_weights(b)), want)


def test_non_contiguous_a_is_copied_not_rejected():
    rng = np.random.default_rng(5)
    a_big = rng.integers(0, 256, (20, 40), dtype=np.uint8)
    b = rng.integers(-128, 128, (20, 9), dtype=np.int8)
    a = a_big.T[::2]  # (20, 20) strided view
    assert np.array_equal(kernels.gemm_u8s8(np.ascontiguousarray(a[:, :20]), b[:20]),
                          kernels.gemm_u8s8(a[:, :20], b[:20]))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("arith", ARITHS)
def test_thread_count_invariance(impl, arith):
    rng = np.random.default_rng(6)
    a = rng.integers(0, 256, (300, 257), dtype=np.uint8)
    b = rng.integers(-128, 128, (257, 190), dtype=np.int8)
    pb = kernels.pack_weights(b)
    old = fastq.get_num_threads()
    try:
        outs = []
        for n in (1, 2, 3, 8):
            fastq.set_num_threads(n)
            outs.append(kernels.gemm_u8s8(a, pb, arith=arith, impl=impl))
    finally:
        fastq.set_num_threads(old)
    for o in outs[1:]:
        assert np.array_equal(o, outs[0])
    assert np.array_equal(outs[0], oracle_big(a, b, arith))


def qlinear_oracle(a, b, zp, a_scale, w_scales, bias, arith):
    """The epilogue contract of gemm.h, stated in numpy float32 arithmetic."""
    if a.dtype == np.int8:  # shift to u8; the hardware saturates on the shifted values
        a = (a.astype(np.int16) + 128).astype(np.uint8)
        zp = zp + 128
    acc = oracle_big(a, b, arith).astype(np.int64)
    colsum = b.astype(np.int64).sum(axis=0)
    v = (acc - zp * colsum).astype(np.float32)
    s = np.float32(a_scale) * np.asarray(w_scales, np.float32)
    out = v * s
    return out + bias if bias is not None else out


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("arith", ARITHS)
@pytest.mark.parametrize("signed", [False, True])
def test_qlinear_equals_oracle(impl, arith, signed):
    rng = np.random.default_rng(8)
    M, K, N = 19, 70, 37
    if signed:
        a = rng.integers(-128, 128, (M, K), dtype=np.int8)
        zp = -3
    else:
        a = rng.integers(0, 256, (M, K), dtype=np.uint8)
        zp = 131
    b = rng.integers(-127, 128, (K, N), dtype=np.int8)
    w_scales = rng.uniform(1e-3, 2e-2, N).astype(np.float32)
    bias = rng.normal(size=N).astype(np.float32)
    pb = kernels.pack_weights(b)
    for bb in (None, bias):
        got = kernels.qlinear(a, pb, a_zero_point=zp, a_scale=0.05, w_scales=w_scales, bias=bb,
                              arith=arith, impl=impl)
        want = qlinear_oracle(a, b, zp, 0.05, w_scales, bb, arith)
        assert got.dtype == np.float32
        assert np.array_equal(got, want), f"impl={impl} arith={arith} signed={signed}"


@pytest.mark.parametrize("impl", IMPLS)
def test_qlinear_epilogue_wide_sums(impl):
    """Rows whose sums reach 2^30 (the vector epilogue's int32 range check fails and the row is
    redone in int64) beside rows that stay below, and a zero-point term of 2^30 or more (int64
    throughout): the same floats as the oracle, bias or not."""
    rng = np.random.default_rng(10)
    K, N = 34000, 21                    # 255 * 127 * K > 2^31 / 2
    a = rng.integers(0, 8, (3, K), dtype=np.uint8)
    a[1] = 255                          # row 1 only: sums near 255 * 127 * K
    b = rng.integers(-127, 128, (K, N), dtype=np.int8)
    b[:, ::2] = 127
    w_scales = rng.uniform(1e-6, 1e-5, N).astype(np.float32)
    bias = rng.normal(size=N).astype(np.float32)
    pb = kernels.pack_weights(b)
    acc = oracle_big(a, b, "exact32").astype(np.int64)
    assert np.abs(acc[1]).max() >= 2**30 and np.abs(acc[0]).max() < 2**30
    for zp in (0, 250):                 # 250 * colsum reaches 2^30 on the 127 columns
        for bb in (None, bias):
            got = kernels.qlinear(a, pb, a_zero_point=zp, a_scale=0.5, w_scales=w_scales,
                                  bias=bb, arith="exact32", impl=impl)
            want = qlinear_oracle(a, b, zp, 0.5, w_scales, bb, "exact32")
            assert np.array_equal(got, want), (impl, zp, bb is not None)
    # a sum of 2^30 or more whose difference with a (small, negative) zero-point term leaves
    # int32: only the int64 redo gets it right
    k1, k2 = 40000, 78000
    a = np.zeros((1, k1 + k2), np.uint8)
    a[0, :k1] = 255
    b = np.concatenate([np.full((k1, 3), 127, np.int8), np.full((k2, 3), -127, np.int8)])
    acc = oracle_big(a, b, "exact32").astype(np.int64)
    zc = 200 * b.astype(np.int64).sum(axis=0)
    assert 2**30 <= acc.max() < 2**31 and np.abs(zc).max() < 2**30 and (acc - zc).max() >= 2**31
    got = kernels.qlinear(a, kernels.pack_weights(b), a_zero_point=200, a_scale=0.5,
                          w_scales=np.full(3, 1e-6, np.float32), arith="exact32", impl=impl)
    assert np.array_equal(got, qlinear_oracle(a, b, 200, 0.5, np.full(3, 1e-6, np.float32),
                                              None, "exact32"))


def test_qlinear_matches_float_math():
    """Dequantized inputs times dequantized weights: the epilogue is the real-valued layer."""
    rng = np.random.default_rng(9)
    a = rng.integers(0, 256, (4, 16), dtype=np.uint8)
    b = rng.integers(-127, 128, (16, 5), dtype=np.int8)
    ws = np.full(5, 0.01, np.float32)
    got = kernels.qlinear(a, b, a_zero_point=10, a_scale=0.1, w_scales=ws)
    want = ((a.astype(np.float64) - 10) * 0.1) @ (b.astype(np.float64) * 0.01)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_signed_activation_saturates_on_shifted_values():
    """int8 a = 127 runs as u8 255: with w = 127 the pair saturates in sat16pair."""
    a = np.full((1, 2), 127, np.int8)
    b = np.full((2, 1), 127, np.int8)
    exact = kernels.qlinear(a, b, a_zero_point=0, a_scale=1.0, w_scales=1.0, arith="exact32")
    sat = kernels.qlinear(a, b, a_zero_point=0, a_scale=1.0, w_scales=1.0, arith="sat16pair")
    assert exact[0, 0] == 2 * 127 * 127
    assert sat[0, 0] == 32767 - 128 * 254  # saturated shifted sum, then compensation


class TestErrors:
    def test_wrong_dtype(self):
        with pytest.raises(fastq.KernelError, match=r"a must have dtype uint8, got int8"):
            kernels.gemm_u8s8(np.zeros((2, 3), np.int8), np.zeros((3, 2), np.int8))
        with pytest.raises(fastq.KernelError, match=r"b must have dtype int8, got float32"):
            kernels.gemm_u8s8(np.zeros((2, 3), np.uint8), np.zeros((3, 2), np.float32))

    def test_wrong_rank(self):
        with pytest.raises(fastq.KernelError, match=r"2-D.*\(3,\)"):
            kernels.gemm_u8s8(np.zeros(3, np.uint8), np.zeros((3, 2), np.int8))

    def test_mismatched_k(self):
        with pytest.raises(fastq.KernelError, match=r"K=3.*K=4"):
            kernels.gemm_u8s8(np.zeros((2, 3), np.uint8), np.zeros((4, 2), np.int8))

    def test_unknown_arith_and_impl_list_valid_names(self):
        a, b = np.zeros((2, 3), np.uint8), np.zeros((3, 2), np.int8)
        with pytest.raises(fastq.KernelError, match="exact32, sat16pair"):
            kernels.gemm_u8s8(a, b, arith="exact16")
        with pytest.raises(fastq.KernelError, match="ref, avx2, avx512vnni"):
            kernels.gemm_u8s8(a, b, impl="neon")

    def test_core_rejects_bad_input_without_crashing(self):
        from fastq import _core
        pb = kernels.pack_weights(np.zeros((3, 2), np.int8))
        with pytest.raises(ValueError, match="K=4"):
            _core.gemm_u8s8(np.zeros((2, 4), np.uint8), pb, "exact32", "ref")
        with pytest.raises(ValueError, match="C-contiguous"):
            _core.gemm_u8s8(np.zeros((3, 6), np.uint8)[:, ::2], pb, "exact32", "ref")
        with pytest.raises(ValueError, match="unknown impl 'auto'"):
            _core.gemm_u8s8(np.zeros((2, 3), np.uint8), pb, "exact32", "auto")

    def test_impl_this_cpu_cannot_run_names_the_feature(self, monkeypatch):
        from fastq import _core
        if "avx512vnni" not in _core.built_impls():
            pytest.skip("reference-only build: avx512vnni is not built, so it cannot be 'missing'")
        monkeypatch.setattr(_core, "impl_missing_feature",
                            lambda impl: "avx512_vnni" if impl == "avx512vnni" else "")
        with pytest.raises(fastq.IsaError, match="missing avx512_vnni"):
            kernels.gemm_u8s8(np.zeros((2, 3), np.uint8), np.zeros((3, 2), np.int8),
                              impl="avx512vnni")

    def test_qlinear_bad_scales_and_zero_point(self):
        a, b = np.zeros((2, 3), np.uint8), np.zeros((3, 2), np.int8)
        with pytest.raises(fastq.KernelError, match="w_scales"):
            kernels.qlinear(a, b, a_zero_point=0, a_scale=1.0, w_scales=[1.0, 1.0, 1.0])
        with pytest.raises(fastq.KernelError, match="a_zero_point=300"):
            kernels.qlinear(a, b, a_zero_point=300, a_scale=1.0, w_scales=1.0)
        with pytest.raises(fastq.KernelError, match="a_scale"):
            kernels.qlinear(a, b, a_zero_point=0, a_scale=0.0, w_scales=1.0)
        with pytest.raises(fastq.KernelError, match=r"bias must have shape \(2,\)"):
            kernels.qlinear(a, b, a_zero_point=0, a_scale=1.0, w_scales=1.0, bias=np.zeros(3))

    def test_empty_shapes(self):
        for impl in IMPLS:
            out = kernels.gemm_u8s8(np.zeros((0, 5), np.uint8), np.ones((5, 3), np.int8), impl=impl)
            assert out.shape == (0, 3)
            out = kernels.gemm_u8s8(np.ones((2, 0), np.uint8), np.ones((0, 3), np.int8), impl=impl)
            assert np.array_equal(out, np.zeros((2, 3), np.int32))


def test_equivalent_dtype_objects_are_accepted():
    """Arrays unpickled in another process carry dtype objects equal to, but not the same
    object as, numpy's: the bindings compare dtypes by equivalence."""
    import pickle

    a = pickle.loads(pickle.dumps(np.full((2, 3), 7, np.uint8)))
    b = pickle.loads(pickle.dumps(np.full((3, 2), -2, np.int8)))
    assert a.dtype is not np.dtype(np.uint8)
    assert np.array_equal(kernels.gemm_u8s8(a, b), np.full((2, 2), -42, np.int32))
    x = pickle.loads(pickle.dumps(np.arange(12, dtype=np.float32)))
    assert fastq.stats.minmax(x) == (0.0, 11.0)
