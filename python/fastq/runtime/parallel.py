"""Data-parallel runs on the host's cores: ``ordered_map(fn, items)`` applies ``fn`` to each item
on up to ``fastq.get_num_threads()`` Python threads and yields the results in item order, so a
caller that merges them in that order gets the bits a serial loop gets. The heavy work (C++
kernels, numpy ufuncs, BLAS) releases the GIL; each worker runs its C++ kernels inline (a
per-thread cap of 1) and the BLAS library numpy loaded is held at one thread while the map
runs (restored after; also with one worker), so the workers never queue on one shared pool
or oversubscribe the cores. At most
``workers + 1`` items are in flight: memory stays bounded by a few items' live sets.

Threads only pay when the items' work is mostly outside the GIL. On small models it is not:
a run is a few hundred microseconds of Python between short kernels, and two threads
trading the GIL ran such items 2-3x slower than one thread (measured: a 2-layer BERT, 100
samples, 38 ms on one thread, 123 ms on two). So the map measures before it commits: the
workers run a window of items, then the caller's thread a few items itself (its C++ kernels
on fastq's threads), and the faster of the two throughputs takes the rest (``_Probe``);
items long enough to be kernel work stay on the workers unprobed. Which side runs an item
never changes its result.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor, wait
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


# The probe: the workers start, each timing its items; an item of HEAVY_SECONDS or more is
# kernel work, which threads share out, and they keep the rest without further probing. Else
# they time PROBE_ITEMS * workers results after their first round, for PROBE_SECONDS at
# least; then the caller's thread runs PROBE_ITEMS items (as long) itself, and the workers
# take the rest only if their throughput beat the caller's by PARALLEL_GAIN.
HEAVY_SECONDS = 0.01
PROBE_ITEMS = 3
PROBE_SECONDS = 0.01
PARALLEL_GAIN = 1.15

_local = threading.local()
_POOLS: dict = {}
_POOLS_LOCK = threading.Lock()


def _worker_init() -> None:
    _core.set_thread_local_num_threads(1)
    _local.worker = True


def _pool(n: int) -> ThreadPoolExecutor:
    """The process's pool of ``n`` workers, made on first use (thread start-up is not paid per
    map: AccuracyAware runs a hundred small maps)."""
    with _POOLS_LOCK:
        pool = _POOLS.get(n)
        if pool is None:
            pool = _POOLS[n] = ThreadPoolExecutor(n, initializer=_worker_init,
                                                  thread_name_prefix="fastq-map")
        return pool


def _forget_pools() -> None:
    """In a forked child the pools' threads do not exist: start afresh."""
    global _POOLS_LOCK
    _POOLS.clear()
    _POOLS_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools)


class _Probe:
    """Items per second of a phase: work time excludes the first ``skip`` items and the time
    the consumer spends between results."""

    def __init__(self, need: int, skip: int):
        self.need, self.skip = need, skip
        self.items, self.seconds, self.t0 = 0, 0.0, 0.0
        self.heavy = False

    def start(self) -> None:
        self.t0 = time.perf_counter()

    def stop(self) -> None:
        t = time.perf_counter()
        if self.skip > 0:
            self.skip -= 1
        else:
            self.items += 1
            self.seconds += t - self.t0

    def done(self) -> bool:
        return self.items >= self.need and self.seconds >= PROBE_SECONDS

    def rate(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else float("inf")


def _threaded(fn: Callable, it: Iterator, n: int, probe: Optional[_Probe]) -> Iterator:
    """Items of ``it`` on the pool's ``n`` workers, results in order, ``n + 1`` in flight,
    until ``it`` is exhausted -- or, with ``probe``, until the probe is done (then after the
    results in flight). An item of HEAVY_SECONDS or more ends the probing (probe.heavy): the
    workers keep going, never idle for want of a queued item."""
    pool = _pool(n)

    def timed(item):
        t = time.perf_counter()
        r = fn(item)
        return r, time.perf_counter() - t
    pending: deque = deque()
    try:
        if probe is not None:
            probe.start()
        for item in it:
            pending.append(pool.submit(timed, item))
            if len(pending) > n:
                r, dt = pending.popleft().result()
                if probe is None or probe.heavy:
                    yield r
                    continue
                probe.stop()
                yield r
                probe.start()
                if dt >= HEAVY_SECONDS:
                    probe.heavy = True
                elif probe.done():
                    break
        while pending:
            yield pending.popleft().result()[0]
    finally:
        for f in pending:
            f.cancel()
        wait(pending)


def ordered_map(fn: Callable[[T], R], items: Iterable[T],
                workers: Optional[int] = None) -> Iterator[R]:
    """``map(fn, items)`` on up to ``workers`` threads (default: fastq.get_num_threads()),
    results in item order; on the caller's thread alone when the probe finds threads no
    faster (module docstring). An exception raised by ``fn`` is re-raised here when its
    item's turn comes; items not yet started are then dropped, and items already running
    finish before it propagates. ``fn`` must be safe to call from several threads at once
    (an InferenceSession's run is: all per-run state is local). Inside a worker (an ``fn``
    that maps again) the map is serial."""
    n = int(_core.get_num_threads()) if workers is None else int(workers)
    with blas_single_thread():     # BLAS's own threads would only contend with the items
        if n <= 1 or getattr(_local, "worker", False):
            yield from map(fn, items)
            return
        it = iter(items)
        threaded = _Probe(PROBE_ITEMS * n, skip=n)
        yield from _threaded(fn, it, n, threaded)
        if threaded.heavy:
            return
        serial = _Probe(PROBE_ITEMS, skip=0)
        for item in it:
            serial.start()
            r = fn(item)
            serial.stop()
            yield r
            if serial.done():
                break
        else:
            return
        if threaded.rate() > PARALLEL_GAIN * serial.rate():
            yield from _threaded(fn, it, n, None)
        else:
            yield from map(fn, it)
