"""Shared benchmark helpers: the best-of-N wall time used by the ratio reports, and pinning
numpy's bundled OpenBLAS thread count (fastq's float MatMul/Conv go through it), so every
suite compares single-threaded engines."""

from __future__ import annotations

import ctypes
import glob
import os
import time

import numpy as np


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
    """Set numpy's bundled OpenBLAS thread count (no threadpoolctl dependency)."""
    libs = glob.glob(os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs",
                                  "libscipy_openblas*.so"))
    for path in libs:
        lib = ctypes.CDLL(path)
        for sym in ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads"):
            fn = getattr(lib, sym, None)
            if fn is not None:
                fn(n)
                return True
    return False
