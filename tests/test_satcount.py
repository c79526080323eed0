"""Saturation-analysis GEMM: its sat16pair and exact32 outputs equal the plain GEMM's, and its
per-column count of pair sums at an int16 limit equals an independent numpy oracle, for
every impl that has the kernel, over the shape and fill sweep."""

import numpy as np
import pytest

import fastq
from fastq import kernels

IMPLS = [i for i in kernels.available_impls() if i in kernels.SATCOUNT_IMPLS]


def oracle_counts(a, b):
    a64, b64 = a.astype(np.int64), b.astype(np.int64)
    if a.shape[1] % 2:
        a64 = np.pad(a64, ((0, 0), (0, 1)))
        b64 = np.pad(b64, ((0, 1), (0, 0)))
    counts = np.zeros(b.shape[1], np.int64)
    for j in range(0, a64.shape[1], 2):
        pair = np.clip(np.outer(a64[:, j], b64[j]) + np.outer(a64[:, j + 1], b64[j + 1]),
                       -32768, 32767)
        counts += ((pair == 32767) | (pair == -32768)).sum(axis=0)
    return counts


SHAPES = [(1, 1, 1), (3, 17, 5), (8, 16, 64), (9, 33, 129), (37, 45, 101), (5, 3, 8193),
          (100, 50, 600), (4, 31, 1027)]


def fills(M, K, N, rng):
    yield "random", rng.integers(0, 256, (M, K), dtype=np.uint8), rng.integers(-128, 128, (K, N), dtype=np.int8)
    yield "high", rng.integers(200, 256, (M, K), dtype=np.uint8), rng.integers(-128, 128, (K, N), dtype=np.int8)
    yield "255x127", np.full((M, K), 255, np.uint8), np.full((K, N), 127, np.int8)
    yield "255x-128", np.full((M, K), 255, np.uint8), np.full((K, N), -128, np.int8)
    yield "small", rng.integers(0, 16, (M, K), dtype=np.uint8), rng.integers(-8, 8, (K, N), dtype=np.int8)
    # Kernels skip counting in k groups (4 rows of b) whose weights cannot saturate
    # (|w_k| + |w_k+1| <= 128 for every pair): mix such groups with saturating ones, and
    # panels (16 columns) that never saturate beside ones that do, under high activations.
    b = rng.integers(-64, 65, (K, N), dtype=np.int8)
    big = rng.integers(-128, 128, (K, N), dtype=np.int8)
    rows = (np.arange(K) // 4) % 3 == 1
    cols = (np.arange(N) // 16) % 2 == 0
    b[np.ix_(rows, cols)] = big[np.ix_(rows, cols)]
    if K > 9:
        b[9, :] = 127  # one lone saturating pair partner in another group
        b[8, :] = 3
    yield "mixed", rng.integers(180, 256, (M, K), dtype=np.uint8), b
    # They also skip it where a 4-row tile's activations of a k group are all at or below the
    # group's threshold, 32766 // its widest one-signed weight pair (gemm.h): tiles whose
    # largest activation sits below, at and above the thresholds of pairs set to (127, 127)
    # (threshold 129), (-128, -128) (127), (127, 2) (254), (-64, -64) (255) and a mixed-sign
    # pair that never counts, over small background weights.
    levels = np.array([0, 40, 126, 127, 128, 129, 130, 200, 254, 255])
    lv = levels[(np.arange(M) // 4) % len(levels)]
    a = (rng.random((M, K)) * (lv[:, None] + 1)).astype(np.uint8)
    a[np.arange(M), rng.integers(0, K, M)] = lv  # every row reaches its tile's level
    b = rng.integers(-40, 41, (K, N), dtype=np.int8)
    pairs = [(127, 127), (-128, -128), (127, 2), (-64, -64), (100, -128)]
    for k in range(0, K - 1, 4):
        for c0 in range(0, N, 16):
            c = c0 + int(rng.integers(0, min(16, N - c0)))
            b[k, c], b[k + 1, c] = pairs[(k // 4 + c0 // 16) % len(pairs)]
    yield "tile levels", a, b


@pytest.mark.parametrize("impl", IMPLS)
def test_satcount_equals_gemm_and_oracle(impl):
    rng = np.random.default_rng(11)
    for (M, N, K) in SHAPES:
        for name, a, b in fills(M, K, N, rng):
            sat, exact, counts = kernels.gemm_u8s8_satcount(a, b, impl=impl)
            where = f"impl={impl} shape(M,N,K)={(M, N, K)} fill={name}"
            assert np.array_equal(sat, kernels.gemm_u8s8(a, b, arith="sat16pair", impl="ref")), where
            assert np.array_equal(exact, kernels.gemm_u8s8(a, b, arith="exact32", impl="ref")), where
            assert counts.dtype == np.int64
            assert np.array_equal(counts, oracle_counts(a, b)), where


def test_counts_what_it_says():
    # 255*127 + 255*127 clips: one pair per output; a lone odd product never does.
    a = np.full((3, 3), 255, np.uint8)
    b = np.full((3, 2), 127, np.int8)
    for impl in IMPLS:
        sat, exact, counts = kernels.gemm_u8s8_satcount(a, b, impl=impl)
        assert counts.tolist() == [3, 3]
        assert (exact - sat).tolist() == [[64770 - 32767] * 2] * 3
    # a pair exactly at the limit is counted though it loses nothing
    a = np.array([[255, 191]], np.uint8)
    b = np.array([[127], [2]], np.int8)  # 32385 + 382 = 32767
    for impl in IMPLS:
        sat, exact, counts = kernels.gemm_u8s8_satcount(a, b, impl=impl)
        assert counts.tolist() == [1] and sat[0, 0] == exact[0, 0] == 32767
    # one step inside a limit is not counted; exactly on -32768 is
    cases = [((255, 1), (-128, -127), -32767, 0),   # -32640 - 127
             ((255, 1), (-128, -128), -32768, 1),   # -32640 - 128
             ((255, 1), (127, 126), 32511, 0),
             ((255, 191), (127, 1), 32576, 0),
             ((254, 191), (127, 2), 32640, 0)]
    for impl in IMPLS:
        for av, bv, value, count in cases:
            a = np.array([av], np.uint8)
            b = np.array([[bv[0]], [bv[1]]], np.int8)
            sat, exact, counts = kernels.gemm_u8s8_satcount(a, b, impl=impl)
            assert exact[0, 0] == value and counts.tolist() == [count], (impl, av, bv)
    # a small-valued ReLU-like layer reports zero
    rng = np.random.default_rng(0)
    a = rng.integers(0, 40, (20, 64), dtype=np.uint8)
    b = rng.integers(-127, 128, (64, 10), dtype=np.int8)
    for impl in IMPLS:
        assert kernels.gemm_u8s8_satcount(a, b, impl=impl)[2].sum() == 0


@pytest.mark.parametrize("impl", IMPLS)
def test_satcount_thread_invariance(impl):
    rng = np.random.default_rng(12)
    a = rng.integers(150, 256, (400, 300), dtype=np.uint8)
    b = rng.integers(-128, 128, (300, 80), dtype=np.int8)
    old = fastq.get_num_threads()
    try:
        outs = []
        for n in (1, 2, 4):
            fastq.set_num_threads(n)
            outs.append(kernels.gemm_u8s8_satcount(a, b, impl=impl))
    finally:
        fastq.set_num_threads(old)
    for o in outs[1:]:
        assert all(np.array_equal(x, y) for x, y in zip(o, outs[0]))


@pytest.mark.parametrize("impl", IMPLS)
def test_sparse_and_dense_tiles_agree(impl):
    """The AVX-512 kernel runs a call's full tiles in a sparse form (exact32 sums only for rows
    that met a limit) while at most one row in eight meets one, dense beyond: rows that
    rarely reach a limit, rows that nearly always do, rows that start to mid-call, and the
    same packed weights called again (the next call starts in the mode the last ended in),
    then fresh weights -- sums against the reference kernel, counts against the oracle."""
    rng = np.random.default_rng(21)
    K, N = 512, 64
    b = rng.integers(-128, 128, (K, N), dtype=np.int8)
    pb = kernels.pack_weights(b)

    def low(m):
        return rng.integers(0, 60, (m, K), dtype=np.uint8)

    rare = low(192)
    for r in range(0, 192, 16):                  # one hot pair in every 16th row
        k = 2 * int(rng.integers(0, K // 2))
        rare[r, k:k + 2] = 255
    high = rng.integers(150, 256, (192, K), dtype=np.uint8)
    switch = np.concatenate([low(48), high[:144]])
    old = fastq.get_num_threads()
    try:
        fastq.set_num_threads(1)                 # one call per 96-row block, in order
        for name, a in [("rare", rare), ("high", high), ("switch", switch), ("rare again", rare),
                        ("low", low(96))]:
            sat, exact, counts = kernels.gemm_u8s8_satcount(a, pb, impl=impl)
            assert np.array_equal(sat, kernels.gemm_u8s8(a, b, arith="sat16pair", impl="ref")), name
            assert np.array_equal(exact, kernels.gemm_u8s8(a, b, arith="exact32", impl="ref")), name
            assert np.array_equal(counts, oracle_counts(a, b)), name
            if name == "rare":
                assert 0 < counts.sum() <= 12 * N   # limits met, in the 12 hot rows only
        b2 = rng.integers(-128, 128, (K, N), dtype=np.int8)
        sat, exact, counts = kernels.gemm_u8s8_satcount(rare, b2, impl=impl)
        assert np.array_equal(exact, kernels.gemm_u8s8(rare, b2, arith="exact32", impl="ref"))
        assert np.array_equal(counts, oracle_counts(rare, b2))
    finally:
        fastq.set_num_threads(old)


def test_satcount_errors():
    a, b = np.zeros((2, 3), np.uint8), np.zeros((3, 2), np.int8)
    with pytest.raises(fastq.KernelError, match="no 'avx2' kernel; valid: ref, avx512vnni"):
        kernels.gemm_u8s8_satcount(a, b, impl="avx2")
    with pytest.raises(fastq.KernelError, match="K=4"):
        kernels.gemm_u8s8_satcount(np.zeros((2, 4), np.uint8), b)
    with pytest.raises(fastq.KernelError, match="uint8"):
        kernels.gemm_u8s8_satcount(a.astype(np.int8), b)


def _pair_sums_can_reach_a_limit(b: np.ndarray) -> bool:
    """Oracle for ``can_saturate``: some column's pair (k, k+1) (K padded with a zero) has
    weights whose sum of |w| over its one-signed part exceeds 128, so 255 on both of its
    activations leaves the int16 range or meets a limit (255 * 129 > 32767)."""
    w = b.astype(np.int64)
    if w.shape[0] % 2:
        w = np.pad(w, ((0, 1), (0, 0)))
    w0, w1 = w[0::2], w[1::2]
    pos = np.maximum(w0, 0) + np.maximum(w1, 0)
    neg = -(np.minimum(w0, 0) + np.minimum(w1, 0))
    return bool(np.any(255 * pos >= 32767) or np.any(255 * neg >= 32768))


def _conv_reduction_matrix(w: np.ndarray, group: int, pairing: str) -> list:
    """Each group's B[K, OC/group] in the conv's reduction order (kh, kw, c), per-tap pairing
    padding each tap's channels to even with zero weights."""
    oc, cg, kh, kw = w.shape
    cpad = cg + (cg % 2) if pairing == "per_tap" else cg
    ocg = oc // group
    out = []
    for g in range(group):
        wg = w[g * ocg:(g + 1) * ocg].transpose(2, 3, 1, 0)        # [kh, kw, c, ocg]
        out.append(np.pad(wg, ((0, 0), (0, 0), (0, cpad - cg), (0, 0))).reshape(-1, ocg))
    return out


def test_can_saturate_equals_oracle_and_means_what_it_says():
    """``can_saturate`` is false exactly when no pair of any column can reach an int16 limit
    on any u8 input: then sat16pair equals exact32 at the extremes (0 and 255) and at random
    activations and no pair is counted; when true, 255 on the worst pair meets a limit."""
    rng = np.random.default_rng(5)
    cases = []
    for K, N in [(1, 1), (2, 3), (7, 5), (16, 17), (33, 40)]:
        for hi in (64, 65, 90, 128):
            cases.append(rng.integers(-hi, hi + 1, (K, N)).clip(-128, 127).astype(np.int8))
    edge = np.zeros((4, 2), np.int8)
    edge[0, 0], edge[1, 0] = 64, 64          # 128: 255 * 128 = 32640, safe
    cases.append(edge.copy())
    edge[1, 0] = 65                          # 129: 255 * 129 = 32895, reaches 32767
    cases.append(edge.copy())
    edge[:] = 0
    edge[2, 1], edge[3, 1] = -128, 0         # one product at -32640: safe
    cases.append(edge.copy())
    edge[3, 1] = -1
    cases.append(edge.copy())
    seen = set()
    for b in cases:
        want = _pair_sums_can_reach_a_limit(b)
        seen.add(want)
        pb = kernels.pack_weights(b)
        assert pb.can_saturate == want, b
        K = b.shape[0]
        acts = [np.full((1, K), 255, np.uint8), np.zeros((1, K), np.uint8),
                rng.integers(0, 256, (64, K), dtype=np.uint8)]
        if not want:
            for a in acts:
                sat, exact, counts = kernels.gemm_u8s8_satcount(a, pb, impl="ref")
                assert np.array_equal(sat, exact) and not counts.any()
        else:   # 255 on the one-signed activations of a pair that can reach a limit
            w = np.pad(b.astype(np.int64), ((0, K % 2), (0, 0)))
            for sgn, lim in ((1, 32767), (-1, 32768)):
                part = np.maximum(sgn * w, 0)
                hit = np.argwhere(255 * (part[0::2] + part[1::2]) >= lim)
                if len(hit):
                    j, n = hit[0]
                    a = np.zeros((1, K), np.uint8)
                    for k in (2 * j, 2 * j + 1):
                        if k < K and part[k, n] > 0:
                            a[0, k] = 255
                    _, _, counts = kernels.gemm_u8s8_satcount(a, pb, impl="ref")
                    assert counts[n] > 0, b
                    break
    assert seen == {True, False}
    # convs: per-tap depthwise never saturates; flat depthwise and dense convs by the oracle
    for shape, group in [((6, 1, 3, 3), 6), ((4, 3, 3, 3), 1), ((8, 2, 1, 1), 4),
                         ((5, 1, 1, 5), 5)]:
        for pairing in ("per_tap", "flat"):
            for hi in (60, 127):
                w = rng.integers(-hi, hi + 1, shape).astype(np.int8)
                want = any(_pair_sums_can_reach_a_limit(m)
                           for m in _conv_reduction_matrix(w, group, pairing))
                got = kernels.pack_conv_weights(w, group=group, pairing=pairing).can_saturate
                assert got == want, (shape, group, pairing, hi)
                if shape[1] == 1 and pairing == "per_tap":
                    assert not got
