"""Data-parallel runs on the host's cores: ``ordered_map(fn, items)`` applies ``fn`` to each item
on up to ``fastq.get_num_threads()`` Python threads and yields the results in item order, so a
caller that merges them in that order gets the bits a serial loop gets. The heavy work (C++
kernels, numpy ufuncs, BLAS) releases the GIL; each worker runs its C++ kernels inline (a
per-thread cap of 1) and the BLAS library numpy loaded is held at one thread while the map
runs (restored after; also with one worker), so the workers never queue on one shared pool
or oversubscribe the cores. At most
``workers + 1`` items are in flight: memory stays bounded by a few items' live sets.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, Optional, TypeVar

from .. import _core

T = TypeVar("T")
R = TypeVar("R")

_BLAS_LOCK = threading.Lock()
_BLAS = None      # [(set, get)] of each BLAS library loaded in this process, found once


def _blas_libraries() -> list:
    """(set_num_threads, get_num_threads) of every OpenBLAS loaded in this process (numpy's
    wheels bundle one; conda builds may load another); empty when none is found."""
    global _BLAS
    if _BLAS is not None:
        return _BLAS
    found = []
    try:
        with open("/proc/self/maps") as f:
            paths = {p for p in (line.split()[-1] for line in f if line.strip())
                     if "openblas" in os.path.basename(p).lower() and ".so" in p}
    except OSError:
        paths = set()
    for path in sorted(paths):
        if not os.path.exists(path):
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (("scipy_openblas", "64_"), ("openblas", ""),
                               ("openblas", "64_"), ("scipy_openblas", "")):
            s = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
            g = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
            if s is not None and g is not None:
                s.argtypes, s.restype, g.restype = [ctypes.c_int], None, ctypes.c_int
                found.append((s, g))
                break
    _BLAS = found
    return found


def set_blas_threads(n: int) -> bool:
    """Set every loaded OpenBLAS's thread count (process-wide); False when none is found."""
    libs = _blas_libraries()
    with _BLAS_LOCK:
        for s, _ in libs:
            s(int(n))
    return bool(libs)


@contextmanager
def blas_single_thread():
    """Hold every loaded OpenBLAS at one thread inside the block (process-wide; restored on
    exit). Two callers nest correctly: the outermost restores."""
    libs = _blas_libraries()
    with _BLAS_LOCK:
        saved = [(s, g()) for s, g in libs]
        for s, _ in libs:
            s(1)
    try:
        yield
    finally:
        with _BLAS_LOCK:
            for s, n in saved:
                s(n)


_cap_depth = 0
_cap_saved: list = []


@contextmanager
def blas_capped():
    """Hold every loaded OpenBLAS at no more than ``fastq.get_num_threads()`` threads inside
    the block, so a session's float MatMul/Gemm/conv GEMMs use the threads fastq was given
    (``set_num_threads(1)`` means one core, not BLAS's own default of all cores). The setting
    is process-wide, as in ``blas_single_thread``: numpy work on other threads during a run
    gets the cap too. Blocks may overlap across threads: the first to enter saves the thread
    counts, the last to leave restores them. Nothing is called when fastq has every core."""
    global _cap_depth, _cap_saved
    n = max(1, int(_core.get_num_threads()))
    libs = _blas_libraries() if n < (os.cpu_count() or 1) else []
    if not libs:        # fastq has every core (the default), or no OpenBLAS is loaded
        yield
        return
    with _BLAS_LOCK:
        if _cap_depth == 0:
            _cap_saved = [g() for _, g in libs]
        _cap_depth += 1
        for s, g in libs:
            if g() > n:
                s(n)
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _cap_depth -= 1
            if _cap_depth == 0:
                for (s, g), k in zip(libs, _cap_saved):
                    if g() != k:
                        s(k)


def _worker_init() -> None:
    _core.set_thread_local_num_threads(1)


def ordered_map(fn: Callable[[T], R], items: Iterable[T],
                workers: Optional[int] = None) -> Iterator[R]:
    """``map(fn, items)`` on up to ``workers`` threads (default: fastq.get_num_threads()),
    results in item order. An exception raised by ``fn`` is re-raised here when its item's
    turn comes; items not yet started are then dropped. ``fn`` must be safe to call from
    several threads at once (an InferenceSession's run is: all per-run state is local)."""
    n = int(_core.get_num_threads()) if workers is None else int(workers)
    if n <= 1:     # one thread asked for: BLAS too (its own threads only contend here)
        with blas_single_thread():
            yield from map(fn, items)
        return
    it = iter(items)
    pending: deque = deque()
    with blas_single_thread(), ThreadPoolExecutor(n, initializer=_worker_init) as ex:
        try:
            for item in it:
                pending.append(ex.submit(fn, item))
                if len(pending) > n:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for f in pending:
                f.cancel()
