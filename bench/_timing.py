"""Shared benchmark helpers: the best-of-N wall time used by the ratio reports, and pinning
numpy's bundled OpenBLAS thread count (fastq's float MatMul/Conv go through it), so every
suite compares single-threaded engines."""

from __future__ import annotations

import time


def best_time(fn, reps: int = 5, warmup: int = 0) -> float:
    """Smallest wall time of ``reps`` calls of ``fn`` (after ``warmup`` untimed calls)."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def blas_threads(n: int) -> bool:
    """Set numpy's bundled OpenBLAS thread count (fastq's own finder; no threadpoolctl)."""
    from fastq.runtime.parallel import set_blas_threads
    return set_blas_threads(n)
